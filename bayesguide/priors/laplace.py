"""Guided L1: the Laplace unit prior (``kind = "l1"``).

Every weight of unit ``j`` is ``Laplace(0, 1/(λ g_j))``:

``log p(Θ) = Σ_j [ p log(λ g_j / 2) − λ g_j ‖θ_j‖₁ ]``,

so MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₁`` (Rafid & Sandu,
arXiv 2305.18448). Its candidates are scored under the Gaussian counterpart
``GuidedNormal(λ, g)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, sum_of_abs
from bayesguide.priors.registry import PriorFamily, make_prior, register_prior

__all__ = ["GuidedLaplace", "UnitLaplace"]


class UnitLaplace(UnitGroupDistribution):
    """Guided L1: every element of unit ``j`` is ``Laplace(0, 1/(λ g_j))``.

    ``log_prob = Σ_j [ p log(λ g_j / 2) − λ g_j ‖θ_j‖₁ ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return self.group_size * torch.log(rate / 2.0)

    vector_blocks = True

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return sum_of_abs(parts)

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        scale = self.rate.reciprocal().unsqueeze(-1).expand(self.event_shape)
        return torch.distributions.Laplace(torch.zeros_like(scale), scale).sample(shape)


@dataclass(frozen=True)
class GuidedLaplace(UnitPrior):
    """Guided L1 prior: ``Laplace(0, 1/(λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₁``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())
    """

    kind = "l1"
    penalty = "λ Σ g_j ‖θ_j‖₁"

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitLaplace(rate, group_size)

    def gaussian_counterpart(self) -> UnitPrior:
        """``GuidedNormal`` (kind ``"l2"``) with the same ``λ`` and guidance."""
        return make_prior("l2", self.strength, self.guidance)


register_prior(PriorFamily("l1", GuidedLaplace, "GuidedLaplace: guided L1, λ Σ g_j ‖θ_j‖₁"))
