"""A small but complete results dictionary (schema of ``bayesguide.results``), by hand.

Six candidates of a 64-32-16-10 MLP on digits (guidance architecture prior at κ = 1), a fit
with 200 loss points and unit norms for two layers; ``results`` has the PSIS-LOO columns, ``results_no_loo`` has
none, one failed candidate and no measured recommendation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from scipy.special import logsumexp

WIDTHS = [(32, 16), (24, 12), (16, 10), (12, 8), (8, 5), (4, 3)]


def _params(a: int, b: int) -> int:
    return 65 * a + (a + 1) * b + (b + 1) * 10


def _flops(a: int, b: int) -> int:
    return 2 * (64 * a + a * b + b * 10)


def make_results(loo: bool = True) -> dict[str, Any]:
    """The hand-made results dictionary (``loo=False``: no LOO columns at all)."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 2000, 10)  # 200 loss points
    losses = 900 * np.exp(-steps / 300) + 120 + rng.normal(0, 3, steps.size)
    norm_steps = np.arange(0, 2000, 40)  # 50 records
    norms = {}
    for layer, n in (("0", 32), ("2", 16)):
        g = np.arange(1, n + 1) / n  # linear guidance
        base = 1.0 + 0.2 * rng.random(n)
        norms[layer] = [list(base * np.exp(-t / 150 * np.maximum(g - 0.3, 0) * 4)) for t in norm_steps]
    log_ev = np.array([-310.2, -296.4, -281.9, -279.3, -301.8, -352.6])
    log_prior_un = np.array([-(a * (a + 1) / (2 * 32) + b * (b + 1) / (2 * 16)) for a, b in WIDTHS])
    log_prior = log_prior_un - logsumexp(log_prior_un)
    log_post = log_ev + log_prior
    prob = np.exp(log_post - logsumexp(log_post))
    evidence_prob = np.exp(log_ev - logsumexp(log_ev))
    train = [0.998, 0.996, 0.991, 0.984, 0.951, 0.842]
    test = [0.962, 0.965, 0.968, 0.961, 0.934, 0.826]
    candidates = []
    for i, (a, b) in enumerate(WIDTHS):
        cand: dict[str, Any] = {
            "name": f"w{a}-{b}", "widths": [a, b], "kept": {"0": list(range(a)), "2": list(range(b))},
            "n_params": _params(a, b), "flops": _flops(a, b),
            "log_evidence": float(log_ev[i]), "log_prior": float(log_prior[i]),
            "log_posterior": float(log_post[i]), "posterior_prob": float(prob[i]),
            "evidence_prob": float(evidence_prob[i]), "occam_cost": float(-log_prior_un[i]),
            "log_bayes_factor": float(log_ev[i] - log_ev.max()), "prior_scale": 0.8 + 0.1 * i,
            "status": "ok", "metrics": {"train": train[i], "test": test[i]},
        }
        if loo:
            cand.update({"elpd_loo": float(-330 + 12 * min(i, 3) - 20 * max(i - 3, 0)),
                         "elpd_se": 9.5 - i, "pareto_k_max": 0.45 + 0.06 * i,
                         "stacking_weight": [0.0, 0.05, 0.2, 0.7, 0.05, 0.0][i]})
        candidates.append(cand)
    best = candidates[int(np.argmax(prob))]
    return {
        "schema_version": 1,
        "status": "complete",
        "config": {
            "data": {"source": "digits", "task": "classification"},
            "network": {"hidden": [32, 16], "activation": "relu"},
            "prior": {"kind": "group", "strength": 1.0, "guidance": "linear"},
            "fit": {"method": "map", "steps": 2000, "lr": 0.003, "seed": 0},
            "select": {"evidence": "laplace", "occam": "guidance", "loo": loo},
            "output": {"dir": "runs/digits"},
        },
        "data": {"name": "digits", "task": "classification", "n_train": 1437, "n_test": 360,
                 "n_features": 64, "n_outputs": 10},
        "fit": {"method": "map", "steps": 2000, "wall_time_s": 14.2, "stop_reason": "completed",
                "final_loss": float(losses[-1]), "losses": [float(v) for v in losses],
                "loss_steps": [int(s) for s in steps], "unit_norms": norms,
                "norm_steps": [int(s) for s in norm_steps], "train_metric": 0.998, "test_metric": 0.962},
        "metric": "accuracy",
        "candidates": candidates,
        "best": best["name"],
        "recommended": {"name": best["name"], "widths": best["widths"], "n_params": best["n_params"],
                        "flops": best["flops"], "n_params_full": _params(32, 16), "flops_full": _flops(32, 16),
                        "latency_ms": 0.021, "latency_full_ms": 0.047, "speedup": 2.24},
        "flags": ["candidate w4-3: 12 observations with Pareto k > 0.7"] if loo else [],
        "selection": {"kappa": 1.0, "kappa_rule": "as given", "kappa_interval": [0.0, 2.7],
                      "evidence_best": "w12-8"},
        "timings": {"total_s": 31.5},
    }


@pytest.fixture(scope="session")
def complete_page() -> str:
    """The HTML page of ``make_results(loo=True)``, rendered once for read-only tests."""
    from bayesguide.report import render_html

    return render_html(make_results(loo=True))


@pytest.fixture
def results() -> dict[str, Any]:
    return make_results(loo=True)


@pytest.fixture
def results_no_loo() -> dict[str, Any]:
    res = make_results(loo=False)
    res["recommended"] = None
    failed = res["candidates"][-1]
    failed.update({"status": "failed: Cholesky factor not positive definite", "log_evidence": None,
                   "log_posterior": None, "posterior_prob": None, "log_bayes_factor": None,
                   "prior_scale": None, "evidence_prob": None})
    res["flags"] = [f"candidate {failed['name']} excluded: {failed['status']}"]
    return copy.deepcopy(res)
