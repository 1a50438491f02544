"""Comparison of candidate architectures: evidence, architecture prior, posterior probabilities.

* [`occam`][bayesguide.comparison.occam] — the architecture priors (``occam``): priors over architectures (a registry);
* [`rows`][bayesguide.comparison.rows] — one candidate's row: evidence through the
  estimator registry, metrics;
* [`table`][bayesguide.comparison.table] — [`compare`][bayesguide.compare] and
[`assemble`][bayesguide.comparison.table.assemble]: the architecture
  prior, normalised posterior probabilities, Bayes factors, flags;
* [`sensitivity`][bayesguide.comparison.sensitivity] — evidence-only probabilities, the κ
  interval of the pick, the flags when the prior decides;
* [`loo`][bayesguide.comparison.loo] — PSIS-LOO columns and stacking weights;
* [`result`][bayesguide.comparison.result] — [`Comparison`][bayesguide.Comparison], what the reports read.

Layer: above [`bayesguide.marglik`][] and [`bayesguide.predictive`][], below the
reports and the pipeline.
"""

from __future__ import annotations

from bayesguide.comparison.occam import (
    OccamPrior,
    get_occam,
    guidance_cost,
    occam_log_prior,
    occam_priors,
    register_occam,
    unregister_occam,
)
from bayesguide.comparison.result import Comparison
from bayesguide.comparison.rows import (
    check_candidates,
    curvature_cost,
    metric,
    plan_hessian,
    resolve_hessian,
    score_candidate,
)
from bayesguide.comparison.table import assemble, compare

__all__ = [
    "Comparison",
    "OccamPrior",
    "assemble",
    "check_candidates",
    "compare",
    "curvature_cost",
    "get_occam",
    "guidance_cost",
    "metric",
    "occam_log_prior",
    "occam_priors",
    "plan_hessian",
    "register_occam",
    "resolve_hessian",
    "score_candidate",
    "unregister_occam",
]
