"""The ``"diag"`` curvature from the KFAC passes equals the Jacobian-based GGN diagonal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import DiagGGN, flat_weights, ggn, make_curvature
from bayesguide.curvature.kron import ggn_diagonal

F64 = torch.float64


def _net(kind: str, out: int) -> tuple[nn.Sequential, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    if kind == "mlp":
        net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, out))
        X = torch.randn(30, 5, generator=gen, dtype=F64)
    elif kind == "cnn":  # padding, stride, a conv without bias, flatten into a linear layer
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2, bias=False),
                            nn.Tanh(), nn.Flatten(), nn.Linear(16, out))
        X = torch.randn(10, 2, 6, 6, generator=gen, dtype=F64)
    elif kind == "grouped":  # a grouped convolution takes the per-example path
        net = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(16, out))
        X = torch.randn(8, 2, 4, 4, generator=gen, dtype=F64)
    else:  # BatchNorm with running statistics
        net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, out))
        X = torch.randn(30, 5, generator=gen, dtype=F64)
    return net.double().eval(), X


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian", "bernoulli"])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "grouped", "bn"])
def test_diagonal_from_kfac_passes_equals_the_jacobian_diagonal(likelihood: str, kind: str) -> None:
    net, X = _net(kind, 3)
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood, **({"noise": 1.0} if likelihood == "gaussian"
                                                                       else {}))
    reference = ggn(model, net, flat_weights(model, net), X, diagonal=True)
    fast = ggn_diagonal(model, net, X, chunk_size=7)  # chunks that do not divide N
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-12)
    curvature = make_curvature("diag", model, net, X)
    assert isinstance(curvature, DiagGGN)
    torch.testing.assert_close(curvature.diag, reference, rtol=1e-10, atol=1e-12)


def test_diag_evidence_is_unchanged_and_bounded_by_full() -> None:
    """log det of the diagonal precision ≥ that of the full one (Hadamard), with the new backend."""
    net, X = _net("mlp", 3)
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(1))
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), "categorical")
    Xp, yp = model.prepare_data(X, y)
    full = bg.marglik.laplace_evidence(model, net, Xp, yp, hessian="full")
    diag = bg.marglik.laplace_evidence(model, net, Xp, yp, hessian="diag")
    assert diag.occam is not None and full.occam is not None
    assert diag.occam <= full.occam + 1e-9
    assert diag.log_likelihood == full.log_likelihood and diag.log_prior == full.log_prior
