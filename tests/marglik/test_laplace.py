"""Laplace evidence against independent answers: the closed-form evidence of Bayesian
linear regression, MacKay's fixed point for type-II ML, Hadamard's inequality for the
diagonal curvature, and invariance under a permutation of hidden units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import bayesguide as bg
from bayesguide.marglik import laplace_evidence


def _regression(n: int = 50, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)[:d]
    return X, X @ w + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)


def _linear_model(strength: float, sigma: float, d: int = 4) -> bg.GuidedModel:
    net = torch.nn.Sequential(torch.nn.Linear(d, 1, bias=False)).double()
    return bg.GuidedModel(net, bg.GuidedNormal(strength), likelihood="gaussian", noise=sigma)


def _closed_form(X: torch.Tensor, y: torch.Tensor, alpha: float, sigma: float) -> tuple[float, np.ndarray]:
    Phi, t = X.numpy(), y.numpy()
    cov = sigma**2 * np.eye(len(t)) + Phi @ Phi.T / alpha
    log_ev = scipy.stats.multivariate_normal(np.zeros(len(t)), cov).logpdf(t)
    A = Phi.T @ Phi / sigma**2 + alpha * np.eye(Phi.shape[1])
    mean = np.linalg.solve(A, Phi.T @ t / sigma**2)
    return float(log_ev), mean


def test_bayesian_linear_regression_matches_closed_form() -> None:
    X, y = _regression()
    strength, sigma = 0.7, 0.3
    model = _linear_model(strength, sigma)
    # the plain prior of the (only, output) layer is GuidedNormal(λ, uniform): precision 2λ
    expected, mean = _closed_form(X, y, alpha=2 * strength, sigma=sigma)
    module = model.net
    with torch.no_grad():
        module[0].weight.copy_(torch.as_tensor(mean).reshape(1, -1))
    Xp, yp = model.prepare_data(X, y)
    ev = laplace_evidence(model, module, Xp, yp, hessian="full")
    assert ev.log_evidence == pytest.approx(expected, rel=1e-6)
    assert ev.log_evidence == pytest.approx(ev.log_likelihood + ev.log_prior + ev.occam, rel=1e-12)
    assert not ev.substituted


def test_evidence_of_a_converged_map_fit_matches_closed_form() -> None:
    X, y = _regression()
    model = _linear_model(0.7, 0.3)
    fit = bg.fit_map(model, X, y, steps=3000, lr=0.02, schedule="cosine", progress=False)
    expected, _ = _closed_form(X, y, alpha=1.4, sigma=0.3)
    assert bg.evidence(fit, X, y).log_evidence == pytest.approx(expected, rel=1e-6)


def test_type_ii_ml_reaches_mackays_fixed_point() -> None:
    X, y = _regression()
    model = _linear_model(0.7, 0.3)
    fit = bg.fit_map(model, X, y, steps=2000, lr=0.02, progress=False)
    fixed = bg.evidence(fit, X, y)
    tuned = bg.evidence(fit, X, y, optimize_prior=True)
    assert tuned.log_evidence >= fixed.log_evidence - 1e-9
    # at the optimum c θᵀDθ = γ = Σ_k e_k / (e_k + c), with e_k the eigenvalues of
    # D^{-1/2} ΦᵀΦ/σ² D^{-1/2}, D = 2λ I (MacKay 1992)
    Phi = X.numpy()
    d = 2 * 0.7
    e = np.linalg.eigvalsh(Phi.T @ Phi / 0.3**2 / d)
    theta = fit.module[0].weight.detach().numpy().ravel()
    c = tuned.prior_scale
    gamma = float((e / (e + c)).sum())
    assert c * d * float(theta @ theta) == pytest.approx(gamma, rel=1e-3)


def test_learned_noise_is_set_by_type_ii_ml() -> None:
    X, y = _regression(n=200)
    net = torch.nn.Sequential(torch.nn.Linear(4, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood="gaussian")
    fit = bg.fit_map(model, X, y, steps=1500, lr=0.02, progress=False)
    ev = bg.evidence(fit, X, y, optimize_prior=True)
    assert ev.noise == pytest.approx(0.3, rel=0.15)
    with pytest.raises(ValueError, match="learns the noise"):
        laplace_evidence(model, fit.module, *model.prepare_data(X, y))


def _mlp_fit() -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5, bg.guidance.uniform()))
    return bg.fit_map(model, X, y, steps=400, lr=0.02, progress=False), X, y


def test_diagonal_curvature_lower_bounds_full() -> None:
    # Hadamard: det H ≤ Π H_kk, so the diagonal Occam factor is never larger
    fit, X, y = _mlp_fit()
    full = bg.evidence(fit, X, y, hessian="full")
    diag = bg.evidence(fit, X, y, hessian="diag")
    assert diag.log_evidence <= full.log_evidence + 1e-9
    assert diag.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-12)


def test_evidence_is_invariant_under_hidden_unit_permutation() -> None:
    fit, X, y = _mlp_fit()
    model = fit.model
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    net = fit.module
    permuted = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    with torch.no_grad():
        permuted[0].weight.copy_(net[0].weight[perm])
        permuted[0].bias.copy_(net[0].bias[perm])
        permuted[2].weight.copy_(net[2].weight[:, perm])
        permuted[2].bias.copy_(net[2].bias)
    other = bg.GuidedModel(permuted, model.prior)
    Xp, yp = model.prepare_data(X, y)
    a = laplace_evidence(model, net, Xp, yp)
    b = laplace_evidence(other, permuted, Xp, yp)
    assert b.log_evidence == pytest.approx(a.log_evidence, rel=1e-10)


def test_sparse_prior_is_scored_under_its_gaussian_counterpart() -> None:
    fit, X, y = _mlp_fit()
    sparse = bg.GuidedModel(fit.module, bg.GuidedLaplace(0.5, bg.guidance.uniform()))
    Xp, yp = sparse.prepare_data(X, y)
    ev = laplace_evidence(sparse, fit.module, Xp, yp)
    assert ev.substituted and ev.prior_used == "counterpart"
    reference = laplace_evidence(fit.model, fit.module, Xp, yp)
    assert ev.log_evidence == pytest.approx(reference.log_evidence, rel=1e-12)


def test_errors() -> None:
    fit, X, y = _mlp_fit()
    with pytest.raises(ValueError, match="not the data this fit was trained on"):
        bg.evidence(fit, X + 1.0, y)
    with pytest.raises(ValueError, match="unknown hessian structure 'kfac'; choose one of: full, diag, kron"):
        bg.evidence(fit, X, y, hessian="kfac")
    with pytest.raises(ValueError, match="unknown evidence method"):
        bg.evidence(fit, X, y, method="magic")
    with pytest.raises(ValueError, match="max_params"):
        bg.evidence(fit, X, y, max_params=10)
    with pytest.raises(TypeError, match="takes a FitResult"):
        bg.evidence("fit", X, y)  # type: ignore[arg-type]


def test_improper_prior_is_scored_under_uniform_guidance() -> None:
    # a coefficient 0 (partial guidance) is an improper prior: GuidedNormal(λ, uniform) stands in
    fit, X, y = _mlp_fit()
    improper = bg.GuidedModel(fit.module, bg.GuidedNormal(0.5, bg.guidance.partial(count=1)))
    Xp, yp = improper.prepare_data(X, y)
    ev = laplace_evidence(improper, fit.module, Xp, yp)
    assert ev.substituted and ev.prior_used == "uniform"
    assert "uniform guidance" in str(ev)
    reference = laplace_evidence(fit.model, fit.module, Xp, yp)
    assert reference.prior_used == "own"
    assert ev.log_evidence == pytest.approx(reference.log_evidence, rel=1e-12)


def test_occam_term_matches_a_hand_computed_log_determinant() -> None:
    fit, X, y = _mlp_fit()
    ev = bg.evidence(fit, X, y)
    # naive loop: the network written out by hand, per-example Jacobians from
    # torch.autograd.functional.jacobian, GGN summed one example at a time
    net = fit.module.eval()
    params = [p for p in net.parameters()]
    flat = torch.cat([torch.cat([net[0].weight, net[0].bias[:, None]], 1).reshape(-1),
                      torch.cat([net[2].weight, net[2].bias[:, None]], 1).reshape(-1)]).detach()

    def f(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        W1 = theta[:24].reshape(6, 4)
        W2 = theta[24:].reshape(3, 7)
        h = torch.tanh(x @ W1[:, :3].T + W1[:, 3])
        return h @ W2[:, :6].T + W2[:, 6]

    G = torch.zeros(45, 45, dtype=torch.float64)
    for i in range(X.shape[0]):
        xi = X[i : i + 1]
        J = torch.autograd.functional.jacobian(lambda t, xi=xi: f(t, xi)[0], flat)
        p = torch.softmax(f(flat, xi)[0], 0)
        G += J.T @ (torch.diag(p) - torch.outer(p, p)) @ J
    H = G + 2 * 0.5 * torch.eye(45, dtype=torch.float64)
    expected_occam = 0.5 * 45 * math.log(2 * math.pi) - 0.5 * torch.logdet(H).item()
    assert len(params) == 4
    assert ev.occam == pytest.approx(expected_occam, rel=1e-9)
