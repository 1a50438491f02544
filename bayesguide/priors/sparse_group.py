"""Guided sparse group lasso (``kind = "sparse_group"``): group norm plus L1 per unit.

Penalty ``λ Σ_j g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]`` — the sparse group lasso of Simon,
Friedman, Hastie & Tibshirani (2013) with guidance, which E & Gao (arXiv 2009.01395)
use with partial guidance. Its normaliser is a 1-D quadrature
([`bayesguide.priors.sparse_group_math`][]). Experiment key: ``alpha``, the L1 share
(0: group lasso, 1: L1). Candidates are scored under the Gaussian counterpart
``GuidedNormal(λ, g)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, group_norm, sum_of_abs
from bayesguide.priors.group_lasso import UnitGroupLaplace
from bayesguide.priors.laplace import UnitLaplace
from bayesguide.priors.registry import PriorFamily, PriorOption, make_prior, register_prior
from bayesguide.priors.sparse_group_math import (
    quadrature_grid,
    sample_exp_gauss,
    sample_log_linear,
    sparse_group_log_integral,
)

__all__ = ["GuidedSparseGroupLasso", "UnitSparseGroupLaplace", "check_alpha"]


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, (bool, str)) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    value = float(alpha)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"alpha must lie in [0, 1] (0: group lasso, 1: L1, in between: sparse group lasso), got {alpha!r}"
        )
    return value


class UnitSparseGroupLaplace(UnitGroupDistribution):
    """Guided sparse group lasso: unit ``j`` has density ``c_j exp(−rate_j s(θ_j))`` on ``R^p``,

    ``s(θ) = (1−α) √p ‖θ‖₂ + α ‖θ‖₁``, i.e. ``a_j = rate_j (1−α) √p`` on the group norm and
    ``b_j = rate_j α`` on the L1 norm (``rate_j = λ g_j``). ``α = 0`` is
    [`UnitGroupLaplace`][bayesguide.priors.group_lasso.UnitGroupLaplace] with rate ``λ g_j √p``, ``α = 1``
    is [`UnitLaplace`][bayesguide.priors.laplace.UnitLaplace].

    Normaliser: ``log c_j = −log Z(a_j, b_j)``
    ([`sparse_group_log_integral`][bayesguide.priors.sparse_group_math.sparse_group_log_integral]); ``a_j``
    and ``b_j`` share the ratio ``(1−α)√p / α``, so ``log Z(a_j, b_j) = −p log(rate_j σ) +
    log Z(A, B)`` with ``σ = (1−α)√p + α``, ``(A, B) = ((1−α)√p, α) / σ``: one quadrature per
    layer, cached.

    Sampling uses the same Lévy mixture: ``t`` from its marginal density
    ``∝ a/(2√π) t^{−3/2} e^{−a²/4t} [√(π/t) erfcx(b/2√t)]^p`` (inverse CDF on the quadrature
    grid, log-linear between nodes, so accurate to the grid's resolution rather than
    exact), then each coordinate independently from ``∝ exp(−t x² − b|x|)`` by exact
    rejection: |x| from an ``Exponential(b)`` proposal accepted with ``exp(−t x²)`` when
    ``b / 2√t ≥ 1/√π``, otherwise from a half-normal ``|N(0, 1/2t)|`` proposal accepted with
    ``exp(−b x)`` (acceptance ≥ 0.58 either way), and a random sign.
    """

    def __init__(
        self, rate: torch.Tensor, group_size: int, alpha: float = 0.5, validate_args: bool | None = None
    ):
        self.alpha = check_alpha(alpha)
        self._unit_log_z: float | None = None
        super().__init__(rate, group_size, validate_args=validate_args)

    @property
    def _weights(self) -> tuple[float, float]:
        """``((1−α) √p, α)``: the coefficients of ``‖θ‖₂`` and ``‖θ‖₁`` in the statistic."""
        return (1.0 - self.alpha) * math.sqrt(self.group_size), self.alpha

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        wa, wb = self._weights
        sigma = wa + wb
        if self._unit_log_z is None:
            self._unit_log_z = sparse_group_log_integral(wa / sigma, wb / sigma, self.group_size)
        return self.group_size * torch.log(rate * sigma) - self._unit_log_z

    vector_blocks = True

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        wa, wb = self._weights
        if wb == 0:  # (1−α) √p ‖θ‖₂ alone
            return wa * group_norm(parts)
        if wa == 0:  # α ‖θ‖₁ alone
            return wb * sum_of_abs(parts)
        return wa * group_norm(parts) + wb * sum_of_abs(parts)

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        n, p = self.event_shape
        wa, wb = self._weights
        dtype = self.rate.dtype
        if wb == 0:
            return UnitGroupLaplace(self.rate * wa, p)._sample_proper(shape)
        if wa == 0:
            return UnitLaplace(self.rate * wb, p)._sample_proper(shape)
        # draw φ for (a, b) = (wa / wb, 1), then θ = φ / (rate_j wb)
        a = wa / wb
        u, log_terms = quadrature_grid(a, 1.0, p)
        t = sample_log_linear(u, log_terms, torch.Size((*shape, n))).exp()
        phi = sample_exp_gauss(t.unsqueeze(-1).expand((*shape, n, p)))
        return (phi / (self.rate * wb).to(torch.float64).unsqueeze(-1)).to(dtype)


@dataclass(frozen=True)
class GuidedSparseGroupLasso(UnitPrior):
    """Guided sparse-group-lasso prior: density ``∝ exp(−λ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁])``.

    MAP training under it is training on
    ``sum NLL + λ Σ_j g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]``, the sparse group lasso of
    Simon, Friedman, Hastie & Tibshirani (2013) with guidance; E & Gao (arXiv 2009.01395)
    use it with partial guidance. ``alpha = 0`` is [`GuidedGroupLasso`][bayesguide.GuidedGroupLasso] and
    ``alpha = 1`` is [`GuidedLaplace`][bayesguide.GuidedLaplace] (the same ``log_prob``, normaliser included).
    The normaliser has no closed form; it is a 1-D integral evaluated by quadrature in
    float64 (see [`sparse_group_log_integral`][bayesguide.priors.sparse_group_math.sparse_group_log_integral] and
    [`UnitSparseGroupLaplace`][bayesguide.priors.sparse_group.UnitSparseGroupLaplace]).

    Parameters
    ----------
    strength
        ``λ``, the prior's rate (Bayesian convention, see
        [`strength_from_mean_loss`][bayesguide.strength_from_mean_loss]).
    guidance
        Guidance profile giving ``g_j``.
    alpha
        Mix of the two penalties, in ``[0, 1]``: weight of the L1 part.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedSparseGroupLasso(1e-2, bg.guidance.partial(), alpha=0.5)
    >>> prior.with_guidance(bg.guidance.uniform()).alpha
    0.5
    """

    alpha: float = 0.5

    kind = "sparse_group"
    penalty = "λ Σ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitSparseGroupLaplace(rate, group_size, self.alpha)

    def gaussian_counterpart(self) -> UnitPrior:
        """``GuidedNormal`` (kind ``"l2"``) with the same ``λ`` and guidance."""
        return make_prior("l2", self.strength, self.guidance)

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}(strength={self.strength:g}, guidance={self.guidance!r}, "
            f"alpha={self.alpha:g})"
        )


register_prior(PriorFamily(
    "sparse_group", GuidedSparseGroupLasso,
    "GuidedSparseGroupLasso: guided sparse group lasso, λ Σ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]",
    options=(PriorOption("alpha", 0.5, "the L1 share of the penalty (0: group lasso, 1: L1)"),),
))
