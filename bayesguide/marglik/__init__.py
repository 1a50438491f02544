"""Marginal likelihood (evidence) ``p(D | M)`` of a fitted architecture: ``bg.evidence``.

``bg.evidence(fit, X, y, method="laplace", hessian="full")`` — see
:mod:`bayesguide.marglik.laplace` for the formula and its assumptions.
"""

from __future__ import annotations

import copy

from bayesguide._options import Option
from bayesguide.infer.result import FitResult, data_fingerprint
from bayesguide.marglik.laplace import Evidence, HessianStructure, laplace_evidence
from bayesguide.model import ArrayLike

__all__ = ["Evidence", "EvidenceMethod", "HessianStructure", "evidence", "laplace_evidence"]


class EvidenceMethod(Option):
    """Estimators of the log evidence."""

    #: Laplace approximation at the fitted weights with GGN curvature
    LAPLACE = "laplace"

    @property
    def description(self) -> str:
        return {"laplace": "Laplace approximation, GGN curvature"}[self.value]


def evidence(
    fit: FitResult,
    X: ArrayLike,
    y: ArrayLike,
    *,
    method: str | EvidenceMethod = "laplace",
    hessian: str | HessianStructure = "full",
    optimize_prior: bool = False,
    max_params: int = 20_000,
) -> Evidence:
    """Log evidence of the architecture of ``fit`` on its training data ``X, y``.

    Parameters
    ----------
    fit
        A MAP fit (for an SVI fit the posterior mean stands in for the MAP).
    X, y
        The data the fit was trained on (checked by fingerprint).
    method
        ``"laplace"``.
    hessian
        ``"full"`` (exact GGN, up to ``max_params`` parameters) or ``"diag"``.
    optimize_prior
        Set the prior scale (and a learned Gaussian σ) by type-II maximum likelihood.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X = torch.randn(40, 3); y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40)
    >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(3, 1)), bg.GuidedNormal(0.5),
    ...                        likelihood="gaussian", noise=0.1)
    >>> fit = bg.fit_map(model, X, y, steps=300, lr=0.05, progress=False)
    >>> ev = bg.evidence(fit, X, y)
    >>> ev.n_params
    4
    """
    if not isinstance(fit, FitResult):
        raise TypeError(f"evidence() takes a FitResult, got {type(fit).__name__}")
    EvidenceMethod.resolve(method, "evidence method")
    Xt, yt = fit.model.prepare_data(X, y)
    if data_fingerprint(Xt, yt) != fit.data_fingerprint:
        raise ValueError(
            "X, y are not the data this fit was trained on; the evidence needs the training data"
        )
    return laplace_evidence(
        fit.model, copy.deepcopy(fit.module), Xt, yt, hessian=hessian,
        optimize_prior=optimize_prior, noise=fit.noise, max_params=max_params,
    )
