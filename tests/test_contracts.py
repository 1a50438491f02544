"""Contract suites run over the registries (as scikit-learn's ``parametrize_with_checks``):
every registered prior family and every registered evidence estimator must pass the
same checks against independent answers. A family or estimator added to the library is
checked here without a line of new test code — except its hand-written reference
(``PENALTY`` / ``ESTIMATES`` below), whose absence is itself a failing test.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer import fitter_for, get_fitter
from bayesguide.marglik import estimators, laplace_evidence
from bayesguide.marglik.conditional import clml_split
from bayesguide.priors import PriorFamily, families, get_family
from bayesguide.priors.hierarchical import HierarchicalUnitPrior

F64 = torch.float64
FAMILIES = families()
DENSITIES = [f for f in FAMILIES if f.prior.has_density]

#: the MAP penalty of each density family, written out by hand: (λ, g, θ (n, p), options) -> Σ_j ...
PENALTY: dict[str, Callable[[float, torch.Tensor, torch.Tensor, dict[str, float]], float]] = {
    "l1": lambda lam, g, t, o: float(lam * (g * t.abs().sum(1)).sum()),
    "l2": lambda lam, g, t, o: float(lam * (g * t.pow(2).sum(1)).sum()),
    "group": lambda lam, g, t, o: float(lam * (g * math.sqrt(t.shape[1]) * t.norm(dim=1)).sum()),
    "sparse_group": lambda lam, g, t, o: float(lam * (g * ((1 - o["alpha"]) * math.sqrt(t.shape[1]) * t.norm(dim=1)
                                                           + o["alpha"] * t.abs().sum(1))).sum()),
}


def _prior(family: PriorFamily, strength: float = 1.3, guidance: object = None) -> bg.UnitPrior:
    options = {o.key: (0.3 if o.key == "alpha" else o.default) for o in family.options}
    return family.build(strength, guidance if guidance is not None else bg.guidance.uniform(), **options)


def test_every_density_family_has_a_hand_written_penalty() -> None:
    assert {f.kind for f in DENSITIES} <= set(PENALTY), "add the new family's penalty to PENALTY"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.kind)
def test_registration_is_consistent(family: PriorFamily) -> None:
    prior = _prior(family)
    assert type(prior) is family.prior and prior.kind == family.kind and prior.penalty
    assert get_family(prior) is family and get_family(family.kind.upper()) is family
    for option in family.options:  # each experiment key sets a constructor field, and round-trips
        assert getattr(prior, option.parameter) == pytest.approx(0.3 if option.key == "alpha" else option.default)
    for method, name in family.fitters.items():  # every fitter it names exists and answers that method
        assert method in ("map", "svi") and get_fitter(name).method == method
        assert fitter_for(prior, method).name == name
    other = prior.with_guidance(bg.guidance.linear())
    assert type(other) is type(prior) and other.strength == prior.strength
    assert all(getattr(other, o.parameter) == getattr(prior, o.parameter) for o in family.options)
    counterpart = prior.gaussian_counterpart()
    assert (counterpart is None) == (not family.prior.has_density)
    if counterpart is not None:
        assert counterpart.kind == "l2" and counterpart.strength == prior.strength


@pytest.mark.parametrize("family", DENSITIES, ids=lambda f: f.kind)
@pytest.mark.parametrize("p", [1, pytest.param(2, marks=pytest.mark.slow)])  # p = 2: a double integral
def test_unit_density_integrates_to_one(family: PriorFamily, p: int) -> None:
    """The normaliser is right: ∫ exp(log_prob(θ)) dθ = 1 over one unit group (numerical quadrature)."""
    d = _prior(family, strength=0.8).unit_distribution(torch.ones(1, dtype=F64), p)

    def density(*x: float) -> float:
        return float(d.log_prob(torch.tensor([list(x)], dtype=F64)).exp())

    if p == 1:
        total = scipy.integrate.quad(density, -np.inf, np.inf, limit=200)[0]
    else:
        total = scipy.integrate.dblquad(lambda a, b: density(a, b), -40, 40, -40, 40, epsabs=1e-10)[0]
    assert total == pytest.approx(1.0, abs=2e-6)


@pytest.mark.parametrize("family", DENSITIES, ids=lambda f: f.kind)
def test_log_prob_is_normaliser_minus_the_hand_written_penalty(family: PriorFamily) -> None:
    g = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    prior = _prior(family, strength=0.7)
    d = prior.unit_distribution(g, 4)
    options = {o.key: getattr(prior, o.parameter) for o in family.options}
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        theta = torch.randn(3, 4, generator=gen, dtype=F64)
        expected = PENALTY[family.kind](0.7, g, theta, options)
        assert float(d.penalty(theta)) == pytest.approx(expected, rel=1e-12)
        assert float(d.log_prob(theta)) == pytest.approx(float(d.log_normaliser) - expected, rel=1e-12)
        # the MAP hot path (column blocks) gives the same penalty as the packed matrix
        parts = [theta[:, :3], theta[:, 3:]]
        assert float(d.penalty_parts(parts)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("family", DENSITIES, ids=lambda f: f.kind)
def test_sampling_moments(family: PriorFamily) -> None:
    """E[rate_j s_j(θ)] = p / k for a statistic homogeneous of degree k: −∂ log Z / ∂ log rate."""
    g = torch.tensor([0.5, 2.0], dtype=F64)
    d = _prior(family, strength=1.5).unit_distribution(g, 3)
    theta = torch.randn(2, 3, dtype=F64)
    k = math.log2(float(d.unit_statistic(2 * theta)[0] / d.unit_statistic(theta)[0]))
    assert k == pytest.approx(round(k), abs=1e-12)  # the statistic is homogeneous
    draws = d.sample((20000,))
    assert draws.shape == (20000, 2, 3)
    scaled = (d.rate * d.unit_statistic(draws)).mean(0)
    np.testing.assert_allclose(scaled.numpy(), 3 / round(k), rtol=0.04)
    assert float(draws.mean()) == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize("family", [f for f in FAMILIES if issubclass(f.prior, HierarchicalUnitPrior)],
                         ids=lambda f: f.kind)
def test_hierarchical_family_conditional_density(family: PriorFamily) -> None:
    """Given its latent scales, a hierarchical family is a normalised density over the weights."""
    prior = _prior(family)
    assert isinstance(prior, HierarchicalUnitPrior)
    g = torch.ones(1, dtype=F64)
    for seed in range(3):
        torch.manual_seed(seed)
        latents = {name: dist.sample() for name, dist in prior.latent_priors(g).items()}
        d = prior.unit_distribution_given(latents, g, 1)
        total = scipy.integrate.quad(lambda x, d=d: float(d.log_prob(torch.tensor([[x]], dtype=F64)).exp()),
                                     -np.inf, np.inf, limit=200)[0]
        assert total == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"bg\.fit_svi"):
        prior.unit_distribution(g, 1)


def _tiny() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(40, 2, generator=gen, dtype=F64)
    y = torch.tanh(X @ torch.tensor([1.0, -1.5], dtype=F64)).unsqueeze(-1) + 0.1 * torch.randn(40, 1, generator=gen,
                                                                                             dtype=F64)
    return X, y


def _permuted(module: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    out = copy.deepcopy(module)
    with torch.no_grad():
        out[0].weight.copy_(module[0].weight[perm])
        out[0].bias.copy_(module[0].bias[perm])
        out[2].weight.copy_(module[2].weight[:, perm])
    return out


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.kind)
def test_every_family_fits_prunes_and_gets_a_finite_permutation_invariant_evidence(family: PriorFamily) -> None:
    X, y = _tiny()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    model = bg.GuidedModel(net, _prior(family, strength=1.0), "gaussian", noise=0.2)
    method = next(iter(family.fitters))
    fit = fitter_for(model.prior, method).fit(model, X, y, steps=30, lr=0.02, progress=False)
    assert fit.fitter == family.fitters[method]
    cand = bg.prune(fit, keep=3)
    for source in (fit, cand):
        ev = bg.evidence(source, X, y, hessian="full", optimize_prior=True)
        assert math.isfinite(ev.log_evidence)
        assert ev.prior_used == ("counterpart" if family.kind != "l2" and family.prior.has_density else
                                 "own" if family.kind == "l2" else "uniform")
    # uniform guidance: permuting the hidden units changes nothing
    perm = torch.tensor([3, 0, 4, 1, 2])
    Xp, yp = fit.prepare(X, y)
    base = laplace_evidence(fit.model, fit.module, Xp, yp, hessian="full", noise=fit.noise)
    moved = _permuted(fit.module, perm)
    other = laplace_evidence(fit.model.with_network(moved), moved, Xp, yp, hessian="full", noise=fit.noise)
    assert other.log_evidence == pytest.approx(base.log_evidence, rel=1e-10)


# ------------------------------------------------------------------ evidence estimators

#: what each estimator promises on Bayesian linear regression: "exact", a lower "bound", or the exact
#: "conditional" marginal likelihood of its split (at the prior scale it chose)
ESTIMATES = {"laplace": "exact", "elbo": "bound", "iwae": "bound", "clml": "conditional"}


def test_every_estimator_has_a_promise() -> None:
    assert {e.name for e in estimators()} <= set(ESTIMATES), "add the new estimator's promise to ESTIMATES"


def _blr() -> tuple[torch.Tensor, torch.Tensor, float]:
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=gen, dtype=F64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=F64) + 0.3 * torch.randn(40, generator=gen, dtype=F64)
    cov = 0.09 * np.eye(40) + X.numpy() @ X.numpy().T / 1.4  # prior precision 2λ = 1.4, σ = 0.3
    return X, y, float(scipy.stats.multivariate_normal(np.zeros(40), cov).logpdf(y.numpy()))


@pytest.mark.parametrize("estimator", estimators(), ids=lambda e: e.name)
def test_estimator_on_conjugate_regression(estimator: bg.marglik.EvidenceEstimator) -> None:
    X, y, log_z = _blr()
    net = nn.Sequential(nn.Linear(3, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.7), "gaussian", noise=0.3)
    if estimator.needs_posterior:
        fit = bg.fit_svi(model, X, y, steps=1500, lr=0.03, progress=False)
        with pytest.raises(ValueError, match="point-mass"):
            bg.evidence(bg.fit_map(model, X, y, steps=5, progress=False), X, y, method=estimator.name)
    else:
        fit = bg.fit_map(model, X, y, steps=2000, lr=0.03, schedule="cosine", progress=False)
    ev = bg.evidence(fit, X, y, method=estimator.name)
    assert isinstance(ev, bg.Evidence) and ev.method == estimator.name and ev.n_params == 3
    if ESTIMATES[estimator.name] == "exact":
        assert ev.log_evidence == pytest.approx(log_z, rel=1e-6)
    elif ESTIMATES[estimator.name] == "conditional":
        first, rest = clml_split(40, 0.8, 0)
        Xf, Xr = X[first].numpy(), X[rest].numpy()
        A = Xf.T @ Xf / 0.09 + 1.4 * ev.prior_scale * np.eye(3)
        mean = np.linalg.solve(A, Xf.T @ y[first].numpy() / 0.09)
        cov = 0.09 * np.eye(len(rest)) + Xr @ np.linalg.solve(A, Xr.T)
        exact = float(scipy.stats.multivariate_normal(Xr @ mean, cov).logpdf(y[rest].numpy()))
        assert ev.log_evidence == pytest.approx(exact, abs=4 * ev.std_error + 0.05)
    else:
        se = ev.std_error if ev.std_error is not None else 0.0
        assert ev.log_evidence <= log_z + 4 * se + 1e-9
        assert ev.log_evidence > log_z - 5.0  # a fitted mean-field guide is close on a 3-weight problem
    with pytest.raises(ValueError, match=f"not {estimator.name!r}"):
        bg.evidence(fit, X, y, method=estimator.name, no_such_option=1)
