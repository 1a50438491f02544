"""Guided unit priors against scipy densities, numerical integration and hand-written penalties."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import bayesguide as bg
from bayesguide import guidance
from bayesguide.priors import (
    GuidedGroupLasso,
    GuidedLaplace,
    GuidedNormal,
    UnitGroupDistribution,
    UnitGroupLaplace,
    UnitLaplace,
    UnitNormal,
    UnitPrior,
    make_prior,
    strength_from_mean_loss,
)

F64 = torch.float64


def _rates(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _theta(n: int, p: int) -> torch.Tensor:
    return torch.randn(n, p, dtype=F64) * 1.7


def _group_laplace_closed_form(theta: np.ndarray, alpha: float) -> float:
    """α^p Γ(p/2) / (2 π^{p/2} Γ(p)) · exp(−α‖θ‖₂), written out by hand."""
    p = theta.size
    c = alpha**p * math.gamma(p / 2) / (2 * math.pi ** (p / 2) * math.gamma(p))
    return c * math.exp(-alpha * float(np.linalg.norm(theta)))


# --------------------------------------------------------------------------- element-wise priors vs scipy


def test_unit_normal_log_prob_matches_scipy() -> None:
    lam_g = _rates(0.3, 1.0, 4.5)
    theta = _theta(3, 4)
    lp = UnitNormal(lam_g, 4).log_prob(theta)
    sd = 1.0 / np.sqrt(2.0 * lam_g.numpy())  # precision 2 λ g
    expected = stats.norm.logpdf(theta.numpy(), loc=0.0, scale=sd[:, None]).sum()
    assert lp.dtype == F64
    assert lp.shape == ()
    assert lp.item() == pytest.approx(expected, rel=1e-10)


def test_unit_laplace_log_prob_matches_scipy() -> None:
    lam_g = _rates(0.3, 1.0, 4.5)
    theta = _theta(3, 4)
    lp = UnitLaplace(lam_g, 4).log_prob(theta)
    scale = 1.0 / lam_g.numpy()  # scale 1 / (λ g)
    expected = stats.laplace.logpdf(theta.numpy(), loc=0.0, scale=scale[:, None]).sum()
    assert lp.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("prior_cls", [GuidedNormal, GuidedLaplace])
def test_guided_elementwise_priors_use_lambda_times_g(prior_cls: type[UnitPrior]) -> None:
    lam = 0.7
    g = guidance.linear()(3)  # [1/3, 2/3, 1]
    theta = _theta(3, 5)
    lp = prior_cls(lam, guidance.linear()).unit_distribution(g, 5).log_prob(theta).item()
    rate = lam * g.numpy()[:, None]
    if prior_cls is GuidedNormal:
        expected = stats.norm.logpdf(theta.numpy(), scale=1.0 / np.sqrt(2 * rate)).sum()
    else:
        expected = stats.laplace.logpdf(theta.numpy(), scale=1.0 / rate).sum()
    assert lp == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- group Laplace: exact normaliser


@pytest.mark.parametrize("alpha", [0.6, 2.5])
def test_group_laplace_p1_integrates_to_one_and_is_scalar_laplace(alpha: float) -> None:
    d = UnitGroupLaplace(_rates(alpha), 1, validate_args=False)

    def density(x: float) -> float:
        return math.exp(d.log_prob(torch.tensor([[x]], dtype=F64)).item())

    left, _ = integrate.quad(density, -np.inf, 0.0, epsabs=1e-12, epsrel=1e-10)
    right, _ = integrate.quad(density, 0.0, np.inf, epsabs=1e-12, epsrel=1e-10)
    total = left + right
    assert total == pytest.approx(1.0, abs=1e-8)
    for x in (-3.0, 0.0, 0.4):
        expected = stats.laplace.logpdf(x, scale=1 / alpha)
        assert math.log(density(x)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_group_laplace_p2_integrates_to_one() -> None:
    alpha = 1.5
    d = UnitGroupLaplace(_rates(alpha), 2, validate_args=False)

    def density(y: float, x: float) -> float:
        return math.exp(d.log_prob(torch.tensor([[x, y]], dtype=F64)).item())

    # the density depends on the signs only through ‖θ‖: check, then integrate one quadrant
    for x, y in ((0.3, 1.2), (2.0, 0.1)):
        values = [density(sy * y, sx * x) for sx in (1, -1) for sy in (1, -1)]
        assert max(values) - min(values) <= 1e-15 * max(values)
    half_width = 30.0  # exp(-45) ≈ 3e-20 beyond
    quadrant, _ = integrate.dblquad(density, 0, half_width, 0, half_width, epsabs=1e-9, epsrel=1e-9)
    assert 4 * quadrant == pytest.approx(1.0, abs=1e-7)


def test_group_laplace_p3_integrates_to_one_spherically() -> None:
    alpha = 0.8
    d = UnitGroupLaplace(_rates(alpha), 3, validate_args=False)
    directions = torch.nn.functional.normalize(torch.randn(4, 3, dtype=F64), dim=-1)
    for u in directions:

        def radial(r: float, u: torch.Tensor = u) -> float:
            return 4 * math.pi * r**2 * math.exp(d.log_prob((r * u).reshape(1, 3)).item())

        total, _ = integrate.quad(radial, 0, np.inf, epsabs=1e-12, epsrel=1e-10)
        assert total == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("p", [1, 2, 3, 7])
def test_group_laplace_matches_closed_form(p: int) -> None:
    alphas = [0.5, 1.0, 3.0]
    theta = _theta(3, p)
    d = UnitGroupLaplace(torch.tensor(alphas, dtype=F64), p)
    expected = sum(math.log(_group_laplace_closed_form(theta[j].numpy(), a)) for j, a in enumerate(alphas))
    assert d.log_prob(theta).item() == pytest.approx(expected, rel=1e-10)


def test_guided_group_lasso_uses_alpha_lambda_g_sqrt_p() -> None:
    lam, p = 0.4, 6
    g = _rates(0.5, 1.0, 2.0)
    d = GuidedGroupLasso(lam, guidance.uniform()).unit_distribution(g, p)
    assert isinstance(d, UnitGroupLaplace)
    torch.testing.assert_close(d.rate, lam * g * math.sqrt(p), rtol=1e-14, atol=0)
    theta = _theta(3, p)
    alphas = [lam * float(g[j]) * math.sqrt(p) for j in range(3)]
    expected = sum(math.log(_group_laplace_closed_form(theta[j].numpy(), alphas[j])) for j in range(3))
    assert d.log_prob(theta).item() == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- penalty identity


def _hand_penalty(kind: str, lam: float, g: np.ndarray, theta: np.ndarray) -> float:
    total = 0.0
    p = theta.shape[1]
    for j in range(theta.shape[0]):
        row = theta[j]
        if kind == "l1":
            total += lam * g[j] * sum(abs(v) for v in row)
        elif kind == "l2":
            total += lam * g[j] * sum(v * v for v in row)
        else:
            total += lam * g[j] * math.sqrt(p) * math.sqrt(sum(v * v for v in row))
    return total


@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
@pytest.mark.parametrize(
    "profile", [guidance.linear(), guidance.partial(count=2), guidance.geometric(growth=10.0)]
)
def test_negative_log_prob_is_guided_penalty(kind: str, profile: guidance.Profile) -> None:
    lam, n, p = 0.35, 5, 3
    g = profile(n)
    theta = _theta(n, p)
    d = make_prior(kind, lam, profile).unit_distribution(g, p)
    expected = _hand_penalty(kind, lam, g.numpy(), theta.numpy())
    assert (-d.log_prob(theta) + d.log_normaliser).item() == pytest.approx(expected, rel=1e-10)
    assert d.penalty(theta).item() == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- improper units (g = 0)


@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
def test_zero_coefficient_units_contribute_nothing(kind: str) -> None:
    g = _rates(1.0, 0.0, 2.0, 0.0)
    d = make_prior(kind, 0.5).unit_distribution(g, 3)
    assert not d.is_proper
    proper = make_prior(kind, 0.5).unit_distribution(g[[0, 2]], 3)
    assert proper.is_proper
    theta = _theta(4, 3)
    # the log density equals that of the proper units alone ...
    assert d.log_prob(theta).item() == pytest.approx(proper.log_prob(theta[[0, 2]]).item(), rel=1e-12)
    assert d.log_normaliser.item() == pytest.approx(proper.log_normaliser.item(), rel=1e-12)
    # ... and does not move when a protected unit's weights change
    moved = theta.clone()
    moved[1] = 1e3
    moved[3] = -50.0
    assert d.log_prob(moved).item() == d.log_prob(theta).item()


@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
def test_sampling_improper_prior_raises(kind: str) -> None:
    d = make_prior(kind, 1.0).unit_distribution(_rates(1.0, 1.0, 0.0), 2)
    with pytest.raises(ValueError, match="improper prior: unit 2 has guidance coefficient 0"):
        d.sample()
    with pytest.raises(ValueError, match="cannot sample an improper prior"):
        d.sample(torch.Size([3]))


def test_partial_guidance_makes_improper_prior() -> None:
    prior = GuidedGroupLasso(1.0, guidance.partial())
    assert not prior.unit_distribution(guidance.partial()(8), 4).is_proper
    assert prior.unit_distribution(guidance.partial()(7), 4).is_proper  # ⌊7/8⌋ = 0 protected


# --------------------------------------------------------------------------- sampling moments


def test_normal_sample_variance() -> None:
    lam_g = _rates(0.5, 2.0)
    draws = UnitNormal(lam_g, 3).sample(torch.Size([20000]))
    assert draws.shape == (20000, 2, 3)
    var = draws.pow(2).mean(dim=(0, 2))  # mean zero by symmetry: E θ² = 1 / (2 λ g)
    expected = 1.0 / (2.0 * lam_g)
    # 60000 draws per unit: relative sd of the variance estimate ≈ sqrt(2/60000) ≈ 0.6 %
    torch.testing.assert_close(var, expected, rtol=0.03, atol=0)
    assert draws.mean().abs().item() < 0.02


def test_laplace_sample_mean_abs() -> None:
    lam_g = _rates(0.5, 2.0)
    draws = UnitLaplace(lam_g, 3).sample(torch.Size([20000]))
    assert draws.shape == (20000, 2, 3)
    mean_abs = draws.abs().mean(dim=(0, 2))  # E|θ| = 1/(λ g)
    torch.testing.assert_close(mean_abs, 1.0 / lam_g, rtol=0.03, atol=0)
    var = draws.pow(2).mean(dim=(0, 2))  # Var θ = 2/(λ g)² distinguishes Laplace from Normal
    torch.testing.assert_close(var, 2.0 / lam_g**2, rtol=0.05, atol=0)


@pytest.mark.parametrize("p", [1, 4])
def test_group_laplace_sample_norm_and_direction(p: int) -> None:
    alpha = _rates(0.5, 3.0)
    draws = UnitGroupLaplace(alpha, p).sample(torch.Size([20000]))
    assert draws.shape == (20000, 2, p)
    norms = torch.linalg.vector_norm(draws, dim=-1)
    # ‖θ‖ ~ Gamma(p, α): mean p/α, variance p/α²
    torch.testing.assert_close(norms.mean(0), p / alpha, rtol=0.03, atol=0)
    torch.testing.assert_close(norms.var(0), p / alpha**2, rtol=0.08, atol=0)
    # isotropic: E θ = 0 and each coordinate carries 1/p of E‖θ‖² = p (p + 1) / α²
    second = draws.pow(2).mean(0)
    torch.testing.assert_close(second, ((p + 1) / alpha**2).unsqueeze(-1).expand(2, p), rtol=0.06, atol=0)
    assert (draws.mean(0).abs() * alpha.unsqueeze(-1)).max().item() < 0.05


# --------------------------------------------------------------------------- batching and construction


@pytest.mark.parametrize("cls", [UnitNormal, UnitLaplace, UnitGroupLaplace])
def test_log_prob_batched_over_sample_dims(cls: type[UnitGroupDistribution]) -> None:
    d = cls(_rates(0.5, 1.0, 0.0), 4)
    batch = torch.randn(5, 3, 4, dtype=F64)
    lp = d.log_prob(batch)
    assert lp.shape == (5,)
    for s in range(5):
        assert lp[s].item() == pytest.approx(d.log_prob(batch[s]).item(), rel=1e-12)
    assert d.log_prob(torch.randn(2, 5, 3, 4, dtype=F64)).shape == (2, 5)


@pytest.mark.parametrize("cls", [UnitNormal, UnitLaplace, UnitGroupLaplace])
def test_event_shape_and_sample_shape(cls: type[UnitGroupDistribution]) -> None:
    d = cls(_rates(0.5, 1.0, 2.0), 4)
    assert d.event_shape == (3, 4)
    assert d.batch_shape == ()
    assert d.sample().shape == (3, 4)
    assert d.sample(torch.Size([2])).shape == (2, 3, 4)


@pytest.mark.parametrize(
    ("rate", "pattern"),
    [
        (torch.ones(2, 2, dtype=F64), r"rate must be 1-D \(one per unit\), got shape \(2, 2\)"),
        (_rates(1.0, -0.1), r"rates must be finite and >= 0"),
        (_rates(1.0, math.nan), r"rates must be finite and >= 0"),
        (_rates(math.inf, 1.0), r"rates must be finite and >= 0"),
    ],
)
def test_unit_distribution_rejects_bad_rates(rate: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        UnitNormal(rate, 2)


# --------------------------------------------------------------------------- strength


@pytest.mark.parametrize("cls", [GuidedNormal, GuidedLaplace, GuidedGroupLasso])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_strength_must_be_positive_finite(cls: type[UnitPrior], bad: float) -> None:
    with pytest.raises(ValueError, match=r"strength must be a positive finite number \(the prior's rate λ\)"):
        cls(bad)


@pytest.mark.parametrize("bad", ["strong", None, [1.0]])
def test_strength_must_be_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match=r"strength must be a number, got (str|NoneType|list)"):
        GuidedLaplace(bad)  # type: ignore[arg-type]


def test_numeric_string_strength_is_rejected() -> None:
    with pytest.raises(TypeError, match="strength must be a number, got str"):
        GuidedLaplace("0.1")  # type: ignore[arg-type]


def test_strength_is_stored_as_float() -> None:
    prior = GuidedNormal(3)
    assert prior.strength == 3.0
    assert isinstance(prior.strength, float)


def test_strength_from_mean_loss() -> None:
    assert strength_from_mean_loss(1e-4, 1000) == pytest.approx(0.1, rel=1e-15)
    assert bg.strength_from_mean_loss(2.5e-3, 40) == pytest.approx(0.1, rel=1e-15)


@pytest.mark.parametrize("n_data", [0, -5, 2.0, True])
def test_strength_from_mean_loss_bad_n(n_data: object) -> None:
    with pytest.raises(ValueError, match="n_data must be a positive int"):
        strength_from_mean_loss(1e-3, n_data)  # type: ignore[arg-type]


def test_strength_from_mean_loss_bad_strength() -> None:
    with pytest.raises(ValueError, match="strength must be a positive finite number"):
        strength_from_mean_loss(-1e-3, 10)


@pytest.mark.parametrize("cls", [GuidedNormal, GuidedLaplace, GuidedGroupLasso])
def test_from_mean_loss_has_lambda_n_lambda_prime(cls: type[UnitPrior]) -> None:
    prior = cls.from_mean_loss(1e-3, 250)
    assert type(prior) is cls
    assert prior.strength == pytest.approx(0.25, rel=1e-15)
    assert repr(prior.guidance) == "linear()"
    custom = cls.from_mean_loss(1e-3, 250, guidance.uniform())
    assert repr(custom.guidance) == "uniform()"


@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
def test_mean_loss_objective_is_sum_objective_over_n(kind: str) -> None:
    """sum NLL − log p(θ) = N · (mean NLL + λ' R(θ)) + const, with λ = N λ'."""
    n_data, lam_prime, p = 64, 2e-3, 3
    x = torch.randn(n_data, dtype=F64)
    prior = make_prior(kind, 1.0).from_mean_loss(lam_prime, n_data)
    g = guidance.linear()(4)
    d = prior.unit_distribution(g, p)
    for _ in range(3):
        theta = _theta(4, p)
        nll = 0.5 * (x - theta.sum()).pow(2)  # any per-example loss will do
        bayes = nll.sum() - (d.log_prob(theta) - d.log_normaliser)
        mean_loss = nll.mean() + _hand_penalty(kind, lam_prime, g.numpy(), theta.numpy())
        assert bayes.item() == pytest.approx(n_data * mean_loss.item(), rel=1e-10)


# --------------------------------------------------------------------------- factory and families


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("l1", GuidedLaplace), ("l2", GuidedNormal), ("group", GuidedGroupLasso), ("L1", GuidedLaplace),
     (" Group ", GuidedGroupLasso)],
)
def test_make_prior_by_name(kind: str, cls: type[UnitPrior]) -> None:
    prior = make_prior(kind, 0.2)
    assert type(prior) is cls
    assert prior.strength == 0.2
    assert repr(prior.guidance) == "linear()"
    with_g = make_prior(kind, 0.2, guidance.partial())
    assert repr(with_g.guidance) == "partial(fraction=0.125, position='last')"


def test_make_prior_unknown_kind_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown prior kind 'l7'; choose one of: l1, l2, group, sparse_group, "
                                         r"l0, horseshoe"):
        make_prior("l7", 1.0)


def test_family_metadata() -> None:
    kinds = (GuidedLaplace(1.0).kind, GuidedNormal(1.0).kind, GuidedGroupLasso(1.0).kind)
    assert kinds == ("l1", "l2", "group")
    assert "‖θ_j‖₁" in GuidedLaplace(1.0).penalty
    assert "√p" in GuidedGroupLasso(1.0).penalty
    assert str(GuidedNormal(0.5, guidance.uniform())) == "GuidedNormal(strength=0.5, guidance=uniform())"


def test_with_guidance_keeps_family_and_strength() -> None:
    prior = GuidedGroupLasso(0.3, guidance.linear())
    other = prior.with_guidance(guidance.uniform())
    assert type(other) is GuidedGroupLasso
    assert other.strength == 0.3
    assert repr(other.guidance) == "uniform()"
    assert repr(prior.guidance) == "linear()"  # the original is untouched
    g = other.guidance(3)
    torch.testing.assert_close(other.unit_distribution(g, 4).rate, torch.full((3,), 0.6, dtype=F64))


def test_priors_are_frozen() -> None:
    prior = GuidedLaplace(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prior.strength = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("cls", [UnitNormal, UnitLaplace, UnitGroupLaplace])
def test_penalty_from_column_blocks_equals_penalty_of_the_packed_matrix(cls: type) -> None:
    g = torch.Generator().manual_seed(3)
    W, b = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 1, generator=g, dtype=torch.float64)
    W[2] = 0.0
    b[2] = 0.0
    d = cls(torch.rand(5, generator=g, dtype=torch.float64) + 0.1, 8)
    packed = torch.cat([W, b], -1)
    torch.testing.assert_close(d.unit_statistic_parts([W, b]), d.unit_statistic(packed), rtol=1e-12, atol=0)
    torch.testing.assert_close(d.penalty_parts([W, b]), d.penalty(packed), rtol=1e-12, atol=0)
    torch.testing.assert_close(d.penalty_parts([packed]), d.penalty(packed), rtol=1e-12, atol=0)
