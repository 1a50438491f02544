"""Structured pruning: physically smaller networks and nested pruning paths.

Scores (:mod:`~bayesguide.pruning.scores`) say how much every unit matters, decisions
(:mod:`~bayesguide.pruning.decisions`) which units to keep, surgery
(:mod:`~bayesguide.pruning.surgery`) cuts a new, smaller dense network with the removed
units' constant outputs folded exactly into the next layer, and
:mod:`~bayesguide.pruning.posterior` carries the prior and the SVI posterior over.
:func:`prune` does all of it for one rule; :func:`pruning_path` gives nested
candidates for model comparison.
"""

from __future__ import annotations

from bayesguide.pruning._structure import UnsupportedStructureError
from bayesguide.pruning.candidate import Candidate, prune
from bayesguide.pruning.decisions import (
    Budget,
    BudgetUnit,
    Context,
    Decision,
    KeepK,
    Prefix,
    PruningWarning,
    Relative,
    RuleName,
    Threshold,
)
from bayesguide.pruning.path import pruning_path
from bayesguide.pruning.scores import (
    Direction,
    GroupNorm,
    GuidanceOrder,
    InclusionProbability,
    ScoreName,
    SignalToNoise,
    UnitScore,
    make_score,
)
from bayesguide.pruning.surgery import SurgeryPlan, shrink

__all__ = [
    "Budget",
    "BudgetUnit",
    "Candidate",
    "Context",
    "Decision",
    "Direction",
    "GroupNorm",
    "GuidanceOrder",
    "InclusionProbability",
    "KeepK",
    "Prefix",
    "PruningWarning",
    "Relative",
    "RuleName",
    "ScoreName",
    "SignalToNoise",
    "SurgeryPlan",
    "Threshold",
    "UnitScore",
    "UnsupportedStructureError",
    "make_score",
    "prune",
    "pruning_path",
    "shrink",
]
