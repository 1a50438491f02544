"""Posterior draws of a fitted architecture, and their densities in bounded memory.

* [`guide_draws`][bayesguide.posterior.draws.guide_draws] — ``S`` draws from an SVI guide (mean-field or low-rank
Normal, plus
  the log-normal latent factors of a hierarchical prior) and ``log q`` of each;
* [`log_prior_draws`][bayesguide.posterior.draws.log_prior_draws] — ``log p(θ_s)`` of batched draws (the model's
  [`log_prior`][bayesguide.model.guided.GuidedModel.log_prior]; improper priors refused);
* [`log_likelihood_draws`][bayesguide.posterior.draws.log_likelihood_draws] — ``log p(y_i | x_i, θ_s)`` for every draw
and example,
  through the network or through its linearisation around ``θ*`` (the GLM predictive),
  vectorised over draws and computed in blocks of examples × draws, so that the
  activations held at once stay below a fixed number of elements whatever ``S`` and ``N``.

The Laplace posterior ([`laplace`][bayesguide.posterior.laplace]), ArviZ conversion
([`to_inference_data`][bayesguide.posterior.fitted.Fitted.to_inference_data]) and the variational evidence estimators
build on these.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from bayesguide.model import GuidedModel
from bayesguide.model.device import DeviceLike, resolve_device, to_device
from bayesguide.network import Layer, functional_forward
from bayesguide.posterior.guides import DeltaGuide, Guide, LowRankGuide, MeanFieldGuide

__all__ = [
    "check_count", "guide_draws", "log_likelihood_draws", "log_prior_draws", "output_blocks", "predictive_draws",
]

_LOG_2PI = math.log(2 * math.pi)
_BUDGET = 2**22
"""Activations (elements) held at once by [`log_likelihood_draws`][bayesguide.posterior.draws.log_likelihood_draws]."""


def guide_draws(
    guide: Guide, model: GuidedModel, n: int, generator: torch.Generator | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` draws from an SVI guide: per-site ``(n, n_units, group_size)`` values and
    ``log q`` of each draw, shape ``(n,)``, both in float64.

    Raises ``ValueError`` for a [`DeltaGuide`][bayesguide.DeltaGuide] (a MAP fit has no
    variational posterior).
    """
    check_count(n, "the number of draws")
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
    [`LatentFactors`][bayesguide.posterior.guides.LatentFactors].
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


def log_prior_draws(model: GuidedModel, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``log p(θ_s)`` under the model's priors for batched site values, in float64, ``(S,)``.

    The model's [`log_prior`][bayesguide.model.guided.GuidedModel.log_prior] (the joint with the latent
    scales for a hierarchical prior). Refuses an improper prior (a guidance coefficient of 0).
    """
    names = [lat.name for lat in model.latent_sites]
    missing = [k for k in names if k not in values]
    if missing:
        raise ValueError(f"the draws lack the latent sites {missing} of the hierarchical prior")
    if not model.latent_sites:
        for site in model.sites:
            if not model.site_distribution(site, torch.float64).is_proper:
                raise ValueError(
                    f"layer {site.layer.name!r} has a unit with guidance coefficient 0, an improper "
                    f"prior: the evidence needs a proper prior; give every unit a positive coefficient"
                )
    return model.log_prior({k: v.to(torch.float64) for k, v in values.items()}, torch.float64)


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
    around: Mapping[str, torch.Tensor] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Pointwise ``log p(y_i | x_i, θ_s)``, shape ``(S, N)``, float64.

    The network runs in eval mode (``module`` supplies buffers such as BatchNorm
    statistics; its weights are replaced by the draws), vectorised over draws with
    ``torch.func.vmap``, in blocks of ``chunk_size`` examples × ``draw_chunk`` draws.
    With ``around`` (per-site values ``θ*``) the network is *linearised* there — the
    GLM predictive of Immer, Korzepa & Bauer (AISTATS 2021):

    $$
    f_{\\mathrm{lin}}(x, θ_s) = f(x, θ^*) + J_{θ^*}(x)\\,(θ_s - θ^*),
    $$

    computed as a Jacobian–vector product (``torch.func.jvp``), never forming ``J``.
    By default the blocks are chosen so that the largest activation of a block has at
    most ``2**22`` elements; the result does not depend on the blocking.

    Parameters
    ----------
    values
        Per site, draws of shape ``(S, n_units, group_size)``.
    X
        Prepared inputs.
    y
        Prepared targets.
    noise
        The Gaussian ``σ`` when the model learns it.
    around
        Per-site values ``(n_units, group_size)`` to linearise the network around
        (``None``: the network itself).
    device
        Where the network runs (default: where ``module``'s parameters are): a copy of
        ``module`` is moved there, and each block of draws and of examples is moved there
        as it is evaluated. The result is on the CPU.
    """
    target = resolve_device(device, module)
    sigma = _sigma(model, noise)
    y64 = y.to(torch.float64) if y.is_floating_point() else y
    out = torch.empty(next(iter(values.values())).shape[0], X.shape[0], dtype=torch.float64)
    for rows, cols, f in output_blocks(model, module, values, X, chunk_size=chunk_size, draw_chunk=draw_chunk,
                                       around=around, device=target):
        out[rows, cols] = model.likelihood.pointwise_log_prob(f, to_device(y64[cols], target), sigma).cpu()
    return out


def predictive_draws(
    model: GuidedModel,
    module: nn.Module,
    values: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    target_shape: tuple[int, ...],
    noise: float | None = None,
    *,
    seed: int = 0,
    around: Mapping[str, torch.Tensor] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Replicated targets ``ỹ_{s,i} ~ p(y | x_i, θ_s)``, shape ``(S, *target_shape)``.

    The posterior predictive of the draws (what ArviZ calls ``posterior_predictive``):
    one simulated target per draw and example, from the network (or, with ``around``,
    the network linearised there, as in [`log_likelihood_draws`][bayesguide.posterior.draws.log_likelihood_draws]).
    ``target_shape`` is the prepared targets' shape (``(N,)`` or ``(N, C)``). The
    samples come from a private random state seeded by ``seed``; the global one is
    left as it was.
    """
    target = resolve_device(device, module)
    sigma = _sigma(model, noise)
    S = next(iter(values.values())).shape[0]
    out = torch.empty(S, *target_shape, dtype=torch.float64)
    devices = [] if target.type != "cuda" else [target.index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for rows, cols, f in output_blocks(model, module, values, X, around=around, device=target):
            sample = model.likelihood.distribution(f, sigma).sample()
            out[rows, cols] = sample.to(torch.float64).reshape(out[rows, cols].shape).cpu()
    return out


def _sigma(model: GuidedModel, noise: float | None) -> torch.Tensor | None:
    if model.learns_noise and noise is None:
        raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    return model.noise_tensor(None if noise is None else torch.tensor(float(noise), dtype=torch.float64),
                              torch.float64)


def output_blocks(
    model: GuidedModel,
    module: nn.Module,
    values: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    *,
    chunk_size: int | None = None,
    draw_chunk: int | None = None,
    around: Mapping[str, torch.Tensor] | None = None,
    device: DeviceLike = None,
) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """The network's outputs under the draws, block by block: ``(draw slice, example slice, f)``.

    ``f`` is float64 of shape ``(draws in block, examples in block, outputs)``, on the
    device the network runs on (see [`log_likelihood_draws`][bayesguide.posterior.draws.log_likelihood_draws]
    for the blocking, the linearisation and the device).
    """
    target = resolve_device(device, module)
    module = copy.deepcopy(module).to(target).eval()
    chain = model.chain(module)
    dtype = model.dtype
    S = next(iter(values.values())).shape[0]
    N = X.shape[0]
    width = _activation_width(chain, to_device(X[:1], target))
    if chunk_size is not None:
        check_count(chunk_size, "chunk_size")
    if draw_chunk is not None:
        check_count(draw_chunk, "draw_chunk")
    ex = chunk_size or max(1, min(N, _BUDGET // (width * min(S, 64))))
    dr = draw_chunk or max(1, min(S, _BUDGET // (ex * width)))

    def forward(vals: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_forward(chain, model.sites, vals, xb)

    center = None if around is None else {k: v.to(dtype).to(target) for k, v in around.items()}

    def linearised(vals: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        assert center is not None
        tangent = {k: vals[k] - center[k] for k in center}
        out = torch.func.jvp(lambda v: forward(v, xb), (center,), (tangent,))
        return out[0] + out[1]

    batched = torch.func.vmap(forward if around is None else linearised, in_dims=(0, None))
    with torch.no_grad(), warnings.catch_warnings():
        # torch's forward-mode AD scripts a helper on first use, through a deprecated API
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        for s0 in range(0, S, dr):
            vals = {k: to_device(v[s0 : s0 + dr].to(dtype), target) for k, v in values.items()}
            for i0 in range(0, N, ex):
                f = batched(vals, to_device(X[i0 : i0 + ex], target)).to(torch.float64)
                yield slice(s0, s0 + dr), slice(i0, i0 + ex), f


def _activation_width(chain: list[Layer], X: torch.Tensor) -> int:
    """The largest number of activations per example along the chain (at least 1)."""
    x = X[:1]
    width = x.numel()
    with torch.no_grad():
        for layer in chain:
            x = layer.module(x)
            width = max(width, x.numel())
    return max(width, 1)


def check_count(n: object, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
