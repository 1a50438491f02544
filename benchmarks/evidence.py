"""Laplace evidence of a digits MLP: bayesguide against laplace-torch, side by side.

Problem: the digits training split (1,348 × 64), float32, categorical likelihood, MAP
weights from ``bg.fit_map`` under ``bg.GuidedNormal(λ, uniform guidance)``, so that every
weight and bias has the same prior precision ``2λ`` — the scalar ``prior_precision`` that
laplace-torch (Daxberger et al. 2021) gets. Two curvatures:

* ``full``: the exact GGN on a 64-32-32-10 MLP (3,466 parameters);
* ``kron``: KFAC on the 64-128-128-10 MLP (26,122 parameters).

The bayesguide side times ``bg.evidence(fit, X, y, hessian=...)``; the peer times
``Laplace(net, "classification", subset_of_weights="all", hessian_structure=...,
prior_precision=2λ)``, ``la.fit(loader)`` (one full batch) and
``la.log_marginal_likelihood()`` on a copy of the same MAP network, with its default
GGN backend (curvlinops) and, for ``full``, also with ``backend=BackPackGGN`` (BackPACK's
batched Jacobians: the faster choice there). They alternate for several rounds in one
process (order reversed every other round); the script prints median wall and CPU
times, the ratios bayesguide / peer (target ≤ 1.0) and the relative difference of the
log evidences (target 0.5 % for ``full``). For ``kron`` the curvatures differ by
design: laplace-torch keeps each bias as its own Kronecker block, bayesguide folds it
into the input factor as a homogeneous coordinate (see ``bayesguide.curvature.kron``).

laplace-torch is not a dependency of bayesguide. Without it the script says so and
exits 0. Installing it without letting it replace torch: ``pip install -c
constraints.txt laplace-torch``, then ``pip uninstall torchvision`` if the torchvision
wheel pip picks was built for another torch (laplace-torch never imports it).

Usage::

    python benchmarks/evidence.py                # 5 rounds, both curvatures
    python benchmarks/evidence.py --rounds 7 --hessian full
    python benchmarks/evidence.py --smoke        # tiny, seconds (CI)
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature.kron import KronBlock, kron_factors, kron_scaled_eigenvalues

STRENGTH = 0.5  # λ: prior precision 2λ = 1 on every parameter
PEER_NAMES = {"bayesguide": "bayesguide", "peer": "laplace-torch", "backpack": "laplace-torch (BackPACK GGN)"}


def _peer() -> Any | None:
    """laplace-torch's ``Laplace`` factory, or ``None`` when it cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its dependencies warn on import (torch.jit)
            from laplace import Laplace
    except Exception as err:  # ImportError, or a binary-incompatible dependency
        print(f"laplace-torch is not usable here ({type(err).__name__}: {err}); "
              f"install it with `pip install -c constraints.txt laplace-torch` to compare")
        return None
    return Laplace


def _backpack() -> Any | None:
    """laplace-torch's ``BackPackGGN`` backend, or ``None`` (said) when BackPACK cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from laplace.curvature import BackPackGGN
    except Exception as err:
        print(f"laplace-torch's BackPACK backend is not usable here ({type(err).__name__}: {err}); "
              f"install backpack-for-pytorch to compare with it")
        return None
    return BackPackGGN


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _fit(widths: Sequence[int], X: torch.Tensor, y: torch.Tensor, steps: int) -> bg.FitResult:
    torch.manual_seed(0)
    model = bg.GuidedModel(_mlp(widths), bg.GuidedNormal(STRENGTH, bg.guidance.uniform()))
    return bg.fit_map(model, X, y, steps=steps, lr=1e-2, progress=False)


def _timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """Wall time, CPU time (all threads; steadier on a shared machine) and the value."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - t0, time.process_time() - c0, value


def separate_bias_evidence(fit: bg.FitResult, X: torch.Tensor, y: torch.Tensor) -> float:
    """Log evidence from bayesguide's KFAC factors with the bias as its own block.

    Zeroing the weight–bias entries of each input factor ``A`` turns ``G ⊗ A`` into
    laplace-torch's ``[G ⊗ A_W, G · A_bb]``; with the scalar prior ``d = 2λ``,
    ``log p(D) = log p(D | θ) − ½ d ‖θ‖² − ½ Σ log(1 + e)`` (``e`` the eigenvalues of
    ``G_kfac / d``). This checks the factors against the peer on the same curvature.
    """
    module = fit.module.eval()
    blocks = []
    for b in kron_factors(fit.model, module, X):
        assert b.A is not None and b.G is not None
        A = b.A.clone()
        A[-1, :-1] = 0.0
        A[:-1, -1] = 0.0
        blocks.append(KronBlock(b.site, A=A, G=b.G))
    theta = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).double()
    d = torch.full_like(theta, 2 * STRENGTH)
    e = kron_scaled_eigenvalues(blocks, d).clamp(min=0.0)
    with torch.no_grad():
        ll = float(fit.model.likelihood.log_prob_sum(module(X), y, None))
    return ll - 0.5 * float((d * theta**2).sum()) - 0.5 * float(torch.log1p(e).sum())


def compare(
    hessian: str, widths: Sequence[int], X: torch.Tensor, y: torch.Tensor, steps: int, rounds: int,
    Laplace: Any, backpack: Any = None,
) -> dict[str, float]:
    """Alternate bayesguide and the peer(s); return median times, their ratios and the values.

    ``backpack``: laplace-torch's ``BackPackGGN`` backend, timed as a second peer (``None``: not).
    """
    fit = _fit(widths, X, y, steps)
    n_params = sum(p.numel() for p in fit.module.parameters())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=len(y))

    def ours() -> float:
        return bg.evidence(fit, X, y, hessian=hessian).log_evidence

    def peer(backend: Any = None) -> Callable[[], float]:
        def run() -> float:
            net = copy.deepcopy(fit.module).eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                la = Laplace(net, "classification", subset_of_weights="all", hessian_structure=hessian,
                             prior_precision=2 * STRENGTH, backend=backend)
                la.fit(loader)
                return float(la.log_marginal_likelihood())
        return run

    contenders: dict[str, Callable[[], float]] = {"bayesguide": ours, "peer": peer()}
    if backpack is not None:
        contenders["backpack"] = peer(backpack)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    values: dict[str, float] = {}
    for r in range(rounds):
        order = list(contenders.items())
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t, c, v = _timed(fn)
            times[name].append(t)
            cpu[name].append(c)
            values[name] = v
    wall = {name: statistics.median(v) for name, v in times.items()}
    proc = {name: statistics.median(v) for name, v in cpu.items()}
    print(f"\n[{hessian}] MLP {'-'.join(map(str, widths))}, {n_params} parameters, N={len(y)}")
    for name in contenders:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:<10} log evidence {values[name]:.6f}  times [s]: {runs}")
    print("  median times [s]: " + ", ".join(f"{PEER_NAMES[name]} {wall[name]:.3f}" for name in contenders))
    result: dict[str, float] = {"ours": values["bayesguide"]}
    for name, suffix in (("peer", ""), ("backpack", "_backpack")):
        if name not in contenders:
            continue
        rel = abs(values["bayesguide"] - values[name]) / abs(values[name])
        print(f"  {hessian} median ratio bayesguide/{PEER_NAMES[name]}: {wall['bayesguide'] / wall[name]:.3f} "
              f"(CPU time: {proc['bayesguide']:.3f} / {proc[name]:.3f} s = {proc['bayesguide'] / proc[name]:.3f})")
        print(f"  {hessian} relative difference of the log evidence from {PEER_NAMES[name]}: {rel:.3e}")
        result |= {f"ratio{suffix}": wall["bayesguide"] / wall[name],
                   f"cpu_ratio{suffix}": proc["bayesguide"] / proc[name],
                   f"rel_diff{suffix}": rel, name: values[name]}
    if hessian == "kron":
        same = separate_bias_evidence(fit, X, y)
        result["rel_diff_same_curvature"] = abs(same - values["peer"]) / abs(values["peer"])
        print(f"  bayesguide's factors with the bias as a separate block (laplace-torch's curvature): "
              f"{same:.6f}, relative difference {result['rel_diff_same_curvature']:.3e}")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500, help="MAP training steps")
    parser.add_argument("--hessian", choices=["full", "kron", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="tiny problem, 1 round (seconds)")
    args = parser.parse_args(argv)

    Laplace = _peer()
    if Laplace is None:
        return {}
    data = bg.datasets.digits()
    X, y = data.X_train, data.y_train
    widths: dict[str, tuple[int, ...]] = {"full": (64, 32, 32, 10), "kron": (64, 128, 128, 10)}
    rounds, steps = args.rounds, args.steps
    if args.smoke:
        X, y, rounds, steps = X[:100], y[:100], 1, 20
        widths = {"full": (64, 6, 10), "kron": (64, 16, 10)}
    hessians = ["full", "kron"] if args.hessian == "both" else [args.hessian]
    backpack = _backpack() if "full" in hessians else None
    return {h: compare(h, widths[h], X, y, steps, rounds, Laplace, backpack if h == "full" else None)
            for h in hessians}


if __name__ == "__main__":
    main(sys.argv[1:])
