"""The conditional marginal likelihood (Lotfi et al. 2022) against the closed form of Bayesian
linear regression, and as a selection criterion through the estimator registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.marglik.conditional import clml_estimate, clml_split


def _blr(n: int = 30, sigma: float = 0.3):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-0.5], [0.25]], dtype=torch.float64) + sigma * torch.randn(n, 1, generator=gen,
                                                                                               dtype=torch.float64)
    model = bg.GuidedModel(nn.Sequential(nn.Linear(3, 1).double()), bg.GuidedNormal(0.5), "gaussian", noise=sigma)
    fit = bg.fit_map(model, X, y, steps=1, progress=False)
    return fit, X, y


def test_clml_of_bayesian_linear_regression_matches_the_closed_form() -> None:
    sigma, alpha = 0.3, 1.0  # GuidedNormal(0.5): precision 2 λ = 1 on every weight and the bias
    fit, X, y = _blr(sigma=sigma)
    first, rest = clml_split(X.shape[0], 0.8, 3)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=torch.float64)], 1)
    A = Xa[first].T @ Xa[first] / sigma**2 + alpha * torch.eye(4, dtype=torch.float64)
    mean = torch.linalg.solve(A, Xa[first].T @ y[first, 0] / sigma**2)
    with torch.no_grad():  # the MAP of D_{≤m}, so that no re-fit is needed (steps=0)
        fit.module[0].weight.copy_(mean[:3].reshape(1, 3))
        fit.module[0].bias.copy_(mean[3:])
    cov = Xa[rest] @ torch.linalg.solve(A, Xa[rest].T) + sigma**2 * torch.eye(len(rest), dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(Xa[rest] @ mean, cov).log_prob(y[rest, 0])
    ev = clml_estimate(fit, X, y, steps=0, optimize_prior=False, draws=20000, seed=3)
    assert ev.method == "clml" and ev.particles == 20000 and ev.pareto_k < 0.7
    assert ev.log_evidence == pytest.approx(float(exact), abs=3 * ev.std_error + 0.01)
    # through the registry, with the same options
    again = bg.evidence(fit, X, y, method="clml", steps=0, optimize_prior=False, draws=20000, seed=3)
    assert again.log_evidence == pytest.approx(ev.log_evidence, rel=1e-12)


def test_clml_refits_on_the_conditioning_split_before_scoring() -> None:
    fit, X, y = _blr()
    ev_far = clml_estimate(fit, X, y, steps=0, optimize_prior=False, draws=500)  # weights from 1 step: far off
    ev_fit = clml_estimate(fit, X, y, steps=500, lr=0.05, optimize_prior=False, draws=500)
    assert ev_fit.log_evidence > ev_far.log_evidence + 5
    assert math.isfinite(ev_fit.std_error)


def test_clml_as_the_selection_criterion() -> None:
    data = bg.datasets.teacher_student(n=200, n_features=3, width=2, noise=0.1, seed=0, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedGroupLasso(1.0), "gaussian", noise=0.1), data.X_train,
                     data.y_train, steps=400, lr=0.02, progress=False)
    cmp = bg.select_architecture(fit, data.X_train, data.y_train,
                                 bg.Selection(n_candidates=3, evidence="clml", fine_tune=100, bisect=0,
                                              evidence_options={"draws": 200}, progress=False))
    assert cmp.settings["evidence"] == "clml"
    assert {"evidence_se", "ess", "evidence_pareto_k"} <= set(cmp.table.columns)
    assert cmp.table["status"].eq("ok").all() and abs(cmp.table["posterior_prob"].sum() - 1) < 1e-9


def test_bad_options_are_refused() -> None:
    fit, X, y = _blr()
    with pytest.raises(ValueError, match="fraction must lie in"):
        bg.evidence(fit, X, y, method="clml", fraction=1.0)
    with pytest.raises(ValueError, match="draws must be an int >= 2"):
        bg.evidence(fit, X, y, method="clml", draws=1)
    with pytest.raises(ValueError, match="steps must be an int >= 0, got -1"):
        bg.evidence(fit, X, y, method="clml", steps=-1)
    with pytest.raises(ValueError, match="needs at least 2 examples, got 1"):
        clml_split(1, 0.8, 0)
    with pytest.raises(ValueError, match="particles is used by"):
        bg.evidence(fit, X, y, method="clml", particles=10)
