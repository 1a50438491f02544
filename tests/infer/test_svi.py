"""SVI: the fast ELBO equals Pyro's ``Trace_ELBO`` at the same draw, and fits recover
closed-form (conjugate) posteriors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from scipy.stats import multivariate_normal
from torch import nn

import bayesguide as bg
from bayesguide.infer.map import pyro_objective
from bayesguide.infer.svi import _fast_objective
from bayesguide.posterior import Guide, LowRankGuide, MeanFieldGuide


def _classifier() -> tuple[bg.GuidedModel, torch.Tensor, torch.Tensor]:
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(0.3, bg.guidance.linear()), likelihood="categorical")
    return model, torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,))


def _regressor() -> tuple[bg.GuidedModel, torch.Tensor, torch.Tensor]:
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    prior = bg.GuidedLaplace(0.5, bg.guidance.linear())
    model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=None)
    X = torch.randn(20, 4, dtype=torch.float64)
    return model, X, X[:, :1] + 0.3 * torch.randn(20, 1, dtype=torch.float64)


def _hand_log_q(guide: Guide, values: dict[str, torch.Tensor]) -> float:
    """log q(values) computed without bayesguide's or Pyro's densities."""
    if isinstance(guide, MeanFieldGuide):
        total = 0.0
        with torch.no_grad():
            for name, scale in guide.scales().items():
                loc = guide.locs[name.replace(".", "__")]
                z = (values[name] - loc) / scale
                total += (-scale.log() - 0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum().item()
        return total
    assert isinstance(guide, LowRankGuide)
    flat = torch.cat([values[s.name].reshape(-1) for s in guide._model.sites]).detach().numpy()
    factor = guide.cov_factor.detach().numpy()
    diag = torch.nn.functional.softplus(guide.diag_unconstrained).detach().numpy()
    cov = factor @ factor.T + np.diag(diag**2)
    return float(multivariate_normal(guide.loc.detach().numpy(), cov).logpdf(flat))


@pytest.mark.parametrize(
    ("kind", "data"),
    [("normal", _classifier), ("lowrank", _classifier), ("normal", _regressor), ("lowrank", _regressor)],
)
def test_fast_elbo_equals_trace_elbo_at_the_same_draw(kind: str, data) -> None:  # type: ignore[no-untyped-def]
    model, X, y = data()
    module = copy.deepcopy(model.net)
    guide = MeanFieldGuide(model, module, init_scale=0.1) if kind == "normal" else LowRankGuide(
        model, module, rank=3, init_scale=0.1
    )

    torch.manual_seed(7)
    guide_trace = poutine.trace(guide).get_trace(X, y)
    torch.manual_seed(7)
    values, log_q = guide.sample_values()
    for name, value in values.items():
        assert torch.equal(value, guide_trace.nodes[name]["value"])

    assert log_q.item() == pytest.approx(guide_trace.log_prob_sum().item(), rel=1e-10)
    assert log_q.item() == pytest.approx(_hand_log_q(guide, values), rel=1e-8)

    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(X, y)
    loglik, logprior = model.log_joint(model.chain(module), values, X, y, noise=guide.noise())
    assert (loglik + logprior).item() == pytest.approx(model_trace.log_prob_sum().item(), rel=1e-10)

    # the whole objective and its gradient, fast engine vs Pyro's Trace_ELBO, same seed
    params = list(guide.parameters())
    torch.manual_seed(11)
    fast = _fast_objective(model, guide, module, X, y)(None)
    fast_grads = torch.autograd.grad(fast, params)
    torch.manual_seed(11)
    pyro_loss = pyro_objective(model, guide, module, X, y)(None)
    pyro_grads = torch.autograd.grad(pyro_loss, params)
    torch.manual_seed(11)
    assert fast.item() == pytest.approx(Trace_ELBO().loss(model.model, guide, X, y, module=module), rel=1e-10)
    assert fast.item() == pytest.approx(pyro_loss.item(), rel=1e-10)
    for a, b in zip(fast_grads, pyro_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- conjugate


def _conjugate_problem() -> tuple[np.ndarray, np.ndarray, float, float]:
    """Correlated inputs, so the mean-field and full posteriors differ clearly."""
    rng = np.random.default_rng(0)
    n, rho = 200, 0.9
    cov = np.array([[1, rho, 0], [rho, 1, 0], [0, 0, 1]])
    X = rng.multivariate_normal(np.zeros(3), cov, size=n)
    sigma, lam = 0.5, 40.0
    y = X @ np.array([1.0, -2.0, 0.5]) + sigma * rng.standard_normal(n)
    return X, y, sigma, lam


def _closed_form_posterior(
    X: np.ndarray, y: np.ndarray, sigma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian prior N(0, 1/(2λ)) per weight, Gaussian noise σ: (mean, precision)."""
    precision = X.T @ X / sigma**2 + 2 * lam * np.eye(X.shape[1])
    return np.linalg.solve(precision, X.T @ y / sigma**2), precision


def _linear_model(sigma: float | None, lam: float, bias: bool = False) -> bg.GuidedModel:
    net = nn.Sequential(nn.Linear(3, 1, bias=bias)).double()
    return bg.GuidedModel(
        net, bg.GuidedNormal(lam), likelihood="gaussian", noise=sigma,
        plain_prior=bg.GuidedNormal(lam, bg.guidance.uniform()),
    )


def test_mean_field_svi_recovers_the_conjugate_posterior() -> None:
    X, y, sigma, lam = _conjugate_problem()
    mean, precision = _closed_form_posterior(X, y, sigma, lam)
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    assert np.abs(mean - ols).max() > 0.1  # the prior matters: the posterior mean is not OLS

    post = bg.fit_svi(_linear_model(sigma, lam), X, y, guide="normal", steps=1500, lr=0.02,
                      schedule="cosine", progress=False)
    got_mean = post.module[0].weight.detach().numpy()[0]
    np.testing.assert_allclose(got_mean, mean, atol=0.01)

    assert isinstance(post.guide, MeanFieldGuide)
    got_std = post.guide.scales()["0.units"].detach().numpy()[0]
    mean_field_std = 1 / np.sqrt(np.diag(precision))  # optimal mean-field: 1/Λ_ii
    marginal_std = np.sqrt(np.diag(np.linalg.inv(precision)))
    assert np.all(marginal_std[:2] > 1.5 * mean_field_std[:2])  # so the check below can fail
    ratio = got_std / mean_field_std
    assert np.all((ratio > 1 / 1.25) & (ratio < 1.25)), ratio


def test_lowrank_svi_recovers_the_conjugate_covariance() -> None:
    X, y, sigma, lam = _conjugate_problem()
    mean, precision = _closed_form_posterior(X, y, sigma, lam)
    post = bg.fit_svi(_linear_model(sigma, lam), X, y, guide="lowrank", rank=2, steps=1500, lr=0.02,
                      schedule="cosine", progress=False)
    np.testing.assert_allclose(post.module[0].weight.detach().numpy()[0], mean, atol=0.01)
    guide = post.guide
    assert isinstance(guide, LowRankGuide)
    q_std = guide.distribution().variance.detach().sqrt().numpy()
    # rank 2 covers the correlated pair: q's marginals are the full posterior's, which are
    # 1.78 times the mean-field optimum for the first two weights
    ratio = q_std / np.sqrt(np.diag(np.linalg.inv(precision)))
    assert np.all((ratio > 1 / 1.25) & (ratio < 1.25)), ratio


def test_map_learns_the_noise_as_the_residual_std() -> None:
    X, y, _, _ = _conjugate_problem()
    fit = bg.fit_map(_linear_model(None, 1e-3, bias=True), X, y, steps=1500, lr=0.05, schedule="cosine",
                     progress=False)
    assert fit.model.learns_noise
    sigma = fit.guide.noise()
    assert sigma is not None
    noise = sigma.item()
    residual = y - fit.predict(X).numpy()[:, 0]
    # at the MAP, ∂/∂σ = 0 gives σ² = mean squared residual (flat prior on σ)
    assert noise == pytest.approx(float(np.sqrt(np.mean(residual**2))), rel=1e-3)
    Xb = np.hstack([X, np.ones((X.shape[0], 1))])
    ols_residual = y - Xb @ np.linalg.lstsq(Xb, y, rcond=None)[0]
    assert noise == pytest.approx(float(np.sqrt(np.mean(ols_residual**2))), rel=1e-3)
    assert noise == pytest.approx(0.5, rel=0.15)  # the noise that generated y


def test_fit_result_noise_is_a_plain_float() -> None:
    X, y, _, _ = _conjugate_problem()
    fit = bg.fit_map(_linear_model(None, 1e-3), X, y, steps=5, progress=False)
    assert isinstance(fit.noise, float)
    assert fit.noise == pytest.approx(fit.guide.noise().item(), rel=1e-15)
    assert "learned noise" in str(fit)
