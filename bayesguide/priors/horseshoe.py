"""The group horseshoe: a hierarchical unit prior with latent scales.

Louizos, Ullrich & Welling (2017), "Bayesian Compression for Deep Learning" (NeurIPS),
put a group horseshoe on the units of every prunable layer: with ``Θ_l`` the ``(n, p)``
unit matrix of layer ``l`` (row ``j`` = unit ``j``'s incoming weights and bias),

$$
τ_l \\sim \\mathrm{HalfCauchy}(τ_0), \\qquad
λ_{lj} \\sim \\mathrm{HalfCauchy}(1 / g_{lj}), \\qquad
θ_{lj} \\mid τ_l, λ_{lj} \\sim \\mathcal{N}(0,\\, τ_l^2 λ_{lj}^2 I_p).
$$

**Guidance.** The paper has ``λ_j ∼ HalfCauchy(1)``. bayesguide divides the local
scale by the guidance coefficient ``g_j`` (equivalently ``θ_j`` has scale
``τ λ'_j / g_j`` with ``λ'_j ∼ HalfCauchy(1)``), so a larger coefficient shrinks harder,
as a larger ``λ g_j`` does for the other unit priors. The default guidance is
``bg.guidance.uniform()`` (all ``g_j = 1``): the paper's prior. Coefficients must be
positive (a coefficient 0 would be an infinitely wide, improper local scale).

The marginal over ``θ`` has no closed form, so this prior is only a *conditional* unit
prior: [`GuidedModel`][bayesguide.GuidedModel] samples the latent scales (sites
``"<site>.tau"`` and ``"<site>.lambda"``) before the unit matrix, and the SVI guides add
a log-normal factor per scale ([`bayesguide.posterior.guides`][]; the paper's variational
family for the scales is log-normal as well). MAP estimation is refused: the joint
density is unbounded as ``τ λ_j → 0`` with ``θ_j = 0``, so the MAP is degenerate.

Non-prunable parameters (output layer, BatchNorm) keep a plain prior, by default
``GuidedNormal(strength, uniform())`` as for every other unit prior; ``strength`` is
only used for that.

Examples
--------
>>> import torch, bayesguide as bg
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> model = bg.GuidedModel(net, bg.GroupHorseshoe(tau0=0.1), "gaussian", noise=0.5)
>>> [lat.name for lat in model.latent_sites]
['0.units.tau', '0.units.lambda']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch

from bayesguide.guidance import GuidanceSpec, uniform
from bayesguide.priors.base import UnitGroupDistribution, check_real
from bayesguide.priors.hierarchical import HierarchicalUnitPrior
from bayesguide.priors.normal import UnitNormal
from bayesguide.priors.registry import PriorFamily, PriorOption, register_prior

__all__ = ["GroupHorseshoe"]


def _check_tau0(tau0: float) -> float:
    value = check_real(tau0, "tau0")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"tau0 must be a positive finite number (the global scale's HalfCauchy scale), got {tau0!r}")
    return value


@dataclass(frozen=True)
class GroupHorseshoe(HierarchicalUnitPrior):
    """Group horseshoe prior over units (Louizos, Ullrich & Welling 2017).

    ``τ ~ HalfCauchy(tau0)`` per layer, ``λ_j ~ HalfCauchy(1/g_j)`` per unit and
    ``θ_j | τ, λ_j ~ N(0, τ² λ_j² I)`` on unit ``j``'s group (incoming row and bias).
    Given the scales, ``log p(θ_j | τ, λ_j) = −p log(τ λ_j) − (p/2) log 2π
    − ‖θ_j‖₂² / (2 τ² λ_j²)``, i.e. a [`UnitNormal`][bayesguide.priors.normal.UnitNormal] of rate
    ``1 / (2 τ² λ_j²)``. See [`bayesguide.priors.horseshoe`][] for the guidance convention.

    Parameters
    ----------
    strength
        Rate of the default plain prior of the non-prunable parameters (the horseshoe
        itself has no rate).
    guidance
        Guidance coefficients ``g_j > 0`` dividing the local scales (default uniform).
    tau0
        Scale of the global half-Cauchy; small values (e.g. ``1e-1``–``1e-2``) favour
        sparsity.

    Examples
    --------
    >>> import bayesguide as bg
    >>> bg.GroupHorseshoe(tau0=0.1, guidance=bg.guidance.linear()).tau0
    0.1
    """

    strength: float = 1.0
    guidance: GuidanceSpec = field(default_factory=uniform)
    tau0: float = 1.0

    kind = "horseshoe"
    penalty = "group horseshoe (latent scales τ, λ_j)"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tau0", _check_tau0(self.tau0))

    def latent_priors(self, g: torch.Tensor) -> dict[str, dist.TorchDistribution]:
        if g.ndim != 1 or not (g > 0).all() or not torch.isfinite(g).all():
            raise ValueError(
                "GroupHorseshoe needs finite positive guidance coefficients (they divide the local "
                f"scales), got {g.tolist()}"
            )
        tau = dist.HalfCauchy(torch.tensor(self.tau0, dtype=g.dtype, device=g.device))
        lam = dist.HalfCauchy(g.reciprocal()).to_event(1)
        return {"tau": tau, "lambda": lam}

    def unit_distribution_given(
        self, latents: Mapping[str, torch.Tensor], g: torch.Tensor, group_size: int
    ) -> UnitGroupDistribution:
        scale = latents["tau"] * latents["lambda"]
        return UnitNormal(0.5 * scale.pow(-2), group_size)

    def __str__(self) -> str:
        return f"GroupHorseshoe(tau0={self.tau0:g}, guidance={self.guidance!r})"


register_prior(PriorFamily(
    "horseshoe", GroupHorseshoe,
    "GroupHorseshoe: group horseshoe (Louizos et al. 2017), latent scales τ, λ_j; trained by SVI",
    options=(PriorOption("tau0", 0.1, "scale of the global half-Cauchy", positive=True),),
    fitters={"svi": "svi"},
    positive_guidance=True,
    score="horseshoe",
))
