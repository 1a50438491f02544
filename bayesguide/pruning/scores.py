"""Unit scores: how much each unit of each prunable layer matters.

Contract (one paragraph, as for Torch-Pruning's ``Importance``): a *unit score* is a
callable ``score(fit) -> dict[str, np.ndarray]`` that takes a fitted posterior
([`Fitted`][bayesguide.posterior.Fitted]: a fit or a candidate) and returns, for every prunable layer name (in layer
order), a float64 array with one finite number per unit; **larger means more
important**. Decisions ([`bayesguide.pruning.decisions`][])
only compare scores, so any callable with this contract plugs in.

Built in (``score=`` names, [`ScoreName`][bayesguide.pruning.scores.ScoreName]):

* ``"norm"`` — MAP group norm normalised by group size, ``‖θ_j‖₂ / √p`` (the RMS of the
  unit's weights). ``direction="incoming"`` uses the unit's own group (incoming row and
  bias, the group the guided prior acts on), ``"outgoing"`` the block of the next
  layer's weights that reads the unit, ``"both"`` the geometric mean
  ``√(s_in · s_out)`` (zero when either side is). For SVI fits the norm is taken at the
  posterior mean.
* ``"inclusion"`` — for SVI fits, the posterior inclusion probability
  ``P_q(‖θ_j‖₂ / √p > ε)`` under the guide, estimated from ``samples`` draws.
* ``"snr"`` — for SVI fits, the signal-to-noise ratio
  ``‖E_q θ_j‖₂ / √(Σ_k Var_q θ_{jk})``.
* ``"guidance"`` — the guidance order itself, ``-g_j``: units with small guidance
  coefficients come first (ties keep index order), whatever the weights.
* ``"horseshoe"`` — for group-horseshoe SVI fits, the posterior mean of the unit's
  prior scale ``E_q[τ λ_j]`` ([`HorseshoeScale`][bayesguide.HorseshoeScale], Louizos et al. 2017).

Examples
--------
>>> import torch, bayesguide as bg
>>> from bayesguide.pruning.scores import make_score
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
>>> fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedLaplace(1.0), "gaussian", noise=1.0),
...                  torch.randn(8, 2), torch.randn(8, 1), steps=2, progress=False)
>>> make_score("guidance")(fit)["0"]
array([-0.33333333, -0.66666667, -1.        ])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bayesguide._options import Option
from bayesguide.posterior import Fitted, LowRankGuide, MeanFieldGuide
from bayesguide.pruning.structure import analyse

__all__ = [
    "Direction",
    "GroupNorm",
    "GuidanceOrder",
    "HorseshoeScale",
    "InclusionProbability",
    "ScoreName",
    "SignalToNoise",
    "UnitScore",
    "make_score",
]

UnitScore = Callable[[Fitted], dict[str, np.ndarray]]
"""``fit -> {prunable layer name: scores (n_units,)}``; larger is more important."""


class ScoreName(Option):
    """Built-in unit scores."""

    NORM = "norm", "‖θ_j‖₂ / √p at the MAP (or posterior mean)"
    """Group norm per unit, normalised by group size (MAP weights or posterior mean)."""
    INCLUSION = "inclusion", "P_q(‖θ_j‖₂ / √p > ε) under the SVI guide"
    """Posterior probability that the normalised group norm exceeds ε (SVI fits)."""
    SNR = "snr", "‖E θ_j‖₂ / √(Σ Var θ_j) under the SVI guide"
    """Norm of the posterior mean over the root summed posterior variance (SVI fits)."""
    GUIDANCE = "guidance", "-g_j, the guided order"
    """Minus the guidance coefficient: the guided order itself."""
    HORSESHOE = "horseshoe", "E_q[τ λ_j], the posterior mean of the unit's scale (horseshoe SVI fits)"
    """The posterior mean of the unit's prior scale (group-horseshoe SVI fits)."""


class Direction(Option):
    """Which weights of a unit the ``"norm"`` score looks at."""

    INCOMING = "incoming", "own row + bias"
    """The unit's own group: incoming weights and bias."""
    OUTGOING = "outgoing", "next layer's column block"
    """The next layer's weights that read the unit."""
    BOTH = "both", "√(incoming · outgoing)"
    """Geometric mean of the two."""


def _rms(rows: torch.Tensor) -> np.ndarray:
    """Row norms over √(row length), in float64."""
    rows = rows.detach().to(torch.float64)
    return (torch.linalg.vector_norm(rows, dim=-1) / math.sqrt(max(rows.shape[-1], 1))).numpy()


def _outgoing(fit: Fitted) -> dict[str, np.ndarray]:
    structure = analyse(fit.module)
    out: dict[str, np.ndarray] = {}
    for b in structure.blocks:
        nxt = b.next.module
        assert isinstance(nxt, (nn.Linear, nn.Conv2d))
        w = nxt.weight.detach()
        # (out, n·block, …) → (n, out·block·…): the weights reading each unit
        per_unit = w.reshape(w.shape[0], b.n_units, -1).transpose(0, 1).reshape(b.n_units, -1)
        out[b.layer.name] = _rms(per_unit)
    return out


@dataclass(frozen=True)
class GroupNorm:
    """``‖θ_j‖₂ / √p`` of every unit (see the module docstring for ``direction``)."""

    direction: Direction = Direction.INCOMING

    def __call__(self, fit: Fitted) -> dict[str, np.ndarray]:
        params = dict(fit.module.named_parameters())
        incoming = {s.layer.name: _rms(s.pack(params)) for s in fit.model.prunable_sites}
        if self.direction is Direction.INCOMING:
            return incoming
        outgoing = _outgoing(fit)
        if self.direction is Direction.OUTGOING:
            return outgoing
        return {k: np.sqrt(v * outgoing[k]) for k, v in incoming.items()}


def _need_svi(fit: Fitted, what: str) -> None:
    if not fit.variational:
        raise ValueError(
            f"score {what!r} needs an SVI fit (a posterior); this {fit.label} has a point-mass guide: "
            f"use score='norm' or fit with bg.fit_svi"
        )


@dataclass(frozen=True)
class InclusionProbability:
    """``P_q(‖θ_j‖₂ / √p > eps)``: the posterior probability that unit ``j`` is alive.

    Monte Carlo over ``samples`` joint draws of the guide, with their own seed (the
    global random state is left untouched).
    """

    eps: float = 1e-3
    samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be a non-negative finite number, got {self.eps!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples must be a positive int, got {self.samples!r}")

    def __call__(self, fit: Fitted) -> dict[str, np.ndarray]:
        _need_svi(fit, "inclusion")
        sites = fit.model.prunable_sites
        hits = {s.layer.name: np.zeros(s.n_units) for s in sites}
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(self.seed)
            for _ in range(self.samples):
                values, _ = fit.guide.sample_values()
                for s in sites:
                    hits[s.layer.name] += _rms(values[s.name]) > self.eps
        return {k: v / self.samples for k, v in hits.items()}


def marginal_variances(fit: Fitted) -> dict[str, torch.Tensor]:
    """Per site, the ``(n, p)`` marginal posterior variances of an SVI fit's guide."""
    guide = fit.guide
    with torch.no_grad():
        if isinstance(guide, MeanFieldGuide):
            return {k: v.pow(2) for k, v in guide.scales().items()}
        if isinstance(guide, LowRankGuide):
            flat = guide.cov_factor.pow(2).sum(-1) + F.softplus(guide.diag_unconstrained).pow(2)
            sizes = [s.n_units * s.group_size for s in fit.model.sites]
            parts = torch.split(flat, sizes)
            return {s.name: p.reshape(s.n_units, s.group_size) for s, p in zip(fit.model.sites, parts)}
    raise TypeError(f"no marginal variances for a {type(guide).__name__}")


@dataclass(frozen=True)
class SignalToNoise:
    """``‖E_q θ_j‖₂ / √(Σ_k Var_q θ_{jk})`` of every unit under the guide."""

    def __call__(self, fit: Fitted) -> dict[str, np.ndarray]:
        _need_svi(fit, "snr")
        means = fit.guide.mean_values()
        var = marginal_variances(fit)
        out: dict[str, np.ndarray] = {}
        for s in fit.model.prunable_sites:
            mu = torch.linalg.vector_norm(means[s.name].detach().to(torch.float64), dim=-1)
            sd = var[s.name].to(torch.float64).sum(-1).sqrt()
            out[s.layer.name] = (mu / sd).numpy()
        return out


@dataclass(frozen=True)
class GuidanceOrder:
    """``-g_j``: the guided order (small coefficients first), ignoring the weights."""

    def __call__(self, fit: Fitted) -> dict[str, np.ndarray]:
        coefficients = fit.model.coefficients
        return {s.layer.name: -coefficients[s.name].numpy().copy() for s in fit.model.prunable_sites}


@dataclass(frozen=True)
class HorseshoeScale:
    """Unit score ``E_q[τ λ_j]``: the posterior mean of unit ``j``'s prior scale.

    With log-normal factors ``q(τ) = LogNormal(μ_τ, s_τ²)`` and
    ``q(λ_j) = LogNormal(μ_j, s_j²)`` (independent), ``E_q[τ λ_j] =
    exp(μ_τ + μ_j + (s_τ² + s_j²) / 2)``. Larger means more important; it follows the
    unit-score contract of this module, so
    ``bg.prune(fit, score=bg.HorseshoeScale())`` works.
    """

    def __call__(self, fit: Fitted) -> dict[str, np.ndarray]:
        model = fit.model
        factors = getattr(fit.guide, "latent_factors", None)
        if not fit.variational or factors is None:
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


def make_score(
    name: str | ScoreName | UnitScore, *, direction: str | Direction = "incoming", eps: float = 1e-3,
    samples: int = 256,
) -> UnitScore:
    """A unit score by name, or ``name`` itself if it is already a callable score.

    Examples
    --------
    >>> make_score("norm", direction="both")
    GroupNorm(direction=<Direction.BOTH: 'both'>)
    """
    if callable(name) and not isinstance(name, str):
        return name
    member = ScoreName.resolve(name, "score")
    if member is ScoreName.NORM:
        return GroupNorm(Direction.resolve(direction, "direction"))
    if member is ScoreName.INCLUSION:
        return InclusionProbability(eps=eps, samples=samples)
    if member is ScoreName.SNR:
        return SignalToNoise()
    if member is ScoreName.HORSESHOE:
        return HorseshoeScale()
    return GuidanceOrder()
