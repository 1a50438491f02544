"""Overhead of ``bg.fit_map`` / ``bg.fit_svi`` against hand-written torch training loops.

Problem: the digits training split (1,348 × 64), an MLP 64-256-256-10 with ReLU, float32,
full batch, Adam with lr 1e-3, guided group-lasso prior (``--prior l1``: guided L1) on the
hidden layers and the default plain L2 prior on the output layer.

* MAP reference: on an identical copy of the network, build Adam, then per step
  ``loss = F.cross_entropy(net(X), y, reduction="sum") + hand-written guided penalty +
  λ‖output layer‖²``, ``loss.item()`` (recording the loss as a user would), backward, step.
* SVI reference: a hand-written reparameterised mean-field loop, one ``(loc, ρ)`` pair per
  parameter tensor, weights ``loc + softplus(ρ)·ε``, forward with ``F.linear``,
  ``loss = −(summed log-likelihood + log prior − log q)``.

The bayesguide side times the whole ``fit_map`` / ``fit_svi`` call (data checks, copies,
result assembly included); the reference times copying the network, building its optimiser
and its loop. The two
alternate for several rounds in one process (order swapped every round) and the script
prints per-round wall times and the median ratio bayesguide / reference. Targets: MAP ≤ 1.10,
SVI ≤ 1.3.

Usage::

    python benchmarks/map_overhead.py                    # 7 rounds × 300 steps
    python benchmarks/map_overhead.py --rounds 5 --steps 200 --prior l1
    python benchmarks/map_overhead.py --stable-malloc     # without page-fault noise
    python benchmarks/map_overhead.py --smoke            # tiny, seconds (CI)
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

import bayesguide as bg

LR = 1e-3
STRENGTH = 0.1
INIT_SCALE = 0.01
MAP_TARGET, SVI_TARGET = 1.10, 1.3


@dataclass(frozen=True)
class Problem:
    X: torch.Tensor
    y: torch.Tensor
    net: nn.Sequential
    model: bg.GuidedModel
    prior: str
    coefficients: list[torch.Tensor]  # guidance of the hidden layers, float32
    log_normaliser: float  # Σ log c of all unit priors: the loss offset of bayesguide


def make_problem(prior: str, hidden: int, n: int | None) -> Problem:
    data = bg.datasets.digits()
    X, y = data.X_train, data.y_train
    if n is not None:
        X, y = X[:n], y[:n]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
    family = bg.GuidedGroupLasso if prior == "group" else bg.GuidedLaplace
    model = bg.GuidedModel(net, family(STRENGTH, bg.guidance.linear()), likelihood="categorical")
    # linear guidance by hand: g_j = (j + 1) / n
    coefficients = [torch.arange(1, hidden + 1, dtype=torch.float32) / hidden for _ in range(2)]
    log_norm = sum(float(model.site_distribution(s).log_normaliser) for s in model.sites)
    return Problem(X, y, net, model, prior, coefficients, log_norm)


def hand_penalty(problem: Problem, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Guided penalty of the two hidden layers plus plain L2 on the output layer.

    ``params`` = ``[W0, b0, W1, b1, W2, b2]``.
    """
    lam = STRENGTH
    total = params[0].new_zeros(())
    for (w, b), g in zip((params[0:2], params[2:4]), problem.coefficients):
        if problem.prior == "group":  # λ Σ g_j √p ‖[W_j, b_j]‖₂
            norms = (w.pow(2).sum(1) + b.pow(2)).sqrt()
            total = total + lam * math.sqrt(w.shape[1] + 1) * (g * norms).sum()
        else:  # λ Σ g_j ‖[W_j, b_j]‖₁
            total = total + lam * (g * (w.abs().sum(1) + b.abs())).sum()
    return total + lam * (params[4].pow(2).sum() + params[5].pow(2).sum())


def reference_map(problem: Problem, net: nn.Sequential, steps: int) -> list[float]:
    """The hand-written MAP loop on ``net`` (an identical copy of the template)."""
    X, y = problem.X, problem.y
    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(X), y, reduction="sum") + hand_penalty(problem, params)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def reference_svi(problem: Problem, net: nn.Sequential, steps: int) -> list[float]:
    """The hand-written reparameterised mean-field loop."""
    X, y = problem.X, problem.y
    rho0 = INIT_SCALE + math.log(-math.expm1(-INIT_SCALE))  # softplus⁻¹
    locs = [p.detach().clone().requires_grad_() for p in net.parameters()]
    rhos = [torch.full_like(p, rho0).requires_grad_() for p in locs]
    optimizer = torch.optim.Adam(locs + rhos, lr=LR)
    n_weights = sum(p.numel() for p in locs)
    const = problem.log_normaliser - 0.5 * math.log(2 * math.pi) * n_weights
    losses = []
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        ws, neg_entropy = [], 0.0
        for loc, rho in zip(locs, rhos):
            scale = F.softplus(rho)
            eps = torch.randn_like(loc)
            ws.append(loc + scale * eps)
            neg_entropy = neg_entropy - scale.log().sum() - 0.5 * eps.pow(2).sum()
        h = F.relu(F.linear(X, ws[0], ws[1]))
        h = F.relu(F.linear(h, ws[2], ws[3]))
        loglik = -F.cross_entropy(F.linear(h, ws[4], ws[5]), y, reduction="sum")
        log_prior = -hand_penalty(problem, ws)
        loss = neg_entropy - loglik - log_prior - const  # −(loglik + log prior − log q)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def stable_malloc() -> bool:
    """Stop glibc from handing freed memory back to the OS (``mallopt``), for both sides.

    Each step allocates and frees activations of a few MB; by default glibc may unmap or
    trim them and fault the pages in again on the next step, which costs up to a third of
    a step and depends on what else lives on the heap. With fixed mmap / trim thresholds
    the timings measure the arithmetic and the Python overhead only. Returns whether it
    took effect (glibc only).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _timed(fn: Callable[[], float]) -> tuple[float, int, float]:
    """Wall time, minor page faults (memory handed back by the allocator and touched
    again: a cost of neither side's arithmetic) and the result of ``fn()``.

    The heap is collected first, and ``fn`` returns a number only, so that neither side
    runs next to the other's leftovers (a live result from the previous round changes
    where glibc can trim the heap, hence the page faults of the next run).
    """
    gc.collect()
    faults = _minor_faults()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, _minor_faults() - faults, out


def _reference_run(reference: Callable[[Problem, nn.Sequential, int], list[float]],
                   problem: Problem, steps: int) -> float:
    net = copy.deepcopy(problem.net)  # an identical copy of the template, like fit_map's
    return reference(problem, net, steps)[0]


def _library_run(library: Callable[[int], bg.FitResult], steps: int) -> float:
    return float(library(steps).losses[0])


def compare(
    name: str,
    problem: Problem,
    rounds: int,
    steps: int,
    reference: Callable[[Problem, nn.Sequential, int], list[float]],
    library: Callable[[int], bg.FitResult],
) -> tuple[float, tuple[float, float]]:
    """Alternate reference and library; return the median ratio and both step-0 losses."""
    run_ref = functools.partial(_reference_run, reference, problem, steps)
    run_lib = functools.partial(_library_run, library, steps)
    # warm-up (allocator, thread pools, lazy imports), not timed
    _reference_run(reference, problem, 3)
    _library_run(library, 3)
    ratios = []
    first = (math.nan, math.nan)
    print(f"\n{name}: {rounds} rounds × {steps} steps")
    print(f"{'round':>5} {'reference s':>12} {'bayesguide s':>13} {'ratio':>7} {'page faults ref / bg':>22}")
    for r in range(rounds):
        if r % 2 == 0:
            t_ref, f_ref, ref0 = _timed(run_ref)
            t_lib, f_lib, lib0 = _timed(run_lib)
        else:
            t_lib, f_lib, lib0 = _timed(run_lib)
            t_ref, f_ref, ref0 = _timed(run_ref)
        if r == 0:
            first = (lib0, ref0)
        ratios.append(t_lib / t_ref)
        print(f"{r:>5} {t_ref:>12.3f} {t_lib:>13.3f} {t_lib / t_ref:>7.3f} {f_ref:>11} / {f_lib:<9}")
    median = statistics.median(ratios)
    print(f"{name} median ratio bayesguide/reference: {median:.3f}")
    return median, first


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prior", choices=["group", "l1"], default="group")
    parser.add_argument("--skip-svi", action="store_true", help="time MAP only")
    parser.add_argument("--stable-malloc", action="store_true",
                        help="fix glibc's mmap/trim thresholds so page faults do not add noise")
    parser.add_argument("--smoke", action="store_true", help="tiny problem, seconds: checks the script runs")
    args = parser.parse_args(argv)
    rounds, steps, hidden, n = args.rounds, args.steps, 256, None
    if args.smoke:
        rounds, steps, hidden, n = 2, 5, 16, 200
    malloc = "default allocator"
    if args.stable_malloc:
        fixed = stable_malloc()
        malloc = "glibc mmap/trim thresholds fixed" if fixed else "default allocator (mallopt failed)"
    problem = make_problem(args.prior, hidden, n)
    print(
        f"digits train {tuple(problem.X.shape)}, MLP 64-{hidden}-{hidden}-10 ReLU, float32, "
        f"prior {args.prior}, torch threads {torch.get_num_threads()}, {malloc}"
    )
    model = problem.model

    def run_map(k: int) -> bg.FitResult:
        return bg.fit_map(model, problem.X, problem.y, steps=k, lr=LR, progress=False)

    def run_svi(k: int) -> bg.FitResult:
        return bg.fit_svi(model, problem.X, problem.y, guide="normal", steps=k, lr=LR,
                          init_scale=INIT_SCALE, progress=False)

    results: dict[str, float] = {}
    results["map"], (lib0, ref0) = compare("MAP", problem, rounds, steps, reference_map, run_map)
    # same objective: bayesguide's loss is the reference's minus the priors' log normaliser
    gap = abs(lib0 - (ref0 - problem.log_normaliser)) / abs(ref0)
    print(f"MAP step-0 loss {lib0:.6g} vs reference − Σ log c {ref0 - problem.log_normaliser:.6g} "
          f"(relative gap {gap:.1e})")
    if not args.skip_svi:
        results["svi"], _ = compare("SVI", problem, rounds, steps, reference_svi, run_svi)
    print()
    for name, ratio in results.items():
        target = MAP_TARGET if name == "map" else SVI_TARGET
        print(f"{name.upper()} ratio {ratio:.3f} (target ≤ {target})")
    return results


if __name__ == "__main__":
    main()
