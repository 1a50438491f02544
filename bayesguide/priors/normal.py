"""Guided L2: the Gaussian unit prior (``kind = "l2"``).

Every weight of unit ``j`` is ``Normal(0, 1/√(2 λ g_j))``, precision ``2 λ g_j``:

``log p(Θ) = Σ_j [ (p/2) log(λ g_j / π) − λ g_j ‖θ_j‖₂² ]``,

so MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₂²`` (guided weight
decay; Rafid & Sandu, arXiv 2305.18448). It is its own Gaussian counterpart: the Laplace
evidence is defined for it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, sum_of_squares
from bayesguide.priors.registry import PriorFamily, register_prior

__all__ = ["GuidedNormal", "UnitNormal"]


class UnitNormal(UnitGroupDistribution):
    """Guided L2: every element of unit ``j`` is ``Normal(0, 1/√(2 λ g_j))``.

    ``log_prob = Σ_j [ (p/2) log(λ g_j / π) − λ g_j ‖θ_j‖₂² ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.group_size * torch.log(rate / math.pi)

    vector_blocks = True

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return sum_of_squares(parts)

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        std = (2.0 * self.rate).rsqrt().unsqueeze(-1)
        eps = torch.randn(shape + self.event_shape, dtype=self.rate.dtype, device=self.rate.device)
        return eps * std


@dataclass(frozen=True)
class GuidedNormal(UnitPrior):
    """Guided L2 prior: ``Normal(0, 1/√(2 λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₂²``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedNormal(strength=1e-3, guidance=bg.guidance.linear())
    """

    kind = "l2"
    penalty = "λ Σ g_j ‖θ_j‖₂²"

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitNormal(rate, group_size)

    def gaussian_counterpart(self) -> UnitPrior:
        """Itself: the evidence uses this prior as it is."""
        return self


register_prior(PriorFamily("l2", GuidedNormal, "GuidedNormal: guided L2, λ Σ g_j ‖θ_j‖₂²"))
