"""The curvature contract: the GGN of the negative log-likelihood in one structure.

A *curvature backend* computes, for a network with weights ``θ`` (``P`` of them, the
sites' unit matrices flattened in site order), the generalized Gauss–Newton matrix of
the summed negative log-likelihood at ``σ = 1``,

``G₁ = Σ_i J_iᵀ Λ_i J_i``, ``J_i`` the Jacobian of the output for example ``i`` and
``Λ_i = M_i M_iᵀ`` the Hessian of the NLL in the output (:func:`hessian_sqrt`),

exactly (``full``), its diagonal (``diag``) or layer-wise Kronecker factors (``kron``),
and answers the three questions the Laplace evidence and posterior ask, for a diagonal
Gaussian prior precision ``c · D`` and a noise ``σ``:

* :meth:`Curvature.scaled_eigenvalues` — the eigenvalues ``e_k`` of
  ``D^{-1/2} G₁ D^{-1/2}`` (what type-II maximum likelihood of ``c`` needs);
* :meth:`Curvature.logdet` — ``log det(G₁ / σ² + c D)``;
* :meth:`Curvature.precision` — ``G₁ / σ² + c D`` itself, for sampling the Laplace
  posterior (full and diagonal only).

Each backend is one class in its own module, registered by name in
:mod:`~bayesguide.curvature.registry`.

**Devices.** The network passes run where ``module``'s parameters are; the inputs ``X``
may be anywhere (e.g. on the CPU while the network is on a GPU): each chunk of examples
is moved to the network's device as it is processed, and the accumulated curvature
(matrices, factors, diagonals; float64) comes back on the CPU, where the queries' small
linear algebra runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from bayesguide._options import Option
from bayesguide.likelihoods import Likelihood
from bayesguide.model import GuidedModel
from bayesguide.model.device import module_device, to_device

__all__ = ["Curvature", "HessianStructure", "chunks", "flat_weights", "hessian_sqrt", "outputs"]


class HessianStructure(Option):
    """Curvature approximations for the Laplace evidence."""

    #: the full ``P × P`` GGN (exact; for networks up to ~20k parameters)
    FULL = "full", "full GGN, P×P"
    #: the diagonal of the GGN
    DIAG = "diag", "diagonal of the GGN"
    #: layer-wise Kronecker-factored GGN (KFAC) for Linear/Conv2d, diagonal for BatchNorm
    KRON = "kron", "block-diagonal KFAC GGN, G_l ⊗ A_l per layer (diagonal for BatchNorm)"
    #: KFAC's eigenbasis with the exact curvature along it (George et al. 2018)
    EKFAC = "ekfac", "eigenvalue-corrected KFAC: KFAC's eigenbasis, per-example curvature along it"


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

    Subclasses set ``structure`` (their :class:`HessianStructure` name) and
    ``cheap_eigenvalues`` (whether :meth:`scaled_eigenvalues` costs no more than the
    curvature itself), and implement :meth:`compute` and the three queries.
    """

    structure: ClassVar[HessianStructure]
    cheap_eigenvalues: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def compute(cls, model: GuidedModel, module: nn.Module, X: torch.Tensor, *,
                max_params: int | None = None, progress: bool = False) -> Curvature:
        """The curvature of ``model`` at ``module``'s weights on prepared inputs ``X``.

        ``module`` is in eval mode (``BatchNorm`` uses its running statistics).
        ``max_params`` bounds the size of a dense backend (``ValueError`` beyond it);
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
