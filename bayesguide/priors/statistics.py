"""The built-in per-unit statistics of the unit priors, each one autograd node with its gradient in closed form.

A unit prior's penalty is ``Σ_j rate_j s_j(θ)``, with ``s_j`` computed from the column
blocks ``[W_rows, b[:, None]]`` of a layer's unit matrix (no concatenated copy). The
three statistics the built-in priors use are here:

| statistic | ``s_j`` | gradient in block ``k`` |
|---|---|---|
| `sum_of_squares` | ``Σ_k Σ_i x_ki²`` | ``2 x_k`` |
| `sum_of_abs` | ``Σ_k Σ_i │x_ki│`` | ``sign(x_k)`` (0 at 0) |
| `group_norm` | ``‖θ_j‖₂`` | ``x_k / ‖θ_j‖₂``, 0 where ``‖θ_j‖₂ = 0`` |

Each is a `torch.autograd.Function`: the forward pass reduces every block without a
temporary of its size (``vecdot``, ``vector_norm``), and the backward pass writes each
block's gradient with one product. The same statistics written with ordinary torch
operations put eight to ten nodes per layer into the training graph (squares, sums,
the clamp that keeps ``√s`` finite at 0, …), and at every step each node costs a
dispatch forward and backward and a temporary; in the MAP objective that was a fifth
of a step at batch 32 on the digits MLP (``benchmarks/map_overhead.py``).

The values are the textbook ones, exactly: ``group_norm`` is 0 at an all-zero group and
its gradient there is the subgradient 0 (what ``torch.linalg.vector_norm`` takes), never
the NaN of ``√s``'s infinite slope. The backward passes are written in differentiable
torch operations, so gradients of gradients are available too (away from 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["group_norm", "sum_of_abs", "sum_of_squares"]


def _squares(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    total = torch.linalg.vecdot(parts[0], parts[0])
    for p in parts[1:]:
        total = total + torch.linalg.vecdot(p, p)
    return total


def _grads(ctx: Any, parts: tuple[torch.Tensor, ...], coef: torch.Tensor,
           transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor | None, ...]:
    """``coef[..., None] · transform(x_k)`` for every block that needs a gradient (None for the others)."""
    coef = coef.unsqueeze(-1)
    return tuple((coef * (p if transform is None else transform(p))) if need else None
                 for p, need in zip(parts, ctx.needs_input_grad))


class _SumOfSquares(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *parts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*parts)
        return _squares(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _grads(ctx, ctx.saved_tensors, 2 * grad)


class _SumOfAbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *parts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*parts)
        total = torch.linalg.vector_norm(parts[0], ord=1, dim=-1)
        for p in parts[1:]:
            total = total + torch.linalg.vector_norm(p, ord=1, dim=-1)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _grads(ctx, ctx.saved_tensors, grad, torch.sign)


class _GroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *parts: torch.Tensor) -> torch.Tensor:
        norm = _squares(parts).sqrt()
        ctx.save_for_backward(norm, *parts)
        return norm

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        norm, *parts = ctx.saved_tensors
        return _grads(ctx, tuple(parts), torch.where(norm > 0, grad / norm, 0.0))


def sum_of_squares(parts: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_k x_k²`` over the last dimension of every block, summed across blocks."""
    return _SumOfSquares.apply(*parts)


def sum_of_abs(parts: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_k |x_k|`` over the last dimension of every block, summed across blocks."""
    return _SumOfAbs.apply(*parts)


def group_norm(parts: list[torch.Tensor]) -> torch.Tensor:
    """``‖θ‖₂`` of the concatenated blocks (the last dimension), without concatenating them.

    ``√(Σ_blocks Σ_k x_k²)``: exactly 0 at an all-zero group, with gradient 0 there (the
    subgradient ``torch.linalg.vector_norm`` takes), and ``x / ‖θ‖₂`` elsewhere. The
    squares are summed unscaled, so it overflows for norms above ``√max`` of the
    dtype (``1.8e19`` in float32), far beyond any trained weight.
    """
    return _GroupNorm.apply(*parts)
