"""Evidence-driven guidance: unit precisions learned by type-II maximum likelihood during training.

Immer, Bauer, Fortuin, Rätsch & Khan, "Scalable marginal likelihood estimation for model
selection in deep learning" (ICML 2021), with MacKay's automatic relevance determination
per unit (MacKay 1992/1995; Tipping 2001): every few MAP steps, the Gaussian prior
precision ``α_j`` of every hidden unit's weight group (and one per plain layer) is set to
maximise the Laplace evidence at the current weights, so the prior scale is never chosen
post hoc, and a unit the data do not need gets a precision that diverges — the evidence
itself prunes it.

The guidance profile does not disappear: it is a **hyperprior** on the precisions,
``p(α_j) ∝ α_j^{ν g_j}`` (a Gamma distribution with shape ``1 + ν g_j`` and rate → 0),
so that at equal evidence a unit the guidance calls expensive (large ``g_j``) gets the
larger precision and dies first. ``ν`` (``confidence``) is how much: with ``ν = 0`` the
update is MacKay's ARD, and the guidance only sets the starting precisions. The MAP-II
fixed point ([`bayesguide.infer.marglik`][]) is

$$
α_j \\leftarrow \\frac{γ_j + 2 ν g_j}{\\lVert θ_j \\rVert^2}, \\qquad
γ_j = p_j - α_j \\operatorname{tr}\\big[(H^{-1})_{jj}\\big],
$$

with ``γ_j`` the unit's effective number of well-determined parameters
([`bayesguide.curvature.effective`][], from the KFAC or the diagonal GGN).

This module holds only the settings: [`MarginalLikelihood`][bayesguide.guidance.marglik.MarginalLikelihood] is an
adaptive guidance
profile (it gives the starting coefficients, ``base(n)``) naming the fitter that
re-estimates it, ``fitter = "marglik"`` ([`bayesguide.fit_marglik`][]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from bayesguide.guidance.profiles import Profile, linear

__all__ = ["MarginalLikelihood", "marglik"]

_HESSIANS = ("kron", "diag")


@dataclass(frozen=True)
class MarginalLikelihood:
    """Settings of evidence-driven guidance; as a profile it gives the starting coefficients ``base(n)``.

    Attributes
    ----------
    base
        The guidance profile of the hyperprior (and of the starting precisions).
    every
        MAP steps between two type-II updates.
    burn_in
        MAP steps before the first update.
    confidence
        ``ν ≥ 0``: the hyperprior's weight, in pseudo-parameters per unit of guidance.
    hessian
        ``"kron"`` or ``"diag"``: the curvature of ``γ_j``.
    iterations
        Fixed-point iterations per update (the curvature is computed once per update).
    max_precision
        Precisions are capped here (a dead unit's ``α`` would otherwise overflow).
    """

    base: Profile
    every: int = 100
    burn_in: int = 100
    confidence: float = 1.0
    hessian: str = "kron"
    iterations: int = 3
    max_precision: float = 1e8

    fitter: ClassVar[str] = "marglik"
    """The registered fitter that re-estimates these coefficients during training."""

    def __call__(self, n_units: int) -> torch.Tensor:
        return self.base(n_units)

    def __repr__(self) -> str:
        return (f"marglik(base={self.base!r}, every={self.every}, burn_in={self.burn_in}, "
                f"confidence={self.confidence:g}, hessian={self.hessian!r})")


def marglik(
    base: Profile | None = None,
    *,
    every: int = 100,
    burn_in: int = 100,
    confidence: float = 1.0,
    hessian: str = "kron",
    iterations: int = 3,
    max_precision: float = 1e8,
) -> MarginalLikelihood:
    """Evidence-driven guidance (Immer et al. 2021; MacKay's ARD per unit), see the module docstring.

    Use it with [`GuidedNormal`][bayesguide.GuidedNormal] (a Gaussian prior whose precisions
    ``2 λ g_j`` are learned); [`bayesguide.fit_marglik`][] trains it.

    Parameters
    ----------
    base
        The guidance of the hyperprior; default ``linear()``.
    every
        MAP steps between two type-II updates (an int >= 1).
    burn_in
        MAP steps before the first type-II update (an int >= 1).
    confidence
        ``ν``, a finite number >= 0.
    hessian
        ``"kron"`` (default) or ``"diag"``.
    iterations
        Fixed-point iterations per update (an int >= 1).
    max_precision
        Cap of every precision (a finite number > 0).

    Examples
    --------
    >>> import bayesguide as bg
    >>> bg.guidance.marglik()(4)
    tensor([0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    """
    from_base = linear() if base is None else base
    for name, value in (("every", every), ("burn_in", burn_in), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if isinstance(confidence, bool) or not (isinstance(confidence, (int, float)) and math.isfinite(confidence)
                                            and confidence >= 0):
        raise ValueError(f"confidence must be a finite number >= 0, got {confidence!r}")
    if hessian not in _HESSIANS:
        raise ValueError(f"hessian must be one of {', '.join(_HESSIANS)}, got {hessian!r}")
    if isinstance(max_precision, bool) or not (isinstance(max_precision, (int, float))
                                               and math.isfinite(max_precision) and max_precision > 0):
        raise ValueError(f"max_precision must be a finite number > 0, got {max_precision!r}")
    if not callable(from_base):
        raise TypeError(f"base must be a guidance profile, got {type(from_base).__name__}")
    if getattr(from_base, "fitter", None) is not None:
        raise ValueError("base must be a fixed profile (linear, geometric, uniform, ...), not an adaptive one")
    return MarginalLikelihood(base=from_base, every=every, burn_in=burn_in, confidence=float(confidence),
                              hessian=hessian, iterations=iterations, max_precision=float(max_precision))
