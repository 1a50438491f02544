"""Fine-tuning a candidate: MAP steps re-fitting a pruned network from its pruned weights.

A network cut from a larger fit is not at a mode of its own posterior, and the Laplace
evidence is an expansion around one; so candidates are usually re-fitted for a few
hundred MAP steps first. [`tuning_model`][bayesguide.pruning.tuning.tuning_model] is the model a candidate is fine-tuned
under — its own prior when that prior is a density over the weights
(``UnitPrior.has_density``), otherwise (L0 gates, the group horseshoe) the Gaussian prior
their Laplace evidence uses, ``GuidedNormal(λ, uniform())``. [`fine_tune_fit`][bayesguide.pruning.tuning.fine_tune_fit]
runs
the steps; [`bayesguide.pruning.with_tuning`][] attaches the result to the candidate.
"""

from __future__ import annotations

import dataclasses

from typing_extensions import Unpack

from bayesguide.infer import FitResult, OptimSettings, fit_map
from bayesguide.infer.settings import OptimOptions
from bayesguide.model import ArrayLike, GuidedModel, map_model
from bayesguide.posterior import Fitted

__all__ = ["DEFAULTS", "fine_tune_fit", "tuning_model"]

DEFAULTS = OptimSettings(steps=200, lr=1e-3, progress=False)
"""The defaults of fine-tuning: 200 steps at lr 1e-3, seed 0, no progress bar."""


def tuning_model(cand: Fitted) -> GuidedModel:
    """The model a candidate is fine-tuned under by MAP.

    The candidate's own, except for priors without a MAP fit (L0 gates, the group
    horseshoe): for those ``GuidedNormal(strength, uniform())``, the Gaussian prior
    their Laplace evidence uses ([`bayesguide.model.counterpart.map_model`][]).

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> fit = bg.fit_l0(bg.GuidedModel(net, bg.HardConcreteGates(2.0), "gaussian", noise=0.5), X, y,
    ...                 steps=3, progress=False)
    >>> cand = bg.prune(fit, keep=2)
    >>> tuning_model(cand).prior
    GuidedNormal(strength=2.0, guidance=uniform())
    >>> fine_tune_fit(cand, X, y, steps=3).model is cand.model  # re-fitted, still carrying its own prior
    True
    """
    return map_model(cand.model, cand.module)


def fine_tune_fit(cand: Fitted, X: ArrayLike, y: ArrayLike, optim: OptimSettings | None = None,
                  **options: Unpack[OptimOptions]) -> FitResult:
    """MAP steps re-fitting ``cand`` from its pruned weights, under `tuning_model`.

    ``optim`` / ``options`` are the [`OptimSettings`][bayesguide.OptimSettings] of the steps
    (default `DEFAULTS`: 200 steps, lr 1e-3, seed 0, no progress bar), including
    ``device``: where the steps run (default: where ``cand.module`` is; the result comes
    back on the CPU, see [`bayesguide.fit_map`][]). The result
    carries the candidate's own model (so the evidence still knows which prior the
    candidate came from and which Gaussian it is scored under).
    """
    settings = OptimSettings.resolve(optim, DEFAULTS, "fine_tune_fit", dict(options))
    model = tuning_model(cand)
    if model.net is not cand.module:  # fine-tuned before: go on from the current weights
        model = model.with_network(cand.module)
    tuned = fit_map(model, X, y, settings)
    return dataclasses.replace(tuned, model=cand.model)
