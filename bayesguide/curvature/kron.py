"""Kronecker-factored (KFAC) GGN blocks: the ``hessian="kron"`` curvature backend.

The GGN ``G = Σ_i J_iᵀ Λ_i J_i`` is approximated layer by layer (block-diagonal over
sites, no cross-layer terms). Write ``Λ_i = M_i M_iᵀ`` with ``C`` columns
``m_{ic}`` (categorical: ``M = diag(√p) − p √pᵀ``, which squares to ``diag(p) − ppᵀ``
because ``Σ_k p_k = 1``; Bernoulli: ``diag(√(p(1−p)))``; Gaussian: ``I``, at
``σ = 1``). For a ``Linear`` layer with unit matrix ``Θ`` (``n × p``, row ``j =
[W[j, :], b[j]]``) and output ``o = Θ ã`` (``ã`` the input with a 1 appended when the
layer has a bias), the Jacobian of ``m_{ic}ᵀ f`` in ``Θ`` is ``g_{ic} ãᵢᵀ`` with
``g_{ic} = (∂f/∂o)ᵀ m_{ic}`` (the backpropagated square-root column, no sampling). In
the site order ``θ[j·p + k]`` (row-major over unit ``j`` and column ``k``) its
vectorisation is ``g ⊗ ã``, so the exact block is ``Σ_i Σ_c (g_{ic} g_{ic}ᵀ) ⊗ (ã_i
ã_iᵀ)``, which KFAC factorises (Martens & Grosse 2015) as

$$
G_l ⊗ A_l, \\qquad A_l = \\frac1{NT} \\sum_{i,t} ã_{it} ã_{it}ᵀ, \\qquad
G_l = \\sum_{i,t,c} g_{ict} g_{ict}ᵀ,
$$

with ``T = 1`` for ``Linear`` on ``(N, in)`` inputs. ``Conv2d`` (``groups = 1``,
numeric padding) uses the *KFAC-expand* variant (Grosse & Martens 2016; Eschenhagen et
al. 2023): the ``T`` output positions are treated as extra examples, ``ã_{it}`` being
the unfolded input patch (``F.unfold`` order matches ``W[j].flatten()``) with a 1
appended. This is the normalisation of curvlinops' ``KFACLinearOperator`` (``kfac_approx
= "expand"``, summed loss) that laplace-torch (Daxberger et al. 2021) uses, except that
laplace-torch keeps the bias as a separate block (``G ⊗ A_W`` and ``G``) while here it
is the last homogeneous coordinate of ``ã`` (cross terms between a unit's weights and
its bias are kept). With ``N = 1`` — and for a network that is a single ``Linear``
layer under a Gaussian likelihood, where ``g_{ic}`` does not depend on ``i`` —
``G_l ⊗ A_l`` equals the exact GGN block.

``BatchNorm`` sites, grouped convolutions, and ``Conv2d`` with string padding get the
exact *diagonal* of their GGN block instead (per-example gradients of the layer).

The prior precision of a site is ``c · (D_u ⊗ I_p)`` with ``D_u = diag(2 λ g_j)``
constant across the columns of a unit, so the precision of a KFAC block is exactly

$$
H_l = G_l ⊗ A_l + c\\,D_u ⊗ I = (D_u^{1/2} ⊗ I)\\,\\big(\\tilde G_l ⊗ A_l + c\\,I\\big)\\,
      (D_u^{1/2} ⊗ I), \\qquad \\tilde G_l = D_u^{-1/2} G_l D_u^{-1/2},
$$

and ``log det H_l = p Σ_j log(c d_j) + Σ_{a,b} log(1 + λ_a(\\tilde G_l) λ_b(A_l) / c)``:
no approximation of the prior in the eigenbasis is needed, even with per-unit
precisions. The products ``e = λ(\\tilde G_l) λ(A_l)`` play the role of the scaled GGN
eigenvalues in [`bayesguide.marglik.laplace`][], so type-II maximum likelihood of ``c``
costs ``O(P)`` per objective evaluation.

References: Martens & Grosse, "Optimizing neural networks with Kronecker-factored
approximate curvature" (ICML 2015); Grosse & Martens, "A Kronecker-factored approximate
Fisher matrix for convolution layers" (ICML 2016); Ritter, Botev & Barber, "A scalable
Laplace approximation for neural networks" (ICLR 2018); Immer et al., "Scalable marginal
likelihood estimation for model selection in deep learning" (ICML 2021); Daxberger et
al., "Laplace redux" (NeurIPS 2021, laplace-torch); Eschenhagen et al., "Kronecker-factored
approximate curvature for modern neural network architectures" (NeurIPS 2023).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from bayesguide.curvature.base import Curvature, HessianStructure, Inputs, hessian_sqrt, input_chunks
from bayesguide.model import GuidedModel
from bayesguide.model.device import module_device
from bayesguide.network import Layer, Site, functional_forward

__all__ = [
    "KronBlock", "KronGGN", "backprop_columns", "ggn_diagonal", "kron_factors", "kron_scaled_eigenvalues",
    "layer_patches", "output_rows",
]


@dataclass(frozen=True)
class KronBlock:
    """The curvature of one site: ``G ⊗ A`` (``A``, ``G`` set) or a diagonal (``diag`` set).

    ``G`` is ``n × n`` over the units, ``A`` is ``p × p`` over the columns of the unit
    matrix; the block in site order is ``torch.kron(G, A)``. ``diag`` has ``n · p``
    entries in site order.
    """

    site: str
    A: torch.Tensor | None = None
    G: torch.Tensor | None = None
    diag: torch.Tensor | None = None

    def dense(self) -> torch.Tensor:
        """The block as a dense matrix (for tests and small layers)."""
        if self.diag is not None:
            return torch.diag(self.diag)
        assert self.A is not None and self.G is not None
        return torch.kron(self.G, self.A)


def _is_kron(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1 and not isinstance(module.padding, str)


def layer_patches(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Inputs ``ã`` of a KFAC layer as rows, ``(N·T, p)``, with a 1 appended if it has a bias."""
    if isinstance(module, nn.Conv2d):
        assert not isinstance(module.padding, str)  # string padding takes the diagonal path
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        a = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    else:
        a = x.reshape(-1, x.shape[-1])
    if module.bias is not None:
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
    return a.to(torch.float64)


def output_rows(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """Backpropagated output vectors ``g`` as rows, ``(N·T, n)``."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2).reshape(-1, g.shape[1]).to(torch.float64)
    return g.reshape(-1, g.shape[-1]).to(torch.float64)


def _diag_block(
    site: Site, layer: Layer, value: torch.Tensor, x: torch.Tensor, g: torch.Tensor
) -> torch.Tensor:
    """``Σ_i (∂(gᵢᵀ layer(xᵢ))/∂θ)²`` in site order, from per-example vector-Jacobian products."""

    def one(xi: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        def out(v: torch.Tensor) -> torch.Tensor:
            return functional_forward([layer], [site], {site.name: v}, xi.unsqueeze(0))

        return torch.func.vjp(out, value)[1](gi.unsqueeze(0))[0]

    grads = torch.func.vmap(one)(x, g)
    return grads.to(torch.float64).pow(2).sum(0).reshape(-1)


def backprop_columns(
    model: GuidedModel, module: nn.Module, X: Inputs, chunk_size: int = 2048, progress: bool = False
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[list[torch.Tensor]]]]:
    """The passes every structured curvature needs, chunk by chunk.

    Yields ``(x, inputs, grads)`` per chunk of at most ``chunk_size`` examples: ``x`` the
    chunk, ``inputs[k]`` the input of site ``k``'s layer, ``grads[c][k]`` the
    backpropagated square-root column ``g_{ic} = (∂f/∂o)ᵀ m_{ic}`` at that layer's output
    (see the module docstring) — all on ``module``'s device, each chunk of ``X`` moved there.
    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream]: one pass over it,
    each batch cut into chunks ([`input_chunks`][bayesguide.curvature.base.input_chunks]).
    """
    chain = model.chain(module)
    by_layer = {s.layer.name: s for s in model.sites}
    device = module_device(module)
    for xb in input_chunks(X, chunk_size, progress, "curvature", device):
        with torch.enable_grad():
            x = xb.detach().requires_grad_(True)
            inputs: list[torch.Tensor] = []
            outputs: list[torch.Tensor] = []
            for layer in chain:
                if layer.name in by_layer:
                    inputs.append(x.detach())
                    x = layer.module(x)
                    outputs.append(x)
                else:
                    x = layer.module(x)
            f = x
            M = hessian_sqrt(model.likelihood, f.detach())
            grads = [
                [g.detach() for g in torch.autograd.grad(f, outputs, M[:, :, c], retain_graph=True)]
                for c in range(f.shape[1])
            ]
        yield xb, inputs, grads


def _layers(model: GuidedModel, module: nn.Module) -> list[Layer]:
    """Each site's layer in ``module``, in site order."""
    chain = {ly.name: ly for ly in model.chain(module)}
    return [chain[s.layer.name] for s in model.sites]


def kron_factors(
    model: GuidedModel, module: nn.Module, X: Inputs, chunk_size: int = 2048, progress: bool = False
) -> list[KronBlock]:
    """KFAC factors (or exact diagonals) of the GGN at ``σ = 1``, one block per site.

    Parameters
    ----------
    model
        The model: its likelihood and its prunable sites.
    module
        The network holding the weights (put in eval mode by the caller; ``BatchNorm``
        uses its running statistics).
    X
        Prepared inputs, ``N`` examples, or a [`BatchStream`][bayesguide.model.batches.BatchStream]
        over them; processed in chunks of ``chunk_size``.

    Returns
    -------
    list[KronBlock]
        In site order; ``A`` is normalised by ``N·T`` and ``G`` summed (see the module
        docstring), accumulated in float64.
    """
    layers = _layers(model, module)
    params = dict(module.named_parameters())
    N = 0  # counted over the chunks: a stream's length is known only once it is read
    A: dict[str, torch.Tensor] = {}
    G: dict[str, torch.Tensor] = {}
    D: dict[str, torch.Tensor] = {}
    T: dict[str, int] = {}
    for xb, inputs, grads in backprop_columns(model, module, X, chunk_size, progress):
        N += xb.shape[0]
        for k, (site, layer) in enumerate(zip(model.sites, layers)):
            m = layer.module
            name = site.name
            if _is_kron(m):
                a = layer_patches(m, inputs[k])
                T[name] = a.shape[0] // inputs[k].shape[0]
                A[name] = A.get(name, 0) + a.T @ a
                rows = torch.cat([output_rows(m, gc[k]) for gc in grads])
                G[name] = G.get(name, 0) + rows.T @ rows
            else:
                D[name] = D.get(name, 0) + _exact_diag(site, layer, params, inputs[k], [gc[k] for gc in grads])
    blocks = []
    for site in model.sites:
        name = site.name
        if name in D:
            blocks.append(KronBlock(name, diag=D[name].cpu()))
        else:
            blocks.append(KronBlock(name, A=(A[name] / (N * T[name])).cpu(), G=G[name].cpu()))
    return blocks


def _exact_diag(site: Site, layer: Layer, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                grads: list[torch.Tensor]) -> torch.Tensor:
    """The exact GGN diagonal of one site from per-example vector-Jacobian products (any layer)."""
    value = site.pack(params).detach()
    total = torch.zeros(value.numel(), dtype=torch.float64, device=value.device)
    for g in grads:
        total += _diag_block(site, layer, value, x, g)
    return total


def ggn_diagonal(model: GuidedModel, module: nn.Module, X: Inputs, chunk_size: int = 2048,
                 progress: bool = False) -> torch.Tensor:
    """The exact diagonal of the GGN at ``σ = 1`` (``P`` entries, site order), from the KFAC passes.

    For a ``Linear`` or ``Conv2d`` site the diagonal entry of weight ``(j, k)`` is
    ``Σ_i Σ_c (Σ_t g_{ictj} ã_{itk})²`` — the squared per-example gradient of
    ``m_{ic}ᵀ f`` — with ``g`` the backpropagated square-root columns and ``ã`` the
    (unfolded) inputs of the same passes that build the KFAC factors; for a ``Linear``
    layer (one position, ``T = 1``) this is ``(g²)ᵀ (ã²)``, one matrix product. Other sites
    (``BatchNorm``, grouped or string-padded convolutions) use per-example vector-Jacobian
    products. The cost is that of [`kron_factors`][bayesguide.curvature.kron.kron_factors], not of ``P`` Jacobian
    columns.
    """
    layers = _layers(model, module)
    params = dict(module.named_parameters())
    D: dict[str, torch.Tensor] = {}
    for _, inputs, grads in backprop_columns(model, module, X, chunk_size, progress):
        for k, (site, layer) in enumerate(zip(model.sites, layers)):
            m = layer.module
            if not _is_kron(m):
                D[site.name] = D.get(site.name, 0) + _exact_diag(site, layer, params, inputs[k],
                                                                 [gc[k] for gc in grads])
                continue
            a = layer_patches(m, inputs[k])  # (B·T, p)
            B = inputs[k].shape[0]
            T = a.shape[0] // B
            block = torch.zeros(site.n_units, site.group_size, dtype=torch.float64, device=a.device)
            for gc in grads:
                g = output_rows(m, gc[k])  # (B·T, n)
                if T == 1:
                    block += g.pow(2).T @ a.pow(2)
                else:
                    per_example = torch.einsum("btn,btp->bnp", g.reshape(B, T, -1), a.reshape(B, T, -1))
                    block += per_example.pow(2).sum(0)
            D[site.name] = D.get(site.name, 0) + block.reshape(-1)
    return torch.cat([D[s.name] for s in model.sites]).cpu()


def kron_scaled_eigenvalues(blocks: list[KronBlock], d: torch.Tensor) -> torch.Tensor:
    """Eigenvalues ``e`` of ``D^{-1/2} G_kfac D^{-1/2}`` (``P`` of them, site by site).

    ``d`` is the per-weight prior precision in site order (constant within a unit), so
    that ``log det(G_kfac + c D) = Σ log(c d) + Σ log(1 + e / c)`` exactly.
    """
    out = []
    start = 0
    for block in blocks:
        if block.diag is not None:
            size = block.diag.numel()
            out.append(block.diag / d[start : start + size])
        else:
            assert block.A is not None and block.G is not None
            n, p = block.G.shape[0], block.A.shape[0]
            size = n * p
            du = d[start : start + size].reshape(n, p)[:, 0]
            s = du.rsqrt()
            eg = torch.linalg.eigvalsh(block.G * s.unsqueeze(-1) * s)
            ea = torch.linalg.eigvalsh(block.A)
            out.append((eg.unsqueeze(-1) * ea).reshape(-1))
        start += size
    return torch.cat(out)


class KronGGN(Curvature):
    """KFAC blocks ``G_l ⊗ A_l`` per ``Linear`` / ``Conv2d`` site, exact diagonals elsewhere.

    ``log det(G_kfac / σ² + c D) = Σ log(c d) + Σ log(1 + e / (σ² c))`` exactly, with
    ``e`` from [`kron_scaled_eigenvalues`][bayesguide.curvature.kron.kron_scaled_eigenvalues] (see the module
    docstring). It has no dense
    precision, so the Laplace posterior refuses it.
    """

    structure: ClassVar[HessianStructure] = HessianStructure.KRON

    def __init__(self, blocks: list[KronBlock]) -> None:
        self.blocks = blocks
        self._eigen: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: Inputs, *,
                max_params: int | None = None, progress: bool = False,
                memory_budget: float | None = None) -> KronGGN:
        return cls(kron_factors(model, module, X, progress=progress))

    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        if self._eigen is None or not torch.equal(self._eigen[0], d):
            self._eigen = (d, kron_scaled_eigenvalues(self.blocks, d))
        return self._eigen[1]

    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        e = self.scaled_eigenvalues(d).clamp(min=0.0)
        return float(torch.log(c * d).sum()) + float(torch.log1p(e / (sigma2 * c)).sum())
