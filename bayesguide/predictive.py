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
from torch.utils.data import DataLoader

from bayesguide._arviz import arviz
from bayesguide.model import ArrayLike
from bayesguide.model.batches import Batches, BatchStream, as_batches, open_stream
from bayesguide.posterior import Fitted, PosteriorKind, to_inference_data
from bayesguide.posterior.draws import check_count, log_likelihood_draws
from bayesguide.posterior.fitted import scored_draws

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
        The ``InferenceData`` the estimate was computed from (``None`` for an estimate
        from a data loader, whose draws are not stored).
    corrected
        Whether the weights were corrected for approximate draws (see the module docstring).
    k_q
        Pareto ``k`` of ``p(D, θ_s) / q(θ_s)``: how far the draws are from the posterior
        (``None`` when the draws carry no ratio).
    elpd_data
        ArviZ's ``ELPDData`` of this estimate (for ``arviz.compare``; ``None`` from a
        data loader).
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


def loo(source: Fitted, X: ArrayLike | Batches | BatchStream | DataLoader[Any], y: ArrayLike | None = None, *,
        correct: bool | str = "auto", **kwargs: Any) -> LooResult:
    """PSIS-LOO cross-validation of a fit or candidate (Vehtari et al. 2017).

    Draws the posterior with ``source.to_inference_data`` (``kwargs`` are passed on:
    ``draws``, ``hessian``, ``prior_scale``, ``predictive``, …) and computes PSIS-LOO on
    them ([`loo_from_draws`][bayesguide.predictive.loo_from_draws]), correcting for approximate draws per ``correct``
    (``"auto"``, ``True``, ``False``; see the module docstring).

    **Data that do not fit in memory.** ``X`` may be a data loader of ``(X, y)`` batches
    (a ``DataLoader`` over a sized dataset, or [`Batches`][bayesguide.model.batches.Batches];
    ``y`` omitted). PSIS is computed example by example — each example's weights depend
    only on its own log-likelihoods over the draws — so the loader is read batch by batch,
    in two passes (the first sums ``log p(D | θ_s)`` for the correction's ratio, the
    second smooths each batch's weights), holding ``S × batch`` log-likelihoods at a time
    and ``N`` numbers per result; the estimate equals the in-memory one. Such a result
    has no ``idata`` and no ``elpd_data`` (``None``): the draws are not stored. Options:
    ``draws`` (default 200), ``seed``, ``hessian`` (``"diag"``, the default, ``"kron"``
    or ``"full"``), ``prior_scale``, ``predictive``, ``posterior``. The loader is checked
    against the fit as [`bayesguide.evidence`][] checks it.

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
    batches = X if isinstance(X, BatchStream) else as_batches(X, y)
    if batches is not None:
        if isinstance(X, BatchStream) and y is not None:
            raise ValueError("pass a data loader alone, without y: it yields (X, y) batches")
        return _loo_stream(source, batches, correct=correct, **kwargs)
    return loo_from_draws(to_inference_data(source, X, y, **kwargs), correct=correct)


def loo_from_draws(idata: Any, *, correct: bool | str = "auto") -> LooResult:
    """PSIS-LOO from an ``InferenceData`` with a ``log_likelihood`` group (one chain of draws).

    With ``sample_stats.log_importance_ratio`` (``log p(D, θ_s) − log q(θ_s)``, written by
    [`to_inference_data`][bayesguide.posterior.fitted.Fitted.to_inference_data]) the weights can be corrected
    for approximate draws; without it the draws are taken as posterior draws.
    """
    _check_correct(correct)
    ll = np.asarray(idata.log_likelihood["obs"].values, dtype=np.float64)
    ll = ll.reshape(-1, ll.shape[-1]).T  # (N, S)
    stats = getattr(idata, "sample_stats", None)
    ratio = None
    if stats is not None and "log_importance_ratio" in stats:
        ratio = np.asarray(stats["log_importance_ratio"].values, dtype=np.float64).reshape(-1)
    correction = _Correction.decide(ratio, correct)
    loo_i, lppd_i, k = correction.pointwise(ll)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        elpd_data = arviz().loo(idata, pointwise=True, reff=1.0)
    elpd, se, p_loo = _totals(loo_i, lppd_i)
    # ArviZ's record of this estimate (for arviz.compare / stacking), with our numbers in it
    elpd_data["elpd_loo"], elpd_data["se"], elpd_data["p_loo"] = elpd, se, p_loo
    elpd_data["loo_i"] = elpd_data["loo_i"].copy(data=loo_i.reshape(elpd_data["loo_i"].shape))
    elpd_data["pareto_k"] = elpd_data["pareto_k"].copy(data=k.reshape(elpd_data["pareto_k"].shape))
    elpd_data["warning"] = bool((k > HIGH_K).any())
    return _result(loo_i, lppd_i, k, correction, idata=idata, elpd_data=elpd_data)


def _check_correct(correct: object) -> None:
    if correct not in (True, False, "auto"):
        raise ValueError(f"correct must be True, False or 'auto', got {correct!r}")


def _pareto_smoothed(log_ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's ``psislw`` of each row (``(N, S)``): log weights and Pareto ``k`` per row."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        lw, k = arviz().psislw(log_ratios - np.max(log_ratios, axis=1, keepdims=True), reff=1.0)
    return np.asarray(lw), np.asarray(k, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class _Correction:
    """Whether and how the weights are corrected for approximate draws (module docstring)."""

    ratio: np.ndarray | None
    corrected: bool
    k_q: float | None
    log_w_q: np.ndarray | None

    @classmethod
    def decide(cls, ratio: np.ndarray | None, correct: bool | str) -> _Correction:
        """From the draws' ``log p(D, θ_s) − log q(θ_s)`` (``None``: none recorded)."""
        if ratio is None or correct is False or not np.isfinite(ratio).all():
            return cls(ratio, False, None, None)
        log_w_q, k_q = _pareto_smoothed(ratio[None, :])
        return cls(ratio, correct is True or float(k_q[0]) <= HIGH_K, float(k_q[0]), log_w_q)

    def pointwise(self, ll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(elpd_loo_i, lppd_i, k_i)`` of examples whose log-likelihoods over the draws are ``ll`` (``(B, S)``)."""
        shift = self.ratio[None, :] if self.corrected and self.ratio is not None else 0.0
        lw, k = _pareto_smoothed(-ll + shift)
        loo_i = logsumexp(lw + ll, axis=1)
        if self.corrected:  # the in-sample lppd under the corrected (posterior) weights
            assert self.log_w_q is not None
            lppd_i = logsumexp(self.log_w_q.reshape(1, -1) + ll, axis=1)
        else:
            lppd_i = logsumexp(ll, axis=1) - np.log(ll.shape[1])
        return loo_i, lppd_i, k


def _totals(loo_i: np.ndarray, lppd_i: np.ndarray) -> tuple[float, float, float]:
    """``elpd_loo``, its standard error and ``p_loo`` from the pointwise values."""
    elpd = float(loo_i.sum())
    return elpd, float(np.sqrt(loo_i.size * np.var(loo_i))), float(lppd_i.sum() - elpd)


def _result(loo_i: np.ndarray, lppd_i: np.ndarray, k: np.ndarray, correction: _Correction, *,
            idata: Any, elpd_data: Any) -> LooResult:
    """The `LooResult` (warning when some examples have ``k > 0.7``)."""
    elpd, se, p_loo = _totals(loo_i, lppd_i)
    high = int((k > HIGH_K).sum())
    if high:
        warnings.warn(
            f"{high} of {k.size} examples have Pareto k > {HIGH_K}: their leave-one-out "
            f"estimates are unreliable (the posterior draws are far from each leave-one-out "
            f"posterior); use more draws, or a better posterior approximation",
            UserWarning, stacklevel=3,
        )
    return LooResult(elpd=elpd, se=se, p_loo=p_loo, pareto_k=k, n_high_k=high, pointwise=loo_i, idata=idata,
                     corrected=correction.corrected, k_q=correction.k_q, elpd_data=elpd_data)


def _loo_stream(source: Fitted, batches: Batches | BatchStream, *, correct: bool | str = "auto", draws: int = 200,
                seed: int = 0, hessian: str = "diag", prior_scale: float = 1.0, predictive: str = "auto",
                posterior: str | PosteriorKind = "auto") -> LooResult:
    """PSIS-LOO of ``source`` from a data loader, batch by batch (see [`loo`][bayesguide.predictive.loo])."""
    _check_correct(correct)
    kind = PosteriorKind.resolve(posterior, "posterior")
    check_count(draws, "draws")
    stream = open_stream(batches, None, source.model.net, source.model.likelihood, source.model.dtype)
    assert stream is not None
    stream.check_fit(source.data_fingerprint, source.label)
    model, module, got = scored_draws(source, stream, None, kind, draws, seed, hessian, prior_scale=prior_scale,
                                      predictive=predictive)

    def pointwise_ll() -> Any:
        for xb, yb in stream:
            yield log_likelihood_draws(model, module, got.values, xb, yb, source.noise,
                                       around=got.around).numpy().T  # (B, S)

    total = np.zeros(draws)
    for ll in pointwise_ll():  # first pass: log p(D | θ_s), for the correction's ratio
        total += ll.sum(0)
    ratio = total + (got.log_prior - got.log_q).numpy()
    correction = _Correction.decide(ratio, correct)
    parts = [correction.pointwise(ll) for ll in pointwise_ll()]  # second pass: each batch's examples
    loo_i, lppd_i, k = (np.concatenate([part[j] for part in parts]) for j in range(3))
    return _result(loo_i, lppd_i, k, correction, idata=None, elpd_data=None)
