"""bayesguide: Bayesian model selection of neural-network architectures with guided priors.

>>> import bayesguide as bg
>>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())
"""

from __future__ import annotations

from bayesguide import datasets, guidance, pipeline
from bayesguide.comparison import Comparison, compare
from bayesguide.infer import (
    FitResult,
    L0Gates,
    NonFiniteLossError,
    OptimSettings,
    fit_l0,
    fit_map,
    fit_marglik,
    fit_relevance,
    fit_svi,
    l0_gates,
    resume_fit,
)
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik import Evidence, evidence
from bayesguide.model import GuidedModel
from bayesguide.pipeline import Selection, select_architecture
from bayesguide.posterior import DeltaGuide, LowRankGuide, MeanFieldGuide
from bayesguide.priors import (
    GroupHorseshoe,
    GuidedGroupLasso,
    GuidedLaplace,
    GuidedNormal,
    GuidedSparseGroupLasso,
    HardConcreteGates,
    UnitPrior,
    make_prior,
    strength_from_mean_loss,
)
from bayesguide.pruning import Candidate, HorseshoeScale, prune, pruning_path, relevance_pruning
from bayesguide.report import write_report
from bayesguide.sweeps import SweepResults, sweep

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
    "OptimSettings",
    "Selection",
    "SweepResults",
    "UnitPrior",
    "__version__",
    "compare",
    "datasets",
    "evidence",
    "fit_l0",
    "fit_map",
    "fit_marglik",
    "fit_relevance",
    "fit_svi",
    "guidance",
    "l0_gates",
    "make_prior",
    "pipeline",
    "prune",
    "pruning_path",
    "relevance_pruning",
    "resume_fit",
    "select_architecture",
    "strength_from_mean_loss",
    "sweep",
    "write_report",
]
