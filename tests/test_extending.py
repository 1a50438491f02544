"""Extending bayesguide from outside the package: a new prior family and a new evidence
estimator, each defined and registered in this file alone, run through the whole pipeline
— fit → prune → evidence → compare → report — and through a TOML experiment.

The toy family is the guided generalised normal: every weight of unit ``j`` has density
``∝ exp(−λ g_j |x|^q)`` (``q = 2`` is guided L2, ``q = 1`` guided L1), normaliser
``q (λ g_j)^{1/q} / (2 Γ(1/q))`` per weight, and ``|x|^q ~ Gamma(1/q, λ g_j)``. The toy
estimator is the BIC, ``log p(D | θ*) − (P/2) log N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

import bayesguide as bg
from bayesguide.experiment import ExperimentError, load_experiment
from bayesguide.infer.map import _fast_objective
from bayesguide.marglik import EvidenceEstimator, register_estimator, unregister_estimator
from bayesguide.posterior import Fitted
from bayesguide.priors import (
    PriorFamily,
    PriorOption,
    UnitGroupDistribution,
    UnitPrior,
    make_prior,
    register_prior,
    unregister_prior,
)
from bayesguide.results import load_results
from bayesguide.runner import run_experiment


class UnitGeneralNormal(UnitGroupDistribution):
    """Every weight of unit ``j``: density ``q r^{1/q} / (2 Γ(1/q)) exp(−r |x|^q)``, ``r = λ g_j``."""

    def __init__(self, rate: torch.Tensor, group_size: int, power: float) -> None:
        self.power = power
        super().__init__(rate, group_size)

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        q = self.power
        return self.group_size * (math.log(q) + torch.log(rate) / q - math.log(2.0) - math.lgamma(1.0 / q))

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return value.abs().pow(self.power).sum(-1)

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        conc = torch.full(self.event_shape, 1.0 / self.power, dtype=self.rate.dtype)
        rate = self.rate.unsqueeze(-1).expand(self.event_shape)
        magnitude = torch.distributions.Gamma(conc, rate).sample(shape).pow(1.0 / self.power)
        sign = torch.randint(0, 2, magnitude.shape, dtype=magnitude.dtype) * 2 - 1
        return magnitude * sign


@dataclass(frozen=True)
class GuidedGeneralNormal(UnitPrior):
    """Guided generalised normal: penalty ``λ Σ_j g_j ‖θ_j‖_q^q``."""

    power: float = 3.0
    kind = "gnormal"
    penalty = "λ Σ g_j ‖θ_j‖_q^q"

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitGeneralNormal(rate, group_size, self.power)

    def gaussian_counterpart(self) -> UnitPrior:
        return make_prior("l2", self.strength, self.guidance)


FAMILY = PriorFamily("gnormal", GuidedGeneralNormal, "guided generalised normal, λ Σ g_j ‖θ_j‖_q^q",
                     options=(PriorOption("power", 3.0, "the exponent q", positive=True),))


def bic_estimate(fitted: Fitted, X: torch.Tensor, y: torch.Tensor, *, penalty: float = 1.0) -> bg.Evidence:
    """``log p(D | θ*) − penalty · (P/2) log N`` at the fitted weights."""
    with torch.no_grad():
        out = fitted.module.eval()(X)
    noise = fitted.model.noise_tensor(None if fitted.noise is None else torch.tensor(fitted.noise), X.dtype)
    loglik = float(fitted.model.likelihood.log_prob_sum(out, y, noise))
    P = sum(p.numel() for p in fitted.module.parameters())
    return bg.Evidence(log_evidence=loglik - penalty * 0.5 * P * math.log(X.shape[0]), method="bic", n_params=P,
                       log_likelihood=loglik)


@pytest.fixture
def registered() -> Iterator[None]:
    register_prior(FAMILY)
    register_estimator(EvidenceEstimator("bic", bic_estimate, "Bayesian information criterion"))
    try:
        yield
    finally:
        unregister_prior("gnormal")
        unregister_estimator("bic")


def _data(n: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64)) + 0.1 * torch.randn(n, generator=gen,
                                                                                                 dtype=torch.float64)
    return X, y


def test_the_toy_density_is_normalised_and_matches_scipy(registered: None) -> None:
    prior = make_prior("gnormal", 2.0, bg.guidance.uniform(), power=3.0)
    d = prior.unit_distribution(torch.ones(2, dtype=torch.float64), 3)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    # scipy's gennorm: density β / (2 s Γ(1/β)) exp(−|x/s|^β) with s = rate^{-1/β}
    ref = stats.gennorm.logpdf(x.numpy(), 3.0, scale=2.0 ** (-1 / 3)).sum((1, 2))
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref, rtol=1e-12)
    draws = d.sample((20000,))
    # E|x|^q = 1 / (q rate) for every weight
    assert float(draws.abs().pow(3).mean()) == pytest.approx(1 / (3 * 2.0), rel=0.03)


def test_a_family_registered_here_runs_fit_prune_evidence_compare_report(registered: None, tmp_path: Path) -> None:
    X, y = _data()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    model = bg.GuidedModel(net, make_prior("gnormal", 5.0, power=3.0), "gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=200, lr=0.02, progress=False)
    # the MAP objective is sum NLL + λ Σ_j g_j Σ |θ|³ + the plain L2 of the output layer − log normalisers
    W1, b1, W2, b2 = (p.detach() for p in fit.module.parameters())
    g = torch.arange(1, 9, dtype=torch.float64) / 8  # linear guidance
    hidden = torch.cat([W1, b1[:, None]], 1)
    residual = (fit.predict(X).squeeze(-1) - y) / 0.1
    nll = 0.5 * float(residual.pow(2).sum()) + 80 * math.log(0.1 * math.sqrt(2 * math.pi))
    guided = 5.0 * float((g * hidden.abs().pow(3).sum(1)).sum())
    guided -= float(sum(4 * (math.log(3) + math.log(5.0 * gj) / 3 - math.log(2) - math.lgamma(1 / 3)) for gj in g))
    plain = 5.0 * float(W2.pow(2).sum() + b2.pow(2).sum()) - 9 * 0.5 * math.log(5.0 / math.pi)
    objective = _fast_objective(model, bg.DeltaGuide(model, fit.module), *model.prepare_data(X, y))
    assert float(objective(None).detach()) == pytest.approx(nll + guided + plain, rel=1e-10)
    cand = bg.prune(fit, fraction=0.05)
    assert cand.model.prior.kind == "gnormal" and cand.model.prior.power == 3.0
    ev = bg.evidence(cand, X, y)
    assert math.isfinite(ev.log_evidence) and ev.prior_used == "counterpart"
    path = bg.pruning_path(fit, X, y, n_candidates=3, fine_tune=20, lr=0.01)
    for method in ("laplace", "bic"):
        cmp = bg.compare(path, X, y, evidence=method, progress=False)
        assert cmp.table["posterior_prob"].sum() == pytest.approx(1.0)
        assert cmp.settings["evidence"] == method
    page = bg.write_report(cmp, tmp_path / "report.html").read_text()
    assert "GuidedGeneralNormal" in page and "Recommended" in page


TOML = """
[data]
source = "{data}"
task = "regression"
[network]
hidden = [6]
activation = "tanh"
[prior]
kind = "gnormal"
strength = 3.0
power = {power}
[fit]
steps = 60
lr = 0.02
[select]
n_candidates = 3
fine_tune = 5
evidence = "{evidence}"
[output]
dir = "{out}"
"""


def test_a_family_and_an_estimator_registered_here_run_from_an_experiment_file(registered: None,
                                                                              tmp_path: Path) -> None:
    X, y = _data(60)
    np.savez(tmp_path / "d.npz", X=X.numpy(), y=y.numpy())
    path = tmp_path / "exp.toml"
    path.write_text(TOML.format(data=tmp_path / "d.npz", power=2.5, evidence="bic", out=tmp_path / "run"))
    exp = load_experiment(path)
    assert exp.prior.options == {"power": 2.5}
    results: dict[str, Any] = run_experiment(exp, progress=False, log=lambda s: None)
    assert results["status"] == "complete"
    assert "GuidedGeneralNormal" in results["fit"]["prior"] and results["config"]["prior"]["power"] == 2.5
    assert sum(c["posterior_prob"] for c in results["candidates"]) == pytest.approx(1.0)
    assert load_results(tmp_path / "run")["config"]["select"]["evidence"] == "bic"
    # its own key is validated like a built-in family's
    path.write_text(TOML.format(data=tmp_path / "d.npz", power=0, evidence="bic", out=tmp_path / "run2"))
    with pytest.raises(ExperimentError, match=r"\[prior\] power must be > 0"):
        load_experiment(path)
    path.write_text(TOML.format(data=tmp_path / "d.npz", power=2.5, evidence="bic", out=tmp_path / "run3")
                    .replace('kind = "gnormal"', 'kind = "l1"'))
    with pytest.raises(ExperimentError, match=r"power = 2.5 is only used by kind = 'gnormal', not 'l1'"):
        load_experiment(path)


def test_unregistered_family_is_not_an_experiment_choice(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('[prior]\nkind = "gnormal"\n')
    with pytest.raises(ExperimentError, match=r"kind = 'gnormal' is not accepted; choose one of: l1, l2"):
        load_experiment(path)
