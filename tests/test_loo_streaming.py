"""PSIS-LOO from a data loader: batch by batch, it equals the in-memory estimate (PSIS is
per example), for Laplace and guide draws, corrected or not; bad loaders are refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg
from bayesguide.predictive import LooResult, loo


def _regression(hidden: int = 4) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(61, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)) + 0.2 * torch.randn(
        61, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=0.2)
    return bg.fit_map(model, X, y, steps=300, lr=0.02, progress=False), X, y


def _both(fit: bg.FitResult, X: torch.Tensor, y: torch.Tensor, batch_size: int,
          **kwargs: object) -> tuple[LooResult, LooResult, list[str], list[str]]:
    """The in-memory and the loader estimate, with the warnings each raised."""
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        mem = loo(fit, X, y, **kwargs)  # type: ignore[arg-type]
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size)
    with warnings.catch_warnings(record=True) as w_str:
        warnings.simplefilter("always")
        streamed = loo(fit, loader, **kwargs)  # type: ignore[arg-type]
    return mem, streamed, [str(w.message) for w in w_mem], [str(w.message) for w in w_str]


@pytest.mark.parametrize(("batch_size", "options"), [
    (7, {"draws": 150, "seed": 1}),                                  # Laplace diag, GLM predictive, auto correction
    (61, {"draws": 150, "seed": 2, "correct": False}),               # one batch, uncorrected
    (16, {"draws": 120, "seed": 0, "hessian": "full", "predictive": "network", "correct": True}),
])
def test_loader_loo_equals_the_in_memory_loo(batch_size: int, options: dict[str, object]) -> None:
    fit, X, y = _regression()
    mem, streamed, w_mem, w_str = _both(fit, X, y, batch_size, **options)
    assert streamed.corrected == mem.corrected
    assert (streamed.k_q is None) == (mem.k_q is None)
    if mem.k_q is not None:
        assert streamed.k_q == pytest.approx(mem.k_q, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(streamed.pointwise, mem.pointwise, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(streamed.pareto_k, mem.pareto_k, rtol=1e-8, atol=1e-8)
    assert streamed.elpd == pytest.approx(mem.elpd, rel=1e-10)
    assert streamed.se == pytest.approx(mem.se, rel=1e-9)
    assert streamed.p_loo == pytest.approx(mem.p_loo, rel=1e-8, abs=1e-9)
    assert streamed.n_high_k == mem.n_high_k and len(w_str) == len(w_mem)
    assert streamed.idata is None and streamed.elpd_data is None and mem.idata is not None


def test_loader_loo_of_an_svi_fit_uses_the_guide_draws() -> None:
    g = torch.Generator().manual_seed(5)
    X = torch.randn(40, 2, generator=g)
    y = X @ torch.tensor([0.7, -0.4]) + 0.3 * torch.randn(40, generator=g)
    model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)), bg.GuidedNormal(0.5),
                           likelihood="gaussian", noise=0.3)
    fit = bg.fit_svi(model, X, y, steps=200, lr=0.05, progress=False)
    mem, streamed, _, _ = _both(fit, X, y, 9, draws=100, seed=4)
    np.testing.assert_allclose(streamed.pointwise, mem.pointwise, rtol=1e-6, atol=1e-7)
    assert streamed.elpd == pytest.approx(mem.elpd, rel=1e-6)


def test_loader_loo_checks_the_loader_against_the_fit() -> None:
    fit, X, y = _regression()
    with pytest.raises(ValueError, match="pass a data loader alone, without y"):
        loo(fit, DataLoader(TensorDataset(X, y), batch_size=8), y)
    shuffled = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"does not yield the data .* was trained on"):
        loo(fit, shuffled, draws=10)
    with pytest.raises(ValueError, match="correct must be True, False or 'auto'"):
        loo(fit, DataLoader(TensorDataset(X, y), batch_size=8), correct="yes")
    with pytest.raises(ValueError, match="draws must be a positive int"):
        loo(fit, DataLoader(TensorDataset(X, y), batch_size=8), draws=0)
