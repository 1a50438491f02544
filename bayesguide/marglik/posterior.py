"""Posterior draws of a fitted architecture, and their log-likelihood in bounded memory.

Two sources of draws ``θ_1 … θ_S`` of the weights:

* the **Laplace posterior** ``N(θ*, H⁻¹)`` around the MAP (or posterior-mean) weights,
  with ``H = G / σ² + c · D`` the GGN of the negative log-likelihood plus the Gaussian
  prior precision (see :mod:`bayesguide.marglik.laplace`), full or diagonal;
* the **variational posterior** ``q(θ)`` of an SVI guide
  (:class:`~bayesguide.MeanFieldGuide`, :class:`~bayesguide.LowRankGuide`), with
  ``log q(θ_s)``.

:func:`log_likelihood_draws` evaluates ``log p(y_i | x_i, θ_s)`` for every draw and
example, vectorised over draws and computed in blocks of examples × draws, so that the
activations held at once stay below a fixed number of elements whatever ``S`` and ``N``.
The sibling modules :mod:`bayesguide.predictive` (ArviZ, PSIS-LOO) and
:mod:`bayesguide.marglik.variational` (ELBO, importance-weighted bounds) build on these.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bayesguide.infer.guides import DeltaGuide, Guide, LowRankGuide, MeanFieldGuide
from bayesguide.infer.result import FitResult, data_fingerprint
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik.laplace import HessianStructure, _ggn, _precisions
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.network import Layer, functional_forward
from bayesguide.pruning.candidate import Candidate

__all__ = [
    "LaplacePosterior",
    "Source",
    "guide_draws",
    "laplace_posterior",
    "log_likelihood_draws",
    "log_prior_draws",
    "resolve_source",
]

_LOG_2PI = math.log(2 * math.pi)
#: activations (elements) held at once by :func:`log_likelihood_draws`
_BUDGET = 2**22


@dataclass(frozen=True)
class Source:
    """What the draws need from a fit or a candidate, resolved once.

    ``module`` holds the MAP weights (or the posterior mean of an SVI fit); ``guide`` is
    the fit's guide (a :class:`~bayesguide.DeltaGuide` for MAP); ``noise`` the learned
    Gaussian ``σ`` (``None`` when fixed or not Gaussian); ``fingerprint`` identifies the
    training data.
    """

    model: GuidedModel
    module: nn.Module
    guide: Guide
    noise: float | None
    fingerprint: str
    label: str

    @property
    def variational(self) -> bool:
        """Whether the guide is a variational posterior (not a point mass)."""
        return not isinstance(self.guide, DeltaGuide)

    def prepare(self, X: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate ``X, y`` and check that they are the training data (by fingerprint)."""
        Xt, yt = self.model.prepare_data(X, y)
        if data_fingerprint(Xt, yt) != self.fingerprint:
            raise ValueError(
                f"X, y are not the data this fit was trained on ({self.label}): the evidence "
                f"and leave-one-out need the training data"
            )
        return Xt, yt


def resolve_source(source: FitResult | Candidate) -> Source:
    """The model, weights, guide, noise and data fingerprint of a fit or a candidate.

    A candidate uses its (possibly fine-tuned) network and guide; its data are those of
    the fit it was cut from.
    """
    if isinstance(source, FitResult):
        return Source(source.model, source.module, source.guide, source.noise,
                      source.data_fingerprint, f"{source.method.upper()} fit")
    if isinstance(source, Candidate):
        fit = source.tuned if source.tuned is not None else source.fit
        sigma = source.guide.noise()
        return Source(source.model, source.module, source.guide,
                      None if sigma is None else float(sigma.detach()), fit.data_fingerprint,
                      f"candidate {source.name}")
    raise TypeError(
        f"expected a FitResult (bg.fit_map / bg.fit_svi) or a Candidate (bg.prune), got "
        f"{type(source).__name__}"
    )


# ---------------------------------------------------------------------- Laplace


@dataclass(frozen=True)
class LaplacePosterior:
    """The Laplace posterior ``N(θ*, H⁻¹)`` over the flattened weights (float64).

    Attributes
    ----------
    mean
        ``θ*``, shape ``(P,)``, the sites' unit matrices flattened in site order.
    precision
        ``H = G / σ² + c · D``: ``(P, P)`` for ``hessian="full"``, its diagonal ``(P,)``
        for ``"diag"``.
    cholesky
        Lower Cholesky factor ``L`` of the full ``H`` (``None`` for ``"diag"``).
    hessian, prior_scale, noise
        Curvature structure, prior scale ``c`` and the Gaussian ``σ`` used.
    sites
        ``(name, n_units, group_size)`` per site, for :meth:`unflatten`.
    """

    mean: torch.Tensor
    precision: torch.Tensor
    cholesky: torch.Tensor | None
    hessian: str
    prior_scale: float
    noise: float | None
    sites: tuple[tuple[str, int, int], ...]

    @property
    def n_params(self) -> int:
        return int(self.mean.numel())

    def covariance(self) -> torch.Tensor:
        """``H⁻¹`` (``(P, P)``; a diagonal ``H`` gives a diagonal matrix)."""
        if self.cholesky is None:
            return torch.diag(self.precision.reciprocal())
        return torch.cholesky_inverse(self.cholesky)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws ``θ* + L^{-T} ε`` (full) or ``θ* + ε / √H_kk`` (diag), shape ``(n, P)``."""
        _check_count(n, "n")
        eps = torch.randn(n, self.n_params, generator=generator, dtype=self.mean.dtype)
        if self.cholesky is None:
            return self.mean + eps * self.precision.rsqrt()
        # Lᵀ x = ε  ⇒  Cov(x) = (L Lᵀ)⁻¹ = H⁻¹
        x = torch.linalg.solve_triangular(self.cholesky.T, eps.T, upper=True).T
        return self.mean + x

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``(..., P)`` into per-site ``(..., n_units, group_size)`` unit matrices."""
        parts = flat.split([n * p for _, n, p in self.sites], dim=-1)
        return {name: part.reshape(*flat.shape[:-1], n, p) for (name, n, p), part in zip(self.sites, parts)}

    def __str__(self) -> str:
        noise = "" if self.noise is None else f", σ={self.noise:.4g}"
        return (f"LaplacePosterior({self.hessian}, P={self.n_params}, prior scale c="
                f"{self.prior_scale:.4g}{noise})")


def laplace_posterior(
    model: GuidedModel,
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    hessian: str | HessianStructure = "full",
    prior_scale: float = 1.0,
    noise: float | None = None,
) -> LaplacePosterior:
    """The Laplace approximation ``N(θ*, H⁻¹)`` of the posterior at ``module``'s weights.

    .. math::

        H = \\frac{1}{σ^2} \\sum_i J_i^⊤ Λ_i J_i + c\\, D,

    the generalized Gauss–Newton matrix of the negative log-likelihood (``σ`` only for a
    Gaussian likelihood) plus the Gaussian prior precision ``c · D``, ``D = 2 λ g`` per
    weight (the Gaussian counterpart of a sparse prior; see
    :mod:`bayesguide.marglik.laplace`). For Bayesian linear regression it is the exact
    posterior.

    Parameters
    ----------
    model, module
        The model and the network holding ``θ*`` (MAP weights).
    X, y
        Prepared data (``model.prepare_data``).
    hessian
        ``"full"`` (``P × P``, sampled through its Cholesky factor) or ``"diag"``.
    prior_scale
        ``c``, e.g. an ``Evidence.prior_scale`` found by type-II maximum likelihood.
    noise
        The Gaussian ``σ`` when the model learns it (the fit's value).

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> from bayesguide.marglik.posterior import laplace_posterior
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 1)).double()
    >>> model = bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood="gaussian", noise=0.1)
    >>> X, y = model.prepare_data(torch.randn(20, 3), torch.randn(20))
    >>> post = laplace_posterior(model, net, X, y)
    >>> post.sample(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 4])
    """
    structure = HessianStructure.resolve(hessian, "hessian structure")
    if structure not in (HessianStructure.FULL, HessianStructure.DIAG):
        raise ValueError(f"the Laplace posterior supports hessian='full' or 'diag', got {structure.value!r}")
    if not (math.isfinite(prior_scale) and prior_scale > 0):
        raise ValueError(f"prior_scale must be a positive finite number, got {prior_scale!r}")
    sigma: float | None = None
    if model.likelihood is Likelihood.GAUSSIAN:
        sigma = model.noise if model.noise is not None else noise
        if sigma is None:
            raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    module = copy.deepcopy(module).eval()
    params = dict(module.named_parameters())
    with torch.no_grad():
        theta = torch.cat([s.pack(params).reshape(-1) for s in model.sites]).detach()
    d, _ = _precisions(model, torch.float64)
    G = _ggn(model, module, theta, X, structure)
    if sigma is not None:
        G = G / sigma**2
    cholesky: torch.Tensor | None = None
    if structure is HessianStructure.FULL:
        H = G + torch.diag(prior_scale * d)
        cholesky, info = torch.linalg.cholesky_ex(H)
        if int(info) != 0:
            raise ValueError("the posterior precision G + A is not positive definite (Cholesky failed)")
    else:
        H = G + prior_scale * d
    return LaplacePosterior(
        mean=theta.to(torch.float64), precision=H, cholesky=cholesky, hessian=structure.value,
        prior_scale=float(prior_scale), noise=None if model.noise is not None else sigma,
        sites=tuple((s.name, s.n_units, s.group_size) for s in model.sites),
    )


# ---------------------------------------------------------------------- guides


def guide_draws(
    guide: Guide, model: GuidedModel, n: int, generator: torch.Generator | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` draws from an SVI guide: per-site ``(n, n_units, group_size)`` values and
    ``log q`` of each draw, shape ``(n,)``, both in float64.

    Raises ``ValueError`` for a :class:`~bayesguide.DeltaGuide` (a MAP fit has no
    variational posterior).
    """
    _check_count(n, "the number of draws")
    f64 = torch.float64
    with torch.no_grad():
        if isinstance(guide, MeanFieldGuide):
            values: dict[str, torch.Tensor] = {}
            log_q = torch.zeros(n, dtype=f64)
            for name, scale in guide.scales().items():
                loc = guide.mean_values()[name].to(f64)
                scale = scale.to(f64)
                eps = torch.randn((n, *loc.shape), generator=generator, dtype=f64)
                values[name] = loc + scale * eps
                log_q -= (scale.log().sum() + 0.5 * eps.pow(2).sum((1, 2)) + 0.5 * _LOG_2PI * loc.numel())
            return _latent_draws(guide, values, log_q, n, generator)
        if isinstance(guide, LowRankGuide):
            q = guide.distribution()
            loc, factor, diag = q.loc.to(f64), q.cov_factor.to(f64), q.cov_diag.to(f64)
            eps_w = torch.randn(n, factor.shape[1], generator=generator, dtype=f64)
            eps_d = torch.randn(n, loc.numel(), generator=generator, dtype=f64)
            flat = loc + eps_w @ factor.T + diag.sqrt() * eps_d
            q64 = torch.distributions.LowRankMultivariateNormal(loc, factor, diag)
            parts = flat.split([s.n_units * s.group_size for s in model.sites], dim=1)
            values = {s.name: p.reshape(n, s.n_units, s.group_size) for s, p in zip(model.sites, parts)}
            return _latent_draws(guide, values, q64.log_prob(flat), n, generator)
    if isinstance(guide, DeltaGuide):
        raise ValueError(
            "a MAP fit has a point-mass guide, not a variational posterior: fit one with "
            "bg.fit_svi (e.g. init=the MAP fit), or use the Laplace posterior"
        )
    raise TypeError(f"cannot draw from a guide of type {type(guide).__name__}")


def _latent_draws(
    guide: Guide, values: dict[str, torch.Tensor], log_q: torch.Tensor, n: int, generator: torch.Generator | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Add draws of the guide's log-normal latent factors (hierarchical priors) to ``values``.

    ``z = exp(μ + σ ε)``; ``log q(z) = Σ [−log σ − ε²/2 − log(2π)/2 − log z]`` (the Normal
    density of ``log z`` and the Jacobian of ``exp``), as in
    :class:`~bayesguide.infer.guides.LatentFactors`.
    """
    factors = getattr(guide, "latent_factors", None)
    if factors is None:
        return values, log_q
    for name in factors.names:
        loc, scale = (t.detach().to(torch.float64) for t in factors.loc_scale(name))
        eps = torch.randn((n, *loc.shape), generator=generator, dtype=torch.float64)
        z = loc + scale * eps
        values[name] = z.exp()
        log_q = log_q + (-scale.log() - 0.5 * eps.pow(2) - 0.5 * _LOG_2PI - z).reshape(n, -1).sum(1)
    return values, log_q


# ---------------------------------------------------------------------- densities


def log_prior_draws(model: GuidedModel, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``log p(θ_s)`` under the model's priors for batched site values, in float64, ``(S,)``.

    Refuses an improper prior (a guidance coefficient of 0).
    """
    if model.latent_sites:  # hierarchical prior: the conditional prior differs per draw
        return _hierarchical_log_prior_draws(model, values)
    total: torch.Tensor | None = None
    for site in model.sites:
        prior = model.site_distribution(site, torch.float64)
        if not prior.is_proper:
            raise ValueError(
                f"layer {site.layer.name!r} has a unit with guidance coefficient 0, an improper "
                f"prior: the evidence needs a proper prior; give every unit a positive coefficient"
            )
        part = prior.log_normaliser - prior.penalty(values[site.name].to(torch.float64))
        total = part if total is None else total + part
    assert total is not None
    return total


def _hierarchical_log_prior_draws(model: GuidedModel, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``log p(z_s) + log p(θ_s | z_s)`` per draw, for a model with latent scale sites."""
    names = [lat.name for lat in model.latent_sites]
    missing = [k for k in names if k not in values]
    if missing:
        raise ValueError(f"the draws lack the latent sites {missing} of the hierarchical prior")
    S = values[names[0]].shape[0]
    out = torch.empty(S, dtype=torch.float64)
    for s in range(S):
        latents = {k: values[k][s] for k in names}
        total = sum(float(lat.log_prob(latents[lat.name].to(torch.float64))) for lat in model.latent_sites)
        for site in model.sites:
            prior = model.site_distribution(site, torch.float64, latents=latents)
            total += float(prior.log_normaliser - prior.penalty(values[site.name][s].to(torch.float64)))
        out[s] = total
    return out


def log_likelihood_draws(
    model: GuidedModel,
    module: nn.Module,
    values: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    noise: float | None = None,
    *,
    chunk_size: int | None = None,
    draw_chunk: int | None = None,
) -> torch.Tensor:
    """Pointwise ``log p(y_i | x_i, θ_s)``, shape ``(S, N)``, float64.

    The network runs in eval mode (``module`` supplies buffers such as BatchNorm
    statistics; its weights are replaced by the draws), vectorised over draws with
    ``torch.func.vmap``, in blocks of ``chunk_size`` examples × ``draw_chunk`` draws.
    By default the blocks are chosen so that the largest activation of a block has at
    most ``2**22`` elements; the result does not depend on the blocking.

    Parameters
    ----------
    values
        Per site, draws of shape ``(S, n_units, group_size)``.
    X, y
        Prepared data.
    noise
        The Gaussian ``σ`` when the model learns it.
    """
    module = copy.deepcopy(module).eval()
    chain = model.chain(module)
    S = next(iter(values.values())).shape[0]
    N = X.shape[0]
    if model.learns_noise and noise is None:
        raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    sigma = model.noise_tensor(None if noise is None else torch.tensor(float(noise), dtype=torch.float64),
                               torch.float64)
    width = _activation_width(chain, X)
    if chunk_size is not None:
        _check_count(chunk_size, "chunk_size")
    if draw_chunk is not None:
        _check_count(draw_chunk, "draw_chunk")
    ex = chunk_size or max(1, min(N, _BUDGET // (width * min(S, 64))))
    dr = draw_chunk or max(1, min(S, _BUDGET // (ex * width)))
    dtype = model.dtype
    y64 = y.to(torch.float64) if y.is_floating_point() else y

    def forward(vals: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_forward(chain, model.sites, vals, xb)

    batched = torch.func.vmap(forward, in_dims=(0, None))
    out = torch.empty(S, N, dtype=torch.float64)
    with torch.no_grad():
        for s0 in range(0, S, dr):
            vals = {k: v[s0 : s0 + dr].to(dtype) for k, v in values.items()}
            for i0 in range(0, N, ex):
                f = batched(vals, X[i0 : i0 + ex]).to(torch.float64)
                yb = y64[i0 : i0 + ex]
                out[s0 : s0 + dr, i0 : i0 + ex] = model.likelihood.pointwise_log_prob(f, yb, sigma)
    return out


def _activation_width(chain: list[Layer], X: torch.Tensor) -> int:
    """The largest number of activations per example along the chain (at least 1)."""
    x = X[:1]
    width = x.numel()
    with torch.no_grad():
        for layer in chain:
            x = layer.module(x)
            width = max(width, x.numel())
    return max(width, 1)


def _check_count(n: object, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
