"""The unit-prior contract: a distribution over a layer's unit matrix, and a family of them.

A prunable layer with ``n`` units owns an ``(n, p)`` matrix of unit groups: row ``j``
is unit ``j``'s incoming weights (flattened filter for ``Conv2d``) followed by its
bias. Two small contracts:

* [`UnitGroupDistribution`][bayesguide.priors.base.UnitGroupDistribution] — a Pyro distribution over that matrix whose
rows are
  independent, row ``j`` with rate ``λ g_j``:
  ``log_prob(Θ) = log_normaliser − Σ_j rate_j s_j(Θ_j)``. A subclass gives the
  normaliser of one row (``_log_normaliser``), the statistic ``s_j`` (``block_statistic``
  from the column blocks ``[W_rows, b[:, None]]``, or ``unit_statistic`` from the whole
  row) and a sampler (``_sample_proper``).
* [`UnitPrior`][bayesguide.UnitPrior] — a *family*: a strength ``λ`` and a guidance specification,
  turning one layer's coefficients ``g`` into a [`UnitGroupDistribution`][bayesguide.priors.base.UnitGroupDistribution].
  It
  declares what the rest of the library needs to know about it: ``kind`` (its name),
  ``penalty`` (the regularizer it equals, for reports), ``has_density`` (whether it
  is a density over the weights alone, so that MAP — and the fine-tuning of its
  candidates — can use it; L0 gates and the horseshoe are not) and
  [`UnitPrior.gaussian_counterpart`][bayesguide.priors.base.UnitPrior.gaussian_counterpart] (the Gaussian prior its
  candidates' Laplace
  evidence uses). Registering it ([`bayesguide.priors.registry`][])
  makes it a ``[prior] kind`` of experiment files.

``strength`` is ``λ`` in the Bayesian convention: the rate of the prior, the same
whatever the batch size, with the negative log-likelihood *summed* over the ``N``
training examples; "mean loss + λ′ R(θ)" is the same problem with ``λ = N λ′``
([`strength_from_mean_loss`][bayesguide.strength_from_mean_loss]). A coefficient ``g_j = 0`` makes unit ``j``'s prior an
improper flat density: it adds nothing to ``log_prob`` (fine for MAP), it cannot be
sampled, and evidence code must refuse it or substitute a proper prior.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints
from typing_extensions import Self

from bayesguide.guidance import GuidanceSpec, linear
from bayesguide.priors.statistics import group_norm, sum_of_abs, sum_of_squares

__all__ = [
    "UnitGroupDistribution",
    "UnitPrior",
    "check_real",
    "check_strength",
    "group_norm",
    "strength_from_mean_loss",
    "sum_of_abs",
    "sum_of_squares",
]


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
        >>> from bayesguide.priors import UnitNormal
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

    def to(self, device: torch.device | str) -> Self:
        """A copy of this distribution with every tensor (rates, mask, normaliser) on ``device``.

        The normalising constants are not recomputed, so the copy's ``log_prob`` is the
        same function on every device; [`set_rate`][bayesguide.priors.base.UnitGroupDistribution.set_rate] on the copy
        works there.
        """
        new = copy.copy(self)
        new.__dict__ = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return new

    @property
    def is_proper(self) -> bool:
        """Whether every unit has a proper (normalisable) prior, i.e. all ``g_j > 0``."""
        return bool(self.proper_mask.all())

    @abstractmethod
    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        """Log normalising constant of one unit group per (positive) rate."""

    @abstractmethod
    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        """Draws of shape ``shape + (n, p)`` (all units proper)."""

    vector_blocks: ClassVar[bool] = False
    """Whether `block_statistic` takes a 1-D ``(n,)`` block (a bias as it is) as one column.

    The built-in families do (their statistics are in [`bayesguide.priors.statistics`][]),
    so the MAP objective hands them each layer's tensors without reshaping the bias (a
    view node forward and backward at every step). A subclass that leaves it ``False``
    gets every block as ``(n, k)``.
    """

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-unit statistic ``s_j`` (shape ``(..., n)``) from the column blocks of the unit matrix.

        The blocks are e.g. ``[W_rows, b[:, None]]``; the result equals the statistic of
        their concatenation, computed without building it (no copy in the MAP hot path).
        With `vector_blocks`, a block may also be 1-D, ``(n,)``: one column.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement block_statistic(parts) or unit_statistic(value)"
        )

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        """Per-unit statistic ``s_j(θ)`` (shape ``(..., n)``) that the penalty is linear in."""
        return self.block_statistic([value])

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """`unit_statistic` of the concatenated blocks (`block_statistic` when it is the built-in)."""
        own = type(self).unit_statistic is not UnitGroupDistribution.unit_statistic  # a subclass's own statistic
        if own or not self.vector_blocks:
            parts = [p.unsqueeze(-1) if p.dim() == 1 else p for p in parts]
        if own:
            return self.unit_statistic(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
        return self.block_statistic(parts)

    @property
    def log_normaliser(self) -> torch.Tensor:
        """``Σ_j log c_j`` over the proper units: the part of ``log_prob`` free of θ."""
        return self._log_norm

    def penalty_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """`penalty` from the column blocks of the unit matrix (see `block_statistic`; 1-D blocks are columns)."""
        return torch.matmul(self.unit_statistic_parts(parts), self.rate)

    def penalty(self, value: torch.Tensor) -> torch.Tensor:
        """``Σ_j rate_j s_j(θ)``: the regularizer, so ``log_prob = log_normaliser − penalty``.

        One product with the rates (``torch.matmul(s, rate)``: a single autograd node,
        where ``(s * rate).sum(-1)`` puts two into the training step).
        """
        return torch.matmul(self.unit_statistic(value), self.rate)

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


def check_real(value: object, name: str) -> float:
    """``value`` as a float, or a ``TypeError`` naming ``name`` (bools and strings refused)."""
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_strength(strength: float) -> float:
    """``strength`` as a positive finite float (the prior's rate ``λ``), or an error naming it."""
    value = check_real(strength, "strength")
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
    return check_strength(strength) * n_data


@dataclass(frozen=True)
class UnitPrior(ABC):
    """A family of guided unit priors: a strength ``λ`` and a guidance specification.

    Contract: `unit_distribution` takes one layer's coefficients ``g`` (shape
    ``(n,)``) and group size ``p`` and returns a [`UnitGroupDistribution`][bayesguide.priors.base.UnitGroupDistribution]
    over
    the layer's ``(n, p)`` unit matrix (``_distribution(rate = λ g, p)`` in a subclass).
    A family also declares, as class attributes, its ``kind`` and ``penalty`` (for
    reports and experiment files) and ``has_density`` (``False`` for priors that are no
    density over the weights alone: MAP and SVI refuse them), and answers
    [`gaussian_counterpart`][bayesguide.priors.base.UnitPrior.gaussian_counterpart].
    """

    strength: float
    guidance: GuidanceSpec = field(default_factory=linear)

    kind: ClassVar[str] = ""
    """Short name used in reports and experiment files."""
    penalty: ClassVar[str] = ""
    """The penalty it equals, for reports."""
    has_density: ClassVar[bool] = True
    """Whether it is a density over the weights alone (MAP and candidate fine-tuning can use it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_strength(self.strength))

    @classmethod
    def from_mean_loss(
        cls, strength: float, n_data: int, guidance: GuidanceSpec | None = None, **options: Any
    ) -> Self:
        """The prior whose MAP equals training on ``mean NLL + strength · R(θ)`` (``λ = N · strength``).

        ``options`` are the family's other constructor arguments (e.g. ``alpha``).
        """
        lam = strength_from_mean_loss(strength, n_data)
        return cls(lam, **options) if guidance is None else cls(lam, guidance, **options)

    def with_guidance(self, guidance: GuidanceSpec) -> Self:
        """The same family, strength and options with another guidance."""
        return dataclasses.replace(self, guidance=guidance)

    def unit_distribution(self, g: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return self._distribution(self.strength * g, group_size)

    @abstractmethod
    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution: ...

    def gaussian_counterpart(self) -> UnitPrior | None:
        """The Gaussian prior (a ``GuidedNormal``) the Laplace evidence scores this family under.

        ``None`` when the family has no Gaussian counterpart (it is no density over the
        weights, e.g. L0 gates, or only a conditional one, e.g. the horseshoe): the
        evidence then uses ``GuidedNormal(λ, uniform())`` (see
        [`bayesguide.posterior.laplace`][]).
        """
        return None

    def __str__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength:g}, guidance={self.guidance!r})"
