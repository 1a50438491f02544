"""``device="cuda"``: the same results as on the CPU, and the MAP step against a hand-written CUDA loop.

Problem (as in ``benchmarks/map_overhead.py``): the digits training split (1,348 × 64), an
MLP 64-256-256-10 with ReLU, Adam with lr 1e-3, full batch, guided group-lasso prior
(linear guidance, λ = 0.1) on the hidden layers and the default plain L2 prior on the
output layer.

1. **Same results.** ``bg.fit_map`` in float64 on the CPU and on CUDA from the same
   network and seed (the data stay on the CPU; the full batch is moved once): the loss
   at every step, the final loss and the Laplace evidence (KFAC, type-II prior scale) of
   each fit — also the CPU fit's evidence computed on CUDA, which isolates the
   curvature. Differences are printed and checked against a float64 tolerance
   (``TOLERANCE``, relative); a mismatch exits with status 1.
2. **MAP step time on CUDA**, float32: ``bg.fit_map(..., device="cuda")`` (the whole
   call: data checks, copies, moving the data, result assembly and the move back to the
   CPU) against a hand-written CUDA loop on an identical copy of the network with the
   data already on the GPU — per step ``loss = F.cross_entropy(net(X), y,
   reduction="sum") + hand-written guided penalty + λ‖output layer‖²``, ``loss.item()``,
   backward, Adam step. The two alternate for ``--rounds`` rounds (order swapped every
   round), each timed between ``torch.cuda.synchronize()`` calls; the script prints the
   per-step times and the median ratio bayesguide / reference.

Without CUDA it prints that it needs a GPU and exits with status 0.

Usage::

    python benchmarks/gpu.py                  # 3 rounds × 300 steps, well under 3 minutes on one GPU
    python benchmarks/gpu.py --rounds 5 --steps 500
    python benchmarks/gpu.py --smoke          # tiny, seconds
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import bayesguide as bg

LR = 1e-3
STRENGTH = 0.1
#: the largest relative difference between the CPU and the CUDA results (float64) that passes
TOLERANCE = 1e-6


def make_net(hidden: int, dtype: torch.dtype) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    return net.to(dtype)


def make_model(net: nn.Sequential) -> bg.GuidedModel:
    return bg.GuidedModel(net, bg.GuidedGroupLasso(STRENGTH, bg.guidance.linear()), likelihood="categorical")


def hand_penalty(params: Sequence[torch.Tensor], coefficients: Sequence[torch.Tensor]) -> torch.Tensor:
    """λ Σ g_j √p ‖[W_j, b_j]‖₂ over the two hidden layers, plus λ‖·‖² on the output layer."""
    total = params[0].new_zeros(())
    for (w, b), g in zip((params[0:2], params[2:4]), coefficients, strict=True):
        norms = (w.pow(2).sum(1) + b.pow(2)).sqrt()
        total = total + STRENGTH * math.sqrt(w.shape[1] + 1) * (g * norms).sum()
    return total + STRENGTH * (params[4].pow(2).sum() + params[5].pow(2).sum())


def reference_loop(net: nn.Sequential, X: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """The hand-written MAP loop on ``net`` (on the GPU, like ``X`` and ``y``)."""
    hidden = next(net.parameters()).shape[0]  # units of the first hidden layer
    g = torch.arange(1, hidden + 1, dtype=X.dtype, device=X.device) / hidden  # linear guidance by hand
    coefficients = [g, g]
    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(X), y, reduction="sum") + hand_penalty(params, coefficients)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def check_results(X: torch.Tensor, y: torch.Tensor, hidden: int, steps: int) -> bool:
    """CPU against CUDA in float64: losses, final loss, evidence. Prints the differences; True if all pass."""
    model = make_model(make_net(hidden, torch.float64))
    print(f"\n1. same results, float64, {steps} MAP steps on the CPU and on CUDA (data on the CPU)")
    start = time.perf_counter()
    cpu = bg.fit_map(model, X, y, steps=steps, lr=LR, progress=False)
    t_cpu = time.perf_counter() - start
    torch.cuda.synchronize()
    start = time.perf_counter()
    gpu = bg.fit_map(model, X, y, steps=steps, lr=LR, progress=False, device="cuda")
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - start
    devices = {p.device.type for p in gpu.module.parameters()}
    step_gap = float(np.max(np.abs(gpu.losses - cpu.losses) / np.abs(cpu.losses)))
    final_gap = _relative(gpu.final_loss, cpu.final_loss)
    weight_gap = max(float((p - q).abs().max() / q.abs().max().clamp(min=1e-300))
                     for p, q in zip(gpu.module.parameters(), cpu.module.parameters(), strict=True))
    print(f"   fit: CPU {t_cpu:.2f} s, CUDA {t_gpu:.2f} s; the CUDA fit came back on {sorted(devices)}")
    print(f"   final loss CPU {cpu.final_loss:.12g}  CUDA {gpu.final_loss:.12g}  relative difference {final_gap:.2e}")
    print(f"   largest relative difference of the loss over all steps {step_gap:.2e}; of the weights {weight_gap:.2e}")
    ev_cpu = bg.evidence(cpu, X, y, hessian="kron", optimize_prior=True)
    ev_cross = bg.evidence(cpu, X, y, hessian="kron", optimize_prior=True, device="cuda")
    ev_gpu = bg.evidence(gpu, X, y, hessian="kron", optimize_prior=True, device="cuda")
    curvature_gap = _relative(ev_cross.log_evidence, ev_cpu.log_evidence)
    evidence_gap = _relative(ev_gpu.log_evidence, ev_cpu.log_evidence)
    print(f"   Laplace evidence (kron) of the CPU fit: CPU {ev_cpu.log_evidence:.12g}  CUDA "
          f"{ev_cross.log_evidence:.12g}  relative difference {curvature_gap:.2e}")
    print(f"   Laplace evidence of each fit on its device: CPU {ev_cpu.log_evidence:.12g}  CUDA "
          f"{ev_gpu.log_evidence:.12g}  relative difference {evidence_gap:.2e}")
    gaps = {"loss (all steps)": step_gap, "final loss": final_gap, "evidence (same weights)": curvature_gap,
            "evidence (each fit)": evidence_gap}
    bad = {k: v for k, v in gaps.items() if not v <= TOLERANCE}
    ok = not bad and devices == {"cpu"}
    print(f"   {'OK' if ok else 'MISMATCH'}: every relative difference ≤ {TOLERANCE:g}" if ok else
          f"   MISMATCH (tolerance {TOLERANCE:g}): {bad or 'the fit did not come back on the CPU'}")
    return ok


def _timed(fn: Callable[[], float]) -> tuple[float, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def time_steps(X: torch.Tensor, y: torch.Tensor, hidden: int, steps: int, rounds: int) -> float:
    """Per-step time of fit_map on CUDA against the hand-written CUDA loop, float32; the median ratio."""
    net = make_net(hidden, torch.float32)
    model = make_model(net)
    Xg, yg = X.float().cuda(), y.cuda()

    def library(k: int) -> float:
        return float(bg.fit_map(model, X.float(), y, steps=k, lr=LR, progress=False, device="cuda").losses[0])

    def reference(k: int) -> float:
        return reference_loop(copy.deepcopy(net).cuda(), Xg, yg, k)[0]

    library(5)  # warm-up: CUDA context, cuBLAS handles, kernels, lazy imports — not timed
    reference(5)
    print(f"\n2. MAP step time on CUDA, float32, full batch: {rounds} rounds × {steps} steps")
    print(f"{'round':>5} {'reference ms/step':>18} {'bayesguide ms/step':>19} {'ratio':>7}")
    ratios = []
    first = (math.nan, math.nan)
    for r in range(rounds):
        if r % 2 == 0:
            t_ref, ref0 = _timed(lambda: reference(steps))
            t_lib, lib0 = _timed(lambda: library(steps))
        else:
            t_lib, lib0 = _timed(lambda: library(steps))
            t_ref, ref0 = _timed(lambda: reference(steps))
        if r == 0:
            first = (lib0, ref0)
        ratios.append(t_lib / t_ref)
        print(f"{r:>5} {1e3 * t_ref / steps:>18.3f} {1e3 * t_lib / steps:>19.3f} {t_lib / t_ref:>7.3f}")
    log_norm = sum(float(model.site_distribution(s).log_normaliser) for s in model.sites)
    gap = abs(first[0] - (first[1] - log_norm)) / abs(first[1])
    print(f"   step-0 loss {first[0]:.6g} vs reference − Σ log c {first[1] - log_norm:.6g} (relative gap {gap:.1e})")
    median = statistics.median(ratios)
    print(f"MAP on CUDA: median ratio bayesguide/reference {median:.3f}")
    return median


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="tiny problem, seconds: checks the script runs")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"benchmarks/gpu.py needs a GPU: torch {torch.__version__} sees no CUDA device here; nothing to run")
        return 0
    rounds, steps, hidden, n = args.rounds, args.steps, 256, None
    if args.smoke:
        rounds, steps, hidden, n = 2, 5, 16, 200
    data = bg.datasets.digits(dtype=torch.float64)
    X, y = data.X_train, data.y_train
    if n is not None:
        X, y = X[:n], y[:n]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}); digits train "
          f"{tuple(X.shape)}, MLP 64-{hidden}-{hidden}-10 ReLU, guided group lasso λ={STRENGTH}")
    ok = check_results(X, y, hidden, steps)
    time_steps(X, y, hidden, steps, rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
