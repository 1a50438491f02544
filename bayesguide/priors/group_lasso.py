"""Guided group lasso: the group-Laplace unit prior (``kind = "group"``).

Unit ``j`` has density ``c(α_j) exp(−α_j ‖θ_j‖₂)`` on ``R^p`` with ``α_j = λ g_j √p``,
so MAP training is training on ``sum NLL + λ Σ_j g_j √p ‖θ_j‖₂`` (Yuan & Lin 2006 for
the ``√p`` group-size factor; with guidance, Rafid & Sandu, arXiv 2305.18448; with
``partial`` guidance, E & Gao, arXiv 2009.01395). The normaliser is exact:
``log c(α) = p log α + log Γ(p/2) − log 2 − (p/2) log π − log Γ(p)``. Its candidates are
scored under the Gaussian counterpart ``GuidedNormal(λ, g)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, group_norm
from bayesguide.priors.registry import PriorFamily, make_prior, register_prior

__all__ = ["GuidedGroupLasso", "UnitGroupLaplace"]


class UnitGroupLaplace(UnitGroupDistribution):
    """Guided group lasso: unit ``j`` has density ``c(α_j) exp(−α_j ‖θ_j‖₂)`` on ``R^p``.

    Here ``rate`` is ``α_j = λ g_j √p`` (the √p group-size factor is applied by
    [`GuidedGroupLasso`][bayesguide.GuidedGroupLasso]). The normaliser is exact: integrating in spherical
    coordinates, ``∫ exp(−α‖θ‖) dθ = (2 π^{p/2} / Γ(p/2)) Γ(p) / α^p``, hence
    ``log c(α) = p log α + log Γ(p/2) − log 2 − (p/2) log π − log Γ(p)``.
    Sampling draws a uniform direction and a ``Gamma(p, α)`` radius.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        p = self.group_size
        const = math.lgamma(p / 2) - math.log(2.0) - 0.5 * p * math.log(math.pi) - math.lgamma(p)
        return p * torch.log(rate) + const

    vector_blocks = True

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return group_norm(parts)

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        n, p = self.event_shape
        direction = torch.randn(shape + self.event_shape, dtype=self.rate.dtype)
        direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        conc = torch.full((n,), float(p), dtype=self.rate.dtype)
        radius = torch.distributions.Gamma(conc, self.rate).sample(shape)
        return direction * radius.unsqueeze(-1)


@dataclass(frozen=True)
class GuidedGroupLasso(UnitPrior):
    """Guided group-lasso prior: density ``∝ exp(−λ g_j √p ‖θ_j‖₂)`` per unit group.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j √p ‖θ_j‖₂``; the
    normalising constant is exact (see [`UnitGroupLaplace`][bayesguide.priors.group_lasso.UnitGroupLaplace]).

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedGroupLasso(strength=1e-2, guidance=bg.guidance.partial())
    """

    kind = "group"
    penalty = "λ Σ g_j √p ‖θ_j‖₂"

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitGroupLaplace(rate * math.sqrt(group_size), group_size)

    def gaussian_counterpart(self) -> UnitPrior:
        """``GuidedNormal`` (kind ``"l2"``) with the same ``λ`` and guidance."""
        return make_prior("l2", self.strength, self.guidance)


register_prior(PriorFamily("group", GuidedGroupLasso, "GuidedGroupLasso: guided group lasso, λ Σ g_j √p ‖θ_j‖₂"))
