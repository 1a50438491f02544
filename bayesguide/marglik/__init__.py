"""Marginal likelihood (evidence) ``p(D | M)`` of a fitted architecture: ``bg.evidence``.

``bg.evidence(fit, X, y, method="laplace", hessian="full")`` dispatches through the
estimator registry ([`registry`][bayesguide.marglik.registry]): the Laplace approximation
([`laplace`][bayesguide.marglik.laplace]), the ELBO and the importance-weighted bound of an
SVI posterior ([`variational`][bayesguide.marglik.variational]). Every estimator returns one
result type, [`Evidence`][bayesguide.Evidence] ([`result`][bayesguide.marglik.result]).

Layer: above [`bayesguide.pruning`][] (candidates are fitted posteriors too), below
[`bayesguide.comparison`][].
"""

from __future__ import annotations

from bayesguide.curvature import HessianStructure
from bayesguide.marglik.laplace import laplace_estimate, laplace_evidence
from bayesguide.marglik.registry import (
    EvidenceEstimator,
    estimators,
    evidence,
    get_estimator,
    register_estimator,
    unregister_estimator,
)
from bayesguide.marglik.result import Evidence
from bayesguide.marglik.variational import elbo_estimate, iw_estimate, log_weights
from bayesguide.posterior import EvidencePrior

__all__ = [
    "Evidence",
    "EvidenceEstimator",
    "EvidencePrior",
    "HessianStructure",
    "elbo_estimate",
    "estimators",
    "evidence",
    "get_estimator",
    "iw_estimate",
    "laplace_estimate",
    "laplace_evidence",
    "log_weights",
    "register_estimator",
    "unregister_estimator",
]
