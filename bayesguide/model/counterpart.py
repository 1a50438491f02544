"""The model a MAP fit of a network uses when its own prior has no MAP.

A prior that is a density over the weights (``UnitPrior.has_density``: the Gaussian,
Laplace, group-lasso families) has a mode, and MAP training under it is what
[`bayesguide.fit_map`][] does. Two priors have none: the hard-concrete L0 gates (a
distribution over gates, not weights) and the group horseshoe (its joint density is
unbounded as a unit's scale goes to 0). Where bayesguide needs MAP steps on such a
model's network — re-fitting a pruned candidate before its Laplace evidence
([`bayesguide.pruning.tuning`][]), the MAP warm start of an SVI fit
([`bayesguide.fit_svi`][], ``warm_start``) — it uses the Gaussian prior their Laplace
evidence is computed under, ``GuidedNormal(prior.strength, uniform())``: the horseshoe's
``strength`` is already the rate of its plain prior on the non-prunable parameters.
"""

from __future__ import annotations

from torch import nn

from bayesguide.guidance import uniform
from bayesguide.model.guided import GuidedModel
from bayesguide.priors import GuidedNormal

__all__ = ["map_model"]


def map_model(model: GuidedModel, net: nn.Module | None = None) -> GuidedModel:
    """The model MAP steps on ``model``'s network are taken under.

    ``model`` itself when its prior is a density over the weights; otherwise a model of
    ``net`` (default ``model.net``) with ``GuidedNormal(model.prior.strength, uniform())``
    and ``model``'s likelihood and noise.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> hs = bg.GuidedModel(net, bg.GroupHorseshoe(strength=2.0, tau0=0.1), "gaussian", noise=0.5)
    >>> map_model(hs).prior
    GuidedNormal(strength=2.0, guidance=uniform())
    >>> lasso = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0), "gaussian", noise=0.5)
    >>> map_model(lasso) is lasso
    True
    """
    if model.prior.has_density:
        return model
    return GuidedModel(model.net if net is None else net, GuidedNormal(model.prior.strength, uniform()),
                       model.likelihood, noise=model.noise)
