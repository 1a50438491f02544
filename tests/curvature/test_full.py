"""The one-buffer ``"full"`` GGN against a dense reference built with ``torch.func.jacrev``.

The reference writes the network out by hand, takes the Jacobian of all outputs with
respect to the flat weights in one ``jacrev``, sums ``Jᵢᵀ Λᵢ Jᵢ`` densely, and answers
every query with ``torch.linalg`` (``eigvalsh``, ``logdet``) on fresh matrices.
"""

from __future__ import annotations

import importlib
import math
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import FullGGN, flat_weights, ggn, make_curvature
from bayesguide.curvature import base as curvature_base
from bayesguide.marglik import laplace_evidence

F64 = torch.float64
ggn_module = importlib.import_module("bayesguide.curvature.ggn")  # the package exports the function ggn


def _net(n_in: int = 3, hidden: int = 5, n_out: int = 3) -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).double().eval()


def _hand_forward(net: nn.Sequential, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """The network from the flat weights: per layer, unit rows ``[W_j, b_j]`` in site order."""
    first, last = net[0], net[2]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
    n_h, n_in, n_out = first.out_features, first.in_features, last.out_features
    W1 = theta[: n_h * (n_in + 1)].reshape(n_h, n_in + 1)
    W2 = theta[n_h * (n_in + 1):].reshape(n_out, n_h + 1)
    h = torch.tanh(X @ W1[:, :-1].T + W1[:, -1])
    return h @ W2[:, :-1].T + W2[:, -1]


def _dense_ggn(net: nn.Sequential, theta: torch.Tensor, X: torch.Tensor, likelihood: str) -> torch.Tensor:
    out = _hand_forward(net, theta, X)
    J = torch.func.jacrev(lambda t: _hand_forward(net, t, X))(theta)  # (N, C, P), all examples at once
    if likelihood == "categorical":
        p = torch.softmax(out, -1)
        Lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    else:
        Lam = torch.eye(out.shape[1], dtype=F64).expand(out.shape[0], -1, -1)
    return torch.einsum("ncp,ncd,ndq->pq", J, Lam, J)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_full_ggn_queries_equal_dense_linear_algebra(likelihood: str, in_place: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``in_place``: a memory budget without room for a copy, so the eigenvalues come from ``dsyevr`` in the buffer."""
    if in_place:
        monkeypatch.setattr(curvature_base, "default_memory_budget", lambda: 1000)
    net = _net()
    X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood, noise=0.7 if likelihood == "gaussian" else None)
    theta = flat_weights(model, net).to(F64)
    G = _dense_ggn(net, theta, X, likelihood)
    P = theta.numel()
    d = 0.2 + torch.rand(P, generator=torch.Generator().manual_seed(1), dtype=F64)  # a non-uniform prior
    c, sigma2 = 0.8, 0.49

    def reference_logdet(dd: torch.Tensor) -> float:
        return float(torch.logdet(G / sigma2 + torch.diag(c * dd)))

    curvature = make_curvature("full", model, net, X, memory_budget=1e9)
    assert isinstance(curvature, FullGGN)
    torch.testing.assert_close(curvature.G, G, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ggn(model, net, theta, X, diagonal=False), G, rtol=1e-10, atol=1e-12)
    # the Cholesky path (no eigenvalues yet)
    assert curvature.logdet(d, c, sigma2) == pytest.approx(reference_logdet(d), rel=1e-10)
    # the eigenvalues, then the log determinant from them
    root = d.sqrt()
    want = torch.linalg.eigvalsh(G / (root.unsqueeze(-1) * root))
    got = curvature.scaled_eigenvalues(d)
    torch.testing.assert_close(torch.sort(got).values, want, rtol=1e-10, atol=1e-10 * float(want.abs().max()))
    assert curvature.logdet(d, c, sigma2) == pytest.approx(reference_logdet(d), rel=1e-10)
    # another prior: the eigenvalues of the last one must not be reused
    d2 = d.flip(0)
    assert curvature.logdet(d2, c, sigma2) == pytest.approx(reference_logdet(d2), rel=1e-10)
    torch.testing.assert_close(curvature.precision(d, c, sigma2), G / sigma2 + torch.diag(c * d),
                               rtol=1e-10, atol=1e-12)
    # the queries worked in the buffer's lower triangle: G itself is unchanged
    torch.testing.assert_close(curvature.G, G, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimize_prior", [False, True])
def test_full_evidence_equals_the_dense_reference(optimize_prior: bool) -> None:
    """Type-II ML (learned σ) uses the eigenvalues for the optimum and the log determinant."""
    net = _net(n_out=2)
    g = torch.Generator().manual_seed(4)
    X = torch.randn(60, 3, generator=g, dtype=F64)
    y = torch.sin(X[:, :2]) + 0.2 * torch.randn(60, 2, generator=g, dtype=F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.3, bg.guidance.linear()), "gaussian")
    Xp, yp = model.prepare_data(X, y)
    ev = laplace_evidence(model, net, Xp, yp, hessian="full", optimize_prior=optimize_prior, noise=0.5)
    theta = flat_weights(model, net).to(F64)
    G = _dense_ggn(net, theta, Xp, "gaussian")
    d, _ = bg.posterior.gaussian_prior(model)
    c, sigma = ev.prior_scale, ev.noise
    assert sigma is not None and c is not None
    if not optimize_prior:
        assert (c, sigma) == (1.0, 0.5)
    P, n = theta.numel(), yp.numel()
    with torch.no_grad():
        rss = float((yp - net(Xp)).pow(2).sum())
    loglik = -0.5 * rss / sigma**2 - n * math.log(sigma) - 0.5 * n * math.log(2 * math.pi)
    log_prior = 0.5 * float(torch.log(c * d / (2 * math.pi)).sum()) - 0.5 * c * float((d * theta**2).sum())
    logdet = float(torch.logdet(G / sigma**2 + torch.diag(c * d)))
    expected = loglik + log_prior + 0.5 * P * math.log(2 * math.pi) - 0.5 * logdet
    assert ev.log_evidence == pytest.approx(expected, rel=1e-10)


def test_queries_allocate_no_second_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short of memory, the eigenvalues and the Cholesky factorisation run in the GGN's own buffer.

    (numpy and LAPACK-workspace allocations are traced; torch's are not, hence the small budget.)
    """
    monkeypatch.setattr(curvature_base, "default_memory_budget", lambda: 1000)
    net = nn.Sequential(nn.Linear(8, 40), nn.Tanh(), nn.Linear(40, 10)).double().eval()
    X = torch.randn(30, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), "categorical")
    curvature = make_curvature("full", model, net, X, memory_budget=1e9)
    assert isinstance(curvature, FullGGN)
    P = curvature.buffer.shape[0]
    d = torch.ones(P, dtype=F64)
    tracemalloc.start()
    try:
        curvature.logdet(d, 1.0, 1.0)
        curvature.scaled_eigenvalues(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * 8 * P * P, f"{peak} bytes traced for P={P}"
    tracemalloc.start()
    try:
        curvature.precision(d, 1.0, 1.0)  # a new matrix, by contract: the trace sees it
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak >= 8 * P * P


def test_full_ggn_errors() -> None:
    with pytest.raises(ValueError, match="FullGGN needs a square Fortran-ordered float64 array, got shape \\(3, 3\\)"):
        FullGGN(np.zeros((3, 3)))  # C-ordered
    net = _net()
    X = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), "categorical")
    curvature = make_curvature("full", model, net, X)
    P = flat_weights(model, net).numel()
    d = torch.ones(P, dtype=F64)
    with pytest.raises(ValueError, match=r"d must have shape \(38,\), got \(3,\)"):
        curvature.logdet(torch.ones(3, dtype=F64), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"not positive definite \(Cholesky failed\)"):
        curvature.logdet(d, -1.0, 1.0)
    curvature.scaled_eigenvalues(d)
    with pytest.raises(ValueError, match=r"not positive definite \(smallest eigenvalue"):
        curvature.logdet(d, -1.0, 1.0)


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian", "bernoulli"])
@pytest.mark.parametrize("slice_numbers", [2**21, 7])
def test_kronecker_path_of_linear_chains_equals_the_jacobian_ggn(
    likelihood: str, slice_numbers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All-``Linear`` networks take the Kronecker-product path; the Jacobian path is the reference.

    ``slice_numbers=7`` cuts every block into one unit row and one example per product.
    """
    monkeypatch.setattr(ggn_module, "_KRON_SLICE", slice_numbers)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6, bias=False), nn.ReLU(),
                        nn.Linear(6, 3)).double().eval()
    X = torch.randn(30, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.3), likelihood, noise=1.0 if likelihood == "gaussian" else None)
    assert ggn_module._linear_sites(model, net) is not None
    reference = ggn(model, net, flat_weights(model, net), X, diagonal=False)  # vmap(jacrev), dsyrk
    curvature = make_curvature("full", model, net, X)
    assert isinstance(curvature, FullGGN)
    torch.testing.assert_close(curvature.G, reference, rtol=1e-10, atol=1e-12)


def test_networks_with_other_sites_take_the_jacobian_path() -> None:
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 2)).double().eval()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.3), "categorical")
    assert ggn_module._linear_sites(model, net) is None
