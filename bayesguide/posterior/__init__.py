"""Fitted posteriors: guides, the Laplace posterior, draws, and the interface they share.

* [`guides`][bayesguide.posterior.guides] — the variational families (point mass,
  mean-field, low-rank), ``nn.Module`` s with no global state;
* [`fitted`][bayesguide.posterior.fitted] — [`Fitted`][bayesguide.posterior.fitted.Fitted], the interface of "a network
  and its posterior" shared by [`FitResult`][bayesguide.FitResult] and
  [`Candidate`][bayesguide.Candidate], and its ArviZ conversion;
* [`laplace`][bayesguide.posterior.laplace] — the Laplace posterior ``N(θ*, H⁻¹)`` and the
  Gaussian prior precision it and the Laplace evidence use;
* [`draws`][bayesguide.posterior.draws] — draws and their densities in bounded memory.

Layer: above [`bayesguide.curvature`][], below [`bayesguide.infer`][].
"""

from __future__ import annotations

from bayesguide.posterior.draws import guide_draws, log_likelihood_draws, log_prior_draws
from bayesguide.posterior.fitted import Fitted, PosteriorKind, posterior_draws, to_inference_data
from bayesguide.posterior.guides import (
    DeltaGuide,
    Guide,
    GuideKind,
    LatentFactors,
    LowRankGuide,
    MeanFieldGuide,
    make_guide,
    site_key,
)
from bayesguide.posterior.laplace import EvidencePrior, LaplacePosterior, gaussian_prior, laplace_posterior

__all__ = [
    "DeltaGuide",
    "EvidencePrior",
    "Fitted",
    "Guide",
    "GuideKind",
    "LaplacePosterior",
    "LatentFactors",
    "LowRankGuide",
    "MeanFieldGuide",
    "PosteriorKind",
    "gaussian_prior",
    "guide_draws",
    "laplace_posterior",
    "log_likelihood_draws",
    "log_prior_draws",
    "make_guide",
    "posterior_draws",
    "site_key",
    "to_inference_data",
]
