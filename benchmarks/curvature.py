"""How much does each curvature cost? ``diag`` (from the KFAC passes) against ``kron``.

The exact GGN diagonal used to come from per-example Jacobians (``P`` columns per
example); it now comes from the passes that build the KFAC factors
(:func:`bayesguide.curvature.kron.ggn_diagonal`). This script times, alternated inside one
process over ``--rounds`` (so machine load hits all alike), the three ways on MLPs of
growing size on the digits data (1,348 training rows):

* ``kron``      — :class:`~bayesguide.curvature.KronGGN` (the reference cost);
* ``diag``      — :class:`~bayesguide.curvature.DiagGGN`, the KFAC-pass diagonal;
* ``jacobian``  — the Jacobian-based diagonal (``ggn(..., diagonal=True)``), the old
  implementation; only up to ``--jacobian-max`` parameters (it takes minutes beyond).

It prints wall and CPU time per method, the ratios ``diag / kron`` (target ≤ 2) and
``jacobian / diag``, and the largest relative difference between the two diagonals
(they are the same numbers).

Usage::

    python benchmarks/curvature.py                  # 4.8k / 85k / 301k parameters
    python benchmarks/curvature.py --smoke          # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import flat_weights, ggn, make_curvature


def _time(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run(width: int, rounds: int, jacobian: bool, n_rows: int | None) -> dict[str, Any]:
    data = bg.datasets.digits()
    X, y = data.X_train[:n_rows], data.y_train[:n_rows]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), "categorical")
    Xp, _ = model.prepare_data(X, y)
    net.eval()
    methods: dict[str, Callable[[], Any]] = {
        "kron": lambda: make_curvature("kron", model, net, Xp),
        "diag": lambda: make_curvature("diag", model, net, Xp).diag,
    }
    if jacobian:
        methods["jacobian"] = lambda: ggn(model, net, flat_weights(model, net), Xp, diagonal=True)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in methods}
    outputs: dict[str, Any] = {}
    for name, fn in methods.items():  # a warm-up round, not timed
        outputs[name] = fn()
    for _ in range(rounds):
        for name, fn in methods.items():
            wall, cpu, outputs[name] = _time(fn)
            times[name].append((wall, cpu))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    P = sum(p.numel() for p in net.parameters())
    result: dict[str, Any] = {"params": P, "rows": Xp.shape[0], "median": med,
                              "diag/kron": med["diag"][0] / med["kron"][0],
                              "diag/kron cpu": med["diag"][1] / med["kron"][1]}
    if jacobian:
        ref, new = outputs["jacobian"], outputs["diag"]
        result["jacobian/diag"] = med["jacobian"][0] / med["diag"][0]
        result["max rel diff"] = float((ref - new).abs().max() / ref.abs().max())
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[48, 256, 512])
    parser.add_argument("--jacobian-max", type=int, default=100_000,
                        help="largest network (parameters) also timed with the Jacobian diagonal")
    parser.add_argument("--smoke", action="store_true", help="tiny networks and data, seconds")
    args = parser.parse_args(argv)
    widths, rows, rounds = ([8, 16], 60, 1) if args.smoke else (args.widths, None, args.rounds)
    results = []
    for width in widths:
        P = 64 * width + width + width * width + width + width * 10 + 10
        res = run(width, rounds, P <= args.jacobian_max, rows)
        results.append(res)
        line = (f"P={res['params']:>7,}  N={res['rows']}  kron {res['median']['kron'][0]:.3f} s  "
                f"diag {res['median']['diag'][0]:.3f} s  diag/kron {res['diag/kron']:.2f} "
                f"(cpu {res['diag/kron cpu']:.2f})")
        if "jacobian/diag" in res:
            line += (f"  jacobian {res['median']['jacobian'][0]:.2f} s  jacobian/diag {res['jacobian/diag']:.1f}"
                     f"  max rel diff {res['max rel diff']:.1e}")
        print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
