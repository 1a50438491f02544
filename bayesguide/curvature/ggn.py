"""The exact GGN by per-example Jacobians (``hessian="full"``), and the ``"diag"`` backend.

[`ggn`][bayesguide.curvature.ggn.ggn] with ``diagonal=True`` is the Jacobian-based reference of the diagonal; the
``"diag"`` backend computes the same numbers from the KFAC passes
([`ggn_diagonal`][bayesguide.curvature.kron.ggn_diagonal]), at the cost of ``"kron"``.

``G₁ = Σ_i J̃_iᵀ J̃_i`` with ``J̃_i = M_iᵀ J_i`` and ``M_i M_iᵀ = Λ_i``
([`hessian_sqrt`][bayesguide.curvature.base.hessian_sqrt]), accumulated in float64 in chunks of
examples. Per-example Jacobians come from ``vmap(jacrev)`` over single examples (``C``
backward passes per example; a ``jacrev`` over the batch would backpropagate every
output through the whole batch), and the full matrix from a symmetric rank-k update
(BLAS ``dsyrk``: half the flops of a matrix product; on a GPU, a matrix product there).
The Jacobians are computed on the network's device, each chunk of ``X`` moved there; the
result is on the CPU.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg.blas
import torch
from torch import nn

from bayesguide.curvature.base import (
    Curvature,
    HessianStructure,
    Inputs,
    check_dense_memory,
    flat_weights,
    hessian_sqrt,
    input_chunks,
)
from bayesguide.curvature.kron import ggn_diagonal
from bayesguide.model import GuidedModel
from bayesguide.model.device import CPU, module_device, to_device
from bayesguide.network import functional_forward

__all__ = ["DiagGGN", "FullGGN", "ggn"]


def ggn(
    model: GuidedModel, module: nn.Module, theta: torch.Tensor, X: Inputs, *, diagonal: bool,
    chunk_elements: int = 2**24, progress: bool = False,
) -> torch.Tensor:
    """The GGN at ``σ = 1``: ``(P, P)``, or its diagonal ``(P,)`` when ``diagonal``.

    ``X``: prepared inputs, or a [`BatchStream`][bayesguide.model.batches.BatchStream]
    (read once to find the output size, then once for the GGN).
    """
    chain = model.chain(module)
    sizes = [s.n_units * s.group_size for s in model.sites]

    def forward(flat: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        values = {s.name: v.reshape(s.n_units, s.group_size) for s, v in zip(model.sites, flat.split(sizes))}
        return functional_forward(chain, model.sites, values, xb)

    def single(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return forward(flat, x.unsqueeze(0))[0]

    jacobians = torch.func.vmap(torch.func.jacrev(single), in_dims=(None, 0))
    device = module_device(module)
    theta = theta.to(device)
    P = theta.numel()
    first = X[:1] if isinstance(X, torch.Tensor) else next(iter(X))[0][:1]
    with torch.no_grad():
        n_out = forward(theta, to_device(first, device)).shape[1]
    chunk = max(1, chunk_elements // (n_out * P))
    on_cpu = device == CPU
    upper = None if diagonal or not on_cpu else np.zeros((P, P), dtype=np.float64, order="F")
    full = None if diagonal or on_cpu else torch.zeros(P, P, dtype=torch.float64, device=device)
    diag = torch.zeros(P, dtype=torch.float64, device=device)
    for xb in input_chunks(X, chunk, progress, "GGN (full)" if not diagonal else "GGN (diag)", device):
        J = jacobians(theta, xb).to(torch.float64)  # (B, C, P)
        with torch.no_grad():
            M = hessian_sqrt(model.likelihood, forward(theta, xb).to(torch.float64))
        Jt = torch.einsum("bcd,bcp->bdp", M, J).reshape(-1, P)  # rows: (M_iᵀ J_i)
        if upper is not None:
            # C := Jtᵀ Jt + C on the upper triangle; Jt.numpy().T is Fortran-ordered (no copy)
            upper = scipy.linalg.blas.dsyrk(1.0, Jt.numpy().T, beta=1.0, c=upper, trans=0, overwrite_c=1)
        elif full is not None:
            full.addmm_(Jt.T, Jt)
        else:
            diag += Jt.pow(2).sum(0)
    if full is not None:
        return (0.5 * (full + full.T)).cpu()  # the product is symmetric up to rounding
    if upper is None:
        return diag.cpu()
    return torch.from_numpy(np.triu(upper) + np.triu(upper, 1).T)


class FullGGN(Curvature):
    """The exact ``P × P`` GGN (up to ``max_params`` parameters, within the memory budget)."""

    structure: ClassVar[HessianStructure] = HessianStructure.FULL
    cheap_eigenvalues: ClassVar[bool] = False

    def __init__(self, G: torch.Tensor) -> None:
        self.G = G

    @classmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: Inputs, *,
                max_params: int | None = None, progress: bool = False,
                memory_budget: float | None = None) -> FullGGN:
        theta = flat_weights(model, module)
        P = theta.numel()
        if max_params is not None and P > max_params:
            raise ValueError(
                f"hessian='full' needs a {P}×{P} matrix ({P} parameters > max_params={max_params}); "
                f"use hessian='kron' or 'diag', or prune the network first"
            )
        check_dense_memory(P, memory_budget)
        return cls(ggn(model, module, theta, X, diagonal=False, progress=progress))

    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        root = d.sqrt()
        return torch.linalg.eigvalsh(self.G / (root.unsqueeze(-1) * root))

    def precision(self, d: torch.Tensor, c: float, sigma2: float) -> torch.Tensor:
        return self.G / sigma2 + torch.diag(c * d)

    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        L, info = torch.linalg.cholesky_ex(self.precision(d, c, sigma2))
        if int(info) != 0:
            raise ValueError("the posterior precision G + A is not positive definite (Cholesky failed)")
        return 2.0 * float(torch.log(torch.diagonal(L)).sum())


class DiagGGN(Curvature):
    """The diagonal of the exact GGN, from the KFAC passes (`ggn_diagonal`)."""

    structure: ClassVar[HessianStructure] = HessianStructure.DIAG

    def __init__(self, diag: torch.Tensor) -> None:
        self.diag = diag

    @classmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: Inputs, *,
                max_params: int | None = None, progress: bool = False,
                memory_budget: float | None = None) -> DiagGGN:
        return cls(ggn_diagonal(model, module, X, progress=progress))

    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        return self.diag / d

    def precision(self, d: torch.Tensor, c: float, sigma2: float) -> torch.Tensor:
        return self.diag / sigma2 + c * d

    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        return float(torch.log(self.precision(d, c, sigma2)).sum())
