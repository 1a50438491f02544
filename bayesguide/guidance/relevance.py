"""Relevance guidance: coefficients re-estimated from loss sensitivity (empirical Bayes).

Bonetta, Ribero & Cancelliere, "Regularization-based pruning of irrelevant weights in
deep neural architectures", arXiv 2204.04977 (2022; Applied Intelligence 2023), in the
loss-sensitivity family of LOBSTER (Tartaglione et al. 2020/2022): a weight-decay-like
term shrinks only the parameters the loss is insensitive to. As guidance, unit ``j`` of a
layer gets

``g_j = ReLU(1 − s_j / scale)``,

with ``s_j`` the unit's loss sensitivity (``"gradient"``: ``‖∂L/∂θ_j‖₂``; ``"taylor"``:
``Σ |w ∂L/∂w|`` over the unit's group) and ``scale`` the layer's largest ``s``
(``"max"``), a quantile (``"quantile"``) or the mean (``"mean"``).

This module holds only the *settings*: [`Relevance`][bayesguide.guidance.relevance.Relevance] is a guidance profile (it
gives the starting coefficients) that names the fitter which re-estimates it during
training, ``fitter = "relevance"`` ([`bayesguide.fit_relevance`][], in
[`bayesguide.infer.relevance`][], where the sensitivity is computed). A profile with a
``fitter`` attribute is *adaptive*: the experiment runner and
[`bayesguide.infer.fitter_for`][] pick that fitter for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from bayesguide._options import Option

__all__ = ["Relevance", "Scale", "Sensitivity", "relevance"]


class Sensitivity(Option):
    """How a unit's loss sensitivity ``s_j`` is measured."""

    GRADIENT = "gradient", "s_j = ‖∂L/∂θ_j‖₂ (LOBSTER's |∂L/∂w| over the unit's group)"
    TAYLOR = "taylor", "s_j = Σ |w ∂L/∂w| over the unit's group (first-order loss change)"


class Scale(Option):
    """What ``s_j`` is divided by in ``g_j = ReLU(1 − s_j / scale)``, per layer."""

    MAX = "max", "largest s of the layer: the most sensitive unit gets g = 0"
    QUANTILE = "quantile", "the q-quantile of s over the layer: units above it get g = 0"
    MEAN = "mean", "mean s of the layer"


@dataclass(frozen=True)
class Relevance:
    """Settings of the relevance guidance; as a profile it gives the starting coefficients.

    ``profile(n) = initial · 1``: the coefficients a [`GuidedModel`][bayesguide.GuidedModel]
    starts with. [`bayesguide.fit_relevance`][] replaces them by the estimate
    ``ReLU(1 − s / scale)`` before the first step and every ``every`` steps.
    """

    every: int = 10
    scale: Scale = Scale.MAX
    quantile: float = 0.9
    sensitivity: Sensitivity = Sensitivity.GRADIENT
    initial: float = 1.0

    fitter: ClassVar[str] = "relevance"
    """The registered fitter that re-estimates these coefficients during training."""

    def __call__(self, n_units: int) -> torch.Tensor:
        if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
            raise ValueError(f"a layer needs at least one unit, got n_units={n_units!r}")
        return torch.full((n_units,), self.initial, dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"relevance(every={self.every}, scale={self.scale.value!r}, "
                f"sensitivity={self.sensitivity.value!r})")


def relevance(
    every: int = 10,
    *,
    scale: str | Scale = "max",
    quantile: float = 0.9,
    sensitivity: str | Sensitivity = "gradient",
    initial: float = 1.0,
) -> Relevance:
    """Relevance-driven (empirical-Bayes) guidance of Bonetta et al., arXiv 2204.04977.

    ``g_j = ReLU(1 − s_j / scale)`` with ``s_j`` the unit's loss sensitivity,
    re-estimated every ``every`` steps of [`bayesguide.fit_relevance`][]; see
    [`bayesguide.infer.relevance`][] for the math and the Bayesian reading. Use it with
    [`GuidedNormal`][bayesguide.GuidedNormal] (guided L2 = the paper's selective weight decay).

    Parameters
    ----------
    every
        Steps between two estimates (>= 1).
    scale
        ``"max"``, ``"quantile"`` (the ``quantile`` of ``s`` over the layer) or ``"mean"``.
    quantile
        For ``scale="quantile"``, in ``(0, 1]``.
    sensitivity
        ``"gradient"`` (``‖∂L/∂θ_j‖₂``) or ``"taylor"`` (``Σ |w ∂L/∂w|``).
    initial
        Coefficient of every unit before the first estimate (only seen at construction).

    Examples
    --------
    >>> relevance(every=5)(3)
    tensor([1., 1., 1.], dtype=torch.float64)
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1 (steps between estimates), got {every!r}")
    if not (isinstance(quantile, (int, float)) and 0.0 < quantile <= 1.0):
        raise ValueError(f"quantile must lie in (0, 1], got {quantile!r}")
    if not (isinstance(initial, (int, float)) and math.isfinite(initial) and initial >= 0):
        raise ValueError(f"initial must be a finite number >= 0, got {initial!r}")
    return Relevance(
        every=every,
        scale=Scale.resolve(scale, "relevance scale"),
        quantile=float(quantile),
        sensitivity=Sensitivity.resolve(sensitivity, "relevance sensitivity"),
        initial=float(initial),
    )
