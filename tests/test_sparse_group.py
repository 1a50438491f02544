"""Guided sparse group lasso: its normaliser against independent integrals, its limits,
its sampler against quadrature moments, and MAP = summed NLL + the hand-written penalty."""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO
from scipy import integrate, special
from torch.nn import functional as F

import bayesguide as bg
from bayesguide import guidance
from bayesguide.infer.map import _fast_objective, pyro_objective
from bayesguide.posterior import DeltaGuide
from bayesguide.priors import (
    GuidedGroupLasso,
    GuidedLaplace,
    GuidedSparseGroupLasso,
    UnitSparseGroupLaplace,
    get_family,
    make_prior,
    sparse_group_log_integral,
)

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# the MAP test reuses the fixtures and hand-written coefficients of tests/infer/test_map.py
_tm = _load("_bayesguide_test_map", ROOT / "tests" / "infer" / "test_map.py")


def _group_log_z(a: float, p: int) -> float:
    """log ∫ exp(−a‖θ‖₂) dθ = log(2 π^{p/2} Γ(p) / (Γ(p/2) a^p)), by hand."""
    return math.log(2) + 0.5 * p * math.log(math.pi) + math.lgamma(p) - math.lgamma(p / 2) - p * math.log(a)


def _hand_statistic(theta: np.ndarray, alpha: float) -> np.ndarray:
    p = theta.shape[-1]
    return (1 - alpha) * math.sqrt(p) * np.linalg.norm(theta, axis=-1) + alpha * np.abs(theta).sum(-1)


# --------------------------------------------------------------------------- the normaliser


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (3.0, 0.2), (0.2, 3.0), (1e-5, 2.0), (40.0, 1e-3)])
def test_p1_normaliser_is_two_over_a_plus_b(a: float, b: float) -> None:
    assert sparse_group_log_integral(a, b, 1) == pytest.approx(math.log(2 / (a + b)), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (2.5, 0.3), (0.3, 2.5)])
def test_p2_normaliser_matches_dblquad_of_the_density(a: float, b: float) -> None:
    def density(y: float, x: float) -> float:  # first quadrant; the density is symmetric
        return math.exp(-a * math.hypot(x, y) - b * (x + y))

    z, _ = integrate.dblquad(density, 0, np.inf, 0, np.inf, epsabs=0, epsrel=1e-11)
    assert sparse_group_log_integral(a, b, 2) == pytest.approx(math.log(4 * z), rel=1e-8)


def test_p3_normaliser_matches_importance_sampling() -> None:
    """Z(a, b) = (2/b)^p E[exp(−a‖θ‖₂)] under independent Laplace(0, 1/b) coordinates."""
    a, b, p, m = 0.8, 1.3, 3, 400_000
    gen = np.random.default_rng(1)
    theta = gen.laplace(scale=1 / b, size=(m, p))
    w = np.exp(-a * np.linalg.norm(theta, axis=1))
    est, se = w.mean(), w.std() / math.sqrt(m)
    z = math.exp(sparse_group_log_integral(a, b, p)) / (2 / b) ** p
    assert abs(z - est) < 4 * se
    assert se / est < 2e-3  # the check is sharp enough to see a wrong normaliser


@pytest.mark.parametrize("p", [1, 3, 17, 257, 1000])
def test_small_b_limit_is_the_group_lasso(p: int) -> None:
    a = 0.7 * math.sqrt(p)
    # d log Z / db = −E‖θ‖₁ ≈ −p √(2/π) · p / (a √p) under the group density
    slope = p * math.sqrt(2 / math.pi) * math.sqrt(p) / a
    b = 1e-9
    expected = _group_log_z(a, p) - slope * b
    assert sparse_group_log_integral(a, b, p) == pytest.approx(expected, abs=1e-9 * slope + 1e-10 * p)
    assert sparse_group_log_integral(a, 0.0, p) == _group_log_z(a, p)


@pytest.mark.parametrize("p", [1, 3, 17, 257, 1000])
def test_small_a_limit_is_l1(p: int) -> None:
    b = 0.9
    a = 1e-9  # d log Z / da = −E‖θ‖₂ ≈ −√(2p) / b under the Laplace density
    slope = math.sqrt(2 * p) / b
    got = sparse_group_log_integral(a, b, p)
    assert got == pytest.approx(p * math.log(2 / b) - slope * a, abs=1e-9 * slope + 1e-10 * p)
    assert sparse_group_log_integral(0.0, b, p) == p * math.log(2 / b)


def _reference_log_z(a: float, b: float, p: int) -> float:
    """The same 1-D integral with scipy's adaptive quad (an independent evaluation)."""

    def log_f(u: float) -> float:
        x = 0.5 * b * math.exp(-u / 2)
        return (
            math.log(a / (2 * math.sqrt(math.pi))) - u / 2 - 0.25 * a * a * math.exp(-u)
            + p * (0.5 * math.log(math.pi) - u / 2 + math.log(special.erfcx(x)))
        )

    grid = np.linspace(-60, 60, 4001)
    values = np.array([log_f(u) for u in grid])
    top, u_top = values.max(), grid[values.argmax()]
    z, _ = integrate.quad(lambda u: math.exp(log_f(u) - top), u_top - 50, u_top + 50,
                          points=[u_top], limit=1000, epsabs=0, epsrel=1e-13)
    return top + math.log(z)


@pytest.mark.parametrize("p", [2, 50, 1000])
@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (3.0, 0.2), (0.2, 3.0), (1e-4, 1.0), (30.0, 1.0)])
def test_quadrature_matches_adaptive_quad_up_to_p_1000(a: float, b: float, p: int) -> None:
    assert sparse_group_log_integral(a, b, p) == pytest.approx(_reference_log_z(a, b, p), rel=1e-9, abs=1e-9)


def test_scale_relation() -> None:
    """Z(a, b) = s^p Z(a s, b s): the trick behind one quadrature per layer."""
    for s in (1e-3, 0.5, 70.0):
        assert sparse_group_log_integral(2.0 * s, 0.7 * s, 9) == pytest.approx(
            sparse_group_log_integral(2.0, 0.7, 9) - 9 * math.log(s), rel=1e-10
        )


@pytest.mark.parametrize(("a", "b", "p"), [(-1.0, 1.0, 2), (0.0, 0.0, 2), (1.0, math.inf, 2), (1.0, 1.0, 0)])
def test_log_integral_rejects_bad_arguments(a: float, b: float, p: int) -> None:
    with pytest.raises(ValueError, match="need p >= 1"):
        sparse_group_log_integral(a, b, p)


# --------------------------------------------------------------------------- the distribution


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_log_prob_is_normaliser_minus_hand_penalty(alpha: float) -> None:
    rate = torch.tensor([0.4, 1.0, 2.7, 0.0], dtype=F64)  # the last unit is improper (flat)
    p = 6
    theta = torch.randn(4, p, dtype=F64)
    d = UnitSparseGroupLaplace(rate, p, alpha)
    stat = _hand_statistic(theta.numpy(), alpha)
    log_c = sum(
        -sparse_group_log_integral(r * (1 - alpha) * math.sqrt(p), r * alpha, p) for r in rate.tolist() if r > 0
    )
    assert d.penalty(theta).item() == pytest.approx(float((rate.numpy() * stat).sum()), rel=1e-12)
    assert d.log_normaliser.item() == pytest.approx(log_c, rel=1e-10)
    assert d.log_prob(theta).item() == pytest.approx(log_c - float((rate.numpy() * stat).sum()), rel=1e-10)
    assert not d.is_proper


@pytest.mark.parametrize("profile", [guidance.linear(), guidance.partial(0.4)])
def test_alpha_0_is_the_group_lasso_and_alpha_1_is_l1(profile: guidance.Profile) -> None:
    g = profile(5)
    theta = torch.randn(3, 5, 7, dtype=F64)
    for alpha, other in ((0.0, GuidedGroupLasso(0.8, profile)), (1.0, GuidedLaplace(0.8, profile))):
        mine = GuidedSparseGroupLasso(0.8, profile, alpha).unit_distribution(g, 7)
        theirs = other.unit_distribution(g, 7)
        torch.testing.assert_close(mine.log_normaliser, theirs.log_normaliser, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(mine.log_prob(theta), theirs.log_prob(theta), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_penalty_from_column_blocks_equals_the_packed_penalty(alpha: float) -> None:
    gen = torch.Generator().manual_seed(3)
    W, b = torch.randn(5, 7, generator=gen, dtype=F64), torch.randn(5, 1, generator=gen, dtype=F64)
    W[2], b[2] = 0.0, 0.0
    d = UnitSparseGroupLaplace(torch.rand(5, generator=gen, dtype=F64) + 0.1, 8, alpha)
    packed = torch.cat([W, b], -1)
    torch.testing.assert_close(d.unit_statistic_parts([W, b]), d.unit_statistic(packed), rtol=1e-12, atol=0)
    torch.testing.assert_close(d.penalty_parts([W, b]), d.penalty(packed), rtol=1e-12, atol=0)
    expected = torch.as_tensor(_hand_statistic(packed.numpy(), alpha))
    torch.testing.assert_close(d.unit_statistic(packed), expected, rtol=1e-12, atol=0)


def test_set_rate_recomputes_the_normaliser() -> None:
    d = UnitSparseGroupLaplace(torch.ones(2, dtype=F64), 4, 0.4)
    d.set_rate(torch.tensor([2.0, 0.5], dtype=F64))
    fresh = UnitSparseGroupLaplace(torch.tensor([2.0, 0.5], dtype=F64), 4, 0.4)
    assert d.log_normaliser.item() == pytest.approx(fresh.log_normaliser.item(), rel=1e-14)


def test_float32_rates_give_the_float64_normaliser_to_float32_precision() -> None:
    rate = torch.tensor([0.3, 1.5])
    d32 = UnitSparseGroupLaplace(rate, 65, 0.5)
    d64 = UnitSparseGroupLaplace(rate.double(), 65, 0.5)
    assert d32.log_normaliser.dtype == torch.float32
    assert d32.log_normaliser.item() == pytest.approx(d64.log_normaliser.item(), rel=1e-6)


# --------------------------------------------------------------------------- sampling


def _p2_moments(a: float, b: float) -> tuple[float, float, float]:
    """E|x₁|, E x₁², E‖θ‖₂ of the p = 2 density by quadrature (first quadrant)."""

    def moment(fn: object) -> float:
        val, _ = integrate.dblquad(
            lambda y, x: fn(x, y) * math.exp(-a * math.hypot(x, y) - b * (x + y)),  # type: ignore[operator]
            0, np.inf, 0, np.inf, epsabs=0, epsrel=1e-10,
        )
        return val

    z = moment(lambda x, y: 1.0)
    return moment(lambda x, y: x) / z, moment(lambda x, y: x * x) / z, moment(math.hypot) / z


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_p2_sample_moments_match_quadrature(alpha: float) -> None:
    rate = torch.tensor([0.5, 2.0], dtype=F64)
    d = UnitSparseGroupLaplace(rate, 2, alpha)
    m = 200_000
    s = d.sample((m,))
    assert s.shape == (m, 2, 2)
    for j, r in enumerate(rate.tolist()):
        e_abs, e_sq, e_norm = _p2_moments(r * (1 - alpha) * math.sqrt(2), r * alpha)
        x = s[:, j]
        for got, want, var in (
            (x[:, 0].abs().mean(), e_abs, e_sq - e_abs**2),
            (x.pow(2).mean(), e_sq, None),
            (torch.linalg.vector_norm(x, dim=-1).mean(), e_norm, None),
        ):
            if var is None:  # second moments: a loose band from the fourth moment's size
                assert float(got) == pytest.approx(want, rel=0.03)
            else:
                assert abs(float(got) - want) < 4.5 * math.sqrt(var / m)
        assert abs(float(x[:, 0].mean())) < 4.5 * math.sqrt(e_sq / m)  # symmetric


def test_p1_sample_is_laplace() -> None:
    d = UnitSparseGroupLaplace(torch.tensor([1.5], dtype=F64), 1, 0.4)
    s = d.sample((100_000,))[:, 0, 0]
    assert float(s.abs().mean()) == pytest.approx(1 / 1.5, rel=0.015)  # Laplace(0, 1/1.5)


def test_large_group_samples_have_the_right_norms() -> None:
    """p = 200: E[s(θ)] = p / rate for any density c exp(−rate s(θ)) with s 1-homogeneous."""
    rate = torch.tensor([0.5, 3.0], dtype=F64)
    d = UnitSparseGroupLaplace(rate, 200, 0.5)
    s = d.sample((4000,))
    stat = d.unit_statistic(s).mean(0)
    torch.testing.assert_close(stat, 200 / rate, rtol=0.01, atol=0)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_sampling_at_the_ends_uses_the_group_and_l1_samplers(alpha: float) -> None:
    rate = torch.tensor([0.5, 3.0], dtype=F64)
    s = UnitSparseGroupLaplace(rate, 9, alpha).sample((20_000,))
    stat = UnitSparseGroupLaplace(rate, 9, alpha).unit_statistic(s).mean(0)
    torch.testing.assert_close(stat, 9 / rate, rtol=0.03, atol=0)


def test_sampling_an_improper_prior_raises() -> None:
    d = GuidedSparseGroupLasso(1.0, guidance.partial(0.5)).unit_distribution(guidance.partial(0.5)(4), 3)
    with pytest.raises(ValueError, match="cannot sample an improper prior: unit 2"):
        d.sample()


# --------------------------------------------------------------------------- the family


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_alpha_outside_unit_interval_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\] \(0: group lasso, 1: L1"):
        GuidedSparseGroupLasso(1.0, alpha=bad)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        UnitSparseGroupLaplace(torch.ones(2, dtype=F64), 3, bad)


@pytest.mark.parametrize("bad", [True, "0.5", None])
def test_alpha_must_be_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="alpha must be a number"):
        GuidedSparseGroupLasso(1.0, alpha=bad)  # type: ignore[arg-type]


def test_family_metadata_and_export() -> None:
    prior = bg.GuidedSparseGroupLasso(0.5, guidance.uniform(), alpha=0.25)
    assert prior.kind == "sparse_group"
    assert "α ‖θ_j‖₁" in prior.penalty
    assert prior.alpha == 0.25
    assert str(prior) == "GuidedSparseGroupLasso(strength=0.5, guidance=uniform(), alpha=0.25)"
    assert repr(prior) == "GuidedSparseGroupLasso(strength=0.5, guidance=uniform(), alpha=0.25)"


def test_with_guidance_keeps_alpha() -> None:
    prior = GuidedSparseGroupLasso(0.3, guidance.linear(), alpha=0.9)
    other = prior.with_guidance(guidance.partial())
    assert type(other) is GuidedSparseGroupLasso
    assert (other.strength, other.alpha) == (0.3, 0.9)
    assert repr(other.guidance) == "partial(fraction=0.125, position='last')"


def test_from_mean_loss() -> None:
    prior = GuidedSparseGroupLasso.from_mean_loss(1e-3, 500, guidance.uniform(), alpha=0.2)
    assert prior.strength == pytest.approx(0.5)
    assert prior.alpha == 0.2
    assert repr(prior.guidance) == "uniform()"
    default = GuidedSparseGroupLasso.from_mean_loss(1e-3, 500)
    assert (default.alpha, repr(default.guidance)) == (0.5, "linear()")


def test_make_prior_sparse_group() -> None:
    assert get_family("sparse_group").kind == "sparse_group"
    assert "sparse group lasso" in get_family("sparse_group").summary
    prior = make_prior("sparse_group", 0.2)
    assert type(prior) is GuidedSparseGroupLasso
    assert prior.alpha == 0.5
    with_alpha = make_prior("sparse_group", 0.2, guidance.partial(), alpha=0.7)
    assert isinstance(with_alpha, GuidedSparseGroupLasso)
    assert with_alpha.alpha == 0.7
    assert repr(with_alpha.guidance) == "partial(fraction=0.125, position='last')"


@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
def test_make_prior_rejects_alpha_for_other_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match=f"alpha is only meaningful for prior kind 'sparse_group', not '{kind}'"):
        make_prior(kind, 0.2, alpha=0.5)


def test_make_prior_lists_sparse_group_among_the_choices() -> None:
    with pytest.raises(ValueError, match=r"choose one of: l1, l2, group, sparse_group"):
        make_prior("elastic", 1.0)


# --------------------------------------------------------------------------- MAP and evidence

ALPHA = 0.3


def _hand_sparse_group_penalty(guide_name: str, net: torch.nn.Sequential) -> torch.Tensor:
    """λ Σ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁] on the hidden layers + plain L2 on the output."""
    total = torch.zeros((), dtype=F64)
    for layer in (net[0], net[2]):
        theta = _tm._unit_rows(layer)
        g = torch.tensor(_tm._hand_coefficients(guide_name, theta.shape[0]), dtype=F64)
        p = theta.shape[1]
        stat = (1 - ALPHA) * math.sqrt(p) * theta.pow(2).sum(1).sqrt() + ALPHA * theta.abs().sum(1)
        total = total + _tm.LAM * (g * stat).sum()
    return total + _tm.LAM * _tm._unit_rows(net[4]).pow(2).sum()


@pytest.mark.parametrize("guide_name", ["linear", "uniform", "partial"])
def test_map_objective_gradient_is_nll_plus_hand_written_penalty(guide_name: str) -> None:
    prior = GuidedSparseGroupLasso(_tm.LAM, _tm._GUIDANCE[guide_name](), alpha=ALPHA)
    model = bg.GuidedModel(_tm._mlp(), prior, likelihood="categorical")
    X, y = _tm._data()
    module = copy.deepcopy(model.net)
    guide = DeltaGuide(model, module)

    reference = F.cross_entropy(module(X), y, reduction="sum") + _hand_sparse_group_penalty(guide_name, module)
    expected = _tm._grads(reference, module)
    fast = _fast_objective(model, guide, X, y)(None)
    elbo = Trace_ELBO().differentiable_loss(model.model, guide, X, y, module=module)
    via_engine = pyro_objective(model, guide, module, X, y)(None)
    for loss in (fast, elbo, via_engine):
        for got, want in zip(_tm._grads(loss, module), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # the sparse-group penalty matters at this tolerance: the group lasso alone differs
    group_only = GuidedGroupLasso(_tm.LAM, _tm._GUIDANCE[guide_name]())
    other = bg.GuidedModel(_tm._mlp(), group_only, likelihood="categorical")
    other_grads = _tm._grads(_fast_objective(other, DeltaGuide(other, module), X, y)(None), module)
    assert max(float((a - b).abs().max()) for a, b in zip(other_grads, expected)) > 1e-2

    # values include the normalisers: −log Z per proper unit, from the 1-D integral
    log_c = 0.0
    for n, p in ((7, 6), (6, 8)):
        for g in _tm._hand_coefficients(guide_name, n):
            if g > 0:
                r = _tm.LAM * g
                log_c -= sparse_group_log_integral(r * (1 - ALPHA) * math.sqrt(p), r * ALPHA, p)
    log_c += 3 * 0.5 * 7 * math.log(_tm.LAM / math.pi)  # output layer, plain L2
    assert fast.item() == pytest.approx(elbo.item(), rel=1e-9)
    assert fast.item() == pytest.approx(reference.item() - log_c, rel=1e-9)


def test_laplace_evidence_scores_it_under_the_gaussian_counterpart() -> None:
    X, y = _tm._data()
    prior = GuidedSparseGroupLasso(_tm.LAM, guidance.linear(), alpha=ALPHA)
    fit = bg.fit_map(bg.GuidedModel(_tm._mlp(), prior), X, y, steps=20, lr=0.01, progress=False)
    ev = bg.evidence(fit, X, y, method="laplace", hessian="full")
    assert ev.substituted
    assert math.isfinite(ev.log_evidence)
    gaussian = bg.GuidedModel(_tm._mlp(), bg.GuidedNormal(_tm.LAM, guidance.linear()))
    same = bg.evidence(bg.fit_map(gaussian, X, y, steps=20, lr=0.01, progress=False), X, y)
    assert not same.substituted


# --------------------------------------------------------------------------- the cost benchmark


def test_partial_cost_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/partial_cost.py runs (tiny smoke mode); timings are never asserted."""
    module = _load("_bayesguide_partial_cost", ROOT / "benchmarks" / "partial_cost.py")
    threads = torch.get_num_threads()
    ratios = module.main(["--smoke"])
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    assert "| problem | batch | engine |" in out
    assert "bayesguide sgl: median step-time ratio partial/full" in out
    assert ratios and all(math.isfinite(r) and r > 0 for r in ratios.values())
    assert {"digits/32/bayesguide/group", "digits/full/reference/sgl"} <= set(ratios)


def test_benchmark_reference_penalty_equals_the_prior_penalty() -> None:
    """The benchmark's hand-written partial penalty (penalised rows only) is the
    bayesguide penalty of the same configuration (the protected rows add 0)."""
    module = _load("_bayesguide_partial_cost", ROOT / "benchmarks" / "partial_cost.py")
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).double()
    params = list(net.parameters())
    for penalty in module.PENALTIES:
        model = bg.GuidedModel(net, module.prior_of(penalty))
        X, y = torch.randn(4, 5, dtype=F64), torch.randint(0, 3, (4,))
        guide = DeltaGuide(model, net)
        nll = F.cross_entropy(net(X), y, reduction="sum")
        const = -sum(float(model.site_distribution(s, F64).log_normaliser) for s in model.sites)
        got = _fast_objective(model, guide, X, y)(None) - nll - const
        assert got.item() == pytest.approx(module.hand_penalty(penalty, params).item(), rel=1e-12)
