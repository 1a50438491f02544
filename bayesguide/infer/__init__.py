"""Inference: MAP (guided regularization) and SVI fits of a ``GuidedModel``."""

from __future__ import annotations

from bayesguide.infer.guides import DeltaGuide, Guide, GuideKind, LowRankGuide, MeanFieldGuide
from bayesguide.infer.loop import NonFiniteLossError, Schedule
from bayesguide.infer.map import Engine, fit_map
from bayesguide.infer.result import FitResult
from bayesguide.infer.svi import fit_svi

__all__ = [
    "DeltaGuide",
    "Engine",
    "FitResult",
    "Guide",
    "GuideKind",
    "LowRankGuide",
    "MeanFieldGuide",
    "NonFiniteLossError",
    "Schedule",
    "fit_map",
    "fit_svi",
]
