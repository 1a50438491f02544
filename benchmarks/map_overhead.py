"""Overhead of ``bg.fit_map`` / ``bg.fit_svi`` against hand-written torch training loops.

Problem: the digits training split (1,348 × 64), an MLP 64-256-256-10 with ReLU, float32,
full batch, Adam with lr 1e-3, guided group-lasso prior (``--prior l1``: guided L1) on the
hidden layers and the default plain L2 prior on the output layer.

* MAP reference: on an identical copy of the network, build Adam (``--fused``:
  ``Adam(fused=True)``, torch's fastest CPU Adam, which ``fit_map`` uses), then per step
  ``loss = F.cross_entropy(net(X), y, reduction="sum") + hand-written guided penalty +
  λ‖output layer‖²``, ``loss.item()`` (recording the loss as a user would), backward, step.
  With ``--batch B`` both sides draw the same minibatches (a seeded permutation, consecutive
  slices, a new permutation when too few are left) and scale the likelihood by ``N / B``.
* SVI reference: a hand-written reparameterised mean-field loop, one ``(loc, ρ)`` pair per
  parameter tensor, weights ``loc + softplus(ρ)·ε``, forward with ``F.linear``,
  ``loss = −(summed log-likelihood + log prior − log q)``.

The bayesguide side times the whole ``fit_map`` / ``fit_svi`` call (data checks, copies,
result assembly included); the reference times copying the network, building its optimiser
and its loop. The two
alternate for several rounds in one process (order swapped every round) and the script
prints per-round wall and CPU times (``time.process_time``), minor page faults
(``getrusage``) and the median ratios bayesguide / reference. Targets: MAP ≤ 1.10 (against
the fused reference, at batch 32, 128 and full), SVI ≤ 1.3.

``--interleaved`` alternates single steps instead of whole fits: ``fit_map``'s ``callback``
(called after every optimizer step) takes one step of the hand loop, so each side's steps
are timed between the other's, a few milliseconds apart, and both see the same machine
state; it prints per round the median step of each side and their ratio. Whole fits
alternated by rounds spread by ±0.15 on a shared 2-core machine; this spreads by ±0.02.
It leaves out ``fit_map``'s fixed cost per call (about 10 ms: data checks, copies, the
result), which whole-fit rounds include.

``--compile`` times ``fit_map(compile=True)`` against ``fit_map`` uncompiled instead (ratio
compiled / eager; below 1 is faster), after one compiled warm-up fit whose compilation
time is printed separately (later fits in the process reuse the compiled code).

Usage::

    python benchmarks/map_overhead.py                    # 7 rounds × 300 steps
    python benchmarks/map_overhead.py --rounds 5 --steps 200 --prior l1
    python benchmarks/map_overhead.py --fused --batch 32 128 full --skip-svi
    python benchmarks/map_overhead.py --interleaved --fused --batch 32 128 full --rounds 5
    python benchmarks/map_overhead.py --compile --batch 32 full
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
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import bayesguide as bg

LR = 1e-3
SEED = 0  # fit_map's default seed: both sides draw the same minibatches
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


def reference_step(problem: Problem, net: nn.Sequential, batch: int | None = None,
                   fused: bool = False) -> Callable[[], float]:
    """One step of the hand-written MAP loop on ``net`` (an identical copy of the template) per call.

    ``batch``: minibatches drawn as ``fit_map`` draws them (same seed, same order), the
    likelihood scaled by ``N / B``; ``fused``: ``Adam(fused=True)``. Each call returns
    the step's loss.
    """
    X, y = problem.X, problem.y
    n = X.shape[0]
    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=LR, fused=True) if fused else torch.optim.Adam(params, lr=LR)
    minibatch = batch is not None and batch < n
    generator = torch.Generator().manual_seed(SEED)
    state = {"perm": torch.randperm(n, generator=generator), "cursor": 0}

    def step() -> float:
        xb, yb = X, y
        if minibatch:
            assert batch is not None
            if state["cursor"] + batch > n:
                state["perm"], state["cursor"] = torch.randperm(n, generator=generator), 0
            idx = state["perm"][state["cursor"] : state["cursor"] + batch]
            state["cursor"] += batch
            xb, yb = X[idx], y[idx]
        optimizer.zero_grad(set_to_none=True)
        nll = F.cross_entropy(net(xb), yb, reduction="sum")
        if minibatch:
            nll = nll * (n / xb.shape[0])
        loss = nll + hand_penalty(problem, params)
        value = loss.item()
        loss.backward()
        optimizer.step()
        return value

    return step


def reference_map(problem: Problem, net: nn.Sequential, steps: int, batch: int | None = None,
                  fused: bool = False) -> list[float]:
    """The hand-written MAP loop: ``steps`` calls of `reference_step`, their losses."""
    step = reference_step(problem, net, batch, fused)
    return [step() for _ in range(steps)]


def interleaved(problem: Problem, steps: int, batch: int | None, fused: bool,
                warmup: int = 10) -> tuple[list[float], list[float]]:
    """Per-step seconds of ``fit_map`` and of the hand loop, their steps alternating one by one.

    ``fit_map`` calls ``callback`` after every optimizer step; the callback takes one step
    of the reference loop (on its own copy of the network). A ``fit_map`` step is timed
    from the end of one callback to the start of the next (its whole loop body: batch,
    objective, backward, Adam, loss record, unit-norm snapshot), a reference step inside
    the callback. Alternating every step (a few ms) exposes both to the same machine
    state, which rounds of hundreds of steps do not; the first ``warmup`` steps of each
    are dropped. ``fit_map``'s fixed cost per call (data checks, copies, result: ~10 ms)
    is not in these times.
    """
    ref = reference_step(problem, copy.deepcopy(problem.net), batch, fused)
    lib_times: list[float] = []
    ref_times: list[float] = []
    resumed = [math.nan]  # when fit_map's next step began: the end of the last callback

    def callback(_step: int) -> None:
        arrived = time.perf_counter()
        if not math.isnan(resumed[0]):
            lib_times.append(arrived - resumed[0])
        start = time.perf_counter()
        ref()
        ref_times.append(time.perf_counter() - start)
        resumed[0] = time.perf_counter()

    bg.fit_map(problem.model, problem.X, problem.y, steps=steps + 1, lr=LR, progress=False, batch_size=batch,
               callback=callback)
    warmup = min(warmup, steps // 2)  # the smoke run's few steps keep half
    return lib_times[warmup:], ref_times[warmup : len(lib_times)]


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
        ws: list[torch.Tensor] = []
        neg_entropy: torch.Tensor | float = 0.0
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


def _timed(fn: Callable[[], float]) -> tuple[float, float, int, float]:
    """Wall time, CPU time of this process, minor page faults (memory handed back by the
    allocator and touched again: a cost of neither side's arithmetic) and the result of ``fn()``.

    CPU time (``time.process_time``, all threads) is what the run cost the machine: on a
    loaded machine wall time also counts the time other processes held the cores.

    The heap is collected first, and ``fn`` returns a number only, so that neither side
    runs next to the other's leftovers (a live result from the previous round changes
    where glibc can trim the heap, hence the page faults of the next run).
    """
    gc.collect()
    faults = _minor_faults()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, _minor_faults() - faults, out


def _reference_run(reference: Callable[[Problem, nn.Sequential, int], list[float]],
                   problem: Problem, steps: int) -> float:
    net = copy.deepcopy(problem.net)  # an identical copy of the template, like fit_map's
    return reference(problem, net, steps)[0]


def _library_run(library: Callable[[int], bg.FitResult], steps: int) -> float:
    return float(library(steps).losses[0])


def compare(
    name: str,
    rounds: int,
    steps: int,
    run_ref: Callable[[int], float],
    run_lib: Callable[[int], float],
    labels: tuple[str, str] = ("reference", "bayesguide"),
) -> tuple[float, tuple[float, float]]:
    """Alternate reference and library; return the median wall ratio and both step-0 losses.

    ``run_ref`` and ``run_lib`` take a number of steps and return the step-0 loss
    (`_reference_run`, `_library_run`). Prints per round the wall and CPU times, their
    ratios library / reference, and the minor page faults.
    """
    # warm-up (allocator, thread pools, lazy imports, compilation), not timed
    run_ref(3)
    run_lib(3)
    walls, cpus = [], []
    first = (math.nan, math.nan)
    ref, lib = labels
    print(f"\n{name}: {rounds} rounds × {steps} steps")
    print(f"{'round':>5} {ref + ' s':>14} {lib + ' s':>14} {'wall ratio':>10} {'CPU s ref / ' + lib[:3]:>18} "
          f"{'CPU ratio':>9} {'page faults ref / ' + lib[:3]:>26}")
    for r in range(rounds):
        if r % 2 == 0:
            t_ref, c_ref, f_ref, ref0 = _timed(functools.partial(run_ref, steps))
            t_lib, c_lib, f_lib, lib0 = _timed(functools.partial(run_lib, steps))
        else:
            t_lib, c_lib, f_lib, lib0 = _timed(functools.partial(run_lib, steps))
            t_ref, c_ref, f_ref, ref0 = _timed(functools.partial(run_ref, steps))
        if r == 0:
            first = (lib0, ref0)
        walls.append(t_lib / t_ref)
        cpus.append(c_lib / c_ref)
        print(f"{r:>5} {t_ref:>14.3f} {t_lib:>14.3f} {t_lib / t_ref:>10.3f} {c_ref:>8.3f} / {c_lib:<7.3f} "
              f"{c_lib / c_ref:>9.3f} {f_ref:>12} / {f_lib:<11}")
    median = statistics.median(walls)
    print(f"{name} median ratio {lib}/{ref}: {median:.3f} (wall), {statistics.median(cpus):.3f} (CPU)")
    return median, first


def compare_interleaved(name: str, problem: Problem, rounds: int, steps: int, batch: int | None,
                        fused: bool) -> float:
    """`interleaved` ``rounds`` times; print per round the median step of each side and their ratios.

    Returns the median over rounds of the ratio of median step times (bayesguide / reference).
    """
    interleaved(problem, 12, batch, fused, warmup=2)  # warm-up (allocator, thread pools, lazy imports)
    print(f"\n{name}, steps alternating one by one: {rounds} rounds × {steps} steps")
    print(f"{'round':>5} {'reference ms':>13} {'bayesguide ms':>14} {'ratio of medians':>17} {'ratio of means':>15}")
    ratios = []
    for r in range(rounds):
        gc.collect()
        lib, ref = interleaved(problem, steps, batch, fused)
        ratio = statistics.median(lib) / statistics.median(ref)
        ratios.append(ratio)
        print(f"{r:>5} {1e3 * statistics.median(ref):>13.3f} {1e3 * statistics.median(lib):>14.3f} {ratio:>17.3f} "
              f"{statistics.fmean(lib) / statistics.fmean(ref):>15.3f}")
    median = statistics.median(ratios)
    print(f"{name} median ratio bayesguide/reference, per step: {median:.3f} "
          f"(rounds {min(ratios):.3f}–{max(ratios):.3f})")
    return median


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prior", choices=["group", "l1"], default="group")
    parser.add_argument("--skip-svi", action="store_true", help="time MAP only")
    parser.add_argument("--stable-malloc", action="store_true",
                        help="fix glibc's mmap/trim thresholds so page faults do not add noise")
    parser.add_argument("--smoke", action="store_true", help="tiny problem, seconds: checks the script runs")
    parser.add_argument("--fused", action="store_true",
                        help="the MAP reference uses Adam(fused=True) (the target's reference)")
    parser.add_argument("--batch", nargs="+", default=["full"], metavar="B",
                        help="minibatch sizes for MAP, 'full' for the full batch (default: full)")
    parser.add_argument("--compile", action="store_true",
                        help="time fit_map(compile=True) against fit_map eager instead of the hand loops")
    parser.add_argument("--interleaved", action="store_true",
                        help="time MAP steps alternating one by one (fit_map's callback takes a reference "
                             "step) instead of whole fits alternating by rounds")
    args = parser.parse_args(argv)
    batches = [None if b == "full" else int(b) for b in args.batch]
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
        f"prior {args.prior}, torch threads {torch.get_num_threads()}, {malloc}, "
        f"MAP reference Adam {'fused' if args.fused else 'default (foreach)'}"
    )
    model = problem.model

    def run_map(k: int, batch: int | None = None, compile: bool = False) -> bg.FitResult:
        extra: dict[str, Any] = {"compile": True} if compile else {}  # an older fit_map, without it, runs too
        return bg.fit_map(model, problem.X, problem.y, steps=k, lr=LR, progress=False, batch_size=batch, **extra)

    def run_svi(k: int) -> bg.FitResult:
        return bg.fit_svi(model, problem.X, problem.y, guide="normal", steps=k, lr=LR,
                          init_scale=INIT_SCALE, progress=False)

    results: dict[str, float] = {}
    for batch in batches:
        key = "map" if batch is None else f"map@{batch}"
        label = "full batch" if batch is None else f"batch {batch}"
        eager = functools.partial(_library_run, functools.partial(run_map, batch=batch))
        if args.compile:
            start = time.perf_counter()
            warm = run_map(3, batch, compile=True)
            print(f"\ncompiling ({label}): {warm.extras['compile']}; 3-step warm-up fit "
                  f"{time.perf_counter() - start:.2f} s in all (not in the timings below)")
            compiled = functools.partial(_library_run, functools.partial(run_map, batch=batch, compile=True))
            results[key.replace("map", "compile")], _ = compare(
                f"MAP compiled vs eager, {label}", rounds, steps, eager, compiled, labels=("eager", "compiled"))
            continue
        name = "MAP" if batch is None else f"MAP ({label})"
        if args.interleaved:
            results[key] = compare_interleaved(name, problem, rounds, steps, batch, args.fused)
            continue
        reference = functools.partial(reference_map, batch=batch, fused=args.fused)
        run_ref = functools.partial(_reference_run, reference, problem)
        results[key], (lib0, ref0) = compare(name, rounds, steps, run_ref, eager)
        # same objective: bayesguide's loss is the reference's minus the priors' log normaliser
        gap = abs(lib0 - (ref0 - problem.log_normaliser)) / abs(ref0)
        print(f"MAP step-0 loss {lib0:.6g} vs reference − Σ log c {ref0 - problem.log_normaliser:.6g} "
              f"(relative gap {gap:.1e})")
    if not args.skip_svi and not args.compile and not args.interleaved:
        run_ref = functools.partial(_reference_run, reference_svi, problem)
        results["svi"], _ = compare("SVI", rounds, steps, run_ref, functools.partial(_library_run, run_svi))
    print()
    for name, ratio in results.items():
        if name.startswith("compile"):
            print(f"{name} ratio compiled/eager {ratio:.3f} (below 1: compiling pays)")
            continue
        target = SVI_TARGET if name == "svi" else MAP_TARGET
        print(f"{name.upper()} ratio {ratio:.3f} (target ≤ {target}"
              f"{', against the fused reference' if name != 'svi' and not args.fused else ''})")
    return results


if __name__ == "__main__":
    main()
