"""Peak memory of the ``hessian="full"`` evidence: bayesguide against a naive dense reference.

Each configuration runs in a fresh Python process, which reports its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; ``tracemalloc`` does not see every
BLAS / LAPACK or torch buffer) before and after the evidence, and the time it took. The
peak *increase* is compared with one dense ``P × P`` float64 matrix, ``8 P²`` bytes.

* ``bayesguide`` — ``laplace_evidence(..., hessian="full", optimize_prior=...)``: the GGN in
  one buffer, the queries in its lower triangle
  ([`FullGGN`][bayesguide.curvature.ggn.FullGGN]).
* ``reference`` — the same numbers by plain dense linear algebra on fresh matrices, as
  the full GGN was computed before (and as a user of ``torch.linalg`` would): ``G`` from
  [`ggn`][bayesguide.curvature.ggn.ggn], ``eigvalsh(D^{-1/2} G D^{-1/2})`` for type-II
  ML, ``cholesky(G/σ² + c D)`` for the log determinant.

Both sides compute the same log evidence (printed, with their relative difference).
The network is a one-hidden-layer MLP on the digits inputs (64 → width → 10,
categorical), at its initial weights, on the first ``--rows`` training rows (the peak
hardly depends on them; the time does). ``--bayesguide-path DIR`` imports bayesguide
from ``DIR`` in the child processes (e.g. an older tree exported with ``git archive``)
to measure that version's ``bayesguide`` side.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/full_ggn_memory.py                 # P ≈ 5.3k and 11.3k
    OMP_NUM_THREADS=1 python benchmarks/full_ggn_memory.py --widths 70 --optimize-prior
    python benchmarks/full_ggn_memory.py --smoke                           # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any


def _child(width: int, rows: int, side: str, optimize_prior: bool) -> dict[str, Any]:
    """One configuration, in this (fresh) process: the peak RSS before and after, the time, the value."""
    import numpy as np
    import torch
    from torch import nn

    import bayesguide as bg
    from bayesguide.curvature import flat_weights, ggn
    from bayesguide.marglik import laplace_evidence

    data = bg.datasets.digits()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 10)).double().eval()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5, bg.guidance.linear()), "categorical")
    X, y = model.prepare_data(data.X_train[:rows], data.y_train[:rows])
    P = sum(p.numel() for p in net.parameters())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if side == "bayesguide":
        ev = laplace_evidence(model, net, X, y, hessian="full", optimize_prior=optimize_prior)
        value, c = ev.log_evidence, ev.prior_scale
    else:
        theta = flat_weights(model, net).to(torch.float64)
        d, _ = bg.posterior.gaussian_prior(model)
        G = ggn(model, net, theta, X, diagonal=False)
        quad = float((d * theta**2).sum())
        with torch.no_grad():
            loglik = float(model.likelihood.log_prob_sum(net(X), y, None))
        c = 1.0
        if optimize_prior:
            import scipy.optimize

            root = d.sqrt()
            e = np.clip(torch.linalg.eigvalsh(G / (root.unsqueeze(-1) * root)).numpy(), 0.0, None)

            def negative(x: np.ndarray) -> float:
                return 0.5 * math.exp(x[0]) * quad + 0.5 * float(np.log1p(e / math.exp(x[0])).sum())

            c = math.exp(float(scipy.optimize.minimize(negative, np.zeros(1), method="L-BFGS-B",
                                                       bounds=[(-30.0, 30.0)]).x[0]))
        L = torch.linalg.cholesky(G + torch.diag(c * d))
        logdet = 2.0 * float(torch.log(torch.diagonal(L)).sum())
        log_prior = 0.5 * float(torch.log(c * d / (2 * math.pi)).sum()) - 0.5 * c * quad
        value = loglik + log_prior + 0.5 * P * math.log(2 * math.pi) - 0.5 * logdet
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"P": P, "side": side, "optimize_prior": optimize_prior, "rows": rows, "before": before,
            "after": after, "seconds": seconds, "log_evidence": value, "prior_scale": c}


def measure(width: int, rows: int, side: str, optimize_prior: bool, path: str | None) -> dict[str, Any]:
    """Run one configuration in a fresh process and read its report."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", side, "--widths", str(width), "--rows", str(rows)]
    if optimize_prior:
        cmd.append("--optimize-prior")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[70, 150], help="hidden widths (P = 75 w + 10)")
    parser.add_argument("--rows", type=int, default=200, help="training rows")
    parser.add_argument("--optimize-prior", action="store_true", help="type-II ML of the prior scale")
    parser.add_argument("--bayesguide-path", default=None, help="import bayesguide from here in the children")
    parser.add_argument("--smoke", action="store_true", help="a tiny network (seconds)")
    parser.add_argument("--child", choices=["bayesguide", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.widths[0], args.rows, args.child, args.optimize_prior)))
        return []
    widths, rows = ([8], 50) if args.smoke else (args.widths, args.rows)
    results: list[dict[str, Any]] = []
    for width in widths:
        # alternate the order between sizes, so that neither side always runs first
        sides = ["bayesguide", "reference"] if len(results) % 4 == 0 else ["reference", "bayesguide"]
        pair = {s: measure(width, rows, s, args.optimize_prior, args.bayesguide_path) for s in sides}
        P = pair["bayesguide"]["P"]
        dense = 8 * P * P
        print(f"P={P:,} (one P×P float64 = {dense / 1e9:.3f} GB), N={rows}, optimize_prior={args.optimize_prior}")
        for side in ("bayesguide", "reference"):
            r = pair[side]
            increase = r["after"] - r["before"]
            r["peak_increase"] = increase
            print(f"  {side:<10} peak RSS {r['after'] / 1e9:.3f} GB (+{increase / 1e9:.3f} GB = "
                  f"{increase / dense:.2f} P×P matrices)  {r['seconds']:.2f} s  log evidence {r['log_evidence']:.8f}")
        ours, ref = pair["bayesguide"], pair["reference"]
        rel = abs(ours["log_evidence"] - ref["log_evidence"]) / abs(ref["log_evidence"])
        print(f"  peak increase bayesguide/reference: {ours['peak_increase'] / max(ref['peak_increase'], 1):.2f}; "
              f"time ratio {ours['seconds'] / ref['seconds']:.2f}; relative difference of the log evidence {rel:.1e}")
        results.append(pair)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
