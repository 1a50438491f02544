"""Hard-concrete L0 gates: the gate distribution against its closed forms (Monte
Carlo), the penalty and the first-step objective against hand computations, gates of
irrelevant units closing and pruning removing them exactly, guidance ordering, and
every error path."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer import fit_l0, l0_gates
from bayesguide.priors import HardConcreteGates
from bayesguide.priors.l0 import (
    closed_probability,
    deterministic_gates,
    expected_l0_penalty,
    one_probability,
    open_probability,
    sample_gates,
)

BETA, STRETCH = 2.0 / 3.0, (-0.1, 1.1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- the distribution


def test_point_masses_match_the_closed_forms_by_monte_carlo() -> None:
    log_alpha = torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64)
    n = 200_000
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    z = sample_gates(log_alpha, BETA, STRETCH, u=u)
    assert ((z >= 0) & (z <= 1)).all()
    p0_mc, p1_mc = (z == 0).double().mean(0).numpy(), (z == 1).double().mean(0).numpy()
    la = log_alpha.numpy()
    # by hand: P(s̄ < 0) = σ(β log(−γ/ζ) − log α), P(s̄ > 1) = σ(log α − β log((1−γ)/(ζ−1)))
    p0 = _sigmoid(BETA * math.log(0.1 / 1.1) - la)
    p1 = _sigmoid(la - BETA * math.log(1.1 / 0.1))
    np.testing.assert_allclose(closed_probability(log_alpha, BETA, STRETCH).numpy(), p0, rtol=1e-12)
    np.testing.assert_allclose(one_probability(log_alpha, BETA, STRETCH).numpy(), p1, rtol=1e-12)
    tol = 4.0 * np.sqrt(0.25 / n)  # 4 standard errors at worst (p = 1/2): 0.0045
    np.testing.assert_allclose(p0_mc, p0, atol=tol)
    np.testing.assert_allclose(p1_mc, p1, atol=tol)
    # the masses move with log α by much more than the tolerance, so the check can fail
    assert p0[0] - p0[2] > 0.5 and p1[2] - p1[0] > 0.4


def test_expected_l0_is_one_minus_the_mass_at_zero() -> None:
    log_alpha = torch.linspace(-6, 6, 13, dtype=torch.float64)
    opened = open_probability(log_alpha, BETA, STRETCH)
    np.testing.assert_allclose(opened.numpy(), 1.0 - closed_probability(log_alpha, BETA, STRETCH).numpy(),
                               rtol=1e-12, atol=1e-15)
    expected = _sigmoid(log_alpha.numpy() - BETA * math.log(0.1 / 1.1))
    np.testing.assert_allclose(opened.numpy(), expected, rtol=1e-12)
    z = sample_gates(log_alpha, BETA, STRETCH, u=torch.rand(100_000, 13, dtype=torch.float64))
    np.testing.assert_allclose((z != 0).double().mean(0).numpy(), expected, atol=0.006)


def test_deterministic_gate_formula() -> None:
    at_zero = math.log(1.0 / 11.0)  # σ(log α) = 1/12, so σ·1.2 − 0.1 = 0
    log_alpha = torch.tensor([-10.0, at_zero, 0.0, 1.0, 10.0], dtype=torch.float64)
    zhat = deterministic_gates(log_alpha, STRETCH).numpy()
    hand = np.clip(_sigmoid(log_alpha.numpy()) * 1.2 - 0.1, 0.0, 1.0)
    np.testing.assert_allclose(zhat, hand, rtol=1e-12, atol=1e-15)
    assert zhat[0] == 0.0 and zhat[-1] == 1.0
    assert zhat[1] == pytest.approx(0.0, abs=1e-15)
    assert zhat[2] == pytest.approx(0.5, rel=1e-12)


def test_gradients_flow_to_log_alpha() -> None:
    log_alpha = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([0.4, 0.7], dtype=torch.float64)  # interior: 0 < z < 1
    z = sample_gates(log_alpha, BETA, STRETCH, u=u)
    assert ((z > 0) & (z < 1)).all()
    z.sum().backward()
    assert log_alpha.grad is not None
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha.detach()) / BETA)
    np.testing.assert_allclose(log_alpha.grad.numpy(), (1.2 * s * (1 - s) / BETA).numpy(), rtol=1e-12)
    log_alpha.grad = None
    g = torch.tensor([1.0, 3.0], dtype=torch.float64)
    expected_l0_penalty(log_alpha, g, 2.0, BETA, STRETCH).backward()
    q = open_probability(log_alpha.detach(), BETA, STRETCH)
    np.testing.assert_allclose(log_alpha.grad.numpy(), (2.0 * g * q * (1 - q)).numpy(), rtol=1e-12)


def test_penalty_weights_every_gate_by_its_guidance_coefficient() -> None:
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    model = bg.GuidedModel(net, HardConcreteGates(3.0, guidance=bg.guidance.linear()), "gaussian", noise=1.0)
    g = model.coefficients["0.units"].to(torch.float64)
    np.testing.assert_allclose(g.numpy(), [0.2, 0.4, 0.6, 0.8, 1.0])
    la = torch.tensor([-1.0, 0.0, 0.5, 2.0, -3.0], dtype=torch.float64)
    hand = 3.0 * sum(gj * _sigmoid(a - BETA * math.log(0.1 / 1.1)) for gj, a in zip(g.tolist(), la.tolist()))
    assert float(expected_l0_penalty(la, g, 3.0, BETA, STRETCH)) == pytest.approx(hand, rel=1e-12)


# --------------------------------------------------------------------------- fit_l0


def _regression(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.randn(n, 3, dtype=torch.float64)
    y = torch.tanh(1.5 * X[:, :1]) - torch.tanh(X[:, 1:2]) + 0.05 * torch.randn(n, 1, dtype=torch.float64)
    return X, y


def test_first_loss_equals_a_hand_computation() -> None:
    X, y = _regression(30)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 1)).double()
    prior = HardConcreteGates(2.0, guidance=bg.guidance.linear(), weight_decay=0.3, init_drop_rate=0.4)
    model = bg.GuidedModel(net, prior, "gaussian", noise=0.5)
    fit = fit_l0(model, X, y, steps=1, lr=1e-3, seed=5, progress=False)
    net.requires_grad_(False)  # the template is untouched by the fit; the hand computation needs no graph

    torch.manual_seed(5)  # the loop seeds torch before the first draw; one u per prunable layer, in order
    u1, u2 = torch.rand(4, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    la0 = math.log(0.6 / 0.4)
    z1 = sample_gates(torch.full((4,), la0, dtype=torch.float64), BETA, STRETCH, u=u1)
    z2 = sample_gates(torch.full((2,), la0, dtype=torch.float64), BETA, STRETCH, u=u2)
    h = torch.relu(X @ (net[0].weight * z1[:, None]).T + net[0].bias * z1)
    h = torch.tanh(h @ (net[2].weight * z2[:, None]).T + net[2].bias * z2)
    out = h @ net[4].weight.T + net[4].bias
    nll = (0.5 * ((y - out) / 0.5) ** 2 + math.log(0.5) + 0.5 * math.log(2 * math.pi)).sum()
    q = _sigmoid(la0 - BETA * math.log(0.1 / 1.1))
    l0 = 2.0 * q * (sum([0.25, 0.5, 0.75, 1.0]) + sum([0.5, 1.0]))
    wd = 0.3 * sum(float(p.pow(2).sum()) for p in net.parameters())
    assert fit.losses[0] == pytest.approx(float(nll) + l0 + wd, rel=1e-10)


def test_irrelevant_units_close_and_prune_removes_them_exactly() -> None:
    X, y = _regression()
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    model = bg.GuidedModel(net, HardConcreteGates(1500.0, guidance=bg.guidance.uniform()), "gaussian", noise=0.1)
    before = copy.deepcopy(net.state_dict())
    fit = fit_l0(model, X, y, steps=1000, lr=2e-2, progress=False)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # template untouched
    assert fit.method == "map" and isinstance(fit.guide, bg.DeltaGuide)
    gates = l0_gates(fit)
    zhat = gates.gates["0"]
    closed = zhat == 0
    assert 4 <= closed.sum() <= 7  # the target needs about 2 tanh units of 8
    assert gates.expected_l0[-1] < 0.5 * gates.expected_l0[0]
    assert gates.expected_l0.shape == fit.norm_steps.shape == gates.steps.shape
    np.testing.assert_array_equal(gates.log_alpha["0"] <= math.log(1.0 / 11.0), closed)  # ẑ = 0 ⇔ σ(log α) ≤ 1/12
    # folded: closed units' rows are exactly 0, open ones are scaled by ẑ
    w, b = fit.module[0].weight.detach(), fit.module[0].bias.detach()
    assert torch.all(w[torch.as_tensor(closed)] == 0) and torch.all(b[torch.as_tensor(closed)] == 0)
    np.testing.assert_allclose(fit.final_unit_norms()["0"], torch.linalg.vector_norm(
        torch.cat([w, b[:, None]], 1), dim=-1).numpy(), rtol=1e-12)
    assert float(((fit.predict(X) - y) ** 2).mean()) < 0.01  # noise variance 0.0025

    cand = bg.prune(fit, threshold=1e-12)
    assert tuple(cand.widths) == (int((~closed).sum()),)
    np.testing.assert_array_equal(cand.kept["0"], np.flatnonzero(~closed))
    with torch.no_grad():
        torch.testing.assert_close(cand.module(X), fit.predict(X), rtol=0, atol=1e-12)


def test_linear_guidance_closes_the_tail_first() -> None:
    # four identical units, equally relevant: only the guidance breaks the tie
    X = torch.randn(200, 1, dtype=torch.float64)
    y = 2 * torch.tanh(X) + 0.05 * torch.randn(200, 1, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.fill_(0.5)
        net[2].bias.zero_()
    model = bg.GuidedModel(net, HardConcreteGates(6000.0, guidance=bg.guidance.linear()), "gaussian", noise=0.1)
    fit = fit_l0(model, X, y, steps=600, lr=2e-2, progress=False)
    gates = l0_gates(fit)
    la = gates.log_alpha["0"]
    assert np.all(np.diff(la) < 0), la  # higher guidance, lower log α
    assert gates.gates["0"][0] > 0 and gates.gates["0"][-1] == 0
    assert gates.n_open == {"0": int((gates.gates["0"] > 0).sum())}
    assert "gates open" in str(gates)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature must be a positive"),
        ({"temperature": -1.0}, "temperature must be a positive"),
        ({"stretch": (0.1, 1.1)}, "γ < 0 < 1 < ζ"),
        ({"stretch": (-0.1, 0.9)}, "γ < 0 < 1 < ζ"),
        ({"stretch": (-0.1,)}, "pair"),
        ({"weight_decay": -1.0}, "weight_decay must be"),
        ({"init_drop_rate": 1.0}, "init_drop_rate must lie"),
    ],
)
def test_bad_gate_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HardConcreteGates(1.0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("strength", [0.0, -1.0])
def test_non_positive_strength_is_refused(strength: float) -> None:
    with pytest.raises(ValueError, match="strength must be a positive"):
        HardConcreteGates(strength)


def test_fit_map_and_fit_svi_refuse_gates_before_training() -> None:
    X, y = _regression(20)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    model = bg.GuidedModel(net, HardConcreteGates(1.0), "gaussian", noise=0.5)  # constructs
    with pytest.raises(ValueError, match=r"bg\.fit_l0"):
        bg.fit_map(model, X, y, steps=5, progress=False)
    with pytest.raises(ValueError, match=r"bg\.fit_l0"):
        bg.fit_map(model, X, y, steps=5, progress=False, engine="pyro")
    with pytest.raises(ValueError, match=r"bg\.fit_l0"):
        bg.fit_svi(model, X, y, steps=5, progress=False)
    fit = fit_l0(model, X, y, steps=3, progress=False)
    with pytest.raises(ValueError, match=r"bg\.fit_l0"):
        bg.fit_map(model, X, y, steps=2, progress=False, init=fit)
    # continuing an L0 fit is fit_l0's job: resume_fit picks it, gates and histories go on
    more = bg.resume_fit(fit, X, y, steps=2)
    assert more.fitter == "l0" and more.steps == 5 and fit.steps == 3
    assert l0_gates(more).steps.tolist() == [*l0_gates(fit).steps.tolist(), *more.norm_steps[-2:].tolist()]
    assert l0_gates(more).expected_l0.shape == (len(more.norm_steps),)


def test_fit_l0_refuses_other_priors_and_fits_without_gates() -> None:
    X, y = _regression(20)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), "gaussian", noise=0.5)
    with pytest.raises(ValueError, match="HardConcreteGates prior"):
        fit_l0(model, X, y, steps=2, progress=False)
    with pytest.raises(TypeError, match=r"expected a bg\.GuidedModel"):
        fit_l0(net, X, y, steps=2, progress=False)  # type: ignore[arg-type]
    fit = bg.fit_map(model, X, y, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"not made by bg\.fit_l0"):
        l0_gates(fit)


def test_with_guidance_keeps_the_gate_settings() -> None:
    prior = HardConcreteGates(2.0, weight_decay=0.1, temperature=0.5, stretch=(-0.2, 1.3), init_drop_rate=0.3)
    other = prior.with_guidance(bg.guidance.uniform())
    assert (other.weight_decay, other.temperature, other.stretch, other.init_drop_rate) == (0.1, 0.5, (-0.2, 1.3), 0.3)
    assert other.kind == "l0" and "HardConcreteGates" in str(other)
