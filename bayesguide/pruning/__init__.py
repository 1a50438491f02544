"""Structured pruning: physically smaller networks and nested pruning paths.

Scores ([`scores`][bayesguide.pruning.scores]) say how much every unit matters, decisions
([`decisions`][bayesguide.pruning.decisions]) which units to keep, surgery
([`surgery`][bayesguide.pruning.surgery], on the chain analysed by
[`structure`][bayesguide.pruning.structure]) cuts a new, smaller dense network with the
removed units' constant outputs folded exactly into the next layer, and
[`transfer`][bayesguide.pruning.transfer] carries the prior and the SVI posterior over.
[`prune`][bayesguide.prune] does all of it for one rule ([`candidate`][bayesguide.pruning.candidate]);
[`pruning_path`][bayesguide.pruning_path] gives nested candidates for model comparison
([`path`][bayesguide.pruning.path]), [`tuning`][bayesguide.pruning.tuning] re-fits them, and
[`relevance_pruning`][bayesguide.relevance_pruning] is the iterative loop of Bonetta et al.
([`relevance`][bayesguide.pruning.relevance]).

Layer: above [`bayesguide.infer`][], below the evidence ([`bayesguide.marglik`][]).
"""

from __future__ import annotations

from bayesguide.pruning.candidate import Candidate, prune, with_tuning
from bayesguide.pruning.convergence import Convergence, check_convergence
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
from bayesguide.pruning.path import pruning_path, removal_order
from bayesguide.pruning.relevance import relevance_pruning
from bayesguide.pruning.scores import (
    Direction,
    GroupNorm,
    GuidanceOrder,
    HorseshoeScale,
    InclusionProbability,
    ScoreName,
    SignalToNoise,
    UnitScore,
    make_score,
)
from bayesguide.pruning.structure import UnsupportedStructureError
from bayesguide.pruning.surgery import SurgeryPlan, shrink
from bayesguide.pruning.tuning import fine_tune_fit, tuning_model

__all__ = [
    "Budget",
    "BudgetUnit",
    "Candidate",
    "Context",
    "Convergence",
    "Decision",
    "Direction",
    "GroupNorm",
    "GuidanceOrder",
    "HorseshoeScale",
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
    "check_convergence",
    "fine_tune_fit",
    "make_score",
    "prune",
    "pruning_path",
    "relevance_pruning",
    "removal_order",
    "shrink",
    "tuning_model",
    "with_tuning",
]
