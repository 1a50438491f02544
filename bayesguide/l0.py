"""Hard-concrete L0 gates per unit (Louizos, Welling & Kingma 2018).

Louizos, Welling & Kingma, "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018 (arXiv 1712.01312), put a stochastic gate ``z_j ∈ [0, 1]``
on every unit and penalise the expected number of open gates. The gate is a
*hard-concrete* variable: with temperature ``β``, stretch interval ``(γ, ζ)``
(``γ < 0 < 1 < ζ``) and a learned location ``log α_j``,

.. math::

    u \\sim U(0, 1), \\quad
    s = σ\\bigl((\\log u - \\log(1 - u) + \\log α_j) / β\\bigr), \\quad
    \\bar s = s (ζ - γ) + γ, \\quad
    z_j = \\min(1, \\max(0, \\bar s)).

Stretching and clipping puts point masses on 0 and 1 (``σ`` is the logistic sigmoid):

.. math::

    P(z_j = 0) = σ\\bigl(β \\log(-γ/ζ) - \\log α_j\\bigr), \\qquad
    P(z_j = 1) = σ\\bigl(\\log α_j - β \\log((1 - γ)/(ζ - 1))\\bigr),

so the expected L0 norm is ``Σ_j P(z_j ≠ 0) = Σ_j σ(log α_j − β log(−γ/ζ))``. At test
time the gate is deterministic: ``ẑ_j = min(1, max(0, σ(log α_j)(ζ − γ) + γ))``. The
paper's defaults are ``β = 2/3`` and ``(γ, ζ) = (−0.1, 1.1)``.

**Units and guidance.** Gate ``z_j`` multiplies unit ``j``'s incoming group — its row
of the ``(n, p)`` unit matrix, weights and bias (filter and bias for ``Conv2d``) — of
every prunable layer. bayesguide weights each gate's cost by the unit's guidance
coefficient ``g_j``, so the objective of :func:`fit_l0` is

.. math::

    L(θ, \\log α) = -\\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, θ ⊙ z)
        + λ \\sum_{l, j} g_{lj}\\, σ(\\log α_{lj} - β \\log(-γ/ζ))
        + w \\sum_{\\text{sites}} ‖Θ‖_2^2,

with ``z`` drawn afresh every step (one draw per unit per minibatch, shared by the
batch's examples), ``λ`` the ``strength`` (a rate per open gate, in the same
"summed NLL" convention as the other priors: the same ``λ`` whatever the batch size)
and ``w`` the optional ``weight_decay`` on every weight and bias (output layer
included). A unit with a larger ``g_j`` pays more to stay open, so guidance still
orders the units: with ``linear`` guidance the tail of every layer closes first;
``g_j = 0`` leaves a gate free.

**Not a density.** The expected-L0 penalty is an expectation over the gates, not the
negative log of a density over the weights, so :class:`HardConcreteGates` is a marker:
``GuidedModel(net, HardConcreteGates(...))`` builds, but anything that needs a unit
density (``bg.fit_map``, ``bg.fit_svi``, Laplace evidence) raises a ``ValueError``
naming :func:`fit_l0` before it takes a step. To compare pruned candidates by
evidence, wrap them in a Gaussian prior (``bg.GuidedNormal``).

**Result.** :func:`fit_l0` folds the deterministic gates into the weights (unit ``j``'s
row times ``ẑ_j``) and returns a MAP :class:`~bayesguide.FitResult` whose ``module``
is the gated network. Closed gates (``ẑ_j = 0``) leave rows that are exactly 0, so
``bg.prune(fit, threshold=...)`` removes them with the existing machinery. The gates
themselves (final ``log α``, ``ẑ``, ``P(z ≠ 0)`` and the expected-L0 history) are an
:class:`L0Gates` in ``fit.settings["l0"]`` (also :func:`l0_gates`).

Examples
--------
>>> import torch, bayesguide as bg
>>> from bayesguide.l0 import HardConcreteGates, fit_l0
>>> X = torch.randn(64, 3); y = X[:, :1]
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
>>> model = bg.GuidedModel(net, HardConcreteGates(strength=1.0), "gaussian", noise=0.5)
>>> fit = fit_l0(model, X, y, steps=20, lr=1e-2, progress=False)
>>> fit.settings["l0"].log_alpha["0"].shape
(6,)
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bayesguide.guidance import GuidanceSpec
from bayesguide.infer.guides import DeltaGuide
from bayesguide.infer.loop import LoopSettings, optimize
from bayesguide.infer.result import FitResult, build_result, data_fingerprint
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.network import functional_forward
from bayesguide.priors import UnitGroupDistribution, UnitPrior

__all__ = [
    "HardConcreteGates",
    "L0Gates",
    "closed_probability",
    "deterministic_gates",
    "expected_l0_penalty",
    "fit_l0",
    "l0_gates",
    "one_probability",
    "open_probability",
    "sample_gates",
]

_U_EPS = 1e-6  # u is drawn from U(ε, 1 − ε) so that log u and log(1 − u) stay finite


# --------------------------------------------------------------------------- the distribution


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


# --------------------------------------------------------------------------- the prior (marker)


def _check_real(value: object, name: str) -> float:
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True)
class HardConcreteGates(UnitPrior):
    """Hard-concrete L0 gates on the units (Louizos, Welling & Kingma 2018).

    Training with :func:`fit_l0` minimises summed NLL at gated weights
    ``+ λ Σ_j g_j P(z_j ≠ 0) + w Σ ‖θ‖₂²``; see :mod:`bayesguide.l0` for the gate
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
    This is a marker, not a density over the weights: :meth:`unit_distribution`
    raises a ``ValueError`` naming :func:`fit_l0`, so ``bg.fit_map`` / ``bg.fit_svi``
    refuse it before training.

    Examples
    --------
    >>> import bayesguide as bg
    >>> from bayesguide.l0 import HardConcreteGates
    >>> HardConcreteGates(strength=0.5, guidance=bg.guidance.linear()).stretch
    (-0.1, 1.1)
    """

    weight_decay: float = 0.0
    temperature: float = 2.0 / 3.0
    stretch: tuple[float, float] = (-0.1, 1.1)
    init_drop_rate: float = 0.2

    kind: str = field(init=False, default="l0", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j P(z_j ≠ 0) (hard-concrete gates)", repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        wd = _check_real(self.weight_decay, "weight_decay")
        if not math.isfinite(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        beta = _check_real(self.temperature, "temperature")
        if not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"temperature must be a positive finite number (β, paper: 2/3), got {self.temperature!r}")
        try:
            gamma, zeta = (_check_real(v, "stretch") for v in self.stretch)
        except (TypeError, ValueError):
            raise ValueError(f"stretch must be a pair (γ, ζ) of numbers, got {self.stretch!r}") from None
        if not (math.isfinite(gamma) and math.isfinite(zeta) and gamma < 0.0 and zeta > 1.0):
            raise ValueError(f"stretch (γ, ζ) must satisfy γ < 0 < 1 < ζ (paper: (-0.1, 1.1)), got {self.stretch!r}")
        rate = _check_real(self.init_drop_rate, "init_drop_rate")
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

    def with_guidance(self, guidance: GuidanceSpec) -> HardConcreteGates:
        """The same gates (strength, weight decay, temperature, stretch) with another guidance."""
        return HardConcreteGates(
            self.strength, guidance, self.weight_decay, self.temperature, self.stretch, self.init_drop_rate
        )

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


# --------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class L0Gates:
    """The gates of an :func:`fit_l0` fit (in ``fit.settings["l0"]``).

    Attributes
    ----------
    log_alpha
        Per prunable layer (keyed by layer name), the final ``log α_j``.
    gates
        The deterministic test-time gates ``ẑ_j`` folded into ``fit.module``.
    open_probability
        ``P(z_j ≠ 0) = σ(log α_j − β log(−γ/ζ))``.
    expected_l0
        ``Σ_j P(z_j ≠ 0)`` over all prunable units (unweighted), at ``steps``.
    steps
        The steps at which ``expected_l0`` was recorded (``fit.norm_steps``).
    temperature, stretch
        ``β`` and ``(γ, ζ)``.
    """

    log_alpha: dict[str, np.ndarray]
    gates: dict[str, np.ndarray]
    open_probability: dict[str, np.ndarray]
    expected_l0: np.ndarray
    steps: np.ndarray
    temperature: float
    stretch: tuple[float, float]

    @property
    def n_open(self) -> dict[str, int]:
        """Per layer, the number of gates with ``ẑ_j > 0``."""
        return {k: int((v > 0).sum()) for k, v in self.gates.items()}

    def __str__(self) -> str:
        lines = [f"L0Gates(β={self.temperature:g}, stretch={self.stretch}, "
                 f"final expected L0 {float(self.expected_l0[-1]):.4g})"]
        for k, v in self.gates.items():
            lines.append(f"  layer {k}: {int((v > 0).sum())}/{v.size} gates open")
        return "\n".join(lines)


def l0_gates(fit: FitResult) -> L0Gates:
    """The :class:`L0Gates` of a :func:`fit_l0` result."""
    gates = fit.settings.get("l0")
    if not isinstance(gates, L0Gates):
        raise ValueError("this fit has no L0 gates: it was not made by bg.fit_l0")
    return gates


def _diagnose(
    gate_params: Mapping[str, torch.Tensor], module: nn.Module
) -> Callable[[torch.Tensor | None], str]:
    def diagnose(idx: torch.Tensor | None) -> str:
        problems = [f"log α of layer {k!r} is non-finite" for k, v in gate_params.items()
                    if not torch.isfinite(v).all()]
        problems += [f"parameter {k!r} is non-finite" for k, v in module.named_parameters()
                     if not torch.isfinite(v).all()]
        return "; ".join(problems) or "the likelihood or a penalty overflowed (lower lr)"

    return diagnose


def fit_l0(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    batch_size: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    record_every: int | None = None,
) -> FitResult:
    """Train weights and hard-concrete gates jointly, then fold the gates in.

    Minimises, with Adam over the weights and every gate's ``log α``,

    ``−(N/B) Σ_batch log p(y | x, θ ⊙ z) + λ Σ_j g_j σ(log α_j − β log(−γ/ζ)) + w Σ ‖θ‖₂²``,

    with one hard-concrete draw ``z`` per unit and step (see :mod:`bayesguide.l0`).
    Afterwards each prunable unit's row (weights and bias) is multiplied by its
    deterministic gate ``ẑ_j = min(1, max(0, σ(log α_j)(ζ − γ) + γ))``, so closed
    units have exactly-zero rows and ``bg.prune(fit, threshold=...)`` removes them.

    Parameters
    ----------
    model
        A :class:`~bayesguide.GuidedModel` whose prior is :class:`HardConcreteGates`
        (its ``plain_prior`` is not used: the optional weight decay covers all sites).
    X, y
        Training data, validated before any training.
    steps, lr
        Adam steps and learning rate (shared by weights and ``log α``).
    batch_size
        Minibatch size (``None``: full batch); the likelihood is scaled by ``N / B``.
    seed
        Seeds minibatch order and the gate noise for this fit only.
    progress
        Show a progress bar.
    record_every
        Record the gated unit norms and the expected L0 every this many steps.

    Returns
    -------
    FitResult
        ``method="map"``, ``module`` the gated network, ``guide`` a
        :class:`~bayesguide.DeltaGuide` on it, ``unit_norms`` the norms of the
        deterministically gated unit groups, ``settings["l0"]`` an :class:`L0Gates`.

    References
    ----------
    Louizos, Welling & Kingma, "Learning Sparse Neural Networks through L0
    Regularization", ICLR 2018.
    """
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")
    prior = model.prior
    if not isinstance(prior, HardConcreteGates):
        raise ValueError(
            f"fit_l0 needs a GuidedModel with a bg.HardConcreteGates prior, got {type(prior).__name__}; "
            f"use bg.fit_map or bg.fit_svi for other priors"
        )
    settings = LoopSettings(
        steps=steps, lr=lr, batch_size=batch_size, seed=seed, progress=progress,
        record_every=record_every, description="L0",
    )
    Xt, yt = model.prepare_data(X, y)
    n = Xt.shape[0]
    dtype = Xt.dtype
    beta, stretch, lam, wd = prior.temperature, prior.stretch, prior.strength, prior.weight_decay

    module = copy.deepcopy(model.net)
    module.train()
    guide = DeltaGuide(model, module)
    params = dict(module.named_parameters())
    chain = model.chain(module)
    prunable = model.prunable_sites
    log_alpha = {
        s.name: nn.Parameter(torch.full((s.n_units,), prior.init_log_alpha, dtype=dtype)) for s in prunable
    }
    coeffs = {s.name: model.coefficients[s.name].to(dtype) for s in prunable}
    likelihood = model.likelihood
    fixed_noise = None if model.learns_noise else model.noise_tensor(None, dtype)
    history: list[float] = []

    def objective(idx: torch.Tensor | None) -> torch.Tensor:
        xb, yb = (Xt, yt) if idx is None else (Xt[idx], yt[idx])
        values = {s.name: s.pack(params) for s in model.sites}
        loss = torch.zeros((), dtype=dtype)
        if wd > 0:
            for v in values.values():
                loss = loss + wd * v.pow(2).sum()
        for s in prunable:
            z = sample_gates(log_alpha[s.name], beta, stretch)
            values[s.name] = values[s.name] * z.unsqueeze(-1)
            loss = loss + expected_l0_penalty(log_alpha[s.name], coeffs[s.name], lam, beta, stretch)
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        loglik = likelihood.log_prob_sum(functional_forward(chain, model.sites, values, xb), yb, noise)
        if idx is not None:
            loglik = loglik * (n / idx.shape[0])
        return loss - loglik

    def record() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            history.append(float(sum(open_probability(a, beta, stretch).sum() for a in log_alpha.values())))
            return {
                s.layer.name: torch.linalg.vector_norm(
                    s.pack(params) * deterministic_gates(log_alpha[s.name], stretch).unsqueeze(-1), dim=-1
                )
                for s in prunable
            }

    out = optimize(
        objective,
        [*guide.parameters(), *log_alpha.values()],
        n,
        settings,
        record=record,
        diagnose=_diagnose(log_alpha, module),
    )

    gates: dict[str, np.ndarray] = {}
    alphas: dict[str, np.ndarray] = {}
    opened: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for s in prunable:
            a = log_alpha[s.name].detach()
            zhat = deterministic_gates(a, stretch)
            for name in s.param_names:  # fold: unit j's row (weights and bias) times ẑ_j
                p = params[name]
                p.mul_(zhat.reshape((-1,) + (1,) * (p.ndim - 1)))
            key = s.layer.name
            gates[key] = zhat.cpu().numpy()
            alphas[key] = a.cpu().numpy()
            opened[key] = open_probability(a, beta, stretch).cpu().numpy()
    state = L0Gates(
        log_alpha=alphas, gates=gates, open_probability=opened,
        expected_l0=np.asarray(history, dtype=np.float64), steps=out.record_steps.copy(),
        temperature=beta, stretch=stretch,
    )
    config = settings.as_dict() | {"record_every": record_every, "l0": state}
    return build_result(
        method="map", model=model, module=module, guide=guide, out=out, settings=config,
        n_data=n, fingerprint=data_fingerprint(Xt, yt), init=None,
    )

