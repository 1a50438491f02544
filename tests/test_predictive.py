"""``to_inference_data`` and PSIS-LOO against independent answers: a naive per-draw,
per-example loop for the pointwise log-likelihood, blocking invariance, and the
closed-form leave-one-out predictive of Bayesian linear regression for ``loo``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

import bayesguide as bg
from bayesguide._arviz import arviz
from bayesguide.posterior import MeanFieldGuide, guide_draws, log_likelihood_draws
from bayesguide.predictive import loo, to_inference_data


def _classifier(steps: int = 30) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    X = torch.randn(23, 3, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5, bg.guidance.linear()))
    return bg.fit_map(model, X, y, steps=steps, lr=0.05, progress=False), X, y


def _linear(
    sigma: float | None = 0.3,
) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """A MAP 'fit' of Bayesian linear regression placed exactly at the posterior mean."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(40, generator=g,
                                                                                      dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.7), likelihood="gaussian", noise=sigma)
    fit = bg.fit_map(model, X, y, steps=1, progress=False)
    Phi, t = X.numpy(), y.numpy()
    A = Phi.T @ Phi / 0.3**2 + 1.4 * np.eye(3)
    mean = np.linalg.solve(A, Phi.T @ t / 0.3**2)
    with torch.no_grad():
        fit.module[0].weight.copy_(torch.as_tensor(mean).reshape(1, -1))
    return fit, X, y, mean, A


def test_groups_names_and_shapes() -> None:
    fit, X, y = _classifier()
    idata = to_inference_data(fit, X, y, draws=7)
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                                   "sample_stats"}
    assert list(idata.posterior.data_vars) == ["0_units", "2_units"]
    assert idata.posterior["0_units"].dims == ("chain", "draw", "unit_0", "weight_0")
    assert idata.posterior["0_units"].shape == (1, 7, 6, 4)
    assert idata.posterior["2_units"].shape == (1, 7, 3, 7)
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "example")
    assert idata.log_likelihood["obs"].shape == (1, 7, 23)
    np.testing.assert_array_equal(idata.observed_data["obs"].values, y.numpy())
    assert idata.posterior.attrs["posterior"] == "laplace (diag, prior scale 1)"  # auto, MAP fit
    assert idata.posterior.attrs["predictive"] == "glm"  # auto, Laplace draws
    # the method on FitResult is the same function
    same = fit.to_inference_data(X, y, draws=7)
    np.testing.assert_array_equal(same.log_likelihood["obs"].values, idata.log_likelihood["obs"].values)


def test_log_likelihood_equals_a_naive_loop_and_ignores_blocking() -> None:
    fit, X, y = _classifier()
    idata = to_inference_data(fit, X, y, draws=9, hessian="full", seed=5, predictive="network")
    ll = idata.log_likelihood["obs"].values[0]
    # naive: one draw, one example at a time, log-softmax by hand
    for s in range(9):
        W1, W2 = (torch.as_tensor(idata.posterior[name].values[0, s]) for name in ["0_units", "2_units"])
        for i in range(23):
            h = torch.tanh(W1[:, :3] @ X[i] + W1[:, 3])
            logits = W2[:, :6] @ h + W2[:, 6]
            expected = float(logits[y[i]] - torch.logsumexp(logits, 0))
            assert ll[s, i] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    for chunk in (1, 5, 23):
        blocked = to_inference_data(fit, X, y, draws=9, hessian="full", seed=5, chunk_size=chunk,
                                    predictive="network")
        np.testing.assert_allclose(blocked.log_likelihood["obs"].values[0], ll, rtol=1e-13, atol=1e-13)
    values = {k: torch.as_tensor(idata.posterior[k.replace(".", "_")].values[0]) for k in ["0.units", "2.units"]}
    Xp, yp = fit.model.prepare_data(X, y)
    one = log_likelihood_draws(fit.model, fit.module, values, Xp, yp, chunk_size=4, draw_chunk=1)
    np.testing.assert_allclose(one.numpy(), ll, rtol=1e-13, atol=1e-13)


def test_the_glm_predictive_equals_the_explicitly_linearised_network() -> None:
    fit, X, y = _classifier()
    idata = to_inference_data(fit, X, y, draws=6, hessian="full", seed=2, predictive="glm")
    ll = idata.log_likelihood["obs"].values[0]
    W1, W2 = (fit.model.sites[k].pack(dict(fit.module.named_parameters())).detach() for k in (0, 1))
    theta = torch.cat([W1.reshape(-1), W2.reshape(-1)])

    def logits(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        a, b = flat[:24].reshape(6, 4), flat[24:].reshape(3, 7)
        return b[:, :6] @ torch.tanh(a[:, :3] @ x + a[:, 3]) + b[:, 6]

    for i in range(23):
        J = torch.autograd.functional.jacobian(lambda t, x=X[i]: logits(t, x), theta)  # (3, 45), by reverse mode
        f0 = logits(theta, X[i])
        for s in range(6):
            draw = torch.cat([torch.as_tensor(idata.posterior[k].values[0, s]).reshape(-1)
                              for k in ["0_units", "2_units"]])
            f = f0 + J @ (draw - theta)
            expected = float(f[y[i]] - torch.logsumexp(f, 0))
            assert ll[s, i] == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_the_importance_ratio_is_constant_for_an_exact_posterior_and_corrects_a_poor_one() -> None:
    """Bayesian linear regression: the full Laplace posterior is exact, so log p(D, θ) − log q(θ)
    is the same for every draw (it is the log evidence); draws from a posterior too wide are not,
    and correcting their weights recovers the exact leave-one-out predictive."""
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(60, 1, generator=g, dtype=torch.float64)
    X = torch.cat([Z + 0.4 * torch.randn(60, 2, generator=g, dtype=torch.float64), Z], dim=1)  # correlated
    y = X @ torch.tensor([1.0, -0.5, 0.5], dtype=torch.float64) + 0.3 * torch.randn(60, generator=g,
                                                                                      dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.7), likelihood="gaussian", noise=0.3)
    fit = bg.fit_map(model, X, y, steps=1, progress=False)
    Phi, t, s2 = X.numpy(), y.numpy(), 0.3**2
    A = Phi.T @ Phi / s2 + 1.4 * np.eye(3)
    b = Phi.T @ t / s2
    with torch.no_grad():
        fit.module[0].weight.copy_(torch.as_tensor(np.linalg.solve(A, b)).reshape(1, -1))
    exact = np.empty(len(t))
    for i in range(len(t)):
        Ai = A - np.outer(Phi[i], Phi[i]) / s2
        mi = np.linalg.solve(Ai, b - Phi[i] * t[i] / s2)
        exact[i] = scipy.stats.norm(Phi[i] @ mi, math.sqrt(s2 + Phi[i] @ np.linalg.solve(Ai, Phi[i]))).logpdf(t[i])
    # the exact log evidence of Bayesian linear regression
    cov = s2 * np.eye(len(t)) + Phi @ Phi.T / 1.4
    log_evidence = scipy.stats.multivariate_normal(np.zeros(len(t)), cov).logpdf(t)
    full = to_inference_data(fit, X, y, draws=500, hessian="full", seed=0)
    ratio = full.sample_stats["log_importance_ratio"].values[0]
    np.testing.assert_allclose(ratio, log_evidence, rtol=1e-10)
    # a mean-field guide at the posterior mean, 1.5 times as wide as the posterior's widest direction
    widest = math.sqrt(float(np.linalg.eigvalsh(np.linalg.inv(A)).max()))
    wide = bg.fit_svi(model, X, y, steps=1, lr=1e-12, init=fit, init_scale=1.5 * widest, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # raw weights of too-wide draws: some k > 0.7
        raw = loo(wide, X, y, draws=8000, seed=0, correct=False)
    corrected = loo(wide, X, y, draws=8000, seed=0)
    assert corrected.corrected and corrected.k_q is not None and corrected.k_q <= 0.7 and not raw.corrected
    error_raw, error = abs(raw.elpd - exact.sum()), abs(corrected.elpd - exact.sum())
    assert error_raw > 1.0  # draws from a too-wide posterior: a pessimistic leave-one-out predictive
    assert error < 0.3 and error < error_raw / 5
    np.testing.assert_allclose(corrected.pointwise, exact, atol=0.05)


def test_guide_draws_with_learned_noise() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -1.0], dtype=torch.float64) + 0.2 * torch.randn(30, generator=g,
                                                                                 dtype=torch.float64)
    model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)).double(), bg.GuidedNormal(0.5),
                           likelihood="gaussian")
    fit = bg.fit_svi(model, X, y, steps=40, lr=0.05, progress=False)
    idata = to_inference_data(fit, X, y, draws=11, seed=3)
    assert idata.posterior.attrs["posterior"] == "guide (MeanFieldGuide)"  # auto, SVI fit
    assert fit.noise is not None
    np.testing.assert_array_equal(idata.posterior["noise"].values, np.full((1, 11), fit.noise))
    values, _ = guide_draws(fit.guide, model, 11, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(idata.posterior["0_units"].values[0], values["0.units"].numpy())
    # Gaussian log-likelihood by scipy, with the learned σ
    w = values["0.units"].numpy()[:, 0]
    mu = X.numpy() @ w[:, :2].T + w[:, 2]
    expected = scipy.stats.norm(mu.T, fit.noise).logpdf(y.numpy())
    np.testing.assert_allclose(idata.log_likelihood["obs"].values[0], expected, rtol=1e-10)
    other = to_inference_data(fit, X, y, draws=11, seed=4)
    assert not np.array_equal(other.posterior["0_units"].values, idata.posterior["0_units"].values)


def test_candidate_source_uses_the_pruned_network() -> None:
    fit, X, y = _classifier(steps=5)
    cand = bg.prune(fit, keep=2)
    idata = to_inference_data(cand, X, y, draws=4)
    assert idata.posterior["0_units"].shape == (1, 4, 2, 4)
    assert idata.posterior["2_units"].shape == (1, 4, 3, 3)
    assert idata.posterior.attrs["source"] == f"candidate {cand.name}"
    with pytest.raises(ValueError, match=r"not the data this fit was trained on \(candidate w2\)"):
        to_inference_data(cand, X[:-1], y[:-1], draws=4)


def test_loo_matches_the_closed_form_leave_one_out_of_linear_regression() -> None:
    fit, X, y, _, A = _linear()
    res = loo(fit, X, y, draws=4000, hessian="full", seed=1)
    # exact LOO predictive: y_i | y_-i ~ N(x_iᵀ m_-i, σ² + x_iᵀ A_-i⁻¹ x_i)
    Phi, t, s2 = X.numpy(), y.numpy(), 0.3**2
    b = Phi.T @ t / s2
    exact = np.empty(len(t))
    for i in range(len(t)):
        Ai = A - np.outer(Phi[i], Phi[i]) / s2
        mi = np.linalg.solve(Ai, b - Phi[i] * t[i] / s2)
        var = s2 + Phi[i] @ np.linalg.solve(Ai, Phi[i])
        exact[i] = scipy.stats.norm(Phi[i] @ mi, math.sqrt(var)).logpdf(t[i])
    # Monte Carlo error with 4000 draws: ≤ 0.025 per example, ≤ 0.09 in total over seeds 1-3
    np.testing.assert_allclose(res.pointwise, exact, atol=0.05)
    assert res.elpd == pytest.approx(exact.sum(), abs=0.2)
    assert res.n_high_k == 0 and res.pareto_k.shape == (40,)
    # in-sample lppd = Σ_i log mean_s p(y_i | θ_s) is at least elpd_loo, and p_loo ≈ 3 weights
    ll = res.idata.log_likelihood["obs"].values[0]
    lppd = float((np.logaddexp.reduce(ll, axis=0) - math.log(ll.shape[0])).sum())
    assert res.elpd <= lppd
    assert res.p_loo == pytest.approx(lppd - res.elpd, rel=1e-10)
    assert res.p_loo == pytest.approx(3.0, abs=1.0)
    # the same numbers through ArviZ on a hand-built InferenceData
    ref = arviz().loo(arviz().from_dict(log_likelihood={"obs": ll[None]}), pointwise=True, reff=1.0)
    assert res.elpd == pytest.approx(float(ref.elpd_loo), rel=1e-12)
    assert "elpd_loo" in str(res)


def test_loo_warns_when_pareto_k_is_high() -> None:
    fit, X, y, _, _ = _linear()
    post = bg.fit_svi(fit.model, X, y, steps=1, lr=1e-9, init_scale=3.0, progress=False)
    assert isinstance(post.guide, MeanFieldGuide)
    # a guide 30x wider than the posterior: the leave-one-out weights 1/p(y_i | θ) are heavy-tailed
    with pytest.warns(UserWarning, match=r"examples have Pareto k > 0.7: their leave-one-out"):
        res = loo(post, X, y, draws=100)
    assert res.n_high_k == int((res.pareto_k > 0.7).sum()) > 0
    assert f"{res.n_high_k} of 40 examples with Pareto k > 0.7" in str(res)


def test_errors() -> None:
    fit, X, y = _classifier(steps=2)
    with pytest.raises(ValueError, match=r"not the data this fit was trained on \(MAP fit\)"):
        to_inference_data(fit, X[:-1], y[:-1])
    with pytest.raises(ValueError, match=r"point-mass \(MAP\) guide: fit one with bg\.fit_svi"):
        to_inference_data(fit, X, y, posterior="guide")
    with pytest.raises(ValueError, match="unknown posterior 'bogus'; choose one of: auto, guide, laplace"):
        to_inference_data(fit, X, y, posterior="bogus")
    with pytest.raises(ValueError, match="draws must be a positive int, got 0"):
        to_inference_data(fit, X, y, draws=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        to_inference_data(fit, X, y, chunk_size=0)
    with pytest.raises(TypeError, match=r"expected a FitResult .* or a Candidate"):
        to_inference_data(fit.module, X, y)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert arviz().__name__ == "arviz"  # imported without its FutureWarning banner
