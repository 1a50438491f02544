"""The prior's terms of the MAP objective from a network's own tensors: the training step's hot path.

[`PriorTerms`][bayesguide.model.penalty.PriorTerms] is set up once per fit around the
parameters being trained and then called at every step. It returns the penalty
``Σ_sites Σ_j rate_j s(θ_j)`` (an autograd graph into the parameters) and the priors'
log normaliser, so that ``−log p(θ) = penalty − log_normaliser``.

The work per step is the priors' own (one statistic and one product with the rates per
site, [`penalty_parts`][bayesguide.priors.base.UnitGroupDistribution.penalty_parts]);
what does not change between steps is resolved when it is set up:

* each site's prior (the model's cached distribution, so that in-place rate updates,
  [`set_rate`][bayesguide.priors.base.UnitGroupDistribution.set_rate], are seen);
* each site's column blocks when they are the parameter tensors themselves (a
  ``Linear`` weight and bias); blocks that are views (a ``Conv2d`` filter as
  ``(n, c·k·k)``) are taken again at every call, inside the step's graph;
* the sum of the log normalisers, recomputed only when a prior's normaliser has changed
  (``set_rate`` replaces it).

In a training step at batch 32 on the digits MLP, looking these up at every call cost
three per cent of the step (``benchmarks/map_overhead.py --interleaved``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from bayesguide.network import Site
from bayesguide.priors import UnitGroupDistribution

__all__ = ["PriorTerms"]


class PriorTerms:
    """``(penalty, log_normaliser)`` of the priors ``priors`` at the tensors ``params``, per call.

    Parameters
    ----------
    priors
        Every site with its prior, in the model's order
        ([`GuidedModel.site_priors`][bayesguide.model.guided.GuidedModel.site_priors]).
    params
        The network's named parameters (``dict(module.named_parameters())``); the
        tensors are read at every call, so in-place optimiser steps are seen.
    """

    def __init__(self, priors: list[tuple[Site, UnitGroupDistribution]],
                 params: Mapping[str, torch.Tensor]) -> None:
        self._params = params
        self._sites: list[tuple[Site, UnitGroupDistribution, list[torch.Tensor] | None]] = []
        for site, prior in priors:
            blocks = site.blocks(params)
            own = all(b is params[k] for b, k in zip(blocks, site.param_names))
            self._sites.append((site, prior, blocks if own else None))
        self._norms: list[torch.Tensor] = []
        self._log_norm: torch.Tensor | None = None

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The penalty (differentiable in the parameters) and the log normaliser (a constant)."""
        penalty: torch.Tensor | None = None
        for site, prior, blocks in self._sites:
            term = prior.penalty_parts(site.blocks(self._params) if blocks is None else blocks)
            penalty = term if penalty is None else penalty + term
        assert penalty is not None
        return penalty, self.log_normaliser()

    def log_normaliser(self) -> torch.Tensor:
        """``Σ_sites log_normaliser``, summed again only when a prior's has been replaced."""
        norms = [prior.log_normaliser for _, prior, _ in self._sites]
        if self._log_norm is None or any(a is not b for a, b in zip(norms, self._norms)):
            total = norms[0]
            for norm in norms[1:]:
                total = total + norm
            self._norms, self._log_norm = norms, total
        return self._log_norm
