"""bayesguide: Bayesian model selection of neural-network architectures with guided priors.

>>> import bayesguide as bg
>>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())
"""

from __future__ import annotations

from bayesguide import datasets, guidance
from bayesguide.comparison import Comparison, compare
from bayesguide.horseshoe import GroupHorseshoe, HorseshoeScale
from bayesguide.infer import (
    DeltaGuide,
    FitResult,
    LowRankGuide,
    MeanFieldGuide,
    NonFiniteLossError,
    fit_map,
    fit_svi,
)
from bayesguide.l0 import HardConcreteGates, L0Gates, fit_l0
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik import Evidence, evidence
from bayesguide.model import GuidedModel
from bayesguide.priors import (
    GuidedGroupLasso,
    GuidedLaplace,
    GuidedNormal,
    GuidedSparseGroupLasso,
    UnitPrior,
    make_prior,
    strength_from_mean_loss,
)
from bayesguide.pruning import Candidate, prune, pruning_path
from bayesguide.relevance import fit_relevance, relevance_pruning
from bayesguide.report import write_report

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "Comparison",
    "DeltaGuide",
    "Evidence",
    "FitResult",
    "GroupHorseshoe",
    "GuidedGroupLasso",
    "GuidedLaplace",
    "GuidedModel",
    "GuidedNormal",
    "GuidedSparseGroupLasso",
    "HardConcreteGates",
    "HorseshoeScale",
    "L0Gates",
    "Likelihood",
    "LowRankGuide",
    "MeanFieldGuide",
    "NonFiniteLossError",
    "UnitPrior",
    "__version__",
    "compare",
    "datasets",
    "evidence",
    "fit_l0",
    "fit_map",
    "fit_relevance",
    "fit_svi",
    "guidance",
    "make_prior",
    "prune",
    "pruning_path",
    "relevance_pruning",
    "strength_from_mean_loss",
    "write_report",
]
