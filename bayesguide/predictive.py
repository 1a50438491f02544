"""PSIS-LOO predictive comparison of a fit or candidate, through ArviZ.

``fit.to_inference_data(X, y)`` (:meth:`bayesguide.posterior.Fitted.to_inference_data`)
draws ``S`` weight vectors ``θ_s`` from an approximate posterior — the SVI guide
``q(θ)``, or the Laplace posterior ``N(θ*, H⁻¹)`` around the MAP weights — and stores
them with the pointwise log-likelihood ``log p(y_i | x_i, θ_s)``, so that ArviZ's
``loo``, ``compare`` and plots work on it. :func:`loo` is Pareto-smoothed
importance-sampling leave-one-out cross-validation on those draws:

.. math::

    \\widehat{\\mathrm{elpd}}_{\\mathrm{loo}} = \\sum_{i=1}^N \\log
        \\frac{\\sum_s w_i^s\\, p(y_i \\mid θ_s)}{\\sum_s w_i^s},
    \\qquad w_i^s ∝ 1 / p(y_i \\mid θ_s) \\text{ (Pareto-smoothed)},

with the Pareto shape ``k_i`` of each example's weights as its diagnostic (``k > 0.7``:
unreliable). The draws are independent, not MCMC, so the relative efficiency is 1.

Layer: beside :mod:`bayesguide.marglik`, below :mod:`bayesguide.comparison`.

References: Vehtari, Gelman & Gabry, "Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC", Statistics and Computing 27 (2017); Vehtari
et al., "Pareto smoothed importance sampling", JMLR 25 (2024).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesguide._arviz import arviz
from bayesguide.model import ArrayLike
from bayesguide.posterior import Fitted, PosteriorKind, to_inference_data

__all__ = ["HIGH_K", "LooResult", "PosteriorKind", "loo", "to_inference_data"]

#: Pareto ``k`` above which an example's leave-one-out estimate is unreliable
HIGH_K = 0.7


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


def loo(source: Fitted, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> LooResult:
    """PSIS-LOO cross-validation of a fit or candidate (Vehtari et al. 2017).

    Draws the posterior with ``source.to_inference_data`` (``kwargs`` are passed on) and
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
