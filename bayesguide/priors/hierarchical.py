"""Hierarchical unit priors: ``p(Θ, z) = p(z) p(Θ | z)`` with latent scale variables.

The contract behind the group horseshoe ([`bayesguide.priors.horseshoe`][]):
[`HierarchicalUnitPrior`][bayesguide.priors.hierarchical.HierarchicalUnitPrior] gives the priors of its latent variables
for one layer
(``latent_priors``) and the conditional unit distribution given their values
(``unit_distribution_given``); [`GuidedModel`][bayesguide.GuidedModel] samples the latent
sites ([`LatentSite`][bayesguide.priors.hierarchical.LatentSite]) before the unit matrix, and the SVI guides add a
log-normal factor per latent element. The marginal density over the weights alone is
not available, so such a prior has no MAP fit and no Gaussian counterpart.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pyro.distributions as dist
import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior

__all__ = ["HierarchicalUnitPrior", "LatentSite"]


@dataclass(frozen=True)
class LatentSite:
    """A latent scale variable of a hierarchical unit prior.

    ``name`` is the Pyro site name (``"<weight site>.<local>"``), ``local`` the key the
    prior uses for it, ``site`` the weight site it belongs to, ``prior`` its prior (a
    Pyro distribution whose event shape is ``shape``, positive support).
    """

    name: str
    local: str
    site: str
    prior: dist.TorchDistribution
    shape: tuple[int, ...]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value)`` summed over the event."""
        return self.prior.log_prob(value)


@dataclass(frozen=True)
class HierarchicalUnitPrior(UnitPrior):
    """A unit prior with latent variables: ``p(Θ, z) = p(z) p(Θ | z)``.

    Contract: `latent_priors` takes a layer's coefficients ``g`` (shape ``(n,)``)
    and returns ``{local name: prior distribution}`` (Pyro distributions with their
    event shape set); `unit_distribution_given` takes ``{local name: value}``,
    ``g`` and the group size ``p`` and returns the conditional
    [`UnitGroupDistribution`][bayesguide.priors.base.UnitGroupDistribution] of the ``(n, p)`` unit matrix.
    The marginal `unit_distribution` is not available.
    """

    has_density: ClassVar[bool] = False

    @abstractmethod
    def latent_priors(self, g: torch.Tensor) -> dict[str, dist.TorchDistribution]: ...

    @abstractmethod
    def unit_distribution_given(
        self, latents: Mapping[str, torch.Tensor], g: torch.Tensor, group_size: int
    ) -> UnitGroupDistribution: ...

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        raise ValueError(
            f"{type(self).__name__} has no closed-form density over the weights alone: it is "
            f"conditional on latent scales; fit it with bg.fit_svi"
        )
