"""bayesguide: Bayesian model selection of neural-network architectures with guided priors.

>>> import bayesguide as bg
>>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())

The package is lazy (PEP 562): ``import bayesguide`` loads no submodule, and each public
name (and each submodule: ``bg.pruning``) is imported on first use, so the ``bayesguide`` command starts
without torch (``bayesguide --help``) and a script pays only for what it touches.
``__all__`` lists every name; ``dir(bayesguide)`` shows them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` imports on first use
    from bayesguide import datasets, guidance, pipeline, sklearn
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
    from bayesguide.model.batches import Batches, stream_metric
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

_WHERE: dict[str, str] = {
    "Batches": "bayesguide.model.batches",
    "Candidate": "bayesguide.pruning",
    "Comparison": "bayesguide.comparison",
    "DeltaGuide": "bayesguide.posterior",
    "Evidence": "bayesguide.marglik",
    "FitResult": "bayesguide.infer",
    "GroupHorseshoe": "bayesguide.priors",
    "GuidedGroupLasso": "bayesguide.priors",
    "GuidedLaplace": "bayesguide.priors",
    "GuidedModel": "bayesguide.model",
    "GuidedNormal": "bayesguide.priors",
    "GuidedSparseGroupLasso": "bayesguide.priors",
    "HardConcreteGates": "bayesguide.priors",
    "HorseshoeScale": "bayesguide.pruning",
    "L0Gates": "bayesguide.infer",
    "Likelihood": "bayesguide.likelihoods",
    "LowRankGuide": "bayesguide.posterior",
    "MeanFieldGuide": "bayesguide.posterior",
    "NonFiniteLossError": "bayesguide.infer",
    "OptimSettings": "bayesguide.infer",
    "Selection": "bayesguide.pipeline",
    "SweepResults": "bayesguide.sweeps",
    "UnitPrior": "bayesguide.priors",
    "compare": "bayesguide.comparison",
    "datasets": "bayesguide.datasets",
    "evidence": "bayesguide.marglik",
    "fit_l0": "bayesguide.infer",
    "fit_map": "bayesguide.infer",
    "fit_marglik": "bayesguide.infer",
    "fit_relevance": "bayesguide.infer",
    "fit_svi": "bayesguide.infer",
    "guidance": "bayesguide.guidance",
    "l0_gates": "bayesguide.infer",
    "make_prior": "bayesguide.priors",
    "pipeline": "bayesguide.pipeline",
    "prune": "bayesguide.pruning",
    "pruning_path": "bayesguide.pruning",
    "relevance_pruning": "bayesguide.pruning",
    "resume_fit": "bayesguide.infer",
    "select_architecture": "bayesguide.pipeline",
    "sklearn": "bayesguide.sklearn",
    "stream_metric": "bayesguide.model.batches",
    "strength_from_mean_loss": "bayesguide.priors",
    "sweep": "bayesguide.sweeps",
    "write_report": "bayesguide.report",
}
"""Each public name → the module that defines it (a submodule's own name → that submodule)."""


__all__ = [
    "Batches",
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
    "sklearn",
    "stream_metric",
    "strength_from_mean_loss",
    "sweep",
    "write_report",
]


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt `bg.` name is still an error there

    def __getattr__(name: str) -> Any:
        """A public name, imported from its submodule on first use (then cached here).

        Any other submodule is an attribute too (``bg.pruning.make_score``), as it was when
        the package imported everything at once.
        """
        where = _WHERE.get(name)
        if where is None and not name.startswith("__") and importlib.util.find_spec(f"bayesguide.{name}"):
            where = f"bayesguide.{name}"
        if where is None:
            raise AttributeError(f"module 'bayesguide' has no attribute {name!r}")
        module = importlib.import_module(where)
        value = module if where == f"bayesguide.{name}" else getattr(module, name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The public names (`__all__`), the module's dunders and the submodules imported so far."""
    loaded = {name for name, value in globals().items()
              if getattr(value, "__name__", None) == f"bayesguide.{name}"}
    return sorted({*__all__, *loaded, *(name for name in globals() if name.startswith("__"))})
