"""Posterior draws against independent answers: the closed-form posterior of Bayesian
linear regression for the Laplace posterior (exact precision, sampled moments), the
guides' own densities for guide draws, and the model's log joint for the log prior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bayesguide as bg
from bayesguide.posterior import (
    LowRankGuide,
    MeanFieldGuide,
    guide_draws,
    laplace_posterior,
    log_prior_draws,
)


def _regression(n: int = 40, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[:d]
    return X, X @ w + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)


def _linear_model(strength: float, sigma: float | None, d: int = 3) -> bg.GuidedModel:
    net = torch.nn.Sequential(torch.nn.Linear(d, 1, bias=False)).double()
    return bg.GuidedModel(net, bg.GuidedNormal(strength), likelihood="gaussian", noise=sigma)


def _posterior(X: torch.Tensor, y: torch.Tensor, alpha: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form posterior N(m, A⁻¹) of w under w ~ N(0, I/α), y ~ N(Xw, σ²I)."""
    Phi, t = X.numpy(), y.numpy()
    A = Phi.T @ Phi / sigma**2 + alpha * np.eye(Phi.shape[1])
    return np.linalg.solve(A, Phi.T @ t / sigma**2), A


def _at_mean(model: bg.GuidedModel, mean: np.ndarray) -> torch.nn.Module:
    with torch.no_grad():
        model.net[0].weight.copy_(torch.as_tensor(mean).reshape(1, -1))
    return model.net


def test_full_laplace_posterior_is_the_conjugate_posterior() -> None:
    X, y = _regression()
    strength, sigma = 0.7, 0.3
    model = _linear_model(strength, sigma)
    mean, A = _posterior(X, y, alpha=2 * strength, sigma=sigma)
    Xp, yp = model.prepare_data(X, y)
    post = laplace_posterior(model, _at_mean(model, mean), Xp, yp, hessian="full")
    # exact: the GGN of a linear-Gaussian model is ΦᵀΦ/σ², the prior precision 2λ
    np.testing.assert_allclose(post.precision.numpy(), A, rtol=1e-10)
    np.testing.assert_allclose(post.covariance().numpy(), np.linalg.inv(A), rtol=1e-8)
    np.testing.assert_allclose(post.mean.numpy(), mean, rtol=1e-12)
    # sampled moments: 20k draws, mean within 5 standard errors, covariance within 5 %
    draws = post.sample(20_000, torch.Generator().manual_seed(3)).numpy()
    cov = np.linalg.inv(A)
    se = np.sqrt(np.diag(cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.05 * np.abs(cov).max())


def test_diag_laplace_posterior_keeps_the_diagonal_of_the_precision() -> None:
    X, y = _regression()
    model = _linear_model(0.7, 0.3)
    mean, A = _posterior(X, y, alpha=1.4, sigma=0.3)
    Xp, yp = model.prepare_data(X, y)
    post = laplace_posterior(model, _at_mean(model, mean), Xp, yp, hessian="diag")
    assert post.cholesky is None
    np.testing.assert_allclose(post.precision.numpy(), np.diag(A), rtol=1e-10)
    draws = post.sample(20_000, torch.Generator().manual_seed(4)).numpy()
    np.testing.assert_allclose(draws.std(0), 1 / np.sqrt(np.diag(A)), rtol=0.03)
    # independent coordinates: off-diagonal sample correlations vanish (|r| < 5/√S)
    r = np.corrcoef(draws.T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(r) < 5 / math.sqrt(draws.shape[0]))


def test_prior_scale_and_learned_noise_enter_the_precision() -> None:
    X, y = _regression()
    model = _linear_model(0.7, None)  # learns σ
    mean, _ = _posterior(X, y, alpha=1.4, sigma=0.5)
    Xp, yp = model.prepare_data(X, y)
    with pytest.raises(ValueError, match=r"learns the noise σ: pass noise=fit\.noise"):
        laplace_posterior(model, model.net, Xp, yp)
    post = laplace_posterior(model, _at_mean(model, mean), Xp, yp, prior_scale=3.0, noise=0.5)
    Phi = X.numpy()
    np.testing.assert_allclose(post.precision.numpy(), Phi.T @ Phi / 0.25 + 3.0 * 1.4 * np.eye(3), rtol=1e-10)
    assert post.noise == 0.5 and post.prior_scale == 3.0


def test_unflatten_inverts_the_site_packing_of_a_two_layer_net() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0))
    X = torch.randn(12, 3, dtype=torch.float64)
    Xp, yp = model.prepare_data(X, torch.randint(0, 2, (12,)))
    post = laplace_posterior(model, net, Xp, yp, hessian="diag")
    params = dict(net.named_parameters())
    parts = post.unflatten(post.mean)
    assert list(parts) == [s.name for s in model.sites]
    for s in model.sites:
        torch.testing.assert_close(parts[s.name], s.pack(params).detach(), rtol=0, atol=0)
    batched = post.unflatten(post.sample(4))
    assert batched["0.units"].shape == (4, 5, 4) and batched["2.units"].shape == (4, 2, 6)
    assert post.n_params == 5 * 4 + 2 * 6


def test_laplace_posterior_rejects_bad_settings() -> None:
    X, y = _regression()
    model = _linear_model(0.7, 0.3)
    Xp, yp = model.prepare_data(X, y)
    with pytest.raises(ValueError, match="unknown hessian structure 'bogus'"):
        laplace_posterior(model, model.net, Xp, yp, hessian="bogus")
    with pytest.raises(ValueError, match="prior_scale must be a positive finite number"):
        laplace_posterior(model, model.net, Xp, yp, prior_scale=0.0)
    post = laplace_posterior(model, model.net, Xp, yp)
    with pytest.raises(ValueError, match="n must be a positive int"):
        post.sample(0)


def test_mean_field_draws_and_log_q_match_the_guide_density() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0))
    guide = MeanFieldGuide(model, net, init_scale=0.3)
    values, log_q = guide_draws(guide, model, 5000, torch.Generator().manual_seed(0))
    expected = sum(
        torch.distributions.Normal(guide.locs[s.name.replace(".", "__")], guide.scales()[s.name])
        .log_prob(values[s.name]).sum((1, 2))
        for s in model.sites
    )
    torch.testing.assert_close(log_q, expected.detach(), rtol=1e-10, atol=1e-10)
    v = values["0.units"]
    torch.testing.assert_close(v.std(0), torch.full_like(v[0], 0.3), rtol=0.1, atol=0.0)
    # same seed, same draws
    again, _ = guide_draws(guide, model, 5000, torch.Generator().manual_seed(0))
    assert torch.equal(again["2.units"], values["2.units"])


def test_low_rank_draws_have_the_guide_covariance_and_log_q() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0))
    guide = LowRankGuide(model, net, rank=2, init_scale=0.5)
    values, log_q = guide_draws(guide, model, 20_000, torch.Generator().manual_seed(0))
    flat = values["0.units"].reshape(20_000, -1)
    q = guide.distribution()
    torch.testing.assert_close(log_q, q.log_prob(flat).detach(), rtol=1e-10, atol=1e-10)
    cov = q.covariance_matrix.detach()
    torch.testing.assert_close(torch.cov(flat.T), cov, rtol=0.0, atol=0.05 * float(cov.abs().max()))


def test_map_guide_has_no_variational_draws() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=1.0)
    X = torch.randn(10, 2, dtype=torch.float64)
    fit = bg.fit_map(model, X, X.sum(1), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"point-mass guide.*bg\.fit_svi"):
        guide_draws(fit.guide, model, 3)
    with pytest.raises(ValueError, match="the number of draws must be a positive int"):
        guide_draws(fit.guide, model, 0)


def test_log_prior_draws_equal_the_model_log_joint_prior() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.8, bg.guidance.linear()))
    guide = MeanFieldGuide(model, net, init_scale=0.5)
    values, _ = guide_draws(guide, model, 6, torch.Generator().manual_seed(1))
    X = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (5,))
    got = log_prior_draws(model, values)
    for s in range(6):
        _, expected = model.log_joint(model.chain(net), {k: v[s] for k, v in values.items()}, X, y)
        assert float(got[s]) == pytest.approx(float(expected), rel=1e-12)


def test_log_prior_refuses_an_improper_prior() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.partial(count=2)))
    values = {s.name: torch.zeros(1, s.n_units, s.group_size, dtype=torch.float64) for s in model.sites}
    with pytest.raises(ValueError, match="guidance coefficient 0, an improper prior"):
        log_prior_draws(model, values)
