"""Relevance-driven (empirical-Bayes) guidance and its pruning loop (Bonetta et al.)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import bayesguide as bg
from bayesguide.guidance import relevance
from bayesguide.infer import fit_relevance, insensitivity
from bayesguide.infer.map import _fast_objective, fit_map, pyro_objective
from bayesguide.posterior import DeltaGuide
from bayesguide.priors import UnitNormal
from bayesguide.pruning import relevance_pruning
from bayesguide.pruning.candidate import build, setup
from bayesguide.pruning.path import removal_order
from bayesguide.pruning.relevance import bisect_largest, validation_loss
from bayesguide.pruning.scores import make_score

SIGMA = 0.5


def _tiny() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    X = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    y = torch.sin(X[:, :1]) + 0.1 * torch.randn(16, 1, generator=gen, dtype=torch.float64)
    return net, X, y


def _hand_sensitivity(net: nn.Sequential, X: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    W1 = net[0].weight.detach().clone().requires_grad_(True)
    b1 = net[0].bias.detach().clone().requires_grad_(True)
    W2, b2 = net[2].weight.detach(), net[2].bias.detach()
    f = torch.tanh(X @ W1.T + b1) @ W2.T + b2
    loss = ((y - f) ** 2).sum() / (2 * SIGMA**2)  # summed Gaussian NLL up to a constant
    gW, gb = torch.autograd.grad(loss, [W1, b1])
    if kind == "gradient":
        return torch.sqrt((gW**2).sum(1) + gb**2)
    return (W1 * gW).detach().abs().sum(1) + (b1 * gb).detach().abs()


@pytest.mark.parametrize("kind", ["gradient", "taylor"])
@pytest.mark.parametrize("scale", ["max", "mean", "quantile"])
def test_insensitivity_matches_hand_computation(kind: str, scale: str) -> None:
    net, X, y = _tiny()
    rel = relevance(every=1, scale=scale, sensitivity=kind, quantile=0.5)
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, rel), likelihood="gaussian", noise=SIGMA)
    s = _hand_sensitivity(net, X, y, kind)
    ref = {"max": s.max(), "mean": s.mean(), "quantile": s.median()}[scale]
    if scale == "quantile":  # torch.quantile interpolates: the median of 3 is the middle one
        ref = s.sort().values[1]
    expected = torch.clamp(1.0 - s / ref, min=0.0)
    got = insensitivity(model, net, X, y, rel)["0.units"]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    if scale == "max":
        assert got.min() == 0.0 and int(got.argmin()) == int(s.argmax())


def test_insensitivity_is_one_when_loss_ignores_a_layer() -> None:
    net, X, y = _tiny()
    with torch.no_grad():
        net[2].weight.zero_()  # no hidden unit reaches the output: every s_j = 0
    rel = relevance()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, rel), likelihood="gaussian", noise=SIGMA)
    torch.testing.assert_close(insensitivity(model, net, X, y, rel)["0.units"],
                               torch.ones(3, dtype=torch.float64))


def test_set_rate_updates_log_prob_and_normaliser() -> None:
    d = UnitNormal(torch.ones(3, dtype=torch.float64), 4)
    rate_ref = d.rate
    value = torch.randn(3, 4, dtype=torch.float64)
    new = torch.tensor([0.5, 0.0, 3.0], dtype=torch.float64)
    d.set_rate(new)
    assert d.rate is rate_ref  # updated in place: holders of the tensor see it
    assert d.proper_mask.tolist() == [True, False, True] and not d.is_proper
    expected = sum(
        float(stats.norm.logpdf(value[j].numpy(), scale=1 / math.sqrt(2 * float(new[j]))).sum())
        for j in (0, 2)
    )
    assert float(d.log_prob(value)) == pytest.approx(expected, rel=1e-12)
    hand = sum(2 * math.log(float(new[j]) / math.pi) for j in (0, 2))
    assert float(d.log_normaliser) == pytest.approx(hand, rel=1e-12)
    with pytest.raises(ValueError, match=r"set_rate needs shape \(3,\)"):
        d.set_rate(torch.ones(2))
    with pytest.raises(ValueError, match="finite and >= 0"):
        d.set_rate(torch.tensor([1.0, -1.0, 1.0]))


def test_fast_and_pyro_objectives_agree_after_a_rate_update() -> None:
    net, X, y = _tiny()
    model = bg.GuidedModel(net, bg.GuidedNormal(2.0, relevance()), likelihood="gaussian", noise=SIGMA)
    module = __import__("copy").deepcopy(net)
    guide = DeltaGuide(model, module)
    fast, slow = _fast_objective(model, guide, X, y), pyro_objective(model, guide, module, X, y)
    before = fast(None).item()
    site = model.prunable_sites[0]
    new_rate = torch.tensor([0.0, 5.0, 0.25], dtype=torch.float64)
    model.site_distribution(site, X.dtype).set_rate(new_rate)
    after_fast, after_pyro = fast(None), slow(None)
    assert after_fast.item() != pytest.approx(before)
    assert after_fast.item() == pytest.approx(after_pyro.item(), rel=1e-10)
    # and both equal the hand formula: NLL + Σ rate_j ‖θ_j‖² − log c, plus the plain prior
    W, b = module[0].weight, module[0].bias
    stat = (W**2).sum(1) + b**2
    logc = sum(0.5 * 3 * math.log(float(r) / math.pi) for r in new_rate if r > 0)
    plain = model.site_distribution(model.sites[1], X.dtype)
    out_site = torch.cat([module[2].weight, module[2].bias[:, None]], 1)
    nll = -model.likelihood.log_prob_sum(module(X), y, torch.tensor(SIGMA, dtype=X.dtype))
    hand = nll + (stat * new_rate).sum() - logc - plain.log_prob(out_site)
    assert after_fast.item() == pytest.approx(hand.item(), rel=1e-10)
    g_fast = torch.autograd.grad(fast(None), [W])[0]
    g_pyro = torch.autograd.grad(slow(None), [W])[0]
    torch.testing.assert_close(g_fast, g_pyro)


def test_fit_map_callback_gets_absolute_steps() -> None:
    net, X, y = _tiny()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=SIGMA)
    seen: list[int] = []
    fit = bg.fit_map(model, X, y, steps=3, progress=False, callback=seen.append)
    bg.fit_map(model, X, y, steps=2, progress=False, init=fit, callback=seen.append)
    assert seen == [0, 1, 2, 3, 4]


def _dead_unit_problem() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(128, 2, generator=gen)
    y = torch.tanh(X[:, :1] - X[:, 1:]) + 0.5 * torch.tanh(X[:, 1:])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():  # unit 3 never fires: it cannot affect the loss
        net[0].weight[3].zero_()
        net[0].bias[3] = -5.0
    return net, X, y


def test_relevance_fit_shrinks_units_the_loss_ignores() -> None:
    net, X, y = _dead_unit_problem()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, relevance(every=5)), likelihood="gaussian", noise=0.3)
    fit = fit_relevance(model, X, y, steps=300, lr=0.05)
    norms = model.unit_norms(fit.module)["0"]
    assert float(norms[3]) < 0.1  # from 5.0
    assert bool((norms[:3] > 0.3).all()), norms
    g = fit.model.coefficients["0.units"]
    assert float(g[3]) == 1.0 and float(g.min()) == 0.0
    # the caller's model is untouched (the fit ran on its own copy)
    assert torch.equal(model.coefficients["0.units"], torch.ones(4, dtype=torch.float64))
    assert fit.model is not model and fit.steps == 300


def test_relevance_fit_with_minibatches_shrinks_the_same_unit() -> None:
    net, X, y = _dead_unit_problem()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, relevance(every=5)), likelihood="gaussian", noise=0.3)
    fit = fit_relevance(model, X, y, steps=300, lr=0.05, batch_size=32)
    norms = model.unit_norms(fit.module)["0"]
    assert float(norms[3]) < 0.1 and bool((norms[:3] > 0.3).all()), norms
    assert fit.steps == 300
    # blocks use seeds 0, 1, 2, …: a block's minibatch order is not the previous block's
    first = fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=0.3), X, y,
                    steps=5, lr=0.05, batch_size=32, seed=0, progress=False)
    again = fit_map(first.model, X, y, steps=5, lr=0.05, batch_size=32, seed=0, init=first, progress=False)
    other = fit_map(first.model, X, y, steps=5, lr=0.05, batch_size=32, seed=1, init=first, progress=False)
    assert not np.allclose(again.losses[-5:], other.losses[-5:])


def _teacher_student() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    Xa = torch.randn(300, 3, generator=gen)
    W1 = torch.tensor([[1.5, -1.0, 0.0], [0.0, 1.0, 2.0]])
    f = torch.tanh(Xa @ W1.T) @ torch.tensor([[1.0], [-1.5]])
    ya = f + 0.1 * torch.randn(300, 1, generator=gen)
    return Xa[:200], ya[:200], Xa[200:], ya[200:]


def test_relevance_pruning_removes_units_within_tolerance() -> None:
    X, y, Xv, yv = _teacher_student()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    model = bg.GuidedModel(net, bg.GuidedNormal(20.0, relevance(every=10)), likelihood="gaussian", noise=0.3)
    tol = 0.05
    out = relevance_pruning(model, X, y, Xv, yv, tolerance=tol, max_steps=600, patience=5, lr=0.02)
    assert out[0].widths == (8,) and len(out) >= 2
    assert out[-1].widths[0] < 8
    for prev, cand in itertools.pairwise(out):
        v_before = validation_loss(cand.fit.model, cand.fit.module, Xv, yv)
        v_cut = validation_loss(cand.model, cand.module, Xv, yv)
        assert v_cut <= v_before + tol + 1e-12  # the tolerance holds at every accepted step
        assert set(cand.kept["0"]) < set(prev.kept["0"]) and cand.widths[0] < prev.widths[0]
        assert cand.fit is (prev.fit if prev is out[0] else prev.tuned)
        assert cand.tuned is not None and cand.original_widths == (8,)
    # the bisection found the largest k of the brute-force scan over the sorted scores
    cand = out[1]
    fit = cand.fit
    structure, positions, _ = setup(fit, None, None, None)
    scores = {k: np.asarray(v) for k, v in make_score("norm")(fit).items()}
    order = removal_order(scores, min_width=1)
    v0 = validation_loss(fit.model, fit.module, Xv, yv)

    def ok(k: int) -> bool:
        masks = {name: np.ones(len(v), dtype=bool) for name, v in scores.items()}
        for layer, j in order[:k]:
            masks[layer][j] = False
        c = build(fit, structure, masks, "scan", positions)
        return validation_loss(c.model, c.module, Xv, yv) <= v0 + tol

    scan = [ok(k) for k in range(len(order) + 1)]
    removed = fit.module[0].out_features - cand.widths[0]
    prefix = next((k - 1 for k in range(len(scan)) if not scan[k]), len(scan) - 1)
    assert scan[removed] and removed >= 1
    assert removed == len(scan) - 1 or not scan[removed + 1]
    if all(not s for s in scan[prefix + 1 :]):  # monotone: bisection is exactly the largest
        assert removed == prefix == max(k for k, s in enumerate(scan) if s)


def test_bisect_largest_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for n in range(0, 12):
        for cut in range(0, n + 1):
            calls: list[int] = []

            def ok(k: int, cut: int = cut, calls: list[int] = calls) -> bool:
                calls.append(k)
                return k <= cut

            assert bisect_largest(n, ok) == cut
            assert len(calls) <= math.ceil(math.log2(n + 1)) + 1
    assert rng is not None


def test_bad_input_is_refused() -> None:
    net, X, y = _tiny()
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        relevance(every=0)
    with pytest.raises(ValueError, match="unknown relevance scale 'median'; choose one of: max, quantile, mean"):
        relevance(scale="median")
    with pytest.raises(ValueError, match="unknown relevance sensitivity 'hessian'; choose one of: gradient, taylor"):
        relevance(sensitivity="hessian")
    with pytest.raises(ValueError, match=r"quantile must lie in \(0, 1\]"):
        relevance(quantile=0.0)
    with pytest.raises(ValueError, match="initial must be a finite number >= 0"):
        relevance(initial=-1.0)
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, relevance()), likelihood="gaussian", noise=SIGMA)
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        relevance_pruning(model, X, y, X, y, tolerance=-0.1)
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        relevance_pruning(model, X, y, X, y, patience=0)
    laplace = bg.GuidedModel(net, bg.GuidedLaplace(1.0, relevance()), likelihood="gaussian", noise=SIGMA)
    with pytest.raises(ValueError, match=r"use bg\.GuidedNormal, not GuidedLaplace"):
        fit_relevance(laplace, X, y, steps=1)
    learned = bg.GuidedModel(net, bg.GuidedNormal(1.0, relevance()), likelihood="gaussian")
    with pytest.raises(ValueError, match="needs a fixed Gaussian noise"):
        fit_relevance(learned, X, y, steps=1)
    plain = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=SIGMA)
    with pytest.raises(ValueError, match=r"guidance is not bg\.guidance\.relevance"):
        fit_relevance(plain, X, y, steps=1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        fit_relevance(model, X, y, steps=0)
    with pytest.raises(TypeError, match="relevance must come from relevance"):
        fit_relevance(plain, X, y, steps=1, relevance="max")  # type: ignore[arg-type]
