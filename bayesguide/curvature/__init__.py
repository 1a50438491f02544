"""Curvature backends: the generalized Gauss–Newton matrix of a network's NLL.

``full`` (:class:`~bayesguide.curvature.ggn.FullGGN`), ``diag``
(:class:`~bayesguide.curvature.ggn.DiagGGN`), ``kron`` (KFAC,
:class:`~bayesguide.curvature.kron.KronGGN`) and ``ekfac`` (eigenvalue-corrected KFAC,
:class:`~bayesguide.curvature.ekfac.EkfacGGN`) behind one interface,
:class:`~bayesguide.curvature.base.Curvature`; :func:`make_curvature` picks one by name.
The Laplace evidence (:mod:`bayesguide.marglik.laplace`) and the Laplace posterior
(:mod:`bayesguide.posterior.laplace`) use them; :mod:`~bayesguide.curvature.effective` turns
them into effective numbers of parameters per unit (evidence-driven fitting).

Layer: above :mod:`bayesguide.model`, below :mod:`bayesguide.posterior`.
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
