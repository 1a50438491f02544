"""``Evidence``: the one result type of every evidence estimator.

Every estimator ([`registry`][bayesguide.marglik.registry]) returns an [`Evidence`][bayesguide.Evidence]; the
comparison reads it once ([`Evidence.columns`][bayesguide.marglik.result.Evidence.columns]). The fields an estimator
does not
produce are ``None``: the Laplace decomposition (``log_likelihood``, ``log_prior``,
``occam``, ``hessian``, ``prior_scale``, ``prior_used``) for Laplace, the importance
diagnostics (``elbo``, ``std_error``, ``particles``, ``ess``, ``pareto_k``) for the
variational bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bayesguide.posterior import EvidencePrior

__all__ = ["Evidence"]


@dataclass(frozen=True)
class Evidence:
    """A log-evidence estimate ``log p(D | M)`` of one architecture and how it was made (nats).

    Attributes
    ----------
    log_evidence
        The estimate.
    method
        The estimator (``"laplace"``, ``"elbo"``, ``"iwae"``, or a registered one).
    n_params
        Number of weights ``P``.
    noise
        The Gaussian ``σ`` the estimate used (Laplace: fixed, learned or re-estimated;
        variational: the learned point estimate it is conditional on), ``None`` otherwise.
    log_likelihood
        Laplace: ``log p(D | θ*)``; ``log_evidence = log_likelihood + log_prior + occam``.
    log_prior
        Laplace: ``log p(θ* | M)``.
    occam
        Laplace: the Occam factor ``P/2 log 2π − ½ log det H``.
    hessian
        Laplace: the curvature structure.
    prior_scale
        Laplace: the prior scale ``c``.
    prior_used
        Laplace: which Gaussian prior (``"own"``, ``"counterpart"`` or ``"uniform"``,
        see [`bayesguide.posterior.laplace`][]).
    substituted
        Laplace: ``prior_used != "own"``.
    batchnorm_folded
        Laplace: how many ``BatchNorm`` layers were folded into the layer before them
        for the estimate ([`bayesguide.model.fold_batchnorm`][]).
    elbo
        Variational: the ELBO of the same draws.
    std_error
        Variational: the Monte Carlo standard error of the estimate.
    particles
        Variational: the number of draws ``S``.
    ess
        Variational: the effective sample size of the importance weights.
    pareto_k
        Variational: the Pareto shape of the importance weights' upper tail
        (``k > 0.7``: unreliable).
    """

    log_evidence: float
    method: str
    n_params: int
    noise: float | None = None
    log_likelihood: float | None = None
    log_prior: float | None = None
    occam: float | None = None
    hessian: str | None = None
    prior_scale: float | None = None
    prior_used: str | None = None
    substituted: bool = False
    batchnorm_folded: int = 0
    elbo: float | None = None
    std_error: float | None = None
    particles: int | None = None
    ess: float | None = None
    pareto_k: float | None = None

    def columns(self) -> dict[str, Any]:
        """The comparison table's columns this estimate fills (beyond ``log_evidence``)."""
        if self.prior_used is not None:
            laplace = {"prior_scale": self.prior_scale, "substituted": self.substituted, "prior_used": self.prior_used}
            return laplace | ({"batchnorm_folded": self.batchnorm_folded} if self.batchnorm_folded else {})
        if self.pareto_k is not None:
            return {"evidence_se": self.std_error, "ess": self.ess, "evidence_pareto_k": self.pareto_k}
        return {}

    def __str__(self) -> str:
        noise = "" if self.noise is None else f", σ={self.noise:.4g}"
        if self.prior_used is not None:
            sub = ""
            if self.substituted:
                known = self.prior_used in EvidencePrior.choices()
                sub = (f" ({EvidencePrior.resolve(self.prior_used, 'evidence prior').description})" if known
                       else " (substituted prior)")
            return (
                f"Evidence({self.method}/{self.hessian}: log p(D|M) = {self.log_evidence:.6g} = "
                f"log-lik {self.log_likelihood:.6g} + log-prior {self.log_prior:.6g} + "
                f"Occam {self.occam:.6g}; P={self.n_params}, prior scale c={self.prior_scale:.4g}{noise}){sub}"
                + (f" ({self.batchnorm_folded} BatchNorm folded)" if self.batchnorm_folded else "")
            )
        if self.elbo is not None:
            k = math.nan if self.pareto_k is None else self.pareto_k
            verdict = "" if not k > 0.7 else " — unreliable (k > 0.7)"
            se = math.nan if self.std_error is None else self.std_error
            return (
                f"Evidence({self.method}: log p(D|M) ≥ {self.log_evidence:.6g} ± {se:.2g}; "
                f"ELBO {self.elbo:.6g}; S={self.particles}, ESS {self.ess:.4g}, Pareto k {k:.3g}{verdict}; "
                f"P={self.n_params}{noise})"
            )
        return f"Evidence({self.method}: log p(D|M) = {self.log_evidence:.6g}; P={self.n_params}{noise})"

