"""Guided unit priors: proper Pyro distributions over a layer's unit weight groups.

One family per module, each registered under its ``kind`` ([`registry`][bayesguide.priors.registry]):

| prior | kind | negative log = penalty (+ const) |
|---|---|---|
| [GuidedNormal][bayesguide.GuidedNormal] | `l2` | guided L2: `λ Σ_j g_j ‖θ_j‖₂²` |
| [GuidedLaplace][bayesguide.GuidedLaplace] | `l1` | guided L1: `λ Σ_j g_j ‖θ_j‖₁` |
| [GuidedGroupLasso][bayesguide.GuidedGroupLasso] | `group` | guided group lasso: `λ Σ_j g_j √p ‖θ_j‖₂` |
| [GuidedSparseGroupLasso][bayesguide.GuidedSparseGroupLasso] | `sparse_group` | `λ Σ_j g_j [(1−α)√p‖θ_j‖₂ + α‖θ_j‖₁]` |
| [HardConcreteGates][bayesguide.HardConcreteGates] | `l0` | expected L0 of hard-concrete gates (no density) |
| [GroupHorseshoe][bayesguide.GroupHorseshoe] | `horseshoe` | hierarchical: latent scales, no MAP |

The contract every family follows is in [`base`][bayesguide.priors.base]; adding a family
is one new module plus a [`register_prior`][bayesguide.priors.registry.register_prior] call (``docs/extending.md``).

Second layer of the data flow: priors import only [`bayesguide.guidance`][].

References: Rafid & Sandu, arXiv 2305.18448 (guided regularization); E & Gao, arXiv
2009.01395 (partial regularization); Yuan & Lin 2006 (group lasso); Simon, Friedman,
Hastie & Tibshirani 2013 (sparse group lasso); Louizos, Welling & Kingma 2018 (L0
gates); Louizos, Ullrich & Welling 2017 (group horseshoe).
"""

from __future__ import annotations

# isort: off
# the families register themselves on import: this order is the order of ``kinds()``
from bayesguide.priors.laplace import GuidedLaplace, UnitLaplace
from bayesguide.priors.normal import GuidedNormal, UnitNormal
from bayesguide.priors.group_lasso import GuidedGroupLasso, UnitGroupLaplace
from bayesguide.priors.sparse_group import GuidedSparseGroupLasso, UnitSparseGroupLaplace
from bayesguide.priors.l0 import HardConcreteGates
from bayesguide.priors.horseshoe import GroupHorseshoe
# isort: on
from bayesguide.priors.base import UnitGroupDistribution, UnitPrior, strength_from_mean_loss
from bayesguide.priors.hierarchical import HierarchicalUnitPrior, LatentSite
from bayesguide.priors.registry import (
    PriorFamily,
    PriorOption,
    families,
    get_family,
    kinds,
    make_prior,
    register_prior,
    unregister_prior,
)
from bayesguide.priors.sparse_group_math import sparse_group_log_integral

__all__ = [
    "GroupHorseshoe",
    "GuidedGroupLasso",
    "GuidedLaplace",
    "GuidedNormal",
    "GuidedSparseGroupLasso",
    "HardConcreteGates",
    "HierarchicalUnitPrior",
    "LatentSite",
    "PriorFamily",
    "PriorOption",
    "UnitGroupDistribution",
    "UnitGroupLaplace",
    "UnitLaplace",
    "UnitNormal",
    "UnitPrior",
    "UnitSparseGroupLaplace",
    "families",
    "get_family",
    "kinds",
    "make_prior",
    "register_prior",
    "sparse_group_log_integral",
    "strength_from_mean_loss",
    "unregister_prior",
]
