"""Variational evidence against Bayesian linear regression, where everything is closed
form: the log evidence log N(y | 0, σ²I + ΦΦᵀ/α), the posterior N(m, A⁻¹), and the ELBO
of the optimal mean-field guide, log Z − ½(Σ log A_kk − log det A)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import bayesguide as bg
from bayesguide.posterior import LowRankGuide, MeanFieldGuide

STRENGTH, SIGMA = 0.7, 0.3  # prior precision α = 2λ = 1.4 on every weight


def _data(orthogonal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(30, 3, generator=g, dtype=torch.float64)
    if orthogonal:  # ΦᵀΦ diagonal, so the posterior factorises
        Q, _ = torch.linalg.qr(Z)
        X = Q * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    else:  # strongly correlated columns, so mean-field is not exact
        X = Z @ torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 0.5]], dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + SIGMA * torch.randn(30, generator=g,
                                                                                      dtype=torch.float64)
    return X, y


def _closed_form(X: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray, np.ndarray]:
    Phi, t, alpha = X.numpy(), y.numpy(), 2 * STRENGTH
    log_z = scipy.stats.multivariate_normal(np.zeros(len(t)), SIGMA**2 * np.eye(len(t)) + Phi @ Phi.T / alpha)
    A = Phi.T @ Phi / SIGMA**2 + alpha * np.eye(3)
    return float(log_z.logpdf(t)), np.linalg.solve(A, Phi.T @ t / SIGMA**2), A


def _svi(
    X: torch.Tensor, y: torch.Tensor, guide: str = "normal", steps: int = 1, **kw: float
) -> bg.FitResult:
    net = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(STRENGTH), likelihood="gaussian", noise=SIGMA)
    return bg.fit_svi(model, X, y, guide=guide, steps=steps, progress=False, **kw)  # type: ignore[arg-type]


def _set_mean_field(guide: MeanFieldGuide, mean: np.ndarray, std: np.ndarray) -> None:
    with torch.no_grad():
        guide.locs["0__units"].copy_(torch.as_tensor(mean).reshape(1, 3))
        guide.scales_unconstrained["0__units"].copy_(torch.as_tensor(np.log(np.expm1(std))).reshape(1, 3))


def test_fitted_mean_field_bounds_are_ordered_below_the_evidence() -> None:
    X, y = _data()
    log_z, _, _ = _closed_form(X, y)
    fit = _svi(X, y, steps=400, lr=0.05)
    elbo = bg.evidence(fit, X, y, method="elbo", particles=2000)
    iw = bg.evidence(fit, X, y, method="iwae", particles=2000)
    assert isinstance(elbo, bg.Evidence) and elbo.elbo is not None
    assert elbo.log_evidence < log_z - 4 * elbo.std_error  # the KL gap is far above MC noise
    assert elbo.log_evidence < iw.log_evidence < log_z
    # mean field is too narrow along the correlated direction: the weights are heavy-tailed
    # (k ≈ 0.6-0.9 over seeds), and the IW gap is 35-51 % of the ELBO's gap (1.39 nats)
    assert log_z - iw.log_evidence < 0.6 * (log_z - elbo.log_evidence)
    assert iw.log_evidence >= iw.elbo  # Jensen, on the same draws
    assert 1 < iw.ess < 1000 and iw.pareto_k > 0.5


def test_optimal_mean_field_elbo_matches_its_closed_form() -> None:
    X, y = _data()
    log_z, mean, A = _closed_form(X, y)
    fit = _svi(X, y)
    assert isinstance(fit.guide, MeanFieldGuide)
    _set_mean_field(fit.guide, mean, 1 / np.sqrt(np.diag(A)))  # the KL(q‖p)-optimal mean field
    gap = 0.5 * (np.log(np.diag(A)).sum() - np.linalg.slogdet(A)[1])
    ev = bg.evidence(fit, X, y, method="elbo", particles=4000, seed=2)
    assert ev.method == "elbo" and ev.particles == 4000 and ev.n_params == 3
    assert abs(ev.log_evidence - (log_z - gap)) < 4 * ev.std_error
    assert ev.std_error < 0.05


@pytest.mark.parametrize("kind", ["lowrank", "normal"])
def test_exact_posterior_proposal_gives_the_exact_evidence(kind: str) -> None:
    X, y = _data(orthogonal=kind == "normal")
    log_z, mean, A = _closed_form(X, y)
    cov = np.linalg.inv(A)
    fit = _svi(X, y, guide=kind, rank=3)
    if isinstance(fit.guide, LowRankGuide):
        delta = 1e-3
        with torch.no_grad():
            fit.guide.loc.copy_(torch.as_tensor(mean))
            fit.guide.cov_factor.copy_(torch.as_tensor(np.linalg.cholesky(cov - delta**2 * np.eye(3))))
            fit.guide.diag_unconstrained.fill_(math.log(math.expm1(delta)))
    else:
        assert isinstance(fit.guide, MeanFieldGuide)
        np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-12)  # a diagonal posterior
        _set_mean_field(fit.guide, mean, np.sqrt(np.diag(cov)))
    iw = bg.evidence(fit, X, y, method="iwae", particles=300)
    # every weight equals p(D): the bound, the ELBO and the evidence coincide
    assert iw.log_evidence == pytest.approx(log_z, abs=1e-8)
    assert iw.elbo == pytest.approx(log_z, abs=1e-8)
    assert iw.ess == pytest.approx(300, rel=1e-8)
    assert iw.pareto_k == 0.0 and iw.std_error < 1e-8


def test_too_narrow_guide_is_flagged_by_ess_and_pareto_k() -> None:
    X, y = _data()
    _, mean, A = _closed_form(X, y)
    fit = _svi(X, y)
    assert isinstance(fit.guide, MeanFieldGuide)
    _set_mean_field(fit.guide, mean + 3 / np.sqrt(np.diag(A)), 0.3 / np.sqrt(np.diag(A)))
    iw = bg.evidence(fit, X, y, method="iwae", particles=500)
    assert iw.pareto_k > 0.7 and iw.ess < 50
    assert "unreliable (k > 0.7)" in str(iw)


def test_candidate_with_every_unit_kept_has_the_fit_s_elbo() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(25, 2, generator=g, dtype=torch.float64)
    y = (X[:, 0] > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()))
    fit = bg.fit_svi(model, X, y, steps=20, lr=0.05, progress=False)
    cand = bg.prune(fit, keep=4)
    assert cand.widths == (4,)
    a = bg.evidence(fit, X, y, method="elbo", particles=50, seed=3)
    b = bg.evidence(cand, X, y, method="elbo", particles=50, seed=3)
    assert b.log_evidence == pytest.approx(a.log_evidence, rel=1e-12)
    lap = bg.evidence(cand, X, y, method="laplace", hessian="diag")
    assert lap.log_evidence == pytest.approx(bg.evidence(fit, X, y, hessian="diag").log_evidence, rel=1e-10)


def test_learned_noise_is_reported() -> None:
    X, y = _data()
    net = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(STRENGTH), likelihood="gaussian")
    fit = bg.fit_svi(model, X, y, steps=5, lr=0.01, progress=False)
    ev = bg.evidence(fit, X, y, method="elbo", particles=10)
    assert fit.noise is not None and ev.noise == pytest.approx(fit.noise, rel=1e-12)
    assert f"σ={fit.noise:.4g}" in str(ev)


def test_errors() -> None:
    X, y = _data()
    fit = _svi(X, y)
    map_fit = bg.fit_map(fit.model, X, y, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"point-mass \(MAP\) guide: fit one with bg\.fit_svi"):
        bg.evidence(map_fit, X, y, method="elbo")
    with pytest.raises(ValueError, match="unknown evidence method 'bic'; choose one of: laplace, elbo, iwae, clml"):
        bg.evidence(fit, X, y, method="bic")
    with pytest.raises(ValueError, match="particles must be a positive int, got 0"):
        bg.evidence(fit, X, y, method="iwae", particles=0)
    with pytest.raises(ValueError, match=r"not the data this fit was trained on \(SVI fit\)"):
        bg.evidence(fit, X[:-1], y[:-1], method="elbo")
    with pytest.raises(ValueError, match="particles is used by method='elbo' or 'iwae', not 'laplace'"):
        bg.evidence(fit, X, y, particles=10)
    with pytest.raises(ValueError, match="optimize_prior is used by method='laplace' or 'clml', not 'iwae'"):
        bg.evidence(fit, X, y, method="iwae", optimize_prior=True)
    with pytest.raises(TypeError, match="takes a FitResult or a Candidate, got Sequential"):
        bg.evidence(fit.module, X, y, method="elbo")  # type: ignore[arg-type]
