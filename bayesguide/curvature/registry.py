"""The curvature backends by name: ``make_curvature("full" | "diag" | "kron" | "ekfac", ...)``."""

from __future__ import annotations

from torch import nn

from bayesguide.curvature.base import Curvature, HessianStructure, Inputs
from bayesguide.curvature.ekfac import EkfacGGN
from bayesguide.curvature.ggn import DiagGGN, FullGGN
from bayesguide.curvature.kron import KronGGN
from bayesguide.model import GuidedModel

__all__ = ["BACKENDS", "make_curvature"]

BACKENDS: dict[HessianStructure, type[Curvature]] = {
    HessianStructure.FULL: FullGGN,
    HessianStructure.DIAG: DiagGGN,
    HessianStructure.KRON: KronGGN,
    HessianStructure.EKFAC: EkfacGGN,
}
"""The backend class of each structure."""


def make_curvature(
    structure: str | HessianStructure, model: GuidedModel, module: nn.Module, X: Inputs, *,
    max_params: int | None = None, progress: bool = False, memory_budget: float | None = None,
) -> Curvature:
    """The GGN of ``model`` at ``module``'s weights on prepared ``X`` (or a stream of batches), in ``structure``.

    ``module`` should be in eval mode. Raises ``ValueError`` for an unknown structure
    (listing the choices), and for ``"full"`` beyond ``max_params`` parameters or beyond
    ``memory_budget`` bytes (default: half the available memory; see
    [`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]), before any work.
    ``progress`` shows a bar once the computation has taken more than two seconds.
    """
    member = HessianStructure.resolve(structure, "hessian structure")
    return BACKENDS[member].compute(model, module, X, max_params=max_params, progress=progress,
                                    memory_budget=memory_budget)
