"""Guidance profiles: per-unit coefficients that decide which units are pushed out first.

A *guidance profile* is a small callable with one contract:

    ``profile(n_units: int) -> torch.Tensor`` of shape ``(n_units,)``, float64,
    finite and non-negative.

The coefficient ``g_j`` of unit ``j`` multiplies the prior's strength ``λ`` for that
unit's weight group (see [`bayesguide.priors`][]), so a large ``g_j`` means a unit that
is a-priori expensive and dies first. ``g_j = 0`` is an improper flat prior: the unit is
protected (free) under MAP training.

Profiles implemented here, each after the paper cited with it:

* [`linear`][bayesguide.guidance.profiles.linear] — ``g_j`` grows linearly with the unit index, so the tail of every
  layer dies first and survivors form a prefix (Guided Regularization, Rafid & Sandu,
  arXiv 2305.18448).
* [`geometric`][bayesguide.guidance.profiles.geometric] — geometric growth, a sharper ordering.
* [`uniform`][bayesguide.guidance.profiles.uniform] — ``g_j = 1``: plain L1 / L2 / group-lasso regularization.
* [`partial`][bayesguide.guidance.profiles.partial] — 0 on a protected set of units, 1 elsewhere (Partial
  Regularization, E & Gao, arXiv 2009.01395; their code protects the last ⌊n/β⌋ units
  of each layer, β = 8).
* [`custom`][bayesguide.guidance.profiles.custom] — any tensor or callable.
* [`relevance`][bayesguide.guidance.relevance.relevance] — data-adaptive coefficients from
  loss sensitivity, re-estimated during training (Bonetta et al., arXiv 2204.04977).

A prior takes either one profile for all prunable layers or a mapping from layer name
(the position in the ``nn.Sequential``, e.g. ``"0"``) to profile; the key ``"*"`` gives
the default for layers not named.

Examples
--------
>>> import bayesguide as bg
>>> bg.guidance.linear()(4)
tensor([0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
>>> bg.guidance.partial(fraction=0.25)(8)
tensor([1., 1., 1., 1., 1., 1., 0., 0.], dtype=torch.float64)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = [
    "GuidanceSpec",
    "Profile",
    "adaptive_fitter",
    "coefficients_for_layer",
    "custom",
    "geometric",
    "linear",
    "partial",
    "uniform",
    "validate_coefficients",
]


class Profile(Protocol):
    """Takes a layer's unit count, returns its guidance coefficients (shape ``(n,)``)."""

    def __call__(self, n_units: int) -> torch.Tensor: ...


GuidanceSpec = Profile | Mapping[str | int, Profile]
"""One profile for every prunable layer, or a mapping ``layer name -> profile``."""


def _check_n(n_units: int) -> None:
    if not isinstance(n_units, int) or isinstance(n_units, bool) or n_units < 1:
        raise ValueError(f"a layer needs at least one unit, got n_units={n_units!r}")


def _check_positive_finite(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class _Linear:
    low: float | None

    def __call__(self, n_units: int) -> torch.Tensor:
        _check_n(n_units)
        low = 1.0 / n_units if self.low is None else self.low
        if n_units == 1:
            return torch.ones(1, dtype=torch.float64)
        j = torch.arange(n_units, dtype=torch.float64)
        return low + (1.0 - low) * j / (n_units - 1)

    def __repr__(self) -> str:
        return "linear()" if self.low is None else f"linear(low={self.low})"


def linear(low: float | None = None) -> Profile:
    """Coefficients rising linearly from ``low`` (first unit) to 1 (last unit).

    ``g_j = low + (1 - low) · j / (n - 1)`` for ``j = 0 … n-1``. The default ``low =
    1/n`` gives ``g_j = (j + 1) / n``: every coefficient is positive, so the prior is
    proper, and the last unit of a layer is ``n`` times as expensive as the first.

    Parameters
    ----------
    low
        Coefficient of the first unit, in ``[0, 1]``; ``None`` means ``1 / n``.

    Examples
    --------
    >>> linear(low=0.0)(3)
    tensor([0.0000, 0.5000, 1.0000], dtype=torch.float64)
    """
    if low is not None and (not math.isfinite(low) or not 0.0 <= low <= 1.0):
        raise ValueError(f"linear(low=...) must lie in [0, 1], got {low!r}")
    return _Linear(low)


@dataclass(frozen=True)
class _Geometric:
    growth: float

    def __call__(self, n_units: int) -> torch.Tensor:
        _check_n(n_units)
        if n_units == 1:
            return torch.ones(1, dtype=torch.float64)
        j = torch.arange(n_units, dtype=torch.float64)
        return self.growth ** (j / (n_units - 1) - 1.0)

    def __repr__(self) -> str:
        return f"geometric(growth={self.growth})"


def geometric(growth: float = 100.0) -> Profile:
    """Coefficients rising geometrically from ``1 / growth`` to 1.

    ``g_j = growth ** (j / (n - 1) - 1)``: consecutive units differ by a constant
    factor, so the ordering is sharper at the tail than [`linear`][bayesguide.guidance.profiles.linear]'s.

    Examples
    --------
    >>> geometric(growth=4.0)(3)
    tensor([0.2500, 0.5000, 1.0000], dtype=torch.float64)
    """
    _check_positive_finite("geometric(growth=...)", growth)
    return _Geometric(float(growth))


@dataclass(frozen=True)
class _Uniform:
    def __call__(self, n_units: int) -> torch.Tensor:
        _check_n(n_units)
        return torch.ones(n_units, dtype=torch.float64)

    def __repr__(self) -> str:
        return "uniform()"


def uniform() -> Profile:
    """``g_j = 1`` for every unit: plain, unguided L1 / L2 / group-lasso regularization.

    Examples
    --------
    >>> uniform()(2)
    tensor([1., 1.], dtype=torch.float64)
    """
    return _Uniform()


@dataclass(frozen=True)
class _Partial:
    fraction: float | None
    count: int | None
    position: str

    def n_protected(self, n_units: int) -> int:
        if self.count is not None:
            return min(self.count, n_units)
        assert self.fraction is not None
        return math.floor(n_units * self.fraction + 1e-9)

    def __call__(self, n_units: int) -> torch.Tensor:
        _check_n(n_units)
        k = self.n_protected(n_units)
        g = torch.ones(n_units, dtype=torch.float64)
        if k:
            if self.position == "last":
                g[n_units - k :] = 0.0
            else:
                g[:k] = 0.0
        return g

    def __repr__(self) -> str:
        amount = f"count={self.count}" if self.count is not None else f"fraction={self.fraction}"
        return f"partial({amount}, position={self.position!r})"


def partial(
    fraction: float | None = None, *, count: int | None = None, position: str = "last"
) -> Profile:
    """Partial regularization: coefficient 0 on protected units, 1 on the others.

    E & Gao (arXiv 2009.01395) penalise only part of each layer; by permutation
    invariance which part is free. Their public code penalises the first
    ``n - ⌊n/β⌋`` units with (sparse) group lasso and leaves the last ``⌊n/β⌋`` free,
    with β = 8, which is the default here (``fraction = 1/8``, ``position="last"``).

    A coefficient of 0 is an improper flat prior: fine for MAP training, but evidence
    computations need a proper prior for those units (see [`bayesguide.priors`][]).

    Parameters
    ----------
    fraction
        Protected share of each layer, in ``[0, 1)``; ``⌊n · fraction⌋`` units are
        protected. Default 1/8 when ``count`` is not given.
    count
        Protected number of units per layer (at most ``n``), instead of ``fraction``.
    position
        ``"last"`` (E & Gao) or ``"first"``: which end of the layer is protected.

    Examples
    --------
    >>> partial(count=1, position="first")(3)
    tensor([0., 1., 1.], dtype=torch.float64)
    """
    if fraction is not None and count is not None:
        raise ValueError("partial() takes fraction or count, not both")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"partial(count=...) must be a non-negative int, got {count!r}")
    else:
        fraction = 1.0 / 8.0 if fraction is None else fraction
        if not math.isfinite(fraction) or not 0.0 <= fraction < 1.0:
            raise ValueError(f"partial(fraction=...) must lie in [0, 1), got {fraction!r}")
    if position not in ("last", "first"):
        raise ValueError(f"partial(position=...) must be 'last' or 'first', got {position!r}")
    return _Partial(fraction, count, position)


@dataclass(frozen=True)
class _Custom:
    source: torch.Tensor | Callable[[int], torch.Tensor]

    def __call__(self, n_units: int) -> torch.Tensor:
        _check_n(n_units)
        raw = self.source(n_units) if callable(self.source) else self.source
        return torch.as_tensor(raw, dtype=torch.float64).detach().clone()

    def __repr__(self) -> str:
        return "custom(...)"


def custom(source: torch.Tensor | Callable[[int], torch.Tensor]) -> Profile:
    """Any coefficients: a fixed tensor (for one layer width) or a callable ``n -> (n,)``.

    The result is validated where it is used: finite, non-negative, length ``n``.

    Examples
    --------
    >>> custom(lambda n: torch.arange(n) ** 2)(3)
    tensor([0., 1., 4.], dtype=torch.float64)
    """
    if not callable(source):
        source = torch.as_tensor(source, dtype=torch.float64)
        if source.ndim != 1:
            raise ValueError(
                f"custom guidance tensor must be 1-D (one coefficient per unit), "
                f"got shape {tuple(source.shape)}"
            )
    return _Custom(source)


def validate_coefficients(g: torch.Tensor, n_units: int, where: str) -> torch.Tensor:
    """Check that ``g`` holds ``n_units`` finite, non-negative numbers; return it as float64.

    ``where`` names the layer in the error message.
    """
    g = torch.as_tensor(g, dtype=torch.float64)
    if g.ndim != 1 or g.shape[0] != n_units:
        raise ValueError(
            f"guidance for {where} has shape {tuple(g.shape)}, expected ({n_units},): "
            f"one coefficient per unit"
        )
    if not torch.isfinite(g).all():
        bad = int((~torch.isfinite(g)).nonzero()[0])
        raise ValueError(f"guidance for {where} has a non-finite coefficient at unit {bad}")
    if (g < 0).any():
        bad = int((g < 0).nonzero()[0])
        raise ValueError(
            f"guidance for {where} has a negative coefficient {float(g[bad])} at unit {bad}; "
            f"coefficients must be >= 0"
        )
    return g


def coefficients_for_layer(guidance: GuidanceSpec, layer: str, n_units: int) -> torch.Tensor:
    """Resolve a profile or a per-layer mapping to the validated coefficients of one layer."""
    profile: object
    if isinstance(guidance, Mapping):
        keyed = {str(k): v for k, v in guidance.items()}
        if layer in keyed:
            profile = keyed[layer]
        elif "*" in keyed:
            profile = keyed["*"]
        else:
            raise ValueError(
                f"guidance mapping has no entry for prunable layer {layer!r} and no '*' "
                f"default; keys given: {sorted(keyed)}"
            )
    else:
        profile = guidance
    if not callable(profile):
        raise TypeError(
            f"guidance for layer {layer!r} must be a profile (callable n -> tensor), "
            f"got {type(profile).__name__}; see bayesguide.guidance"
        )
    return validate_coefficients(profile(n_units), n_units, f"layer {layer!r}")


def adaptive_fitter(guidance: GuidanceSpec) -> str | None:
    """The fitter an *adaptive* profile names (its ``fitter`` attribute), or ``None``.

    Adaptive profiles ([`relevance`][bayesguide.guidance.relevance.relevance]) are re-estimated
    during training by the fitter they name; a mapping of profiles is adaptive when one
    of its profiles is (two different adaptive fitters are refused).

    Examples
    --------
    >>> import bayesguide as bg
    >>> adaptive_fitter(linear()) is None, adaptive_fitter({"*": bg.guidance.relevance()})
    (True, 'relevance')
    """
    profiles = list(guidance.values()) if isinstance(guidance, Mapping) else [guidance]
    names = {str(f) for f in (getattr(p, "fitter", None) for p in profiles) if f is not None}
    if len(names) > 1:
        raise ValueError(f"guidance mixes profiles re-estimated by different fitters: {sorted(names)}")
    return next(iter(names), None)
