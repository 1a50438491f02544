"""The group horseshoe: a hierarchical unit prior with latent scales.

Louizos, Ullrich & Welling (2017), "Bayesian Compression for Deep Learning" (NeurIPS),
put a group horseshoe on the units of every prunable layer: with ``Θ_l`` the ``(n, p)``
unit matrix of layer ``l`` (row ``j`` = unit ``j``'s incoming weights and bias),

.. math::

    τ_l \\sim \\mathrm{HalfCauchy}(τ_0), \\qquad
    λ_{lj} \\sim \\mathrm{HalfCauchy}(1 / g_{lj}), \\qquad
    θ_{lj} \\mid τ_l, λ_{lj} \\sim \\mathcal{N}(0,\\, τ_l^2 λ_{lj}^2 I_p).

**Guidance.** The paper has ``λ_j ∼ HalfCauchy(1)``. bayesguide divides the local
scale by the guidance coefficient ``g_j`` (equivalently ``θ_j`` has scale
``τ λ'_j / g_j`` with ``λ'_j ∼ HalfCauchy(1)``), so a larger coefficient shrinks harder,
as a larger ``λ g_j`` does for the other unit priors. The default guidance is
``bg.guidance.uniform()`` (all ``g_j = 1``): the paper's prior. Coefficients must be
positive (a coefficient 0 would be an infinitely wide, improper local scale).

The marginal over ``θ`` has no closed form, so this prior is only a *conditional* unit
prior: :class:`~bayesguide.GuidedModel` samples the latent scales (sites
``"<site>.tau"`` and ``"<site>.lambda"``) before the unit matrix, and the SVI guides add
a log-normal factor per scale (:mod:`bayesguide.infer.guides`; the paper's variational
family for the scales is log-normal as well). MAP estimation is refused: the joint
density is unbounded as ``τ λ_j → 0`` with ``θ_j = 0``, so the MAP is degenerate.

Non-prunable parameters (output layer, BatchNorm) keep a plain prior, by default
``GuidedNormal(strength, uniform())`` as for every other unit prior; ``strength`` is
only used for that.

Examples
--------
>>> import torch, bayesguide as bg
>>> from bayesguide.horseshoe import GroupHorseshoe
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> model = bg.GuidedModel(net, GroupHorseshoe(tau0=0.1), "gaussian", noise=0.5)
>>> [lat.name for lat in model.latent_sites]
['0.units.tau', '0.units.lambda']
"""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyro.distributions as dist
import torch

from bayesguide.guidance import GuidanceSpec, uniform
from bayesguide.priors import UnitGroupDistribution, UnitNormal, UnitPrior

__all__ = ["GroupHorseshoe", "HierarchicalUnitPrior", "HorseshoeScale", "LatentSite"]


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

    Contract: :meth:`latent_priors` takes a layer's coefficients ``g`` (shape ``(n,)``)
    and returns ``{local name: prior distribution}`` (Pyro distributions with their
    event shape set); :meth:`unit_distribution_given` takes ``{local name: value}``,
    ``g`` and the group size ``p`` and returns the conditional
    :class:`~bayesguide.priors.UnitGroupDistribution` of the ``(n, p)`` unit matrix.
    The marginal :meth:`unit_distribution` is not available.
    """

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


def _check_tau0(tau0: float) -> float:
    if isinstance(tau0, (bool, str)) or not isinstance(tau0, numbers.Real):
        raise TypeError(f"tau0 must be a number, got {type(tau0).__name__}")
    value = float(tau0)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"tau0 must be a positive finite number (the global scale's HalfCauchy scale), got {tau0!r}")
    return value


@dataclass(frozen=True)
class GroupHorseshoe(HierarchicalUnitPrior):
    """Group horseshoe prior over units (Louizos, Ullrich & Welling 2017).

    ``τ ~ HalfCauchy(tau0)`` per layer, ``λ_j ~ HalfCauchy(1/g_j)`` per unit and
    ``θ_j | τ, λ_j ~ N(0, τ² λ_j² I)`` on unit ``j``'s group (incoming row and bias).
    Given the scales, ``log p(θ_j | τ, λ_j) = −p log(τ λ_j) − (p/2) log 2π
    − ‖θ_j‖₂² / (2 τ² λ_j²)``, i.e. a :class:`~bayesguide.priors.UnitNormal` of rate
    ``1 / (2 τ² λ_j²)``. See :mod:`bayesguide.horseshoe` for the guidance convention.

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
    >>> from bayesguide.horseshoe import GroupHorseshoe
    >>> GroupHorseshoe(tau0=0.1, guidance=bg.guidance.linear()).tau0
    0.1
    """

    strength: float = 1.0
    guidance: GuidanceSpec = field(default_factory=uniform)
    tau0: float = 1.0

    kind: str = field(init=False, default="horseshoe", repr=False)
    penalty: str = field(init=False, default="group horseshoe (latent scales τ, λ_j)", repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tau0", _check_tau0(self.tau0))

    def with_guidance(self, guidance: GuidanceSpec) -> GroupHorseshoe:
        """The same ``tau0`` and strength with another guidance."""
        return GroupHorseshoe(self.strength, guidance, self.tau0)

    def latent_priors(self, g: torch.Tensor) -> dict[str, dist.TorchDistribution]:
        if g.ndim != 1 or not (g > 0).all() or not torch.isfinite(g).all():
            raise ValueError(
                "GroupHorseshoe needs finite positive guidance coefficients (they divide the local "
                f"scales), got {g.tolist()}"
            )
        tau = dist.HalfCauchy(torch.tensor(self.tau0, dtype=g.dtype))
        lam = dist.HalfCauchy(g.reciprocal()).to_event(1)
        return {"tau": tau, "lambda": lam}

    def unit_distribution_given(
        self, latents: Mapping[str, torch.Tensor], g: torch.Tensor, group_size: int
    ) -> UnitGroupDistribution:
        scale = latents["tau"] * latents["lambda"]
        return UnitNormal(0.5 * scale.pow(-2), group_size)

    def __str__(self) -> str:
        return f"GroupHorseshoe(tau0={self.tau0:g}, guidance={self.guidance!r})"


@dataclass(frozen=True)
class HorseshoeScale:
    """Unit score ``E_q[τ λ_j]``: the posterior mean of unit ``j``'s prior scale.

    With log-normal factors ``q(τ) = LogNormal(μ_τ, s_τ²)`` and
    ``q(λ_j) = LogNormal(μ_j, s_j²)`` (independent), ``E_q[τ λ_j] =
    exp(μ_τ + μ_j + (s_τ² + s_j²) / 2)``. Larger means more important; it follows the
    unit-score contract of :mod:`bayesguide.pruning.scores`, so
    ``bg.prune(fit, score=bg.HorseshoeScale())`` works.
    """

    def __call__(self, fit: object) -> dict[str, np.ndarray]:
        model = getattr(fit, "model", None)
        guide = getattr(fit, "guide", None)
        factors = getattr(guide, "latent_factors", None)
        if getattr(fit, "method", None) != "svi" or factors is None or model is None:
            raise ValueError(
                "score HorseshoeScale needs an SVI fit of a GroupHorseshoe model (bg.fit_svi)"
            )
        out: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for site in model.prunable_sites:
                parts = [lat for lat in model.latent_sites if lat.site == site.name]
                log_mean = torch.zeros(site.n_units, dtype=torch.float64)
                for lat in parts:
                    loc, scale = factors.loc_scale(lat.name)
                    log_mean = log_mean + (loc + 0.5 * scale.pow(2)).to(torch.float64)
                out[site.layer.name] = log_mean.exp().numpy()
        return out
