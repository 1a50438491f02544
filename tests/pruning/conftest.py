"""Small fits shared by the pruning tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer import FitResult


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(48, 4, generator=g), torch.randint(0, 3, (48,), generator=g)


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3))


def kill(fit: FitResult, layer: str, units: list[int]) -> None:
    """Zero the incoming weights and bias of ``units`` in the fit's network (test setup)."""
    with torch.no_grad():
        m = fit.module.get_submodule(layer)
        m.weight[units] = 0.0
        m.bias[units] = 0.0


@pytest.fixture
def map_fit(data: tuple[torch.Tensor, torch.Tensor]) -> FitResult:
    X, y = data
    model = bg.GuidedModel(_net(), bg.GuidedLaplace(strength=0.1, guidance=bg.guidance.linear()))
    fit = bg.fit_map(model, X, y, steps=20, lr=0.01, progress=False)
    kill(fit, "0", [1, 4])
    kill(fit, "2", [3])
    return fit


@pytest.fixture
def svi_fit(data: tuple[torch.Tensor, torch.Tensor], request: pytest.FixtureRequest) -> FitResult:
    X, y = data
    model = bg.GuidedModel(_net(), bg.GuidedNormal(strength=1.0))
    kind = getattr(request, "param", "normal")
    return bg.fit_svi(model, X, y, guide=kind, steps=10, lr=0.01, rank=3, progress=False)
