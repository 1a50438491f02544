"""Guidance profiles: per-unit coefficients that decide which units are pushed out first.

A *guidance profile* is a small callable, ``profile(n_units) -> (n_units,)`` float64
coefficients ``g_j ≥ 0``; the coefficient multiplies the prior's strength for that
unit's weight group, so a large ``g_j`` is a unit that is a-priori expensive and dies
first. [`profiles`][bayesguide.guidance.profiles] holds the fixed profiles (``linear``,
``geometric``, ``uniform``, ``partial``, ``custom``) and the helpers that resolve a
profile to a layer's coefficients; [`relevance`][bayesguide.guidance.relevance] holds the
settings of the data-adaptive relevance guidance, [`marglik`][bayesguide.guidance.marglik] those
of evidence-driven guidance, and [`names`][bayesguide.guidance.names] the built-ins by name.

First layer of the data flow: it imports nothing from the rest of bayesguide.

Examples
--------
>>> import bayesguide as bg
>>> bg.guidance.linear()(4)
tensor([0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
"""

from __future__ import annotations

from bayesguide.guidance.marglik import MarginalLikelihood, marglik
from bayesguide.guidance.names import ProfileName, get
from bayesguide.guidance.profiles import (
    GuidanceSpec,
    Profile,
    adaptive_fitter,
    coefficients_for_layer,
    custom,
    geometric,
    linear,
    partial,
    uniform,
    validate_coefficients,
)
from bayesguide.guidance.relevance import Relevance, Scale, Sensitivity, relevance

__all__ = [
    "GuidanceSpec",
    "MarginalLikelihood",
    "Profile",
    "ProfileName",
    "Relevance",
    "Scale",
    "Sensitivity",
    "adaptive_fitter",
    "coefficients_for_layer",
    "custom",
    "geometric",
    "get",
    "linear",
    "marglik",
    "partial",
    "relevance",
    "uniform",
    "validate_coefficients",
]
