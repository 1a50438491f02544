"""The fitted-posterior interface shared by [`FitResult`][bayesguide.FitResult] and [`Candidate`][bayesguide.Candidate].

Everything downstream of a fit — pruning scores, evidence estimators, leave-one-out,
reports — needs the same few things of "a network and what we believe about its
weights": the [`GuidedModel`][bayesguide.GuidedModel], the ``module`` holding the MAP weights
(or the posterior mean), the ``guide`` (a point mass for MAP, a variational posterior
for SVI), the learned noise, and the fingerprint of the training data. [`Fitted`][bayesguide.posterior.fitted.Fitted]
is that interface; a fit and a pruned (possibly fine-tuned) candidate both are one, so
every scorer sees the same weights. It also turns any of them into ArviZ
``InferenceData`` ([`Fitted.to_inference_data`][bayesguide.posterior.fitted.Fitted.to_inference_data]), from the guide's
draws or the
Laplace posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bayesguide._arviz import arviz, arviz_name, xarray
from bayesguide._options import Option
from bayesguide.curvature.base import Inputs
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint, fold_batchnorm
from bayesguide.model.batches import BatchStream, is_batches, open_stream
from bayesguide.posterior.draws import (
    check_count,
    guide_draws,
    log_likelihood_draws,
    log_prior_draws,
    predictive_draws,
)
from bayesguide.posterior.guides import DeltaGuide, Guide
from bayesguide.posterior.laplace import laplace_posterior

__all__ = ["Draws", "Fitted", "PosteriorKind", "Predictive", "posterior_draws", "scored_draws", "to_inference_data"]


class PosteriorKind(Option):
    """Which approximate posterior the draws come from."""

    AUTO = "auto", "guide for SVI fits, Laplace otherwise"
    """The guide for an SVI fit (or a candidate cut from one), Laplace otherwise."""
    GUIDE = "guide", "draws of the SVI guide"
    """Draws of the SVI guide (mean-field or low-rank Normal)."""
    LAPLACE = "laplace", "Laplace posterior around the MAP weights (GGN curvature)"
    """The Laplace posterior ``N(θ*, H⁻¹)`` around the fitted weights."""


class Predictive(Option):
    """How the draws reach the data: through the network, or through its linearisation."""

    AUTO = "auto", "GLM predictive for Laplace draws, the network for guide draws"
    """The GLM predictive for Laplace draws, the network for guide draws."""
    GLM = "glm", "the network linearised at the fitted weights"
    """The network linearised at the fitted weights (Immer et al. 2021)."""
    NETWORK = "network", "the network at every draw"
    """The network itself at every draw."""


@dataclass(frozen=True)
class Draws:
    """Posterior draws of a fitted network, and the densities that weigh them.

    ``values`` are per-site ``(S, n_units, group_size)`` (float64); ``log_q`` the
    density of each draw under the approximation it came from and ``log_prior`` under
    the prior it approximates (``(S,)`` each); ``around`` the fitted weights a GLM
    predictive linearises at (``None``: the network itself); ``described`` says what
    they are, in words.
    """

    values: dict[str, torch.Tensor]
    log_q: torch.Tensor
    log_prior: torch.Tensor
    around: dict[str, torch.Tensor] | None
    described: str


class Fitted:
    """A network with a fitted (approximate) posterior over its weights.

    Attributes (set by the dataclasses that are one: [`FitResult`][bayesguide.FitResult],
    [`Candidate`][bayesguide.Candidate])
    ----------
    model
        The [`GuidedModel`][bayesguide.GuidedModel] (prior and likelihood).
    module
        The network at the MAP weights or the posterior mean (eval mode).
    guide
        The fitted guide: [`DeltaGuide`][bayesguide.DeltaGuide] for a point estimate.
    data_fingerprint
        Hash of the training data ([`bayesguide.model.data_fingerprint`][]).
    """

    model: GuidedModel
    module: nn.Module
    guide: Guide
    data_fingerprint: str

    @property
    def label(self) -> str:
        """What this is, for messages (e.g. ``"MAP fit"``, ``"candidate w4-3"``)."""
        return type(self).__name__

    @property
    def noise(self) -> float | None:
        """The learned Gaussian noise ``σ`` (``None`` when fixed or not Gaussian)."""
        sigma = self.guide.noise()
        return None if sigma is None else float(sigma.detach())

    @property
    def variational(self) -> bool:
        """Whether the guide is a variational posterior (not a point mass)."""
        return not isinstance(self.guide, DeltaGuide)

    def prepare(self, X: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate ``X, y`` and check that they are the training data (by fingerprint)."""
        Xt, yt = self.model.prepare_data(X, y)
        if data_fingerprint(Xt, yt) != self.data_fingerprint:
            raise ValueError(
                f"X, y are not the data this fit was trained on ({self.label}): fingerprint "
                f"{data_fingerprint(Xt, yt)} != {self.data_fingerprint}; the evidence, leave-one-out "
                f"and pruning need the training data: pass it, or refit"
            )
        return Xt, yt

    def training_data(self, X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor] | tuple[BatchStream, None]:
        """The training data checked against this fit: prepared tensors, or a stream for a data loader.

        Arrays or tensors ``X, y`` give [`prepare`][bayesguide.posterior.Fitted.prepare]'s
        ``(X, y)``. A data loader ``X`` (a ``DataLoader``, [`Batches`][bayesguide.model.batches.Batches]
        or a [`BatchStream`][bayesguide.model.batches.BatchStream]; ``y`` ``None``) gives
        ``(stream, None)``: the loader validated against the network
        ([`open_stream`][bayesguide.model.batches.open_stream]) and checked to hold the fit's
        training data ([`BatchStream.check_fit`][bayesguide.model.batches.BatchStream.check_fit]: by
        fingerprint for a fit made from a loader, by hashing the loader's data for a fit made
        from tensors — once per stream).
        """
        stream = open_stream(X, y, self.model.net, self.model.likelihood, self.model.dtype)
        if stream is None:
            return self.prepare(X, y)
        stream.check_fit(self.data_fingerprint, self.label)
        return stream, None

    def predict(self, X: ArrayLike) -> torch.Tensor:
        """Network output (logits or means) at the fitted weights, in eval mode."""
        Xt = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        with torch.no_grad():
            return self.module.eval()(Xt.to(self.model.dtype))

    def to_inference_data(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        posterior: str | PosteriorKind = "auto",
        draws: int = 200,
        seed: int = 0,
        chunk_size: int | None = None,
        hessian: str = "diag",
        prior_scale: float = 1.0,
        predictive: str | Predictive = "auto",
    ) -> Any:
        """Posterior draws and pointwise log-likelihood, for ArviZ (``posterior``, ``log_likelihood``).

        Parameters
        ----------
        X
            The training inputs (validated and checked by fingerprint). In memory: the
            ``log_likelihood`` group alone holds ``S × N`` numbers, so a data loader is
            refused (a ``TypeError``) — for data beyond memory, PSIS-LOO streams:
            [`bayesguide.predictive.loo`][]``(fit, loader)``, which reads the loader batch by
            batch and keeps ``N`` numbers per result, not the draws.
        y
            The training targets (validated and checked by fingerprint with ``X``).
        posterior
            ``"guide"``, ``"laplace"`` or ``"auto"`` (guide for SVI fits, Laplace otherwise).
        draws
            Number of posterior draws ``S``.
        seed
            Seed of the draws (a private generator; global RNG state is untouched).
        chunk_size
            Examples per block of the log-likelihood (default: chosen to bound memory).
        hessian
            Curvature of the Laplace posterior, ``"diag"`` or ``"full"``.
        prior_scale
            The Laplace posterior's prior scale ``c`` — pass the ``prior_scale`` type-II
            maximum likelihood found (``bg.evidence(...).prior_scale``).
        predictive
            ``"glm"`` (the network linearised at the fitted weights: the predictive the
            Laplace posterior is an approximation *for*, Immer et al. 2021), ``"network"``,
            or ``"auto"`` (GLM for Laplace draws, the network for guide draws).

        Returns
        -------
        arviz.InferenceData
            Groups ``posterior`` (one variable per site, named after it with ``_`` for ``.``
            (ArviZ's plots read dots as indexing: site ``0.units`` is ``0_units``), dims ``chain``
            (one), ``draw``, ``unit_<layer>``, ``weight_<layer>`` — for Laplace draws of a
            network with ``BatchNorm``, the sites of the network with each one folded into
            the layer before it, as the Laplace evidence scores it; plus ``noise`` when
            learned — a point estimate repeated over draws), ``posterior_predictive``
            (``obs``: one replicated target per draw and example, under the same predictive,
            dims as ``observed_data`` after ``chain, draw``),
            ``log_likelihood`` (``obs``, dims ``chain, draw, example``), ``observed_data`` (``obs``) and
            ``sample_stats`` with ``log_importance_ratio`` (``log p(D, θ_s) − log q(θ_s)``
            per draw, under the same predictive: what corrects for approximate draws in
            [`bayesguide.predictive.loo`][]).

        Examples
        --------
        >>> import torch, bayesguide as bg
        >>> _ = torch.manual_seed(0)
        >>> X = torch.randn(30, 2); y = X @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(30)
        >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)), bg.GuidedNormal(0.5),
        ...                        likelihood="gaussian", noise=0.1)
        >>> fit = bg.fit_map(model, X, y, steps=200, lr=0.05, progress=False)
        >>> idata = fit.to_inference_data(X, y, draws=50)
        >>> idata.log_likelihood["obs"].shape
        (1, 50, 30)
        """
        if is_batches(X):
            raise TypeError(
                f"to_inference_data needs the data in memory, got a data loader ({type(X).__name__}): its "
                f"log_likelihood and posterior_predictive groups hold draws × examples numbers; for PSIS-LOO on "
                f"data beyond memory use bg.predictive.loo(fit, loader), which streams the loader"
            )
        kind = PosteriorKind.resolve(posterior, "posterior")
        check_count(draws, "draws")
        Xt, yt = self.prepare(X, y)
        model, module, got = scored_draws(self, Xt, yt, kind, draws, seed, hessian, prior_scale=prior_scale,
                                          predictive=predictive)
        values, described = got.values, got.described
        ll = log_likelihood_draws(model, module, values, Xt, yt, self.noise, chunk_size=chunk_size,
                                  around=got.around)
        ratio = (ll.sum(1) + got.log_prior - got.log_q).numpy()

        xr = xarray()
        post: dict[str, Any] = {}
        for site in model.sites:
            layer = arviz_name(site.layer.name or "layer")  # a bare layer has the empty name
            dims = ["chain", "draw", f"unit_{layer}", f"weight_{layer}"]
            post[arviz_name(site.name)] = xr.DataArray(values[site.name].numpy()[None], dims=dims)
        if self.model.learns_noise:
            assert self.noise is not None
            post["noise"] = xr.DataArray(np.full((1, draws), self.noise), dims=["chain", "draw"])
        coords = {"chain": [0], "draw": np.arange(draws)}
        attrs = {"posterior": described, "seed": seed, "source": self.label,
                 "predictive": "network" if got.around is None else "glm"}
        obs = yt.numpy()
        obs_dims = ["example"] if obs.ndim == 1 else ["example", "output"]
        replicated = predictive_draws(model, module, values, Xt, tuple(obs.shape), self.noise, seed=seed,
                                      around=got.around).numpy().astype(obs.dtype, copy=False)
        return arviz().InferenceData(
            posterior=xr.Dataset(post, coords=coords, attrs=attrs),
            posterior_predictive=xr.Dataset({"obs": (["chain", "draw", *obs_dims], replicated[None])},
                                            coords=coords, attrs=attrs),
            log_likelihood=xr.Dataset({"obs": (["chain", "draw", "example"], ll.numpy()[None])},
                                      coords=coords, attrs=attrs),
            observed_data=xr.Dataset({"obs": (obs_dims, obs)}),
            sample_stats=xr.Dataset({"log_importance_ratio": (["chain", "draw"], ratio[None])}, coords=coords,
                                    attrs=attrs),
        )


def to_inference_data(source: Fitted, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> Any:
    """``source.to_inference_data(X, y, **kwargs)`` (see `Fitted.to_inference_data`)."""
    if not isinstance(source, Fitted):
        raise TypeError(
            f"expected a FitResult (bg.fit_map / bg.fit_svi) or a Candidate (bg.prune), got "
            f"{type(source).__name__}"
        )
    return source.to_inference_data(X, y, **kwargs)


def scored_draws(
    src: Fitted, Xt: Inputs, yt: torch.Tensor | None, kind: PosteriorKind, draws: int, seed: int, hessian: str, *,
    prior_scale: float = 1.0, predictive: str | Predictive = "auto",
) -> tuple[GuidedModel, nn.Module, Draws]:
    """The network the draws are scored with, and the draws: `posterior_draws` of ``kind``.

    ``"auto"`` is the guide for SVI fits and the Laplace posterior otherwise; Laplace
    draws are those of the network the Laplace evidence scores, with each ``BatchNorm``
    folded into the layer before it (`fold_batchnorm`), and are scored with it.
    """
    if kind is PosteriorKind.AUTO:
        kind = PosteriorKind.GUIDE if src.variational else PosteriorKind.LAPLACE
    model, module = src.model, src.module
    if kind is PosteriorKind.LAPLACE:
        model, module, _ = fold_batchnorm(model, module)
    got = posterior_draws(src, Xt, yt, kind, draws, seed, hessian, prior_scale=prior_scale, predictive=predictive,
                          model=model, module=module)
    return model, module, got


def posterior_draws(
    src: Fitted, Xt: Inputs, yt: torch.Tensor | None, kind: PosteriorKind, draws: int, seed: int,
    hessian: str, *, prior_scale: float = 1.0, predictive: str | Predictive = "auto",
    model: GuidedModel | None = None, module: nn.Module | None = None,
) -> Draws:
    """``draws`` draws of ``src``'s posterior (float64), with their densities (`Draws`).

    The Laplace posterior is that of ``model`` / ``module`` when given (``src``'s with its
    ``BatchNorm`` folded, say), else of ``src``'s own; ``Xt`` may be a stream of batches
    (its curvature is accumulated over one pass; ``yt`` is then ``None``).
    """
    generator = torch.Generator().manual_seed(seed)
    how = Predictive.resolve(predictive, "predictive")
    if kind is PosteriorKind.AUTO:
        kind = PosteriorKind.GUIDE if src.variational else PosteriorKind.LAPLACE
    if kind is PosteriorKind.GUIDE:
        if not src.variational:
            raise ValueError(
                f"posterior='guide' needs a variational posterior, but this {src.label} has a "
                f"point-mass (MAP) guide: fit one with bg.fit_svi, or use posterior='laplace'"
            )
        values, log_q = guide_draws(src.guide, src.model, draws, generator)
        around = _fitted_values(src) if how is Predictive.GLM else None
        return Draws(values, log_q, log_prior_draws(src.model, values), around,
                     f"guide ({type(src.guide).__name__})")
    lap = laplace_posterior(model or src.model, module or src.module, Xt, yt, hessian=hessian, noise=src.noise,
                            prior_scale=prior_scale)
    flat = lap.sample(draws, generator)
    around = None if how is Predictive.NETWORK else lap.unflatten(lap.mean)
    return Draws(lap.unflatten(flat), lap.log_density(flat), lap.log_prior(flat), around,
                 f"laplace ({lap.hessian}, prior scale {lap.prior_scale:.4g})")


def _fitted_values(src: Fitted) -> dict[str, torch.Tensor]:
    """The fitted weights (MAP or posterior mean) as per-site unit matrices."""
    return {s.name: s.pack(dict(src.module.named_parameters())).detach() for s in src.model.sites}
