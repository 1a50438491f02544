"""The priors' statistics (a few plain torch operations each) against the textbook formulas."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bayesguide.priors.statistics import group_norm, sum_of_abs, sum_of_squares

F64 = torch.float64

Naive = Callable[[torch.Tensor], torch.Tensor]
CASES: list[tuple[Callable[[list[torch.Tensor]], torch.Tensor], Naive]] = [
    (sum_of_squares, lambda x: (x * x).sum(-1)),
    (sum_of_abs, lambda x: x.abs().sum(-1)),
    (group_norm, lambda x: torch.linalg.vector_norm(x, dim=-1)),
]


def _blocks(*lead: int, seed: int = 0) -> list[torch.Tensor]:
    """A weight block ``(…, 5, 4)`` and a bias column ``(…, 5, 1)``, away from 0."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*lead, 5, 4, generator=gen, dtype=F64) + 0.1,
            torch.randn(*lead, 5, 1, generator=gen, dtype=F64) + 0.1]


@pytest.mark.parametrize(("stat", "naive"), CASES)
@pytest.mark.parametrize("lead", [(), (3,)])  # one layer, and a batch of draws (SVI)
def test_value_and_gradient_equal_autograd_of_the_concatenated_formula(stat, naive, lead) -> None:  # type: ignore[no-untyped-def]
    parts = [p.requires_grad_() for p in _blocks(*lead)]
    weights = torch.rand(parts[0].shape[:-1], dtype=F64)  # rates: a weighted sum, as in the penalty
    got = (stat(parts) * weights).sum()
    got_grads = torch.autograd.grad(got, parts)
    want = (naive(torch.cat(parts, -1)) * weights).sum()
    want_grads = torch.autograd.grad(want, parts)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    for a, e in zip(got_grads, want_grads):
        torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("stat", "naive"), CASES)
def test_gradcheck_and_gradients_of_gradients(stat, naive) -> None:  # type: ignore[no-untyped-def]
    parts = tuple(p.requires_grad_() for p in _blocks(seed=1))
    assert torch.autograd.gradcheck(lambda *ps: stat(list(ps)), parts)
    if stat is not sum_of_abs:  # |x| has no second derivative to check
        assert torch.autograd.gradgradcheck(lambda *ps: stat(list(ps)), parts)


def test_an_all_zero_group_has_norm_zero_and_the_subgradient_zero() -> None:
    w, b = _blocks()
    w[2], b[2] = 0.0, 0.0
    w[3] = 0.0  # weights zero, bias not: a live group
    w.requires_grad_(), b.requires_grad_()
    norms = group_norm([w, b])
    assert norms[2] == 0  # exactly
    assert norms[3] == b.detach()[3, 0].abs()
    (norms * torch.arange(1.0, 6.0, dtype=F64)).sum().backward()
    assert w.grad is not None and b.grad is not None
    assert torch.isfinite(w.grad).all() and torch.isfinite(b.grad).all()
    assert (w.grad[2] == 0).all() and b.grad[2] == 0
    assert float(b.grad[3, 0]) == pytest.approx(4.0 * float(torch.sign(b.detach()[3, 0])), rel=1e-15)
    zero = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    sum_of_abs([zero]).sum().backward()
    assert zero.grad is not None and (zero.grad == 0).all()  # sign(0) = 0: the subgradient 0


def test_a_block_that_needs_no_gradient_gets_none() -> None:
    for stat, _ in CASES:
        w, b = _blocks()
        w.requires_grad_()
        stat([w, b]).sum().backward()
        assert w.grad is not None and b.grad is None


@pytest.mark.parametrize(("stat", "naive"), CASES)
def test_a_1d_block_is_one_column(stat, naive) -> None:  # type: ignore[no-untyped-def]
    """A bias as it is, ``(n,)``, gives what the ``(n, 1)`` column gives: values and gradients."""
    w, b = _blocks(seed=2)
    b = b[:, 0]
    b[1], w[1] = 0.0, 0.0  # an all-zero group: value 0, gradient 0 (group norm)
    weights = torch.rand(5, dtype=F64)
    results = []
    for column in (False, True):
        ww, bb = w.clone().requires_grad_(), b.clone().requires_grad_()
        value = (stat([ww, bb[:, None] if column else bb]) * weights).sum()
        results.append((value, *torch.autograd.grad(value, [ww, bb])))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-14, atol=0)
    assert torch.isfinite(results[0][1]).all() and torch.isfinite(results[0][2]).all()
    # a 1-D block alone: |x| for the norm, x² and |x| for the sums
    torch.testing.assert_close(stat([b]), naive(b[:, None]), rtol=1e-14, atol=0)
