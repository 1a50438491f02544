"""MAP training is guided regularization: the fit's objective against hand-written penalties.

Reference answers are written here from ``DESIGN.md`` without using bayesguide's
priors: the guided L1 / L2 / group penalties, their normalising constants, and a
convex problem solved independently with scipy.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO
from scipy.optimize import minimize
from torch import nn
from torch.nn import functional as F

import bayesguide as bg
from bayesguide.infer.map import _fast_objective, pyro_objective
from bayesguide.posterior import DeltaGuide

LAM = 0.3
PARTIAL_FRACTION = 0.3


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)
    ).double()


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.randn(n, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return X, y


def _hand_coefficients(guidance: str, n: int) -> list[float]:
    """Guidance coefficients written out by hand (not with bayesguide.guidance)."""
    if guidance == "linear":  # default low = 1/n: g_j = (j + 1) / n
        return [(j + 1) / n for j in range(n)]
    if guidance == "uniform":
        return [1.0] * n
    k = math.floor(n * PARTIAL_FRACTION)  # protected tail of the layer
    return [1.0] * (n - k) + [0.0] * k


_GUIDANCE = {
    "linear": bg.guidance.linear,
    "uniform": bg.guidance.uniform,
    "partial": lambda: bg.guidance.partial(PARTIAL_FRACTION),
}
_PRIORS = {"l1": bg.GuidedLaplace, "l2": bg.GuidedNormal, "group": bg.GuidedGroupLasso}


def _unit_rows(layer: nn.Linear) -> torch.Tensor:
    """θ_j = [incoming row W[j, :], bias b[j]], one row per unit."""
    return torch.cat([layer.weight, layer.bias.unsqueeze(1)], dim=1)


def _hand_penalty(kind: str, guidance: str, net: nn.Sequential) -> torch.Tensor:
    """λ Σ g_j ‖θ_j‖₁ / λ Σ g_j ‖θ_j‖² / λ Σ g_j √p ‖θ_j‖₂ on the hidden layers,
    plus the output layer's plain L2 λ Σ ‖θ_j‖²."""
    total = torch.zeros((), dtype=torch.float64)
    for layer in (net[0], net[2]):
        theta = _unit_rows(layer)
        g = torch.tensor(_hand_coefficients(guidance, theta.shape[0]), dtype=torch.float64)
        if kind == "l1":
            stat = theta.abs().sum(1)
        elif kind == "l2":
            stat = theta.pow(2).sum(1)
        else:
            stat = math.sqrt(theta.shape[1]) * theta.pow(2).sum(1).sqrt()
        total = total + LAM * (g * stat).sum()
    return total + LAM * _unit_rows(net[4]).pow(2).sum()


def _hand_log_normaliser(kind: str, guidance: str) -> float:
    """Σ log c over proper units, from the densities in DESIGN.md's table."""
    total = 0.0
    for n, p in ((7, 6), (6, 8)):
        for g in _hand_coefficients(guidance, n):
            if g == 0:
                continue  # improper flat prior: no constant
            rate = LAM * g
            if kind == "l1":  # Laplace(0, 1/rate) per element
                total += p * math.log(rate / 2)
            elif kind == "l2":  # Normal with precision 2 rate per element
                total += 0.5 * p * math.log(rate / math.pi)
            else:  # α^p Γ(p/2) / (2 π^{p/2} Γ(p)), α = λ g √p
                alpha = rate * math.sqrt(p)
                total += (
                    p * math.log(alpha) + math.lgamma(p / 2) - math.log(2)
                    - 0.5 * p * math.log(math.pi) - math.lgamma(p)
                )
    # output layer: 3 units of 7 weights, plain L2 with g = 1
    return total + 3 * 0.5 * 7 * math.log(LAM / math.pi)


def _model(kind: str, guidance: str) -> bg.GuidedModel:
    return bg.GuidedModel(_mlp(), _PRIORS[kind](LAM, _GUIDANCE[guidance]()), likelihood="categorical")


def _grads(loss: torch.Tensor, module: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(module.parameters())))


@pytest.mark.parametrize("guidance", ["linear", "uniform", "partial"])
@pytest.mark.parametrize("kind", ["l1", "l2", "group"])
def test_objective_gradient_is_nll_plus_hand_written_penalty(kind: str, guidance: str) -> None:
    model = _model(kind, guidance)
    X, y = _data()
    module = copy.deepcopy(model.net)
    guide = DeltaGuide(model, module)

    reference = F.cross_entropy(module(X), y, reduction="sum") + _hand_penalty(kind, guidance, module)
    expected = _grads(reference, module)

    fast = _fast_objective(model, guide, X, y)(None)
    elbo = Trace_ELBO().differentiable_loss(model.model, guide, X, y, module=module)
    via_engine = pyro_objective(model, guide, module, X, y)(None)
    for loss in (fast, elbo, via_engine):
        for got, want in zip(_grads(loss, module), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # the penalty matters at this tolerance: without it the gradients differ
    nll_only = _grads(F.cross_entropy(module(X), y, reduction="sum"), module)
    assert max(float((a - b).abs().max()) for a, b in zip(nll_only, expected)) > 1e-2

    # values: both engines include the normalising constants, written by hand here
    assert fast.item() == pytest.approx(elbo.item(), rel=1e-9)
    assert fast.item() == pytest.approx(via_engine.item(), rel=1e-9)
    assert fast.item() == pytest.approx(reference.item() - _hand_log_normaliser(kind, guidance), rel=1e-9)


def test_gradient_check_sees_the_guidance() -> None:
    """Different guidance gives a different gradient, so the test above can fail."""
    X, y = _data()
    grads = {}
    for guidance in ("linear", "uniform"):
        model = _model("l2", guidance)
        module = copy.deepcopy(model.net)
        grads[guidance] = _grads(_fast_objective(model, DeltaGuide(model, module), X, y)(None), module)
    assert float((grads["linear"][0] - grads["uniform"][0]).abs().max()) > 1e-2


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_minibatch_objective_is_unbiased(engine: str) -> None:
    """Averaging the N/B-scaled objective over the disjoint batches of a permutation
    gives the full-batch objective (value and gradient)."""
    model = _model("group", "linear")
    X, y = _data(24)
    module = copy.deepcopy(model.net)
    guide = DeltaGuide(model, module)
    if engine == "fast":
        objective = _fast_objective(model, guide, X, y)
    else:
        objective = pyro_objective(model, guide, module, X, y)
    full = objective(None)
    full_grads = _grads(full, module)
    perm = torch.randperm(24)
    batches = [objective(perm[i : i + 6]) for i in range(0, 24, 6)]
    assert len({round(b.item(), 6) for b in batches}) == 4  # each batch on its own is not the full value
    mean = torch.stack(batches).mean()
    assert mean.item() == pytest.approx(full.item(), rel=1e-12)
    for got, want in zip(_grads(mean, module), full_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_mean_loss_strength_conversion_gives_the_same_problem() -> None:
    """λ = N λ' makes the MAP objective N × (mean NLL + λ' R): same gradient up to N."""
    X, y = _data(24)
    lam_mean = 0.01
    prior = bg.GuidedLaplace.from_mean_loss(lam_mean, 24, bg.guidance.uniform())
    model = bg.GuidedModel(_mlp(), prior, plain_prior=prior)
    module = copy.deepcopy(model.net)
    loss = _fast_objective(model, DeltaGuide(model, module), X, y)(None)
    l1 = sum(_unit_rows(module[i]).abs().sum() for i in (0, 2, 4))
    mean_loss = F.cross_entropy(module(X), y) + lam_mean * l1
    for got, want in zip(_grads(loss, module), _grads(mean_loss, module)):
        torch.testing.assert_close(got, 24 * want, rtol=1e-10, atol=1e-10)


def test_engines_follow_the_same_trajectory() -> None:
    model = _model("l1", "linear")
    X, y = _data(30)
    fits = [
        bg.fit_map(model, X, y, steps=25, lr=1e-2, batch_size=10, engine=e, progress=False)
        for e in ("fast", "pyro")
    ]
    np.testing.assert_allclose(fits[0].losses, fits[1].losses, rtol=1e-10)
    for a, b in zip(fits[0].module.parameters(), fits[1].module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert fits[1].settings["engine"] == "pyro"


# --------------------------------------------------------------------------- convex check


def _softmax_regression_minimiser(X: np.ndarray, y: np.ndarray, lam: float, g: np.ndarray) -> np.ndarray:
    """argmin Σ_i CE(W x_i + b, y_i) + λ Σ_j g_j (‖W_j‖² + b_j²), by L-BFGS-B in numpy."""
    n, d = X.shape
    c = g.shape[0]
    onehot = np.eye(c)[y]
    Xb = np.hstack([X, np.ones((n, 1))])

    def f(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(c, d + 1)  # rows: [W_j, b_j]
        z = Xb @ theta.T
        zmax = z.max(1, keepdims=True)
        logz = zmax[:, 0] + np.log(np.exp(z - zmax).sum(1))
        nll = float((logz - (z * onehot).sum(1)).sum())
        probs = np.exp(z - logz[:, None])
        grad = (probs - onehot).T @ Xb + 2 * lam * g[:, None] * theta
        return nll + lam * float((g[:, None] * theta**2).sum()), grad.ravel()

    res = minimize(f, np.zeros(c * (d + 1)), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    assert res.success, res.message
    return res.x.reshape(c, d + 1)


@pytest.mark.slow
def test_fit_map_reaches_the_convex_minimiser() -> None:
    rng = np.random.default_rng(3)
    n, d, lam = 120, 4, 0.5
    g = np.array([0.5, 1.0, 2.0])
    X = rng.standard_normal((n, d))
    logits = X @ rng.standard_normal((d, 3)) * 1.5
    y = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    expected = _softmax_regression_minimiser(X, y, lam, g)

    net = nn.Linear(d, 3).double()
    model = bg.GuidedModel(
        nn.Sequential(net), bg.GuidedNormal(lam),
        plain_prior=bg.GuidedNormal(lam, bg.guidance.custom(torch.tensor(g))),
    )
    assert model.prunable_sites == []
    fit = bg.fit_map(model, X, y, steps=1500, lr=0.05, schedule="cosine", progress=False)
    got = _unit_rows(fit.module[0]).detach().numpy()
    assert np.abs(got - expected).max() < 1e-4
    # and the starting point was far from it
    assert np.abs(_unit_rows(net).detach().numpy() - expected).max() > 0.1


# --------------------------------------------------------------------------- fast path structure


class _DoubledNormal(bg.priors.UnitNormal):
    """A user-defined unit prior: twice the L2 statistic (a prior the fast path does not know)."""

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return 2 * value.pow(2).sum(-1)


class _DoubledFamily(bg.GuidedNormal):
    def _distribution(self, rate: torch.Tensor, group_size: int) -> bg.priors.UnitGroupDistribution:
        return _DoubledNormal(rate, group_size)


def _conv_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5), nn.Tanh(), nn.Linear(5, 3, bias=False),
    ).double()


@pytest.mark.parametrize("family", [bg.GuidedLaplace, bg.GuidedNormal, bg.GuidedGroupLasso, _DoubledFamily])
def test_fast_and_pyro_engines_agree_on_conv_batchnorm_and_zero_units(family: type[bg.UnitPrior]) -> None:
    """Conv filters, BatchNorm (γ, β) groups, a layer without bias, an exactly-zero unit
    (the group norm's subgradient 0) and a prior the fast path does not special-case."""
    net = _conv_net()
    with torch.no_grad():
        net[0].weight[1].zero_()
        net[0].bias[1] = 0.0
        net[4].weight[2].zero_()
        net[4].bias[2] = 0.0
    prior, plain_prior = family(LAM, bg.guidance.linear()), family(LAM, bg.guidance.uniform())
    model = bg.GuidedModel(net, prior, plain_prior=plain_prior)
    X, y = torch.randn(10, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (10,))
    module = copy.deepcopy(net).train()
    guide = DeltaGuide(model, module)
    fast = _fast_objective(model, guide, X, y)(None)
    fast_grads = _grads(fast, module)
    with torch.no_grad():  # undo the BatchNorm running-statistics update of the first pass
        for a, b in zip(module.buffers(), net.buffers()):
            a.copy_(b)
    slow = pyro_objective(model, guide, module, X, y)(None)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-12)
    for got, want in zip(fast_grads, _grads(slow, module)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if family is _DoubledFamily:  # the user's statistic is used, not the built-in L2
        l2 = bg.GuidedNormal(LAM, bg.guidance.linear())
        plain = bg.GuidedModel(net, l2, plain_prior=bg.GuidedNormal(LAM, bg.guidance.uniform()))
        other = _fast_objective(plain, DeltaGuide(plain, copy.deepcopy(net)), X, y)(None)
        assert abs(other.item() - fast.item()) > 1e-3
