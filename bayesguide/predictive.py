"""PSIS-LOO predictive comparison of a fit or candidate, through ArviZ.

``fit.to_inference_data(X, y)``
([`bayesguide.posterior.Fitted.to_inference_data`][bayesguide.posterior.fitted.Fitted.to_inference_data])
draws ``S`` weight vectors ``θ_s`` from an approximate posterior — the SVI guide
``q(θ)``, or the Laplace posterior ``N(θ*, H⁻¹)`` around the MAP weights — and stores
them with the pointwise log-likelihood ``log p(y_i | x_i, θ_s)``, so that ArviZ's
``loo``, ``compare`` and plots work on it. [`loo`][bayesguide.predictive.loo] is Pareto-smoothed
importance-sampling leave-one-out cross-validation on those draws:

$$
\\widehat{\\mathrm{elpd}}_{\\mathrm{loo}} = \\sum_{i=1}^N \\log
    \\frac{\\sum_s w_i^s\\, p(y_i \\mid θ_s)}{\\sum_s w_i^s},
\\qquad w_i^s ∝ 1 / p(y_i \\mid θ_s) \\text{ (Pareto-smoothed)},
$$

with the Pareto shape ``k_i`` of each example's weights as its diagnostic (``k > 0.7``:
unreliable). The draws are independent, not MCMC, so the relative efficiency is 1.

**Approximate draws.** Laplace and SVI draws come from an approximation ``q(θ)``, not
from the posterior. The importance ratio to the leave-one-out posterior is then

$$
w_i^s ∝ \\frac{p(\\mathcal D, θ_s)}{q(θ_s)} \\frac{1}{p(y_i \\mid θ_s)}
$$

(Magnusson, Andersen, Jonasson & Vehtari, "Leave-one-out cross-validation for Bayesian
model comparison in large data", AISTATS 2020). That correction is itself importance
sampling, reliable only when ``q`` is close to the posterior: its own Pareto ``k`` (of
``p(D, θ_s) / q(θ_s)``) decides. With ``correct="auto"`` (default) the correction is
applied when that ``k ≤ 0.7`` and the draws are otherwise treated as posterior draws;
[`LooResult`][bayesguide.predictive.LooResult] says which (``corrected``, ``k_q``).

**Laplace draws go through the GLM predictive** by default (the network linearised at
the MAP; Immer, Korzepa & Bauer, AISTATS 2021): the Laplace posterior is a Gaussian
posterior *of the linearised model*, and pushing its draws through the nonlinear
network instead gives predictions far off the data (Pareto ``k > 0.7`` for every
example of a small tanh regression).

Layer: beside [`bayesguide.marglik`][], below [`bayesguide.comparison`][].

References: Vehtari, Gelman & Gabry, "Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC", Statistics and Computing 27 (2017); Vehtari
et al., "Pareto smoothed importance sampling", JMLR 25 (2024).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from bayesguide._arviz import arviz
from bayesguide.model import ArrayLike
from bayesguide.posterior import Fitted, PosteriorKind, to_inference_data

__all__ = ["HIGH_K", "LooResult", "PosteriorKind", "loo", "loo_from_draws", "to_inference_data"]

HIGH_K = 0.7
"""Pareto ``k`` above which an example's leave-one-out estimate is unreliable."""


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO estimate of the expected log pointwise predictive density (nats).

    Attributes
    ----------
    elpd
        ``elpd_loo``, the expected log pointwise predictive density.
    se
        The standard error of ``elpd``.
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
    corrected
        Whether the weights were corrected for approximate draws (see the module docstring).
    k_q
        Pareto ``k`` of ``p(D, θ_s) / q(θ_s)``: how far the draws are from the posterior
        (``None`` when the draws carry no ratio).
    elpd_data
        ArviZ's ``ELPDData`` of this estimate (for ``arviz.compare``).
    """

    elpd: float
    se: float
    p_loo: float
    pareto_k: np.ndarray
    n_high_k: int
    pointwise: np.ndarray
    idata: Any
    corrected: bool = False
    k_q: float | None = None
    elpd_data: Any = None

    def __str__(self) -> str:
        n = self.pareto_k.size
        warn = f"; {self.n_high_k} of {n} examples with Pareto k > {HIGH_K}" if self.n_high_k else ""
        warn += "" if self.k_q is None else f"; k_q = {self.k_q:.3g} ({'' if self.corrected else 'not '}corrected)"
        return (f"LooResult(elpd_loo = {self.elpd:.6g} ± {self.se:.3g}, p_loo = {self.p_loo:.4g}, "
                f"N = {n}, max k = {float(self.pareto_k.max()):.3g}{warn})")


def loo(source: Fitted, X: ArrayLike, y: ArrayLike, *, correct: bool | str = "auto", **kwargs: Any) -> LooResult:
    """PSIS-LOO cross-validation of a fit or candidate (Vehtari et al. 2017).

    Draws the posterior with ``source.to_inference_data`` (``kwargs`` are passed on:
    ``draws``, ``hessian``, ``prior_scale``, ``predictive``, …) and computes PSIS-LOO on
    them ([`loo_from_draws`][bayesguide.predictive.loo_from_draws]), correcting for approximate draws per ``correct``
    (``"auto"``, ``True``, ``False``; see the module docstring).

    Warns
    -----
    UserWarning
        When some examples have Pareto ``k > 0.7``.

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
    >>> res.pareto_k.shape, res.n_high_k, res.corrected
    ((30,), 0, True)
    """
    return loo_from_draws(to_inference_data(source, X, y, **kwargs), correct=correct)


def loo_from_draws(idata: Any, *, correct: bool | str = "auto") -> LooResult:
    """PSIS-LOO from an ``InferenceData`` with a ``log_likelihood`` group (one chain of draws).

    With ``sample_stats.log_importance_ratio`` (``log p(D, θ_s) − log q(θ_s)``, written by
    [`to_inference_data`][bayesguide.posterior.fitted.Fitted.to_inference_data]) the weights can be corrected
    for approximate draws; without it the draws are taken as posterior draws.
    """
    if correct not in (True, False, "auto"):
        raise ValueError(f"correct must be True, False or 'auto', got {correct!r}")
    az = arviz()
    ll = np.asarray(idata.log_likelihood["obs"].values, dtype=np.float64)
    ll = ll.reshape(-1, ll.shape[-1]).T  # (N, S)
    n_data, n_draws = ll.shape
    stats = getattr(idata, "sample_stats", None)
    ratio = None
    if stats is not None and "log_importance_ratio" in stats:
        ratio = np.asarray(stats["log_importance_ratio"].values, dtype=np.float64).reshape(-1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        k_q: float | None = None
        corrected = False
        if ratio is not None and correct is not False:
            if np.isfinite(ratio).all():
                w_q, kq = az.psislw(ratio[None, :] - ratio.max(), reff=1.0)
                k_q = float(np.asarray(kq).reshape(-1)[0])
                corrected = correct is True or k_q <= HIGH_K
        shift = ratio[None, :] if corrected and ratio is not None else 0.0
        lw, k = az.psislw(-ll + shift - np.max(-ll + shift, axis=1, keepdims=True), reff=1.0)
        loo_i = logsumexp(np.asarray(lw) + ll, axis=1)
        if corrected:  # the in-sample lppd under the corrected (posterior) weights
            lppd_i = logsumexp(np.asarray(w_q).reshape(1, -1) + ll, axis=1)
        else:
            lppd_i = logsumexp(ll, axis=1) - np.log(n_draws)
        elpd_data = az.loo(idata, pointwise=True, reff=1.0)
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    elpd, se = float(loo_i.sum()), float(np.sqrt(n_data * np.var(loo_i)))
    p_loo = float(lppd_i.sum() - elpd)
    # ArviZ's record of this estimate (for arviz.compare / stacking), with our numbers in it
    elpd_data["elpd_loo"], elpd_data["se"], elpd_data["p_loo"] = elpd, se, p_loo
    elpd_data["loo_i"] = elpd_data["loo_i"].copy(data=loo_i.reshape(elpd_data["loo_i"].shape))
    elpd_data["pareto_k"] = elpd_data["pareto_k"].copy(data=k.reshape(elpd_data["pareto_k"].shape))
    elpd_data["warning"] = bool((k > HIGH_K).any())
    high = int((k > HIGH_K).sum())
    if high:
        warnings.warn(
            f"{high} of {k.size} examples have Pareto k > {HIGH_K}: their leave-one-out "
            f"estimates are unreliable (the posterior draws are far from each leave-one-out "
            f"posterior); use more draws, or a better posterior approximation",
            UserWarning, stacklevel=2,
        )
    return LooResult(elpd=elpd, se=se, p_loo=p_loo, pareto_k=k, n_high_k=high, pointwise=loo_i, idata=idata,
                     corrected=corrected, k_q=k_q, elpd_data=elpd_data)
