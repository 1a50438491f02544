"""Curvature backends: the generalized Gauss–Newton matrix of a network's NLL.

``full`` ([`FullGGN`][bayesguide.curvature.ggn.FullGGN]), ``diag``
([`DiagGGN`][bayesguide.curvature.ggn.DiagGGN]), ``kron`` (KFAC,
[`KronGGN`][bayesguide.curvature.kron.KronGGN]) and ``ekfac`` (eigenvalue-corrected KFAC,
[`EkfacGGN`][bayesguide.curvature.ekfac.EkfacGGN]) behind one interface,
[`Curvature`][bayesguide.curvature.base.Curvature]; [`make_curvature`][bayesguide.curvature.registry.make_curvature]
picks one by name.
The Laplace evidence ([`bayesguide.marglik.laplace`][]) and the Laplace posterior
([`bayesguide.posterior.laplace`][]) use them; [`effective`][bayesguide.curvature.effective] turns
them into effective numbers of parameters per unit (evidence-driven fitting).

Layer: above [`bayesguide.model`][], below [`bayesguide.posterior`][].
"""

from __future__ import annotations

from bayesguide.curvature.base import Curvature, HessianStructure, flat_weights, hessian_sqrt, outputs
from bayesguide.curvature.effective import effective_parameters_diag, effective_parameters_kron, site_blocks
from bayesguide.curvature.ekfac import EkfacGGN, ekfac_scales
from bayesguide.curvature.ggn import DiagGGN, FullGGN, ggn
from bayesguide.curvature.kron import KronBlock, KronGGN, kron_factors, kron_scaled_eigenvalues
from bayesguide.curvature.registry import BACKENDS, make_curvature

__all__ = [
    "BACKENDS",
    "Curvature",
    "DiagGGN",
    "EkfacGGN",
    "FullGGN",
    "HessianStructure",
    "KronBlock",
    "KronGGN",
    "effective_parameters_diag",
    "effective_parameters_kron",
    "ekfac_scales",
    "flat_weights",
    "ggn",
    "hessian_sqrt",
    "kron_factors",
    "kron_scaled_eigenvalues",
    "make_curvature",
    "outputs",
    "site_blocks",
]
