"""The curvature contract: the GGN of the negative log-likelihood in one structure.

A *curvature backend* computes, for a network with weights ``θ`` (``P`` of them, the
sites' unit matrices flattened in site order), the generalized Gauss–Newton matrix of
the summed negative log-likelihood at ``σ = 1``,

``G₁ = Σ_i J_iᵀ Λ_i J_i``, ``J_i`` the Jacobian of the output for example ``i`` and
``Λ_i = M_i M_iᵀ`` the Hessian of the NLL in the output ([`hessian_sqrt`][bayesguide.curvature.base.hessian_sqrt]),

exactly (``full``), its diagonal (``diag``) or layer-wise Kronecker factors (``kron``),
and answers the three questions the Laplace evidence and posterior ask, for a diagonal
Gaussian prior precision ``c · D`` and a noise ``σ``:

* [`Curvature.scaled_eigenvalues`][bayesguide.curvature.base.Curvature.scaled_eigenvalues] — the eigenvalues ``e_k`` of
  ``D^{-1/2} G₁ D^{-1/2}`` (what type-II maximum likelihood of ``c`` needs);
* [`Curvature.logdet`][bayesguide.curvature.base.Curvature.logdet] — ``log det(G₁ / σ² + c D)``;
* [`Curvature.precision`][bayesguide.curvature.base.Curvature.precision] — ``G₁ / σ² + c D`` itself, for sampling the
Laplace
  posterior (full and diagonal only).

Each backend is one class in its own module, registered by name in
[`registry`][bayesguide.curvature.registry].

**Data.** ``X`` is a tensor of prepared inputs or, for data that do not fit in memory, a
[`BatchStream`][bayesguide.model.batches.BatchStream] (a validated data loader): every
backend accumulates its curvature over chunks of examples
([`input_chunks`][bayesguide.curvature.base.input_chunks]), so both give the same
matrices up to the order of the float64 sums.

**Memory.** The full GGN is a dense ``P × P`` float64 matrix, held in one buffer whose
lower triangle the queries use in place ([`FullGGN`][bayesguide.curvature.ggn.FullGGN]):
the evidence holds that one matrix (plus one chunk of per-example Jacobians), the
Laplace posterior two (the precision and its Cholesky factor) — ``DENSE_COPIES``
at most. Before allocating any,
``hessian="full"`` refuses when they would exceed a memory budget
([`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]): by default half
of the memory available now (on Linux, ``os.sysconf("SC_PAGE_SIZE") *
os.sysconf("SC_AVPHYS_PAGES")``, [`default_memory_budget`][bayesguide.curvature.base.default_memory_budget]),
or ``memory_budget`` bytes where a caller passes it (``bg.evidence(..., memory_budget=...)``).

**Devices.** The network passes run where ``module``'s parameters are; the inputs ``X``
may be anywhere (e.g. on the CPU while the network is on a GPU): each chunk of examples
is moved to the network's device as it is processed, and the accumulated curvature
(matrices, factors, diagonals; float64) comes back on the CPU, where the queries' small
linear algebra runs.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from bayesguide._options import Option
from bayesguide.likelihoods import Likelihood
from bayesguide.model import GuidedModel
from bayesguide.model.batches import BatchStream
from bayesguide.model.device import module_device, to_device

__all__ = [
    "DENSE_COPIES", "MEMORY_FRACTION", "Curvature", "HessianStructure", "Inputs", "check_dense_memory", "chunks",
    "default_memory_budget", "flat_weights", "hessian_sqrt", "input_chunks", "outputs",
]

Inputs = torch.Tensor | BatchStream
"""What the curvature reads: prepared inputs, or a validated data loader (only its inputs are used)."""

DENSE_COPIES = 2
"""How many ``P × P`` float64 matrices ``hessian="full"`` holds at its peak: the GGN's buffer and either one
chunk of per-example Jacobians (the evidence, at most ``2**24`` numbers) or, for the Laplace posterior,
the precision and its Cholesky factor."""

MEMORY_FRACTION = 0.5
"""The fraction of the available memory the dense curvature may use by default."""


def default_memory_budget() -> int | None:
    """``MEMORY_FRACTION`` of the memory available now, in bytes; ``None`` where it cannot be read.

    On Linux (and other systems with ``sysconf``) the available memory is
    ``os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")`` — free physical pages,
    not counting reclaimable caches, so the budget errs on the safe side.
    """
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if pages <= 0 or size <= 0:
        return None
    return int(MEMORY_FRACTION * pages * size)


def check_dense_memory(P: int, memory_budget: float | None = None) -> None:
    """Refuse a dense ``P × P`` float64 curvature that would not fit in ``memory_budget`` bytes.

    Parameters
    ----------
    P
        The number of parameters.
    memory_budget
        Bytes the dense matrices may take; ``None``:
        [`default_memory_budget`][bayesguide.curvature.base.default_memory_budget] (no check
        where the available memory cannot be read).

    Raises
    ------
    ValueError
        Naming ``P``, the bytes needed (``DENSE_COPIES · 8 P²``) and the budget, and
        suggesting ``hessian="kron"`` — before anything is allocated.

    Examples
    --------
    >>> check_dense_memory(100, memory_budget=1e9)
    >>> check_dense_memory(10_000, memory_budget=1e9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: hessian='full' needs 2 dense 10000×10000 float64 matrices for P=10000 parameters: 1600000000 bytes ...
    """
    budget = default_memory_budget() if memory_budget is None else memory_budget
    need = DENSE_COPIES * 8 * P * P
    if budget is not None and need > budget:
        raise ValueError(
            f"hessian='full' needs {DENSE_COPIES} dense {P}×{P} float64 matrices for P={P} parameters: {need} bytes "
            f"({need / 1e9:.3g} GB), more than the memory budget of {int(budget)} bytes ({budget / 1e9:.3g} GB); "
            f"use hessian='kron' (or 'diag'), prune the network first, or raise memory_budget"
        )


def input_chunks(X: Inputs, size: int, progress: bool, what: str, device: torch.device) -> Iterator[torch.Tensor]:
    """The inputs ``X`` in chunks of at most ``size`` examples, each moved to ``device``.

    A tensor is cut into consecutive chunks ([`chunks`][bayesguide.curvature.base.chunks]);
    a [`BatchStream`][bayesguide.model.batches.BatchStream] is read in one pass, each batch cut
    likewise — so the examples come in the same order either way.
    """
    if isinstance(X, torch.Tensor):
        for start in chunks(X.shape[0], size, progress, what):
            yield to_device(X[start : start + size], device)
        return
    for xb, _ in tqdm(X, desc=what, disable=not progress, delay=2.0, leave=False):
        for start in range(0, xb.shape[0], size):
            yield to_device(xb[start : start + size], device)


class HessianStructure(Option):
    """Curvature approximations for the Laplace evidence."""

    FULL = "full", "full GGN, P×P"
    """The full ``P × P`` GGN (exact; for networks up to ~20k parameters)."""
    DIAG = "diag", "diagonal of the GGN"
    """The diagonal of the GGN."""
    KRON = "kron", "block-diagonal KFAC GGN, G_l ⊗ A_l per layer (diagonal for BatchNorm)"
    """Layer-wise Kronecker-factored GGN (KFAC) for Linear/Conv2d, diagonal for BatchNorm."""
    EKFAC = "ekfac", "eigenvalue-corrected KFAC: KFAC's eigenbasis, per-example curvature along it"
    """KFAC's eigenbasis with the exact curvature along it (George et al. 2018)."""


def hessian_sqrt(likelihood: Likelihood, out: torch.Tensor) -> torch.Tensor:
    """``M_i`` with ``M_i M_iᵀ = Λ_i`` (Gaussian at ``σ = 1``), shape ``(B, C, C)``.

    Categorical: ``M = diag(√p) − p √pᵀ``, which squares to ``diag(p) − ppᵀ`` because
    ``Σ_k p_k = 1``; Bernoulli: ``diag(√(p(1−p)))``; Gaussian: ``I``.
    """
    b, c = out.shape
    if likelihood is Likelihood.CATEGORICAL:
        p = torch.softmax(out, dim=-1)
        return torch.diag_embed(p.sqrt()) - p.unsqueeze(-1) * p.sqrt().unsqueeze(-2)
    if likelihood is Likelihood.BERNOULLI:
        p = torch.sigmoid(out)
        return torch.diag_embed((p * (1 - p)).sqrt())
    return torch.eye(c, dtype=out.dtype, device=out.device).expand(b, c, c)


def flat_weights(model: GuidedModel, module: nn.Module) -> torch.Tensor:
    """``θ``: ``module``'s weights as the sites' unit matrices, flattened in site order (detached)."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        return torch.cat([s.pack(params).reshape(-1) for s in model.sites]).detach()


def outputs(module: nn.Module, X: torch.Tensor, chunk_size: int = 2048) -> torch.Tensor:
    """``module(X)`` without gradients, on ``X``'s device.

    When ``X`` is on another device than ``module`` it is moved there in chunks of
    ``chunk_size`` examples and the outputs are brought back; otherwise one forward pass.
    """
    device = module_device(module)
    with torch.no_grad():
        if X.device == device:
            return module(X)
        parts = [module(to_device(X[i:i + chunk_size], device)).to(X.device) for i in range(0, X.shape[0], chunk_size)]
    return torch.cat(parts)


def chunks(n: int, size: int, progress: bool, what: str) -> Iterator[int]:
    """Start indices of ``size``-example chunks of ``n``, with a progress bar shown after 2 s."""
    starts = range(0, n, size)
    return iter(tqdm(starts, desc=what, disable=not progress or len(starts) < 2, delay=2.0, leave=False))


class Curvature(ABC):
    """The GGN ``G₁`` (at ``σ = 1``) of one network in one structure; see the module docstring.

    Subclasses set ``structure`` (their [`HessianStructure`][bayesguide.curvature.base.HessianStructure] name) and
    ``cheap_eigenvalues`` (whether [`scaled_eigenvalues`][bayesguide.curvature.base.Curvature.scaled_eigenvalues] costs
    no more than the
    curvature itself), and implement [`compute`][bayesguide.curvature.base.Curvature.compute] and the three queries.
    """

    structure: ClassVar[HessianStructure]
    cheap_eigenvalues: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: Inputs, *,
                max_params: int | None = None, progress: bool = False,
                memory_budget: float | None = None) -> Curvature:
        """The curvature of ``model`` at ``module``'s weights on prepared inputs ``X`` (or a stream of batches).

        ``module`` is in eval mode (``BatchNorm`` uses its running statistics).
        ``max_params`` bounds the size of a dense backend (``ValueError`` beyond it), and
        so does ``memory_budget`` ([`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]);
        ``progress`` shows a bar over the chunks of examples once the computation has
        taken more than two seconds.
        """

    @abstractmethod
    def scaled_eigenvalues(self, d: torch.Tensor) -> torch.Tensor:
        """Eigenvalues of ``D^{-1/2} G₁ D^{-1/2}`` for the per-weight prior precision ``d`` (float64)."""

    @abstractmethod
    def logdet(self, d: torch.Tensor, c: float, sigma2: float) -> float:
        """``log det(G₁ / σ² + c · diag(d))``; a ``ValueError`` if it is not positive definite."""

    def precision(self, d: torch.Tensor, c: float, sigma2: float) -> torch.Tensor:
        """``G₁ / σ² + c · diag(d)``: ``(P, P)``, or ``(P,)`` for a diagonal structure."""
        raise ValueError(
            f"the Laplace posterior supports hessian='full' or 'diag', got {self.structure.value!r}"
        )
