"""Hard-concrete L0 gates per unit (Louizos, Welling & Kingma 2018): the prior, ``kind = "l0"``.

This module holds the gate distribution and the prior (a marker); the trainer is
[`bayesguide.fit_l0`][] ([`bayesguide.infer.l0`][]).

Louizos, Welling & Kingma, "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018 (arXiv 1712.01312), put a stochastic gate ``z_j ∈ [0, 1]``
on every unit and penalise the expected number of open gates. The gate is a
*hard-concrete* variable: with temperature ``β``, stretch interval ``(γ, ζ)``
(``γ < 0 < 1 < ζ``) and a learned location ``log α_j``,

$$
u \\sim U(0, 1), \\quad
s = σ\\bigl((\\log u - \\log(1 - u) + \\log α_j) / β\\bigr), \\quad
\\bar s = s (ζ - γ) + γ, \\quad
z_j = \\min(1, \\max(0, \\bar s)).
$$

Stretching and clipping puts point masses on 0 and 1 (``σ`` is the logistic sigmoid):

$$
P(z_j = 0) = σ\\bigl(β \\log(-γ/ζ) - \\log α_j\\bigr), \\qquad
P(z_j = 1) = σ\\bigl(\\log α_j - β \\log((1 - γ)/(ζ - 1))\\bigr),
$$

so the expected L0 norm is ``Σ_j P(z_j ≠ 0) = Σ_j σ(log α_j − β log(−γ/ζ))``. At test
time the gate is deterministic: ``ẑ_j = min(1, max(0, σ(log α_j)(ζ − γ) + γ))``. The
paper's defaults are ``β = 2/3`` and ``(γ, ζ) = (−0.1, 1.1)``.

**Units and guidance.** Gate ``z_j`` multiplies unit ``j``'s incoming group — its row
of the ``(n, p)`` unit matrix, weights and bias (filter and bias for ``Conv2d``) — of
every prunable layer. bayesguide weights each gate's cost by the unit's guidance
coefficient ``g_j``, so the objective of [`fit_l0`][bayesguide.fit_l0] is

$$
L(θ, \\log α) = -\\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, θ ⊙ z)
    + λ \\sum_{l, j} g_{lj}\\, σ(\\log α_{lj} - β \\log(-γ/ζ))
    + w \\sum_{\\text{sites}} ‖Θ‖_2^2,
$$

with ``z`` drawn afresh every step (one draw per unit per minibatch, shared by the
batch's examples), ``λ`` the ``strength`` (a rate per open gate, in the same
"summed NLL" convention as the other priors: the same ``λ`` whatever the batch size)
and ``w`` the optional ``weight_decay`` on every weight and bias (output layer
included). A unit with a larger ``g_j`` pays more to stay open, so guidance still
orders the units: with ``linear`` guidance the tail of every layer closes first;
``g_j = 0`` leaves a gate free.

**Not a density.** The expected-L0 penalty is an expectation over the gates, not the
negative log of a density over the weights, so [`HardConcreteGates`][bayesguide.HardConcreteGates] is a marker:
``GuidedModel(net, HardConcreteGates(...))`` builds, but anything that needs a unit
density (``bg.fit_map``, ``bg.fit_svi``, Laplace evidence) raises a ``ValueError``
naming [`fit_l0`][bayesguide.fit_l0] before it takes a step. To compare pruned candidates by
evidence, wrap them in a Gaussian prior (``bg.GuidedNormal``).

**Result.** [`fit_l0`][bayesguide.fit_l0] folds the deterministic gates into the weights (unit ``j``'s
row times ``ẑ_j``) and returns a MAP [`FitResult`][bayesguide.FitResult] whose ``module``
is the gated network. Closed gates (``ẑ_j = 0``) leave rows that are exactly 0, so
``bg.prune(fit, threshold=...)`` removes them with the existing machinery. The gates
themselves (final ``log α``, ``ẑ``, ``P(z ≠ 0)`` and the expected-L0 history) are an
[`L0Gates`][bayesguide.L0Gates] ([`bayesguide.infer.l0.l0_gates`][]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, check_real
from bayesguide.priors.registry import PriorFamily, PriorOption, register_prior

__all__ = [
    "HardConcreteGates",
    "closed_probability",
    "deterministic_gates",
    "expected_l0_penalty",
    "one_probability",
    "open_probability",
    "sample_gates",
]

_U_EPS = 1e-6  # u is drawn from U(ε, 1 − ε) so that log u and log(1 − u) stay finite


def closed_probability(log_alpha: torch.Tensor, temperature: float, stretch: tuple[float, float]) -> torch.Tensor:
    """``P(z = 0) = σ(β log(−γ/ζ) − log α)``, the hard-concrete mass at 0.

    ``s̄ < 0`` iff ``s < −γ/(ζ − γ)`` iff the logistic noise is below
    ``β logit(−γ/(ζ − γ)) − log α = β log(−γ/ζ) − log α``.
    """
    gamma, zeta = stretch
    return torch.sigmoid(temperature * math.log(-gamma / zeta) - log_alpha)


def one_probability(log_alpha: torch.Tensor, temperature: float, stretch: tuple[float, float]) -> torch.Tensor:
    """``P(z = 1) = σ(log α − β log((1 − γ)/(ζ − 1)))``, the hard-concrete mass at 1."""
    gamma, zeta = stretch
    return torch.sigmoid(log_alpha - temperature * math.log((1.0 - gamma) / (zeta - 1.0)))


def open_probability(log_alpha: torch.Tensor, temperature: float, stretch: tuple[float, float]) -> torch.Tensor:
    """``P(z ≠ 0) = 1 − P(z = 0) = σ(log α − β log(−γ/ζ))``: each gate's expected L0."""
    gamma, zeta = stretch
    return torch.sigmoid(log_alpha - temperature * math.log(-gamma / zeta))


def sample_gates(
    log_alpha: torch.Tensor,
    temperature: float,
    stretch: tuple[float, float],
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """A reparameterised hard-concrete draw ``z = min(1, max(0, s(ζ − γ) + γ))``.

    ``s = σ((log u − log(1 − u) + log α)/β)`` with ``u ~ U(0, 1)`` (drawn from the
    global torch RNG when ``u`` is not given, clamped to ``[1e-6, 1 − 1e-6]``).
    Differentiable in ``log α``.
    """
    gamma, zeta = stretch
    if u is None:
        u = torch.rand_like(log_alpha)
    u = u.clamp(_U_EPS, 1.0 - _U_EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: torch.Tensor, stretch: tuple[float, float]) -> torch.Tensor:
    """The test-time gate ``ẑ = min(1, max(0, σ(log α)(ζ − γ) + γ))``."""
    gamma, zeta = stretch
    return (torch.sigmoid(log_alpha) * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def expected_l0_penalty(
    log_alpha: torch.Tensor,
    guidance: torch.Tensor,
    strength: float,
    temperature: float,
    stretch: tuple[float, float],
) -> torch.Tensor:
    """``λ Σ_j g_j σ(log α_j − β log(−γ/ζ))``: the guided expected-L0 penalty of one layer."""
    return strength * (guidance * open_probability(log_alpha, temperature, stretch)).sum()


@dataclass(frozen=True)
class HardConcreteGates(UnitPrior):
    """Hard-concrete L0 gates on the units (Louizos, Welling & Kingma 2018).

    Training with [`fit_l0`][bayesguide.fit_l0] minimises summed NLL at gated weights
    ``+ λ Σ_j g_j P(z_j ≠ 0) + w Σ ‖θ‖₂²``; see [`bayesguide.priors.l0`][] for the gate
    distribution and the formulas.

    Parameters
    ----------
    strength
        ``λ``, the cost of one open gate (times its guidance coefficient), in the
        summed-NLL convention.
    guidance
        Guidance coefficients ``g_j ≥ 0`` weighting each gate's cost (default linear).
    weight_decay
        ``w ≥ 0``, an optional L2 penalty ``w ‖θ‖₂²`` on every weight and bias.
    temperature
        ``β > 0`` (paper: 2/3).
    stretch
        ``(γ, ζ)`` with ``γ < 0 < 1 < ζ`` (paper: (−0.1, 1.1)).
    init_drop_rate
        ``r ∈ (0, 1)``: every ``log α`` starts at ``log((1 − r)/r)`` (the paper's code
        initialises its gates the same way).

    Notes
    -----
    This is a marker, not a density over the weights: `unit_distribution`
    raises a ``ValueError`` naming [`fit_l0`][bayesguide.fit_l0], so ``bg.fit_map`` / ``bg.fit_svi``
    refuse it before training.

    Examples
    --------
    >>> import bayesguide as bg
    >>> bg.HardConcreteGates(strength=0.5, guidance=bg.guidance.linear()).stretch
    (-0.1, 1.1)
    """

    weight_decay: float = 0.0
    temperature: float = 2.0 / 3.0
    stretch: tuple[float, float] = (-0.1, 1.1)
    init_drop_rate: float = 0.2

    kind = "l0"
    penalty = "λ Σ g_j P(z_j ≠ 0) (hard-concrete gates)"
    has_density = False

    def __post_init__(self) -> None:
        super().__post_init__()
        wd = check_real(self.weight_decay, "weight_decay")
        if not math.isfinite(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        beta = check_real(self.temperature, "temperature")
        if not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"temperature must be a positive finite number (β, paper: 2/3), got {self.temperature!r}")
        try:
            gamma, zeta = (check_real(v, "stretch") for v in self.stretch)
        except (TypeError, ValueError):
            raise ValueError(f"stretch must be a pair (γ, ζ) of numbers, got {self.stretch!r}") from None
        if not (math.isfinite(gamma) and math.isfinite(zeta) and gamma < 0.0 and zeta > 1.0):
            raise ValueError(f"stretch (γ, ζ) must satisfy γ < 0 < 1 < ζ (paper: (-0.1, 1.1)), got {self.stretch!r}")
        rate = check_real(self.init_drop_rate, "init_drop_rate")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"init_drop_rate must lie in (0, 1), got {self.init_drop_rate!r}")
        object.__setattr__(self, "weight_decay", wd)
        object.__setattr__(self, "temperature", beta)
        object.__setattr__(self, "stretch", (gamma, zeta))
        object.__setattr__(self, "init_drop_rate", rate)

    @property
    def init_log_alpha(self) -> float:
        """``log((1 − r)/r)``, the starting ``log α`` of every gate."""
        return math.log((1.0 - self.init_drop_rate) / self.init_drop_rate)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        raise ValueError(
            "HardConcreteGates (L0 gates) is not a density over the weights: its expected-L0 penalty "
            "is an expectation over stochastic gates. Train it with bg.fit_l0 (fit_map, fit_svi and "
            "the Laplace evidence need a unit density; score pruned candidates under bg.GuidedNormal)"
        )

    def __str__(self) -> str:
        return (
            f"HardConcreteGates(strength={self.strength:g}, guidance={self.guidance!r}, "
            f"weight_decay={self.weight_decay:g}, temperature={self.temperature:g}, stretch={self.stretch})"
        )


register_prior(PriorFamily(
    "l0", HardConcreteGates,
    "HardConcreteGates: hard-concrete L0 gates (Louizos et al. 2018), λ Σ g_j P(z_j ≠ 0); "
    "strength = cost of an open gate",
    options=(PriorOption("l0_weight_decay", 0.0, "L2 penalty w ‖θ‖² on every weight and bias",
                         param="weight_decay"),),
    fitters={"map": "l0"},
))
