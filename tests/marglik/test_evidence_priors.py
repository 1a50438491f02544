"""Every method's candidates get a Laplace evidence: the Gaussian prior each one is
scored under (own, Gaussian counterpart, or GuidedNormal with uniform guidance), checked
against the evidence of the explicit Gaussian model, and end to end through bg.compare."""

from __future__ import annotations

import math

import pytest
import torch

import bayesguide as bg
from bayesguide.guidance import relevance
from bayesguide.infer import fit_relevance
from bayesguide.marglik import EvidencePrior, laplace_evidence


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(48, 3, generator=g, dtype=torch.float64)
    return X, (X[:, 0] - X[:, 1] > 0).long()


def _net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()


def _evidence(prior: bg.UnitPrior) -> bg.Evidence:
    X, y = _data()
    net = _net()
    model = bg.GuidedModel(net, prior)
    return laplace_evidence(model, net, *model.prepare_data(X, y), optimize_prior=False)


@pytest.mark.parametrize(
    ("prior", "used", "reference"),
    [
        (bg.GuidedNormal(0.4, bg.guidance.linear()), "own", bg.guidance.linear()),
        (bg.GuidedLaplace(0.4, bg.guidance.linear()), "counterpart", bg.guidance.linear()),
        (bg.GuidedGroupLasso(0.4, bg.guidance.geometric()), "counterpart", bg.guidance.geometric()),
        (bg.GuidedGroupLasso(0.4, bg.guidance.partial(count=2)), "uniform", bg.guidance.uniform()),
        (bg.GuidedNormal(0.4, bg.guidance.partial(count=1, position="first")), "uniform", bg.guidance.uniform()),
        (bg.HardConcreteGates(0.4, bg.guidance.linear()), "uniform", bg.guidance.uniform()),
        (bg.GroupHorseshoe(0.4, bg.guidance.linear(), tau0=0.1), "uniform", bg.guidance.uniform()),
    ],
    ids=["l2", "l1", "group", "group-partial", "l2-partial", "l0", "horseshoe"],
)
def test_each_prior_is_scored_under_the_documented_gaussian(
    prior: bg.UnitPrior, used: str, reference: bg.guidance.Profile
) -> None:
    ev = _evidence(prior)
    expected = _evidence(bg.GuidedNormal(0.4, reference))
    assert ev.prior_used == used
    assert ev.substituted is (used != "own")
    assert ev.log_evidence == pytest.approx(expected.log_evidence, rel=1e-12)


def test_prior_used_reports_the_strongest_substitution_of_both_families() -> None:
    X, y = _data()
    net = _net()
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.4), plain_prior=bg.GuidedNormal(0.4, bg.guidance.partial(count=1)))
    ev = laplace_evidence(model, net, *model.prepare_data(X, y))
    assert ev.prior_used == EvidencePrior.UNIFORM.value
    assert EvidencePrior.choices() == ["own", "counterpart", "uniform"]
    assert "uniform" in EvidencePrior.UNIFORM.description


def _compare(fit: bg.FitResult, X: torch.Tensor, y: torch.Tensor) -> bg.Comparison:
    path = bg.pruning_path(fit, X, y, n_candidates=3)
    return bg.compare(path, X, y, progress=False)


def _check(cmp: bg.Comparison, used: set[str]) -> None:
    assert (cmp.table["status"] == "ok").all(), list(cmp.table["status"])
    assert all(math.isfinite(v) for v in cmp.table["log_evidence"])
    assert cmp.table["posterior_prob"].sum() == pytest.approx(1.0)
    assert cmp.best is not None
    assert set(cmp.table["prior_used"]) <= used
    assert cmp.table["substituted"].tolist() == [u != "own" for u in cmp.table["prior_used"]]


def test_l0_fit_candidates_compare() -> None:
    X, y = _data()
    fit = bg.fit_l0(bg.GuidedModel(_net(), bg.HardConcreteGates(1.0)), X, y, steps=10, progress=False)
    _check(_compare(fit, X, y), {"uniform"})


def test_horseshoe_svi_fit_candidates_compare() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GroupHorseshoe(tau0=0.1))
    fit = bg.fit_svi(model, X, y, steps=10, progress=False)
    _check(_compare(fit, X, y), {"uniform"})


def test_relevance_fit_candidates_compare() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedNormal(1.0, relevance(every=5)))
    fit = fit_relevance(model, X, y, steps=10, lr=0.01)
    assert bool((fit.model.coefficients["0.units"] == 0).any())  # the most sensitive unit: g = 0
    cmp = _compare(fit, X, y)
    _check(cmp, {"own", "uniform"})
    assert cmp.table["prior_used"].iloc[0] == "uniform"


def test_partial_guidance_fit_candidates_compare() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedGroupLasso(1.0, bg.guidance.partial(0.5)))
    fit = bg.fit_map(model, X, y, steps=10, progress=False)
    cmp = _compare(fit, X, y)
    _check(cmp, {"uniform"})
    # the guidance Occam prior reads the coefficients, zeros included
    assert all(math.isfinite(v) for v in cmp.table["log_prior"])
