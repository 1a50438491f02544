"""KFAC (``hessian="kron"``) Laplace evidence against independent answers.

* a single ``Linear`` layer under a Gaussian likelihood has a GGN that *is* ``G ⊗ A``
  (``J`` does not depend on the weights and the backpropagated vectors are the same for
  every example), so kron and full evidences agree to rounding;
* with one example (``N = 1``) each KFAC block is the exact GGN block, compared with the
  jacrev-based full GGN; then Fischer's inequality (``det H ≤ Π_l det H_ll`` for a
  positive-definite ``H``) and Hadamard's (``det H_ll ≤ Π_k (H_ll)_kk``) give
  ``occam_diag ≤ occam_kron ≤ occam_full``;
* the factors equal naive loops: hand-derived backpropagation for an MLP, per-position
  patches cut out of the padded image for a ``Conv2d``;
* ``BatchNorm`` gets the exact diagonal of its GGN block;
* the eigenvalue formula for ``log det(G ⊗ A + c D)`` with per-unit precisions equals a
  dense log determinant.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import bayesguide as bg
from bayesguide.curvature import HessianStructure, ggn
from bayesguide.curvature.kron import kron_factors, kron_scaled_eigenvalues
from bayesguide.marglik import laplace_evidence
from bayesguide.posterior import gaussian_prior


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomise(net: nn.Module, seed: int) -> None:
    g = _gen(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _mlp_model(guidance: bg.guidance.Profile | None = None) -> bg.GuidedModel:
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    _randomise(net, 0)
    prior = bg.GuidedNormal(0.3, guidance if guidance is not None else bg.guidance.linear())
    return bg.GuidedModel(net, prior)


def _theta(model: bg.GuidedModel, module: nn.Module) -> torch.Tensor:
    params = dict(module.named_parameters())
    return torch.cat([s.pack(params).reshape(-1) for s in model.sites]).detach()


def test_single_linear_layer_gaussian_kron_equals_full() -> None:
    X = torch.randn(30, 4, generator=_gen(1), dtype=torch.float64)
    Y = torch.randn(30, 3, generator=_gen(2), dtype=torch.float64)
    net = nn.Sequential(nn.Linear(4, 3)).double()
    _randomise(net, 3)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.4), likelihood="gaussian", noise=0.5)
    Xp, Yp = model.prepare_data(X, Y)
    for optimize in (False, True):
        full = laplace_evidence(model, net, Xp, Yp, hessian="full", optimize_prior=optimize)
        kron = laplace_evidence(model, net, Xp, Yp, hessian="kron", optimize_prior=optimize)
        assert kron.hessian == "kron"
        assert kron.log_evidence == pytest.approx(full.log_evidence, rel=1e-8)
        assert kron.occam == pytest.approx(full.occam, rel=1e-8)
        assert kron.prior_scale == pytest.approx(full.prior_scale, rel=1e-5)


def test_one_example_blocks_are_exact_and_bracketed_by_full_and_diag() -> None:
    model = _mlp_model()
    X = torch.randn(1, 3, generator=_gen(4), dtype=torch.float64)
    y = torch.tensor([2])
    module = model.net.eval()
    full = ggn(model, module, _theta(model, module), X, diagonal=False)
    start = 0
    for block in kron_factors(model, module, X):
        dense = block.dense()
        size = dense.shape[0]
        exact = full[start : start + size, start : start + size]
        torch.testing.assert_close(dense, exact, rtol=1e-10, atol=1e-12)
        start += size
    assert start == full.shape[0]
    Xp, yp = model.prepare_data(X, y)
    occam = {h: laplace_evidence(model, module, Xp, yp, hessian=h).occam for h in ("full", "kron", "diag")}
    assert occam["diag"] <= occam["kron"] + 1e-12
    assert occam["kron"] <= occam["full"] + 1e-12
    assert occam["diag"] < occam["full"] - 1e-6  # the bracket is not trivially tight


def test_mlp_factors_match_hand_backpropagation() -> None:
    model = _mlp_model()
    module = model.net.eval()
    X = torch.randn(7, 3, generator=_gen(5), dtype=torch.float64)
    W1, b1 = module[0].weight.detach(), module[0].bias.detach()
    W2, b2 = module[2].weight.detach(), module[2].bias.detach()
    A1 = torch.zeros(4, 4, dtype=torch.float64)
    A2 = torch.zeros(6, 6, dtype=torch.float64)
    G1 = torch.zeros(5, 5, dtype=torch.float64)
    G2 = torch.zeros(4, 4, dtype=torch.float64)
    for i in range(7):
        x = X[i]
        h = torch.tanh(W1 @ x + b1)
        p = torch.softmax(W2 @ h + b2, 0)
        a1, a2 = torch.cat([x, torch.ones(1, dtype=x.dtype)]), torch.cat([h, torch.ones(1, dtype=x.dtype)])
        A1 += torch.outer(a1, a1) / 7
        A2 += torch.outer(a2, a2) / 7
        Lam = torch.diag(p) - torch.outer(p, p)  # Λ = M Mᵀ, so Σ_c g_c g_cᵀ = Jᵀ Λ J
        G2 += Lam
        J1 = W2 * (1 - h**2)  # ∂f/∂(W1 x + b1)
        G1 += J1.T @ Lam @ J1
    b1_, b2_ = kron_factors(model, module, X, chunk_size=3)  # chunks of 3, 3, 1
    for got, want in ((b1_.A, A1), (b2_.A, A2), (b1_.G, G1), (b2_.G, G2)):
        assert got is not None
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_conv_factors_match_a_naive_patch_loop() -> None:
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 4)).double()
    _randomise(net, 6)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.2))
    module = model.net.eval()
    X = torch.randn(4, 2, 5, 5, generator=_gen(7), dtype=torch.float64)
    A = torch.zeros(19, 19, dtype=torch.float64)
    G = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(4):
        xp = F.pad(X[i], (1, 1, 1, 1))
        for u in range(3):
            for v in range(3):
                patch = xp[:, 2 * u : 2 * u + 3, 2 * v : 2 * v + 3].reshape(-1)
                a = torch.cat([patch, torch.ones(1, dtype=X.dtype)])
                A += torch.outer(a, a) / (4 * 9)
        o = module[0](X[i : i + 1]).detach().requires_grad_(True)
        f = module[3](module[2](module[1](o)))[0]
        p = torch.softmax(f.detach(), 0)
        M = torch.diag(p.sqrt()) - torch.outer(p, p.sqrt())
        for c in range(4):
            (g,) = torch.autograd.grad(f @ M[:, c], o, retain_graph=True)
            g = g[0].reshape(3, 9)
            G += g @ g.T  # Σ over output positions
    conv, _ = kron_factors(model, module, X)
    assert conv.A is not None and conv.G is not None
    torch.testing.assert_close(conv.A, A, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conv.G, G, rtol=1e-10, atol=1e-12)


def test_batchnorm_gets_the_exact_ggn_diagonal() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).double()
    _randomise(net, 8)
    with torch.no_grad():
        net[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        net[1].running_var.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0]))
    model = bg.GuidedModel(net, bg.GuidedNormal(0.2))
    module = model.net.eval()
    X = torch.randn(9, 3, generator=_gen(9), dtype=torch.float64)
    blocks = kron_factors(model, module, X)
    assert [b.diag is not None for b in blocks] == [False, True, False]
    diag = ggn(model, module, _theta(model, module), X, diagonal=True)
    bn = blocks[1].diag
    assert bn is not None
    torch.testing.assert_close(bn, diag[16:24], rtol=1e-10, atol=1e-12)


def test_log_determinant_with_per_unit_precisions_matches_dense() -> None:
    model = _mlp_model(bg.guidance.linear())  # unit precisions 2λ g_j differ within the hidden layer
    module = model.net.eval()
    X = torch.randn(11, 3, generator=_gen(10), dtype=torch.float64)
    y = torch.randint(0, 4, (11,), generator=_gen(11))
    blocks = kron_factors(model, module, X)
    d, _ = gaussian_prior(model)
    assert len(set(d[:24].tolist())) == 5
    c = 0.37
    dense = torch.block_diag(*[b.dense() for b in blocks]) + c * torch.diag(d)
    e = kron_scaled_eigenvalues(blocks, d)
    logdet = float(torch.log(c * d).sum() + torch.log1p(e / c).sum())
    assert logdet == pytest.approx(float(torch.logdet(dense)), rel=1e-10)
    # and the evidence reports exactly this log determinant at the fitted scale
    Xp, yp = model.prepare_data(X, y)
    ev = laplace_evidence(model, module, Xp, yp, hessian="kron")
    P = d.numel()
    at_unit_scale = dense - c * torch.diag(d) + torch.diag(d)  # laplace_evidence uses c = 1
    expected = 0.5 * P * math.log(2 * math.pi) - 0.5 * float(torch.logdet(at_unit_scale))
    assert ev.occam == pytest.approx(expected, rel=1e-10)


def test_type_ii_ml_with_kron_improves_and_is_stationary() -> None:
    model = _mlp_model()
    module = model.net.eval()
    X = torch.randn(40, 3, generator=_gen(12), dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=_gen(13))
    Xp, yp = model.prepare_data(X, y)
    fixed = laplace_evidence(model, module, Xp, yp, hessian="kron")
    tuned = laplace_evidence(model, module, Xp, yp, hessian="kron", optimize_prior=True)
    assert tuned.log_evidence >= fixed.log_evidence
    # the reported evidence at c(1 ± 1e-3) is no larger: a maximum in c
    for factor in (0.999, 1.001):
        prior = bg.GuidedNormal(0.3 * tuned.prior_scale * factor, model.prior.guidance)
        scaled = bg.GuidedModel(model.net, prior)
        other = laplace_evidence(scaled, module, Xp, yp, hessian="kron")
        assert other.log_evidence <= tuned.log_evidence + 1e-7


def test_kron_errors() -> None:
    model = _mlp_model()
    X = torch.randn(5, 3, generator=_gen(14), dtype=torch.float64)
    Xp, yp = model.prepare_data(X, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown hessian structure 'kfac'; choose one of: full, diag, kron"):
        laplace_evidence(model, model.net, Xp, yp, hessian="kfac")
    improper = bg.GuidedModel(model.net, bg.GuidedNormal(0.3, bg.guidance.partial(count=1)))
    uniform = bg.GuidedModel(model.net, bg.GuidedNormal(0.3, bg.guidance.uniform()))
    ev = laplace_evidence(improper, model.net, Xp, yp, hessian="kron")  # scored under uniform guidance
    assert ev.prior_used == "uniform"
    reference = laplace_evidence(uniform, model.net, Xp, yp, hessian="kron")
    assert ev.log_evidence == pytest.approx(reference.log_evidence, rel=1e-12)
    assert "KFAC" in HessianStructure.KRON.description
