"""Posterior draws as ArviZ ``InferenceData``, and PSIS-LOO predictive comparison.

``to_inference_data(fit, X, y)`` draws ``S`` weight vectors ``θ_s`` from an approximate
posterior — the SVI guide ``q(θ)``, or the Laplace posterior ``N(θ*, H⁻¹)`` around the
MAP weights (:mod:`bayesguide.marglik.posterior`) — and stores them with the pointwise
log-likelihood ``log p(y_i | x_i, θ_s)``, so that ArviZ's ``loo``, ``compare`` and
plots work on it. :func:`loo` is Pareto-smoothed importance-sampling leave-one-out
cross-validation on those draws:

.. math::

    \\widehat{\\mathrm{elpd}}_{\\mathrm{loo}} = \\sum_{i=1}^N \\log
        \\frac{\\sum_s w_i^s\\, p(y_i \\mid θ_s)}{\\sum_s w_i^s},
    \\qquad w_i^s ∝ 1 / p(y_i \\mid θ_s) \\text{ (Pareto-smoothed)},

with the Pareto shape ``k_i`` of each example's weights as its diagnostic (``k > 0.7``:
unreliable). The draws are independent, not MCMC, so the relative efficiency is 1.

References: Vehtari, Gelman & Gabry, "Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC", Statistics and Computing 27 (2017); Vehtari
et al., "Pareto smoothed importance sampling", JMLR 25 (2024).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from bayesguide._arviz import arviz
from bayesguide._options import Option
from bayesguide.infer.result import FitResult
from bayesguide.marglik.posterior import (
    Source,
    guide_draws,
    laplace_posterior,
    log_likelihood_draws,
    resolve_source,
)
from bayesguide.model import ArrayLike
from bayesguide.pruning.candidate import Candidate

__all__ = ["HIGH_K", "LooResult", "PosteriorKind", "loo", "to_inference_data"]

#: Pareto ``k`` above which an example's leave-one-out estimate is unreliable
HIGH_K = 0.7


class PosteriorKind(Option):
    """Which approximate posterior the draws come from."""

    #: the guide for an SVI fit (or a candidate cut from one), Laplace otherwise
    AUTO = "auto"
    #: draws of the SVI guide (mean-field or low-rank Normal)
    GUIDE = "guide"
    #: the Laplace posterior ``N(θ*, H⁻¹)`` around the fitted weights
    LAPLACE = "laplace"

    @property
    def description(self) -> str:
        return {
            "auto": "guide for SVI fits, Laplace otherwise",
            "guide": "draws of the SVI guide",
            "laplace": "Laplace posterior around the MAP weights (GGN curvature)",
        }[self.value]


def to_inference_data(
    source: FitResult | Candidate,
    X: ArrayLike,
    y: ArrayLike,
    *,
    posterior: str | PosteriorKind = "auto",
    draws: int = 200,
    seed: int = 0,
    chunk_size: int | None = None,
    hessian: str = "diag",
) -> Any:
    """Posterior draws and pointwise log-likelihood of a fit or candidate, for ArviZ.

    Parameters
    ----------
    source
        A :class:`~bayesguide.FitResult` or a :class:`~bayesguide.Candidate`.
    X, y
        The training data (validated and checked by fingerprint).
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

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (one variable per site, named after it, dims ``chain``
        (one), ``draw``, ``unit_<layer>``, ``weight_<layer>``; plus ``noise`` when
        learned — a point estimate repeated over draws), ``log_likelihood`` (``obs``,
        dims ``chain, draw, example``) and ``observed_data`` (``obs``).

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
    src = resolve_source(source)
    kind = PosteriorKind.resolve(posterior, "posterior")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    Xt, yt = src.prepare(X, y)
    values, described = _draws(src, Xt, yt, kind, draws, seed, hessian)
    ll = log_likelihood_draws(src.model, src.module, values, Xt, yt, src.noise, chunk_size=chunk_size)

    post: dict[str, xr.DataArray] = {}
    for site in src.model.sites:
        dims = ["chain", "draw", f"unit_{site.layer.name}", f"weight_{site.layer.name}"]
        post[site.name] = xr.DataArray(values[site.name].numpy()[None], dims=dims)
    if src.model.learns_noise:
        assert src.noise is not None
        post["noise"] = xr.DataArray(np.full((1, draws), src.noise), dims=["chain", "draw"])
    coords = {"chain": [0], "draw": np.arange(draws)}
    attrs = {"posterior": described, "seed": seed, "source": src.label}
    obs = yt.numpy()
    obs_dims = ["example"] if obs.ndim == 1 else ["example", "output"]
    return arviz().InferenceData(
        posterior=xr.Dataset(post, coords=coords, attrs=attrs),
        log_likelihood=xr.Dataset({"obs": (["chain", "draw", "example"], ll.numpy()[None])},
                                  coords=coords, attrs=attrs),
        observed_data=xr.Dataset({"obs": (obs_dims, obs)}),
    )


def _draws(
    src: Source, Xt: torch.Tensor, yt: torch.Tensor, kind: PosteriorKind, draws: int, seed: int,
    hessian: str,
) -> tuple[dict[str, torch.Tensor], str]:
    """Per-site draws ``(S, n_units, group_size)`` (float64) and what they are, in words."""
    generator = torch.Generator().manual_seed(seed)
    if kind is PosteriorKind.AUTO:
        kind = PosteriorKind.GUIDE if src.variational else PosteriorKind.LAPLACE
    if kind is PosteriorKind.GUIDE:
        if not src.variational:
            raise ValueError(
                f"posterior='guide' needs a variational posterior, but this {src.label} has a "
                f"point-mass (MAP) guide: fit one with bg.fit_svi, or use posterior='laplace'"
            )
        values, _ = guide_draws(src.guide, src.model, draws, generator)
        return values, f"guide ({type(src.guide).__name__})"
    lap = laplace_posterior(src.model, src.module, Xt, yt, hessian=hessian, noise=src.noise)
    return lap.unflatten(lap.sample(draws, generator)), f"laplace ({lap.hessian})"


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO estimate of the expected log pointwise predictive density (nats).

    Attributes
    ----------
    elpd, se
        ``elpd_loo`` and its standard error.
    p_loo
        Effective number of parameters, ``lppd − elpd_loo``.
    pareto_k
        Pareto shape of each example's importance weights, shape ``(N,)``.
    n_high_k
        Examples with ``k > 0.7`` (their leave-one-out estimate is unreliable).
    pointwise
        ``elpd_loo`` per example, shape ``(N,)``.
    idata
        The ``InferenceData`` the estimate was computed from.
    """

    elpd: float
    se: float
    p_loo: float
    pareto_k: np.ndarray
    n_high_k: int
    pointwise: np.ndarray
    idata: Any

    def __str__(self) -> str:
        n = self.pareto_k.size
        warn = f"; {self.n_high_k} of {n} examples with Pareto k > {HIGH_K}" if self.n_high_k else ""
        return (f"LooResult(elpd_loo = {self.elpd:.6g} ± {self.se:.3g}, p_loo = {self.p_loo:.4g}, "
                f"N = {n}, max k = {float(self.pareto_k.max()):.3g}{warn})")


def loo(source: FitResult | Candidate, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> LooResult:
    """PSIS-LOO cross-validation of a fit or candidate (Vehtari et al. 2017).

    Draws the posterior with :func:`to_inference_data` (``kwargs`` are passed on) and
    runs ``arviz.loo(idata, pointwise=True)`` with relative efficiency 1.

    Warns
    -----
    UserWarning
        When some examples have Pareto ``k > 0.7`` (ArviZ's own warning is replaced by
        this one, which counts them).

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> from bayesguide.predictive import loo
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(30, 2); y = X @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(30)
    >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)), bg.GuidedNormal(0.5),
    ...                        likelihood="gaussian", noise=0.1)
    >>> fit = bg.fit_map(model, X, y, steps=200, lr=0.05, progress=False)
    >>> res = loo(fit, X, y, draws=400, hessian="full")
    >>> res.pareto_k.shape, res.n_high_k
    ((30,), 0)
    """
    idata = to_inference_data(source, X, y, **kwargs)
    az = arviz()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        elpd = az.loo(idata, pointwise=True, reff=1.0)
    k = np.asarray(elpd.pareto_k, dtype=np.float64)
    high = int((k > HIGH_K).sum())
    if high:
        warnings.warn(
            f"{high} of {k.size} examples have Pareto k > {HIGH_K}: their leave-one-out "
            f"estimates are unreliable (the posterior draws are far from each leave-one-out "
            f"posterior); use more draws, or a better posterior approximation",
            UserWarning, stacklevel=2,
        )
    return LooResult(
        elpd=float(elpd.elpd_loo), se=float(elpd.se), p_loo=float(elpd.p_loo), pareto_k=k,
        n_high_k=high, pointwise=np.asarray(elpd.loo_i, dtype=np.float64), idata=idata,
    )
