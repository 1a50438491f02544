"""Effective numbers of parameters per unit: how much the data determine each weight group.

For a Gaussian prior of precision ``α_j`` on the ``p`` weights of unit ``j`` and the
posterior precision ``H = G / σ² + A`` (``A`` the prior precisions), MacKay's
well-determined parameters of the unit are

$$
γ_j = p - α_j \\operatorname{tr}\\big[(H^{-1})_{jj}\\big] \\in [0, p],
$$

the quantity type-II maximum likelihood of ``α_j`` balances against ``α_j ‖θ_j‖²``
(MacKay 1992; Tipping 2001 for one precision per group). Two curvatures:

* ``"diag"``: ``γ_j = Σ_{k ∈ j} h_k / (h_k + α_j)``, ``h = diag(G) / σ²``;
* ``"kron"``: per site ``H = G ⊗ A_in / σ² + D_α ⊗ I``; with ``\\tilde G = D_α^{-1/2} G
  D_α^{-1/2} = Q Λ Qᵀ`` and the eigenvalues ``μ_b`` of ``A_in``,
  ``α_j tr[(H⁻¹)_{jj}] = Σ_a Q_{ja}² Σ_b 1 / (1 + λ_a μ_b / σ²)`` exactly — the same
  eigendecomposition the KFAC log determinant uses ([`bayesguide.curvature.kron`][]).

Sites with a diagonal block (``BatchNorm``, grouped convolutions) use the diagonal formula.
"""

from __future__ import annotations

import torch
from torch import nn

from bayesguide.curvature.base import Inputs
from bayesguide.curvature.kron import KronBlock, ggn_diagonal, kron_factors
from bayesguide.model import GuidedModel

__all__ = ["effective_parameters_diag", "effective_parameters_kron", "site_blocks"]


def site_blocks(model: GuidedModel, module: nn.Module, X: Inputs, hessian: str = "kron",
                chunk_size: int = 2048) -> list[KronBlock]:
    """The curvature of every site (at ``σ = 1``, site order) for `effective_parameters_kron`.

    ``"kron"``: the KFAC blocks of [`kron_factors`][bayesguide.curvature.kron.kron_factors];
    ``"diag"``: the exact GGN diagonal, one ``KronBlock(diag=...)`` per site. ``module``
    should be in eval mode.
    """
    if hessian == "kron":
        return kron_factors(model, module, X, chunk_size)
    if hessian != "diag":
        raise ValueError(f"hessian must be 'kron' or 'diag', got {hessian!r}")
    flat = ggn_diagonal(model, module, X, chunk_size)
    blocks, start = [], 0
    for site in model.sites:
        size = site.n_units * site.group_size
        blocks.append(KronBlock(site.name, diag=flat[start:start + size]))
        start += size
    return blocks


def effective_parameters_diag(diag: torch.Tensor, alpha: torch.Tensor, sigma2: float = 1.0) -> torch.Tensor:
    """``γ_j`` of one site from its GGN diagonal ``(n, p)`` (at ``σ = 1``) and unit precisions ``(n,)``.

    Examples
    --------
    >>> effective_parameters_diag(torch.tensor([[1.0, 3.0]]), torch.tensor([1.0])).tolist()
    [1.25]
    """
    h = diag.to(torch.float64) / sigma2
    return (h / (h + alpha.to(torch.float64).unsqueeze(-1))).sum(-1)


def effective_parameters_kron(block: KronBlock, alpha: torch.Tensor, sigma2: float = 1.0) -> torch.Tensor:
    """``γ_j`` of one site from its KFAC block (at ``σ = 1``) and unit precisions ``(n,)``.

    A block with a diagonal (``block.diag``) uses
    [`effective_parameters_diag`][bayesguide.curvature.effective.effective_parameters_diag].
    """
    alpha = alpha.to(torch.float64)
    if block.diag is not None:
        return effective_parameters_diag(block.diag.reshape(alpha.numel(), -1), alpha, sigma2)
    assert block.A is not None and block.G is not None
    p = block.A.shape[0]
    s = alpha.rsqrt()
    lam, Q = torch.linalg.eigh(block.G * s.unsqueeze(-1) * s)
    mu = torch.linalg.eigvalsh(block.A)
    inverse = 1.0 / (1.0 + lam.clamp(min=0.0).unsqueeze(-1) * mu.clamp(min=0.0) / sigma2)  # (n, p)
    return p - Q.pow(2) @ inverse.sum(-1)
