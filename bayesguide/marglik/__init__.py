"""Marginal likelihood (evidence) ``p(D | M)`` of a fitted architecture: ``bg.evidence``.

``bg.evidence(fit, X, y, method="laplace", hessian="full")`` — see
:mod:`bayesguide.marglik.laplace` for the Laplace formula and its assumptions, and
:mod:`bayesguide.marglik.variational` for the ELBO and the importance-weighted bound of
an SVI fit. :mod:`bayesguide.marglik.posterior` draws from the approximate posteriors.
"""

from __future__ import annotations

import copy

from bayesguide._options import Option
from bayesguide.infer.result import FitResult
from bayesguide.marglik.laplace import Evidence, HessianStructure, laplace_evidence
from bayesguide.marglik.posterior import LaplacePosterior, laplace_posterior, resolve_source
from bayesguide.marglik.variational import VariationalEvidence, elbo_evidence, iw_evidence
from bayesguide.model import ArrayLike
from bayesguide.pruning.candidate import Candidate

__all__ = [
    "Evidence",
    "EvidenceMethod",
    "EvidenceResult",
    "HessianStructure",
    "LaplacePosterior",
    "VariationalEvidence",
    "elbo_evidence",
    "evidence",
    "iw_evidence",
    "laplace_evidence",
    "laplace_posterior",
]

#: what :func:`evidence` returns: a Laplace estimate or a variational bound
EvidenceResult = Evidence | VariationalEvidence

_DEFAULT_PARTICLES = {"elbo": 200, "iwae": 1000}


class EvidenceMethod(Option):
    """Estimators of the log evidence."""

    #: Laplace approximation at the fitted weights with GGN curvature
    LAPLACE = "laplace"
    #: evidence lower bound of an SVI guide, E_q[log p(D, θ) − log q(θ)]
    ELBO = "elbo"
    #: importance-weighted bound log (1/S) Σ p(D, θ_s)/q(θ_s) with guide draws (Burda et al. 2016)
    IWAE = "iwae"

    @property
    def description(self) -> str:
        return {
            "laplace": "Laplace approximation, GGN curvature",
            "elbo": "ELBO of the SVI guide (a lower bound), many particles, full data",
            "iwae": "importance-weighted bound with the SVI guide as proposal, ESS and Pareto k",
        }[self.value]


def evidence(
    fit: FitResult | Candidate,
    X: ArrayLike,
    y: ArrayLike,
    *,
    method: str | EvidenceMethod = "laplace",
    hessian: str | HessianStructure = "full",
    optimize_prior: bool = False,
    max_params: int = 20_000,
    particles: int | None = None,
    seed: int = 0,
) -> EvidenceResult:
    """Log evidence of the architecture of ``fit`` on its training data ``X, y``.

    Parameters
    ----------
    fit
        A fit or a pruned :class:`~bayesguide.Candidate` (its possibly fine-tuned
        network and its guide). For ``"laplace"`` the weights stand in for the MAP (the
        posterior mean of an SVI fit); ``"elbo"`` and ``"iwae"`` need a variational
        posterior: an SVI fit, or a candidate cut from one.
    X, y
        The data the fit was trained on (checked by fingerprint).
    method
        ``"laplace"`` (:class:`Evidence`), ``"elbo"`` or ``"iwae"``
        (:class:`VariationalEvidence`, with ESS and Pareto k).
    hessian
        Laplace only: ``"full"`` (exact GGN, up to ``max_params`` parameters) or a
        cheaper structure (see :class:`HessianStructure`).
    optimize_prior
        Laplace only: set the prior scale (and a learned Gaussian σ) by type-II maximum
        likelihood.
    particles
        ``"elbo"`` / ``"iwae"`` only: number of guide draws (default 200 / 1000).
    seed
        ``"elbo"`` / ``"iwae"`` only: seed of the draws.

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
    if not isinstance(fit, (FitResult, Candidate)):
        raise TypeError(f"evidence() takes a FitResult or a Candidate, got {type(fit).__name__}")
    member = EvidenceMethod.resolve(method, "evidence method")
    if member is EvidenceMethod.LAPLACE:
        if particles is not None:
            raise ValueError("particles is used by method='elbo' or 'iwae', not 'laplace'")
        src = resolve_source(fit)
        Xt, yt = src.prepare(X, y)
        return laplace_evidence(
            src.model, copy.deepcopy(src.module), Xt, yt, hessian=hessian,
            optimize_prior=optimize_prior, noise=src.noise, max_params=max_params,
        )
    if optimize_prior:
        raise ValueError(f"optimize_prior is used by method='laplace', not {member.value!r}")
    n = _DEFAULT_PARTICLES[member.value] if particles is None else particles
    estimator = elbo_evidence if member is EvidenceMethod.ELBO else iw_evidence
    return estimator(fit, X, y, particles=n, seed=seed)
