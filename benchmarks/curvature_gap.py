"""How far below the full-GGN Laplace evidence do the scalable curvatures sit, and does it grow with width?

For MLPs 64-w-w-10 on the digits (MAP fit under the demo's prior, guided group lasso,
800 full-batch Adam steps at lr 3e-3, seed 0) and 5-w-1 tanh regressions on a 4-unit
teacher (σ = 0.1), the Laplace log evidence with type-II prior scale under the ``full``,
``kron`` (KFAC), ``ekfac`` (eigenvalue-corrected KFAC) and ``diag`` curvatures at the
same weights, and each one's gap to ``full``. Widths stay where the full GGN fits.

Usage::

    python benchmarks/curvature_gap.py            # widths 8 16 32 64 (~2 min on 2 cores)
    python benchmarks/curvature_gap.py --widths 8 16
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import bayesguide as bg
from bayesguide.marglik import laplace_evidence

STRUCTURES = ("full", "kron", "ekfac", "diag")


def _digits(width: int) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    data = bg.datasets.digits()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0, bg.guidance.linear()))
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=800, lr=3e-3, progress=False)
    X, y = fit.prepare(data.X_train, data.y_train)
    return fit, X, y


def _teacher(width: int) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    data = bg.datasets.teacher_student(n=600, n_features=5, width=4, noise=0.1, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0, bg.guidance.linear()), "gaussian", noise=0.1)
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=800, lr=1e-2, progress=False)
    X, y = fit.prepare(data.X_train, data.y_train)
    return fit, X, y


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64])
    args = parser.parse_args(argv)
    print(f"{'task':10s} {'width':>5s} {'P':>6s} " + " ".join(f"{s:>10s}" for s in STRUCTURES)
          + "  " + " ".join(f"{s + ' gap':>10s}" for s in STRUCTURES[1:]) + "  seconds (full/kron/ekfac)")
    for task, make in (("digits", _digits), ("teacher", _teacher)):
        for width in args.widths:
            fit, X, y = make(width)
            values, seconds = {}, {}
            for structure in STRUCTURES:
                start = time.perf_counter()
                ev = laplace_evidence(fit.model, fit.module, X, y, hessian=structure, optimize_prior=True,
                                      noise=fit.noise)
                seconds[structure] = time.perf_counter() - start
                values[structure] = ev.log_evidence
            P = sum(s.n_units * s.group_size for s in fit.model.sites)
            gaps = [values[s] - values["full"] for s in STRUCTURES[1:]]
            print(f"{task:10s} {width:5d} {P:6d} " + " ".join(f"{values[s]:10.1f}" for s in STRUCTURES)
                  + "  " + " ".join(f"{g:10.1f}" for g in gaps)
                  + f"  {seconds['full']:.2f}/{seconds['kron']:.2f}/{seconds['ekfac']:.2f}", flush=True)


if __name__ == "__main__":
    main()
