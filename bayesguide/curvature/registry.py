"""The curvature backends by name: ``make_curvature("full" | "diag" | "kron" | "ekfac", ...)``."""

from __future__ import annotations

import torch
from torch import nn

from bayesguide.curvature.base import Curvature, HessianStructure
from bayesguide.curvature.ekfac import EkfacGGN
from bayesguide.curvature.ggn import DiagGGN, FullGGN
from bayesguide.curvature.kron import KronGGN
from bayesguide.model import GuidedModel

__all__ = ["BACKENDS", "make_curvature"]

#: the backend class of each structure
BACKENDS: dict[HessianStructure, type[Curvature]] = {
    HessianStructure.FULL: FullGGN,
    HessianStructure.DIAG: DiagGGN,
    HessianStructure.KRON: KronGGN,
    HessianStructure.EKFAC: EkfacGGN,
}


def make_curvature(
    structure: str | HessianStructure, model: GuidedModel, module: nn.Module, X: torch.Tensor, *,
    max_params: int | None = None, progress: bool = False,
) -> Curvature:
    """The GGN of ``model`` at ``module``'s weights on prepared ``X``, in ``structure``.

    ``module`` should be in eval mode. Raises ``ValueError`` for an unknown structure
    (listing the choices) and for ``"full"`` beyond ``max_params`` parameters.
    ``progress`` shows a bar once the computation has taken more than two seconds.
    """
    member = HessianStructure.resolve(structure, "hessian structure")
    return BACKENDS[member].compute(model, module, X, max_params=max_params, progress=progress)
