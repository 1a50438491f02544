"""Guided unit priors: proper Pyro distributions over a layer's unit weight groups.

A prunable layer with ``n`` units owns an ``(n, p)`` matrix of unit groups: row ``j``
is unit ``j``'s incoming weights (flattened filter for ``Conv2d``) followed by its
bias. A *unit prior* is a distribution over that matrix whose rows are independent and
whose row ``j`` has strength ``λ g_j``, with ``g_j`` the guidance coefficient.

============================  ======================================  ====================================
prior                         density of one unit group θ ∈ R^p       negative log = penalty (+ const)
============================  ======================================  ====================================
:class:`GuidedNormal`         Normal, precision ``2 λ g_j`` per       guided L2: ``λ g_j ‖θ‖₂²``
                              element
:class:`GuidedLaplace`        Laplace, scale ``1 / (λ g_j)`` per      guided L1: ``λ g_j ‖θ‖₁``
                              element
:class:`GuidedGroupLasso`     ``c(α) exp(−α ‖θ‖₂)``,                  guided group lasso:
                              ``α = λ g_j √p``,                       ``λ g_j √p ‖θ‖₂``
                              ``c(α) = α^p Γ(p/2) / (2 π^{p/2} Γ(p))``
============================  ======================================  ====================================

``strength`` is ``λ`` in the Bayesian convention: the rate of the prior, the same
whatever the batch size, with the negative log-likelihood *summed* over the ``N``
training examples. The deep-learning convention "mean loss + λ' R(θ)" is the same
problem with ``λ = N λ'``: see :func:`strength_from_mean_loss` and the
``from_mean_loss`` constructors.

A coefficient ``g_j = 0`` makes unit ``j``'s prior an improper flat density: it adds
nothing to ``log_prob`` (fine for MAP), it cannot be sampled, and evidence code must
refuse it or substitute a proper prior (``UnitGroupDistribution.is_proper``).

References: Rafid & Sandu, arXiv 2305.18448 (guided regularization); E & Gao, arXiv
2009.01395 (partial regularization, coefficient 0 on protected units); Yuan & Lin 2006
(group lasso, the ``√p`` group-size factor).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from bayesguide._options import Option
from bayesguide.guidance import GuidanceSpec, linear

__all__ = [
    "GuidedGroupLasso",
    "GuidedLaplace",
    "GuidedNormal",
    "PriorKind",
    "UnitGroupDistribution",
    "UnitGroupLaplace",
    "UnitLaplace",
    "UnitNormal",
    "UnitPrior",
    "make_prior",
    "strength_from_mean_loss",
]


# --------------------------------------------------------------------------- distributions


class UnitGroupDistribution(TorchDistribution, ABC):
    """Independent rows of an ``(n, p)`` unit matrix, row ``j`` with rate ``λ g_j``.

    Contract: ``log_prob(value)`` takes ``value`` of shape ``(..., n, p)`` and returns
    shape ``(...)``; units with ``g_j = 0`` contribute 0 (improper flat prior). The
    normalising constants are computed once, at construction.

    Parameters
    ----------
    rate
        ``λ g_j`` per unit, shape ``(n,)``, non-negative.
    group_size
        ``p``, the number of weights in one unit group.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(self, rate: torch.Tensor, group_size: int, validate_args: bool | None = None):
        if rate.ndim != 1:
            raise ValueError(f"rate must be 1-D (one per unit), got shape {tuple(rate.shape)}")
        if (rate < 0).any() or not torch.isfinite(rate).all():
            raise ValueError("rates must be finite and >= 0")
        self.rate = rate
        self.group_size = int(group_size)
        self.proper_mask = rate > 0
        self._log_norm = self._log_normaliser(rate[self.proper_mask]).sum()
        super().__init__(
            batch_shape=torch.Size(),
            event_shape=torch.Size((rate.shape[0], self.group_size)),
            validate_args=validate_args,
        )

    def set_rate(self, rate: torch.Tensor) -> None:
        """Replace the per-unit rates ``λ g_j`` in place (empirical-Bayes updates).

        ``rate`` must have this distribution's shape ``(n,)`` and be finite and ``>= 0``.
        The stored ``rate`` tensor is overwritten with ``copy_`` — not rebound — so code
        that holds a reference to it (the ``"fast"`` MAP objective) sees the new values;
        ``proper_mask`` and the cached log normaliser are recomputed, so ``log_prob``,
        ``penalty``, ``log_normaliser`` and ``is_proper`` all describe the new prior.

        Examples
        --------
        >>> d = UnitNormal(torch.ones(2, dtype=torch.float64), 3)
        >>> d.set_rate(torch.tensor([2.0, 0.0]))
        >>> d.proper_mask.tolist(), round(float(d.log_normaliser), 6) == round(1.5 * math.log(2 / math.pi), 6)
        ([True, False], True)
        """
        new = torch.as_tensor(rate).detach()
        if new.shape != self.rate.shape:
            raise ValueError(
                f"set_rate needs shape {tuple(self.rate.shape)} (one rate per unit), got {tuple(new.shape)}"
            )
        if not torch.isfinite(new).all() or (new < 0).any():
            raise ValueError("rates must be finite and >= 0")
        with torch.no_grad():
            self.rate.copy_(new.to(self.rate.dtype))
            self.proper_mask = self.rate > 0
            self._log_norm = self._log_normaliser(self.rate[self.proper_mask]).sum()

    @property
    def is_proper(self) -> bool:
        """Whether every unit has a proper (normalisable) prior, i.e. all ``g_j > 0``."""
        return bool(self.proper_mask.all())

    @abstractmethod
    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        """Log normalising constant of one unit group per (positive) rate."""

    @abstractmethod
    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        """Per-unit statistic ``s_j(θ)`` (shape ``(..., n)``) that the penalty is linear in."""

    @abstractmethod
    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        """Draws of shape ``shape + (n, p)`` (all units proper)."""

    @property
    def log_normaliser(self) -> torch.Tensor:
        """``Σ_j log c_j`` over the proper units: the part of ``log_prob`` free of θ."""
        return self._log_norm

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """``s_j`` from the column blocks of the unit matrix (e.g. ``[W_rows, b[:, None]]``).

        Equal to ``unit_statistic(torch.cat(parts, -1))``; subclasses combine the blocks'
        statistics without building the concatenated matrix (no copy in the hot path).
        """
        return self.unit_statistic(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))

    def penalty_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`penalty` from the column blocks of the unit matrix (see :meth:`unit_statistic_parts`)."""
        return (self.unit_statistic_parts(parts) * self.rate).sum(-1)

    def penalty(self, value: torch.Tensor) -> torch.Tensor:
        """``Σ_j rate_j s_j(θ)``: the regularizer, so ``log_prob = log_normaliser − penalty``."""
        return (self.unit_statistic(value) * self.rate).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._log_norm - self.penalty(value)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        if not self.is_proper:
            bad = int((~self.proper_mask).nonzero()[0])
            raise ValueError(
                f"cannot sample an improper prior: unit {bad} has guidance coefficient 0 "
                f"(flat prior); use positive coefficients to sample"
            )
        with torch.no_grad():
            return self._sample_proper(torch.Size(sample_shape))


class UnitNormal(UnitGroupDistribution):
    """Guided L2: every element of unit ``j`` is ``Normal(0, 1/√(2 λ g_j))``.

    ``log_prob = Σ_j [ (p/2) log(λ g_j / π) − λ g_j ‖θ_j‖₂² ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.group_size * torch.log(rate / math.pi)

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return value.pow(2).sum(-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitNormal.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        stat = parts[0].pow(2).sum(-1)
        for p in parts[1:]:
            stat = stat + p.pow(2).sum(-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        std = (2.0 * self.rate).rsqrt().unsqueeze(-1)
        eps = torch.randn(shape + self.event_shape, dtype=self.rate.dtype, device=self.rate.device)
        return eps * std


class UnitLaplace(UnitGroupDistribution):
    """Guided L1: every element of unit ``j`` is ``Laplace(0, 1/(λ g_j))``.

    ``log_prob = Σ_j [ p log(λ g_j / 2) − λ g_j ‖θ_j‖₁ ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return self.group_size * torch.log(rate / 2.0)

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return value.abs().sum(-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitLaplace.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        stat = parts[0].abs().sum(-1)
        for p in parts[1:]:
            stat = stat + p.abs().sum(-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        scale = self.rate.reciprocal().unsqueeze(-1).expand(self.event_shape)
        return torch.distributions.Laplace(torch.zeros_like(scale), scale).sample(shape)


class UnitGroupLaplace(UnitGroupDistribution):
    """Guided group lasso: unit ``j`` has density ``c(α_j) exp(−α_j ‖θ_j‖₂)`` on ``R^p``.

    Here ``rate`` is ``α_j = λ g_j √p`` (the √p group-size factor is applied by
    :class:`GuidedGroupLasso`). The normaliser is exact: integrating in spherical
    coordinates, ``∫ exp(−α‖θ‖) dθ = (2 π^{p/2} / Γ(p/2)) Γ(p) / α^p``, hence
    ``log c(α) = p log α + log Γ(p/2) − log 2 − (p/2) log π − log Γ(p)``.
    Sampling draws a uniform direction and a ``Gamma(p, α)`` radius.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        p = self.group_size
        const = math.lgamma(p / 2) - math.log(2.0) - 0.5 * p * math.log(math.pi) - math.lgamma(p)
        return p * torch.log(rate) + const

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(value, dim=-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitGroupLaplace.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        # ‖θ_j‖₂ = ‖(‖W_j‖₂, ‖b_j‖₂)‖₂, with subgradient 0 at 0 (vector_norm's backward)
        stat = torch.linalg.vector_norm(parts[0], dim=-1)
        if len(parts) > 1:
            norms = [stat, *(torch.linalg.vector_norm(p, dim=-1) for p in parts[1:])]
            stat = torch.linalg.vector_norm(torch.stack(norms, -1), dim=-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        n, p = self.event_shape
        direction = torch.randn(shape + self.event_shape, dtype=self.rate.dtype)
        direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        conc = torch.full((n,), float(p), dtype=self.rate.dtype)
        radius = torch.distributions.Gamma(conc, self.rate).sample(shape)
        return direction * radius.unsqueeze(-1)


# --------------------------------------------------------------------------- prior families


def _check_strength(strength: float) -> float:
    if isinstance(strength, (bool, str)) or not isinstance(strength, numbers.Real):
        raise TypeError(f"strength must be a number, got {type(strength).__name__}")
    value = float(strength)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"strength must be a positive finite number (the prior's rate λ), got {strength!r}")
    return value


def strength_from_mean_loss(strength: float, n_data: int) -> float:
    """Convert a mean-loss penalty weight ``λ'`` to bayesguide's Bayesian ``λ = N λ'``.

    Training on ``mean NLL + λ' R(θ)`` has the same minimiser as ``sum NLL + N λ' R(θ)``
    because the second objective is ``N`` times the first.

    Examples
    --------
    >>> strength_from_mean_loss(1e-4, 1000)
    0.1
    """
    if isinstance(n_data, bool) or not isinstance(n_data, int) or n_data < 1:
        raise ValueError(f"n_data must be a positive int, got {n_data!r}")
    return _check_strength(strength) * n_data


@dataclass(frozen=True)
class UnitPrior(ABC):
    """A family of guided unit priors: a strength ``λ`` and a guidance specification.

    Contract: :meth:`unit_distribution` takes one layer's coefficients ``g`` (shape
    ``(n,)``) and group size ``p`` and returns a :class:`UnitGroupDistribution` over
    the layer's ``(n, p)`` unit matrix.
    """

    strength: float
    guidance: GuidanceSpec = field(default_factory=linear)

    #: short name used in reports and experiment files
    kind: str = field(init=False, default="", repr=False)
    #: the penalty it equals, for reports
    penalty: str = field(init=False, default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", _check_strength(self.strength))

    @classmethod
    def from_mean_loss(
        cls, strength: float, n_data: int, guidance: GuidanceSpec | None = None
    ) -> UnitPrior:
        """The prior whose MAP equals training on ``mean NLL + strength · R(θ)``."""
        lam = strength_from_mean_loss(strength, n_data)
        return cls(lam) if guidance is None else cls(lam, guidance)

    def with_guidance(self, guidance: GuidanceSpec) -> UnitPrior:
        """The same family and strength with another guidance."""
        return type(self)(self.strength, guidance)

    def unit_distribution(self, g: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return self._distribution(self.strength * g, group_size)

    @abstractmethod
    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution: ...

    def __str__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength:g}, guidance={self.guidance!r})"


@dataclass(frozen=True)
class GuidedNormal(UnitPrior):
    """Guided L2 prior: ``Normal(0, 1/√(2 λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₂²``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedNormal(strength=1e-3, guidance=bg.guidance.linear())
    """

    kind: str = field(init=False, default="l2", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j ‖θ_j‖₂²", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitNormal(rate, group_size)


@dataclass(frozen=True)
class GuidedLaplace(UnitPrior):
    """Guided L1 prior: ``Laplace(0, 1/(λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₁``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())
    """

    kind: str = field(init=False, default="l1", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j ‖θ_j‖₁", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitLaplace(rate, group_size)


@dataclass(frozen=True)
class GuidedGroupLasso(UnitPrior):
    """Guided group-lasso prior: density ``∝ exp(−λ g_j √p ‖θ_j‖₂)`` per unit group.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j √p ‖θ_j‖₂``; the
    normalising constant is exact (see :class:`UnitGroupLaplace`).

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedGroupLasso(strength=1e-2, guidance=bg.guidance.partial())
    """

    kind: str = field(init=False, default="group", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j √p ‖θ_j‖₂", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitGroupLaplace(rate * math.sqrt(group_size), group_size)


class PriorKind(Option):
    """Names of the unit-prior families, for experiment files and the CLI."""

    L1 = "l1"
    L2 = "l2"
    GROUP = "group"

    @property
    def description(self) -> str:
        return {
            "l1": "GuidedLaplace: guided L1, λ Σ g_j ‖θ_j‖₁",
            "l2": "GuidedNormal: guided L2, λ Σ g_j ‖θ_j‖₂²",
            "group": "GuidedGroupLasso: guided group lasso, λ Σ g_j √p ‖θ_j‖₂",
        }[self.value]


def make_prior(kind: str | PriorKind, strength: float, guidance: GuidanceSpec | None = None) -> UnitPrior:
    """Build a prior family by name (``"l1"``, ``"l2"`` or ``"group"``).

    Examples
    --------
    >>> make_prior("group", 0.1)
    GuidedGroupLasso(strength=0.1, guidance=linear())
    """
    member = PriorKind.resolve(kind, "prior kind")
    cls: Callable[..., UnitPrior] = {
        PriorKind.L1: GuidedLaplace,
        PriorKind.L2: GuidedNormal,
        PriorKind.GROUP: GuidedGroupLasso,
    }[member]
    return cls(strength) if guidance is None else cls(strength, guidance)
