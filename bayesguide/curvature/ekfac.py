"""Eigenvalue-corrected KFAC (``hessian="ekfac"``): KFAC's eigenbasis, the exact curvature along it.

KFAC ([`bayesguide.curvature.kron`][]) replaces a layer's GGN block by ``G_l ⊗ A_l``,
whose eigenvalues are the products ``λ_a μ_b`` of the factors' eigenvalues. That product
assumes the backpropagated vectors and the layer inputs are independent across
examples; when they are not, the eigenvalues are biased, and the Laplace evidence with
them (Immer et al. 2021 measured it; issue 13 measured it here: 160 nats below the full
GGN on digits, growing with width). George, Laurent, Bouthillier, Ballas & Vincent,
"Fast approximate natural gradient descent in a Kronecker-factored eigenbasis"
(NeurIPS 2018) keep KFAC's eigenbasis and re-estimate the curvature along it from the
per-example gradients — the best diagonal in that basis (it minimises the Frobenius
distance to the exact block among matrices diagonal in the basis).

With the per-unit prior precisions ``D_u`` of the guided prior the basis is taken in
the prior-whitened coordinates, as [`kron`][bayesguide.curvature.kron] does for the log
determinant: ``\\tilde G = D_u^{-1/2} G_l D_u^{-1/2} = Q Λ Qᵀ``, ``A_l = U M Uᵀ``, and

$$
s_{ab} = \\sum_i \\sum_c \\Big( q_aᵀ D_u^{-1/2} \\sum_t g_{ict}\\, ã_{it}ᵀ u_b \\Big)^2 ,
$$

the exact whitened block's diagonal in the basis ``Q ⊗ U`` (tested against the dense
GGN). Then ``log det(G_ekfac / σ² + c D) = Σ log(c d) + Σ_{ab} log(1 + s_{ab} / (σ² c))``
exactly, so type-II maximum likelihood of ``c`` still costs ``O(P)`` per evaluation.
The price is a second pass over the data for every new ``D`` (each candidate once).
Sites with a diagonal block (``BatchNorm``, grouped convolutions) keep their exact
diagonal.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from bayesguide.curvature.base import Curvature, HessianStructure, Inputs
from bayesguide.curvature.kron import KronBlock, backprop_columns, kron_factors, layer_patches, output_rows
from bayesguide.model import GuidedModel
from bayesguide.model.device import module_device

__all__ = ["EkfacGGN", "ekfac_scales"]


def ekfac_scales(
    model: GuidedModel, module: nn.Module, X: Inputs, blocks: list[KronBlock], d: torch.Tensor,
    chunk_size: int = 2048,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """Per site ``(Q, U, S)``: the whitened KFAC eigenbases and the curvature ``S`` (``n × p``) along them.

    ``d`` is the per-weight prior precision in site order; ``None`` for diagonal sites.
    The bases are found on the CPU (where ``blocks`` are), the pass over ``X`` runs on
    ``module``'s device, and ``S`` comes back on the CPU.
    """
    device = module_device(module)
    chain = {ly.name: ly for ly in model.chain(module)}
    bases: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = []
    start = 0
    for site, block in zip(model.sites, blocks, strict=True):
        size = site.n_units * site.group_size
        if block.diag is not None:
            bases.append(None)
        else:
            assert block.A is not None and block.G is not None
            s = d[start:start + size].reshape(site.n_units, site.group_size)[:, 0].rsqrt()
            _, Q = torch.linalg.eigh(block.G * s.unsqueeze(-1) * s)
            _, U = torch.linalg.eigh(block.A)
            bases.append((s, Q, U))
        start += size
    sums: dict[int, torch.Tensor] = {k: torch.zeros(b[1].shape[0], b[2].shape[0], dtype=torch.float64,
                                                    device=device) for k, b in enumerate(bases) if b is not None}
    moved = [None if b is None else tuple(t.to(device) for t in b) for b in bases]
    for _, inputs, grads in backprop_columns(model, module, X, chunk_size):
        for k, (site, base) in enumerate(zip(model.sites, moved, strict=True)):
            if base is None:
                continue
            s, Q, U = base
            m = chain[site.layer.name].module
            a = layer_patches(m, inputs[k]) @ U  # (B·T, p)
            B = inputs[k].shape[0]
            T = a.shape[0] // B
            for gc in grads:
                g = (output_rows(m, gc[k]) * s) @ Q  # (B·T, n), whitened and rotated
                if T == 1:
                    sums[k] += g.pow(2).T @ a.pow(2)
                else:
                    per_example = torch.einsum("btn,btp->bnp", g.reshape(B, T, -1), a.reshape(B, T, -1))
                    sums[k] += per_example.pow(2).sum(0)
    return [None if b is None else (b[1], b[2], sums[k].cpu()) for k, b in enumerate(bases)]


class EkfacGGN(Curvature):
    """Eigenvalue-corrected KFAC blocks per ``Linear`` / ``Conv2d`` site, exact diagonals elsewhere.

    It has no dense precision, so the Laplace posterior refuses it (as for ``"kron"``).
    """

    structure: ClassVar[HessianStructure] = HessianStructure.EKFAC
    cheap_eigenvalues: ClassVar[bool] = False

    def __init__(self, model: GuidedModel, module: nn.Module, X: Inputs, blocks: list[KronBlock]) -> None:
        self.model, self.module, self.X, self.blocks = model, module, X, blocks
        self._eigen: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: Inputs, *,
                max_params: int | None = None, progress: bool = False,
                memory_budget: float | None = None) -> EkfacGGN:
        return cls(model, module, X, kron_factors(model, module, X, progress=progress))

    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        if self._eigen is None or not torch.equal(self._eigen[0], d):
            scales = ekfac_scales(self.model, self.module, self.X, self.blocks, d)
            out, start = [], 0
            for block, scale in zip(self.blocks, scales, strict=True):
                if scale is None:
                    assert block.diag is not None
                    size = block.diag.numel()
                    out.append(block.diag / d[start:start + size])
                else:
                    size = scale[2].numel()
                    out.append(scale[2].reshape(-1))
                start += size
            self._eigen = (d, torch.cat(out))
        return self._eigen[1]

    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        e = self.scaled_eigenvalues(d).clamp(min=0.0)
        return float(torch.log(c * d).sum()) + float(torch.log1p(e / (sigma2 * c)).sum())
