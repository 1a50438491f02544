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
result is on the CPU. That is [`ggn`][bayesguide.curvature.ggn.ggn], the reference.

The ``"full"`` backend ([`FullGGN`][bayesguide.curvature.ggn.FullGGN]) takes a shorter
way where every site is a ``Linear`` layer (on the CPU): there the Jacobian rows of
site ``k`` are Kronecker products ``g_{ick} ⊗ ã_{ik}`` of the backpropagated
square-root columns and the layer inputs — the passes of the KFAC factors
([`backprop_columns`][bayesguide.curvature.kron.backprop_columns]) — and each block of
``G₁`` is one matrix product over the examples, ``C`` times fewer multiply-adds than
``Σ J̃ᵀ J̃`` (the same sums in another order). It keeps the GGN in one buffer and
answers the queries there (see the class).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg.blas
import scipy.linalg.lapack
import torch
from torch import nn

from bayesguide.curvature import base as curvature_base
from bayesguide.curvature.base import (
    Curvature,
    HessianStructure,
    Inputs,
    check_dense_memory,
    flat_weights,
    hessian_sqrt,
    input_chunks,
)
from bayesguide.curvature.kron import backprop_columns, ggn_diagonal, layer_patches, output_rows
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
    (read once to find the output size, then once for the GGN). The ``(P, P)`` matrix
    is one float64 buffer, symmetrised in place. This is the reference path (per-example
    Jacobians, any network); [`FullGGN`][bayesguide.curvature.ggn.FullGGN] computes the
    same matrix, by Kronecker products where every site is ``Linear``.
    """
    if diagonal:
        diag = _accumulate(model, module, theta, X, diagonal=True, chunk_elements=chunk_elements,
                           progress=progress)
        assert isinstance(diag, torch.Tensor)
        return diag
    upper = _accumulate(model, module, theta, X, diagonal=False, chunk_elements=chunk_elements, progress=progress)
    assert isinstance(upper, np.ndarray)
    _fill_lower(upper, upper.diagonal().copy())
    return torch.from_numpy(upper.T)  # upper is symmetric and Fortran-ordered: its transpose is C-ordered


def _accumulate(
    model: GuidedModel, module: nn.Module, theta: torch.Tensor, X: Inputs, *, diagonal: bool,
    chunk_elements: int, progress: bool,
) -> torch.Tensor | np.ndarray:
    """The GGN's diagonal ``(P,)`` (a tensor), or its upper triangle in a Fortran-ordered ``(P, P)`` array.

    Below the diagonal the array holds zeros (CPU) or the same numbers (GPU: the
    symmetrised product, brought back).
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
        del J
        if upper is not None:
            # C := Jtᵀ Jt + C on the upper triangle; Jt.numpy().T is Fortran-ordered (no copy)
            upper = scipy.linalg.blas.dsyrk(1.0, Jt.numpy().T, beta=1.0, c=upper, trans=0, overwrite_c=1)
        elif full is not None:
            full.addmm_(Jt.T, Jt)
        else:
            diag += Jt.pow(2).sum(0)
    if full is not None:
        # the product is symmetric up to rounding; C-ordered on the CPU, so its transpose is Fortran-ordered
        return (0.5 * (full + full.T)).cpu().numpy().T
    if upper is None:
        return diag.cpu()
    return upper


def _fill_lower(a: np.ndarray, diag: np.ndarray, scale: np.ndarray | float = 1.0,
                shift: np.ndarray | float = 0.0) -> None:
    """Overwrite the lower triangle of the Fortran-ordered ``a`` from its strict upper triangle, in place.

    Below the diagonal ``a[i, j] = a[j, i] · s_i s_j``, on it ``a[i, i] = diag_i · s_i² + shift_i``
    (``s`` = ``scale``, a vector or a number); the strict upper triangle is not changed, so
    it keeps the matrix for the next query, whatever LAPACK does to the lower one. Works
    in column blocks of at most ``P / 32`` columns (temporaries of ``P²/32`` numbers).
    """
    P = a.shape[0]
    block = _block(P)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (P,))
    plain = np.ndim(scale) == 0 and float(scale) == 1.0
    on_diagonal = diag * s**2 + np.broadcast_to(np.asarray(shift, dtype=np.float64), (P,))
    for j0 in range(0, P, block):
        j1 = min(j0 + block, P)
        if j1 < P:  # below the diagonal block: from the upper triangle's rows j0:j1
            if plain:
                a[j1:, j0:j1] = a[j0:j1, j1:].T
            else:
                below = a[j0:j1, j1:].T * s[j1:, None]
                below *= s[None, j0:j1]
                a[j1:, j0:j1] = below
        square = a[j0:j1, j0:j1]  # the diagonal block: its strict upper part, mirrored
        lower = np.triu(square, 1).T
        if not plain:
            lower *= s[j0:j1, None] * s[None, j0:j1]
        np.copyto(square, lower, where=np.tri(j1 - j0, k=-1, dtype=bool))
        np.fill_diagonal(square, on_diagonal[j0:j1])


def _block(P: int) -> int:
    """Columns per block of the in-place triangle copies: ``P / 32``, within ``[32, 256]``."""
    return min(256, max(32, P // 32))


class FullGGN(Curvature):
    """The exact ``P × P`` GGN (up to ``max_params`` parameters, within the memory budget).

    One float64 buffer holds it, Fortran-ordered: the strict upper triangle keeps ``G₁``
    (and ``diagonal`` its diagonal), the lower triangle is the workspace of the queries,
    which fill it from the upper one and hand it to LAPACK — the Cholesky factorisation
    ``dpotrf`` in place for [`logdet`][bayesguide.curvature.base.Curvature.logdet]; for
    [`scaled_eigenvalues`][bayesguide.curvature.base.Curvature.scaled_eigenvalues]
    ``torch.linalg.eigvalsh`` on a transient copy where one more matrix fits in the
    memory budget ([`default_memory_budget`][bayesguide.curvature.base.default_memory_budget]),
    else ``dsyevr`` in place (slower with scipy's OpenBLAS). Once the eigenvalues for a
    prior ``d`` are known, ``logdet`` at that ``d`` uses them instead of a Cholesky
    factorisation: ``log det(G₁/σ² + c D) = Σ_k log(c + e_k/σ²) + Σ_k log d_k``. So the
    evidence holds one ``P × P`` matrix (two while the eigenvalues are computed, if
    memory allows).
    """

    structure: ClassVar[HessianStructure] = HessianStructure.FULL
    cheap_eigenvalues: ClassVar[bool] = False

    def __init__(self, upper: np.ndarray) -> None:
        if upper.ndim != 2 or upper.shape[0] != upper.shape[1] or upper.dtype != np.float64 \
                or not upper.flags.f_contiguous:
            raise ValueError(f"FullGGN needs a square Fortran-ordered float64 array, got shape {upper.shape}, "
                             f"dtype {upper.dtype}, Fortran-ordered: {upper.flags.f_contiguous}")
        self.buffer = upper
        self.diagonal = upper.diagonal().copy()
        self._eigen: tuple[torch.Tensor, torch.Tensor] | None = None  # (d, eigenvalues) of the last query

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
        linears = _linear_sites(model, module)
        upper = None
        if linears is not None and module_device(module) == CPU:
            upper = _linear_upper(model, module, X, linears, progress)
        if upper is None:
            accumulated = _accumulate(model, module, theta, X, diagonal=False, chunk_elements=2**24,
                                      progress=progress)
            assert isinstance(accumulated, np.ndarray)
            upper = accumulated
        return cls(upper)

    @property
    def G(self) -> torch.Tensor:
        """``G₁`` as a new ``(P, P)`` tensor (a copy: the buffer's lower triangle is workspace)."""
        out = self.buffer.copy(order="F")
        _fill_lower(out, self.diagonal)
        return torch.from_numpy(out.T)

    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        P = self.buffer.shape[0]
        s = _vector(d, P, "d") ** -0.5
        _fill_lower(self.buffer, self.diagonal, scale=s)
        budget = curvature_base.default_memory_budget()
        if budget is None or budget >= 8 * P * P:
            # torch's LAPACK (MKL in the CPU wheels) is ~2× faster than scipy's here; it works on a copy
            e = torch.linalg.eigvalsh(torch.from_numpy(self.buffer), UPLO="L")
        else:
            result = scipy.linalg.lapack.dsyevr(self.buffer, compute_v=0, lower=1, overwrite_a=1)
            w, info = result[0], result[-1]  # (w, z, m, isuppz, info)
            if info != 0:
                raise ValueError(f"the eigenvalues of the scaled GGN did not converge (LAPACK dsyevr info={info})")
            e = torch.from_numpy(np.sort(w))
        self._eigen = (d.detach().to(torch.float64).cpu().clone(), e)
        return e

    def precision(self, d: torch.Tensor, c: float, sigma2: float) -> torch.Tensor:
        out = self.buffer.copy(order="F")
        _fill_lower(out, self.diagonal, scale=sigma2**-0.5, shift=c * _vector(d, out.shape[0], "d"))
        _mirror_lower(out)
        return torch.from_numpy(out.T)

    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        dv = _vector(d, self.buffer.shape[0], "d")
        if self._eigen is not None and torch.equal(self._eigen[0], torch.from_numpy(dv)):
            terms = c + self._eigen[1].numpy() / sigma2  # eigenvalues of D^{-1/2} H D^{-1/2}
            if float(terms.min()) <= 0.0:
                raise ValueError("the posterior precision G + A is not positive definite "
                                 f"(smallest eigenvalue of D^-1/2 H D^-1/2: {float(terms.min()):.3g})")
            return float(np.log(terms).sum() + np.log(dv).sum())
        _fill_lower(self.buffer, self.diagonal, scale=sigma2**-0.5, shift=c * dv)
        L, info = scipy.linalg.lapack.dpotrf(self.buffer, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise ValueError("the posterior precision G + A is not positive definite (Cholesky failed)")
        return 2.0 * float(np.log(L.diagonal()).sum())


_KRON_SLICE = 2**21
"""The most numbers in one slice of a Kronecker-product block (and in one outer-product batch)."""


def _linear_sites(model: GuidedModel, module: nn.Module) -> list[nn.Linear] | None:
    """Each site's layer when every site is an ``nn.Linear`` (in site order), else ``None``."""
    chain = {layer.name: layer.module for layer in model.chain(module)}
    layers = [chain[s.layer.name] for s in model.sites]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if len(linears) < len(layers) or any(
        (s.n_units, s.group_size) != (m.out_features, m.in_features + (m.bias is not None))
        for s, m in zip(model.sites, linears)
    ):
        return None
    return linears


def _linear_upper(model: GuidedModel, module: nn.Module, X: Inputs, layers: list[nn.Linear],
                  progress: bool) -> np.ndarray | None:
    """The upper triangle of ``G₁`` for a network whose sites are all ``Linear``, by Kronecker products.

    With ``ã_{ik}`` the input of site ``k`` for example ``i`` (a 1 appended for a bias)
    and ``g_{ick}`` the backpropagated square-root column at its output
    ([`backprop_columns`][bayesguide.curvature.kron.backprop_columns]), the rows of
    ``J̃_i`` restricted to site ``k`` are ``g_{ick} ⊗ ã_{ik}``, so the block of sites
    ``k, l`` is

    ``Σ_i Σ_c (g_{ick} ⊗ ã_{ik})(g_{icl} ⊗ ã_{il})ᵀ = Σ_i S_{ikl} ⊗ (ã_{ik} ã_{il}ᵀ)``,
    ``S_{ikl} = Σ_c g_{ick} g_{iclᵀ}``:

    one matrix product over the examples of ``vec S`` (``n_k n_l`` per example) against
    ``vec(ã ãᵀ)`` (``p_k p_l``), then a permutation of the axes — ``N P_k P_l`` multiply-adds
    instead of the ``N C P_k P_l`` of ``Σ J̃ᵀ J̃``, the same sums in another order. Blocks
    with ``k ≤ l`` only (and, on the diagonal, unit rows ``j ≤ m``), in slices of at most
    ``_KRON_SLICE`` numbers. ``None`` when a layer sees more than one input row per
    example (a ``Linear`` on ``(N, T, in)``): the Jacobian path then applies.
    """
    sizes = [s.n_units * s.group_size for s in model.sites]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    P = offsets[-1]
    upper = np.zeros((P, P), dtype=np.float64, order="F")
    # examples per pass: their inputs and backpropagated columns (C ≈ the last site's width) in 2**24 numbers
    per_example = layers[-1].out_features * sum(m.out_features for m in layers) + sum(m.in_features + 1 for m in layers)
    rows = max(1, 2**24 // per_example)
    for _, inputs, grads in backprop_columns(model, module, X, chunk_size=rows, progress=progress):
        if any(x.ndim != 2 for x in inputs):
            return None
        a = [layer_patches(m, x) for m, x in zip(layers, inputs)]  # (B, p_k)
        g = [torch.stack([output_rows(m, gc[k]) for gc in grads], 1) for k, m in enumerate(layers)]  # (B, C, n_k)
        for k in range(len(layers)):
            for m in range(k, len(layers)):
                _add_kron_block(upper, offsets[k], offsets[m], g[k], a[k], g[m], a[m], diagonal=k == m)
    return upper


def _add_kron_block(upper: np.ndarray, row: int, col: int, gk: torch.Tensor, ak: torch.Tensor,
                    gl: torch.Tensor, al: torch.Tensor, *, diagonal: bool) -> None:
    """``upper[row:, col:] += Σ_i S_i ⊗ (ã_{ik} ã_{il}ᵀ)`` for one pair of sites (see `_linear_upper`)."""
    B, _, nk = gk.shape
    nl, pk, pl = gl.shape[2], ak.shape[1], al.shape[1]
    budget = _KRON_SLICE
    units = max(1, budget // (nl * pk * pl))  # unit rows j per slice of the result
    for j0 in range(0, nk, units):
        j1 = min(nk, j0 + units)
        m0 = j0 if diagonal else 0  # on a diagonal block, unit columns m ≥ j only
        batch = max(1, budget // max(pk * pl, (j1 - j0) * (nl - m0)))  # examples per product: S and T bounded
        R = torch.zeros((j1 - j0) * (nl - m0), pk * pl, dtype=torch.float64)
        for b0 in range(0, B, batch):
            b1 = min(B, b0 + batch)
            S = torch.einsum("bcj,bcm->bjm", gk[b0:b1, :, j0:j1], gl[b0:b1, :, m0:]).reshape(b1 - b0, -1)
            T = (ak[b0:b1, :, None] * al[b0:b1, None, :]).reshape(b1 - b0, -1)
            R.addmm_(S.T, T)
        block = R.reshape(j1 - j0, nl - m0, pk, pl).permute(0, 2, 1, 3).reshape((j1 - j0) * pk, (nl - m0) * pl)
        upper[row + j0 * pk:row + j1 * pk, col + m0 * pl:col + nl * pl] += block.numpy()


def _vector(d: torch.Tensor, P: int, name: str) -> np.ndarray:
    """``d`` as a float64 numpy vector of length ``P``."""
    v = d.detach().to(torch.float64).cpu().numpy()
    if v.shape != (P,):
        raise ValueError(f"{name} must have shape ({P},), got {tuple(v.shape)}")
    return v


def _mirror_lower(a: np.ndarray) -> None:
    """Copy the strict lower triangle of the Fortran-ordered ``a`` onto its upper one, in place."""
    P = a.shape[0]
    block = _block(P)
    for j0 in range(0, P, block):
        j1 = min(j0 + block, P)
        if j1 < P:
            a[j0:j1, j1:] = a[j1:, j0:j1].T
        square = a[j0:j1, j0:j1]
        np.copyto(square, square.T.copy(), where=np.tri(j1 - j0, k=-1, dtype=bool).T)


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
