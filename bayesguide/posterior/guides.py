"""Guides: the variational families of [`bayesguide.fit_map`][] and [`bayesguide.fit_svi`][].

Every guide is an ``nn.Module`` whose parameters live on the module, never in Pyro's
global parameter store, so two fits in one process share nothing. Contract:

* ``sample_values()`` → ``(values, log_q)``: one reparameterised draw of every site's
  ``(n, p)`` unit matrix and ``log q(values)``;
* ``mean_values()`` → the guide's location (the MAP point for [`DeltaGuide`][bayesguide.DeltaGuide]);
* ``noise()`` → the learned Gaussian ``σ`` (``None`` when the model does not learn it);
* calling the guide with the model's arguments runs it as a Pyro guide, so it works
  with ``pyro.infer.Trace_ELBO`` and ``pyro.infer.Predictive`` as well.

Latent scales of hierarchical priors ([`GroupHorseshoe`][bayesguide.GroupHorseshoe]) get
independent log-normal factors ``q(z) = LogNormal(μ, softplus(ρ)²)`` per element,
[`LatentFactors`][bayesguide.posterior.guides.LatentFactors], in both SVI guides (the variational family of Louizos et
al.
2017 for the scales); ``sample_values`` then returns the latent draws too, keyed by
their site names, and ``log_q`` includes them. [`DeltaGuide`][bayesguide.DeltaGuide] refuses such
models: their MAP is degenerate (scales → 0).

| guide | family | counterpart in Pyro |
|---|---|---|
| [`DeltaGuide`][bayesguide.DeltaGuide] | point mass at the network's weights | ``AutoDelta`` |
| [`MeanFieldGuide`][bayesguide.MeanFieldGuide] | independent Normals, softplus scales | ``AutoNormal`` |
| [`LowRankGuide`][bayesguide.LowRankGuide] | Normal with covariance ``FFᵀ + D²`` | ``AutoLowRankMultivariateNormal`` |
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from bayesguide._options import Option
from bayesguide.model import GuidedModel

__all__ = [
    "DeltaGuide", "Guide", "GuideKind", "LatentFactors", "LowRankGuide", "MeanFieldGuide", "make_guide", "site_key",
]

_LOG_2PI = math.log(2 * math.pi)


def _inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


def site_key(site_name: str) -> str:
    """The ``nn.ParameterDict`` key of a site name (dots are not allowed there)."""
    return site_name.replace(".", "__")


class GuideKind(Option):
    """Variational families for [`bayesguide.fit_svi`][]."""

    NORMAL = "normal", "mean-field Normal, one location and scale per weight"
    """Mean-field Normal over every weight (Pyro's ``AutoNormal``)."""
    LOWRANK = "lowrank", "multivariate Normal with covariance F Fᵀ + diag(d²), F of rank `rank`"
    """Normal with low-rank-plus-diagonal covariance over all weights jointly."""


class Guide(nn.Module, ABC):
    """Base class: holds the model (not as a submodule) and an optional noise parameter."""

    def __init__(self, model: GuidedModel, init_noise: float = 1.0) -> None:
        super().__init__()
        self._model = model
        if model.learns_noise:
            self.noise_unconstrained = nn.Parameter(
                torch.tensor(_inv_softplus(init_noise), dtype=model.dtype)
            )

    def noise(self) -> torch.Tensor | None:
        if not self._model.learns_noise:
            return None
        return F.softplus(self.noise_unconstrained)

    @abstractmethod
    def sample_values(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]: ...

    @abstractmethod
    def mean_values(self) -> dict[str, torch.Tensor]: ...

    def _sample_noise_site(self) -> None:
        if self._model.learns_noise:
            pyro.sample("noise", dist.Delta(self.noise()))


class LatentFactors(nn.Module):
    """Log-normal factors ``q(z) = LogNormal(μ, softplus(ρ)²)`` for a model's latent sites.

    ``μ`` starts at the log of the prior's median (``τ₀`` for a half-Cauchy global scale,
    ``1/g_j`` for the local ones), ``softplus(ρ)`` at ``init_scale``. A draw is
    ``z = exp(μ + σ ε)`` with ``log q(z) = Σ [−log σ − ε²/2 − log(2π)/2 − log z]``
    (the Normal density of ``log z`` and the Jacobian of ``exp``).
    """

    def __init__(self, model: GuidedModel, init_scale: float = 0.1) -> None:
        super().__init__()
        self._names = [lat.name for lat in model.latent_sites]
        raw = _inv_softplus(init_scale)
        self.locs = nn.ParameterDict()
        self.scales_unconstrained = nn.ParameterDict()
        for lat in model.latent_sites:
            # the half-Cauchy's median is its scale
            median = lat.prior.base_dist.scale if hasattr(lat.prior, "base_dist") else lat.prior.scale
            loc = torch.as_tensor(median, dtype=model.dtype).log().expand(lat.shape).clone()
            self.locs[site_key(lat.name)] = nn.Parameter(loc)
            self.scales_unconstrained[site_key(lat.name)] = nn.Parameter(torch.full_like(loc, raw))

    @property
    def names(self) -> list[str]:
        """The latent sites' names, in the model's order."""
        return list(self._names)

    def loc_scale(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, σ)`` of the log of latent site ``name``."""
        return self.locs[site_key(name)], F.softplus(self.scales_unconstrained[site_key(name)])

    def medians(self) -> dict[str, torch.Tensor]:
        """``exp(μ)``, the median of every factor."""
        return {name: self.locs[site_key(name)].exp() for name in self._names}

    def sample(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        log_q = torch.zeros((), dtype=self.locs[site_key(self._names[0])].dtype)
        for name in self._names:
            loc, scale = self.loc_scale(name)
            eps = torch.randn_like(loc)
            z = loc + scale * eps
            values[name] = z.exp()
            log_q = log_q + (-scale.log() - 0.5 * eps.pow(2) - 0.5 * _LOG_2PI - z).sum()
        return values, log_q

    def pyro_sample(self) -> None:
        for name in self._names:
            loc, scale = self.loc_scale(name)
            pyro.sample(name, dist.LogNormal(loc, scale).to_event(loc.ndim))


class DeltaGuide(Guide):
    """Point mass at ``module``'s weights: the guide of MAP estimation.

    Its parameters *are* ``module``'s parameters, so the network at the MAP is simply
    ``guide.module``.
    """

    def __init__(self, model: GuidedModel, module: nn.Module, init_noise: float = 1.0) -> None:
        if model.latent_sites:
            raise ValueError(
                f"MAP estimation is degenerate under {type(model.prior).__name__} (the joint density "
                f"grows without bound as its scales go to 0): fit it with bg.fit_svi"
            )
        super().__init__(model, init_noise)
        self.module = module

    def mean_values(self) -> dict[str, torch.Tensor]:
        params = dict(self.module.named_parameters())
        return {s.name: s.pack(params) for s in self._model.sites}

    def sample_values(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.mean_values(), torch.zeros((), dtype=self._model.dtype)

    def forward(self, X: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None,
                module: nn.Module | None = None) -> None:
        for name, value in self.mean_values().items():
            pyro.sample(name, dist.Delta(value, event_dim=2))
        self._sample_noise_site()


class MeanFieldGuide(Guide):
    """Independent Normals ``N(loc, softplus(ρ)²)`` for every weight.

    ``loc`` starts at ``module``'s weights, every scale at ``init_scale`` (Pyro's
    ``AutoNormal`` uses 0.1; networks train better from a smaller value).
    """

    def __init__(self, model: GuidedModel, module: nn.Module, init_scale: float = 0.01,
                 init_noise: float = 1.0) -> None:
        super().__init__(model, init_noise)
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        params = dict(module.named_parameters())
        raw = _inv_softplus(init_scale)
        self.locs = nn.ParameterDict()
        self.scales_unconstrained = nn.ParameterDict()
        for s in model.sites:
            loc = s.pack(params).detach().clone()
            self.locs[site_key(s.name)] = nn.Parameter(loc)
            self.scales_unconstrained[site_key(s.name)] = nn.Parameter(torch.full_like(loc, raw))
        self.latent_factors = LatentFactors(model) if model.latent_sites else None

    def scales(self) -> dict[str, torch.Tensor]:
        return {s.name: F.softplus(self.scales_unconstrained[site_key(s.name)]) for s in self._model.sites}

    def mean_values(self) -> dict[str, torch.Tensor]:
        return _with_latent_medians({s.name: self.locs[site_key(s.name)] for s in self._model.sites},
                                    self.latent_factors)

    def sample_values(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        # log q = Σ [−log σ − ε²/2] − (D/2) log 2π over all D weights, at loc + σ·ε
        values: dict[str, torch.Tensor] = {}
        log_scales, squares, size = [], [], 0
        for s in self._model.sites:
            key = site_key(s.name)
            loc = self.locs[key]
            scale = F.softplus(self.scales_unconstrained[key])
            eps = torch.randn_like(loc)
            values[s.name] = loc + scale * eps
            log_scales.append(scale.log().sum())
            squares.append(eps.pow(2).sum())
            size += eps.numel()
        log_q = -torch.stack(log_scales).sum() - 0.5 * torch.stack(squares).sum() - 0.5 * _LOG_2PI * size
        return _with_latent_draws(values, log_q, self.latent_factors)

    def forward(self, X: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None,
                module: nn.Module | None = None) -> None:
        for name, scale in self.scales().items():
            pyro.sample(name, dist.Normal(self.locs[site_key(name)], scale).to_event(2))
        if self.latent_factors is not None:
            self.latent_factors.pyro_sample()
        self._sample_noise_site()


class LowRankGuide(Guide):
    """A joint Normal over all weights with covariance ``F Fᵀ + diag(d²)``.

    ``F`` has ``rank`` columns, initialised at random with scale ``init_scale / (2√rank)``;
    ``d`` starts at ``init_scale``. Sampling and ``log q`` cost ``O(D · rank²)`` for
    ``D`` weights.
    """

    def __init__(self, model: GuidedModel, module: nn.Module, rank: int = 10,
                 init_scale: float = 0.01, init_noise: float = 1.0) -> None:
        super().__init__(model, init_noise)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        params = dict(module.named_parameters())
        flat = torch.cat([s.pack(params).detach().reshape(-1) for s in model.sites])
        self._sizes = [s.n_units * s.group_size for s in model.sites]
        self.loc = nn.Parameter(flat.clone())
        factor = torch.randn(flat.numel(), rank, dtype=flat.dtype) * init_scale / (2 * math.sqrt(rank))
        self.cov_factor = nn.Parameter(factor)
        self.diag_unconstrained = nn.Parameter(torch.full_like(flat, _inv_softplus(init_scale)))
        self.latent_factors = LatentFactors(model) if model.latent_sites else None

    def distribution(self) -> torch.distributions.LowRankMultivariateNormal:
        diag = F.softplus(self.diag_unconstrained)
        return torch.distributions.LowRankMultivariateNormal(self.loc, self.cov_factor, diag.pow(2))

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self._sizes)
        return {s.name: p.reshape(s.n_units, s.group_size) for s, p in zip(self._model.sites, parts)}

    def mean_values(self) -> dict[str, torch.Tensor]:
        return _with_latent_medians(self._unflatten(self.loc), self.latent_factors)

    def sample_values(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        q = self.distribution()
        flat = q.rsample()
        return _with_latent_draws(self._unflatten(flat), q.log_prob(flat), self.latent_factors)

    def forward(self, X: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None,
                module: nn.Module | None = None) -> None:
        q = self.distribution()
        latent = pyro.sample(
            "_lowrank_latent",
            dist.LowRankMultivariateNormal(q.loc, q.cov_factor, q.cov_diag),
            infer={"is_auxiliary": True},
        )
        for name, value in self._unflatten(latent).items():
            pyro.sample(name, dist.Delta(value, event_dim=2))
        if self.latent_factors is not None:
            self.latent_factors.pyro_sample()
        self._sample_noise_site()


def _with_latent_medians(values: dict[str, torch.Tensor], factors: LatentFactors | None) -> dict[str, torch.Tensor]:
    """``values`` plus the latent factors' medians (the guide's location of the scales)."""
    return values if factors is None else values | factors.medians()


def _with_latent_draws(
    values: dict[str, torch.Tensor], log_q: torch.Tensor, factors: LatentFactors | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Add one draw of the latent factors (after the weights) to ``values`` and ``log_q``."""
    if factors is None:
        return values, log_q
    latent, latent_log_q = factors.sample()
    return values | latent, log_q + latent_log_q


def make_guide(kind: str | GuideKind, model: GuidedModel, module: nn.Module, *, rank: int = 10,
               init_scale: float = 0.01) -> Guide:
    """Build an SVI guide by name (``"normal"`` or ``"lowrank"``)."""
    member = GuideKind.resolve(kind, "guide")
    if member is GuideKind.NORMAL:
        return MeanFieldGuide(model, module, init_scale=init_scale)
    return LowRankGuide(model, module, rank=rank, init_scale=init_scale)
