"""Eigenvalue-corrected KFAC (``hessian="ekfac"``) against the dense GGN.

* its curvature along each whitened KFAC eigenbasis is the exact (dense, jacrev) GGN
  block's diagonal in that basis — for an MLP under a categorical likelihood and a
  ``Conv2d`` (KFAC-expand: the positions summed inside each example);
* it is therefore the exact block when the basis diagonalises it: a single Gaussian
  ``Linear`` layer gives the full GGN's evidence;
* the log determinant is the dense one of ``S`` in that basis plus the prior.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import ekfac_scales, flat_weights, ggn, kron_factors
from bayesguide.curvature.ekfac import EkfacGGN
from bayesguide.marglik import laplace_evidence
from bayesguide.posterior import gaussian_prior


def _randomise(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _check_against_dense(model: bg.GuidedModel, X: torch.Tensor) -> None:
    module = model.net.eval()
    theta = flat_weights(model, module).to(torch.float64)
    G = ggn(model, module, theta, X, diagonal=False)
    d, _ = gaussian_prior(model)
    blocks = kron_factors(model, module, X)
    scales = ekfac_scales(model, module, X, blocks, d)
    start = 0
    for site, scale in zip(model.sites, scales, strict=True):
        size = site.n_units * site.group_size
        if scale is not None:
            Q, U, S = scale
            block = G[start:start + size, start:start + size]
            w = d[start:start + size].rsqrt()
            whitened = block * w.unsqueeze(-1) * w
            basis = torch.kron(Q, U)
            torch.testing.assert_close(S.reshape(-1), (basis.T @ whitened @ basis).diagonal(), rtol=1e-8, atol=1e-10)
        start += size


def test_ekfac_is_the_exact_curvature_along_the_kfac_basis_mlp() -> None:
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    _randomise(net, 0)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.3, bg.guidance.linear()))
    X = torch.randn(17, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _check_against_dense(model, X)


def test_ekfac_is_the_exact_curvature_along_the_kfac_basis_conv() -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()
    _randomise(net, 2)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5, bg.guidance.geometric()))
    X = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _check_against_dense(model, X)


def test_single_gaussian_linear_layer_matches_the_full_evidence() -> None:
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 2)).double()
    _randomise(net, 5)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.4), "gaussian", noise=0.5)
    full = laplace_evidence(model, net, X, y, hessian="full", optimize_prior=True)
    ekfac = laplace_evidence(model, net, X, y, hessian="ekfac", optimize_prior=True)
    assert ekfac.log_evidence == pytest.approx(full.log_evidence, rel=1e-9)
    assert ekfac.hessian == "ekfac"


def test_logdet_is_the_dense_one_in_the_basis() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    _randomise(net, 6)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.3, bg.guidance.linear()))
    X = torch.randn(11, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    module = net.eval()
    d, _ = gaussian_prior(model)
    curv = EkfacGGN.compute(model, module, X)
    blocks = kron_factors(model, module, X)
    dense = []
    start = 0
    for site, scale in zip(model.sites, ekfac_scales(model, module, X, blocks, d), strict=True):
        size = site.n_units * site.group_size
        assert scale is not None
        Q, U, S = scale
        basis = torch.kron(Q, U)
        w = d[start:start + size].sqrt()
        G_e = (basis * S.reshape(-1)) @ basis.T * w.unsqueeze(-1) * w  # D^{1/2} (Q⊗U) S (Q⊗U)ᵀ D^{1/2}
        dense.append(G_e / 0.7 + 1.3 * torch.diag(d[start:start + size]))
        start += size
    want = sum(float(torch.linalg.slogdet(H)[1]) for H in dense)
    assert curv.logdet(d, 1.3, 0.7) == pytest.approx(want, rel=1e-10)
