"""Group horseshoe: the log joint equals a hand computation and Pyro's trace, the fast
ELBO equals Pyro's ``Trace_ELBO``, and an SVI fit shrinks the scales of dead units."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from scipy.stats import halfcauchy, norm
from torch import nn

import bayesguide as bg
from bayesguide.infer.map import pyro_objective
from bayesguide.infer.svi import _fast_objective
from bayesguide.posterior import LowRankGuide, MeanFieldGuide
from bayesguide.priors import GroupHorseshoe
from bayesguide.pruning import HorseshoeScale


def _model(guidance: bg.guidance.GuidanceSpec | None = None) -> tuple[bg.GuidedModel, torch.Tensor, torch.Tensor]:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 1)).double()
    prior = GroupHorseshoe(tau0=0.3) if guidance is None else GroupHorseshoe(tau0=0.3, guidance=guidance)
    model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=0.5)
    X = torch.randn(10, 3, dtype=torch.float64)
    return model, X, X[:, :1] + 0.2 * torch.randn(10, 1, dtype=torch.float64)


def test_latent_sites_are_named_after_their_weight_site() -> None:
    model, _, _ = _model()
    assert [lat.name for lat in model.latent_sites] == [
        "0.units.tau", "0.units.lambda", "2.units.tau", "2.units.lambda"
    ]
    assert [lat.shape for lat in model.latent_sites] == [(), (4,), (), (2,)]


def test_log_joint_equals_hand_computation_and_pyro_trace() -> None:
    model, X, y = _model(bg.guidance.linear())
    module = copy.deepcopy(model.net)
    params = dict(module.named_parameters())
    values = {s.name: s.pack(params).detach() for s in model.sites}
    latents = {
        "0.units.tau": torch.tensor(0.7, dtype=torch.float64),
        "0.units.lambda": torch.tensor([0.5, 1.5, 2.0, 0.8], dtype=torch.float64),
        "2.units.tau": torch.tensor(0.2, dtype=torch.float64),
        "2.units.lambda": torch.tensor([3.0, 0.4], dtype=torch.float64),
    }
    values |= latents
    loglik, logprior = model.log_joint(model.chain(module), values, X, y)

    hand = 0.0
    for site in model.prunable_sites:
        g = model.coefficients[site.name].numpy()
        tau, lam = latents[f"{site.name}.tau"].item(), latents[f"{site.name}.lambda"].numpy()
        hand += halfcauchy.logpdf(tau, scale=0.3) + halfcauchy.logpdf(lam, scale=1 / g).sum()
        theta = values[site.name].numpy()
        hand += norm.logpdf(theta, scale=(tau * lam)[:, None]).sum()
    out = model.sites[-1]  # plain prior: GuidedNormal(1.0), i.e. N(0, 1/√2) per weight
    hand += norm.logpdf(values[out.name].numpy(), scale=np.sqrt(0.5)).sum()
    assert logprior.item() == pytest.approx(hand, rel=1e-10)

    conditioned = poutine.condition(model.model, data=values)
    trace = poutine.trace(conditioned).get_trace(X, y, module=module)
    assert (loglik + logprior).item() == pytest.approx(trace.log_prob_sum().item(), rel=1e-10)


@pytest.mark.parametrize("kind", ["normal", "lowrank"])
def test_fast_elbo_equals_trace_elbo_at_the_same_draw(kind: str) -> None:
    model, X, y = _model(bg.guidance.linear())
    module = copy.deepcopy(model.net)
    guide = MeanFieldGuide(model, module, init_scale=0.1) if kind == "normal" else LowRankGuide(
        model, module, rank=2, init_scale=0.1
    )
    torch.manual_seed(3)
    guide_trace = poutine.trace(guide).get_trace(X, y)
    torch.manual_seed(3)
    values, log_q = guide.sample_values()
    assert set(values) == {s.name for s in model.sites} | {lat.name for lat in model.latent_sites}
    for name, value in values.items():
        torch.testing.assert_close(value, guide_trace.nodes[name]["value"], rtol=1e-12, atol=0)
    assert log_q.item() == pytest.approx(guide_trace.log_prob_sum().item(), rel=1e-10)

    params = list(guide.parameters())
    torch.manual_seed(5)
    fast = _fast_objective(model, guide, module, X, y)(None)
    fast_grads = torch.autograd.grad(fast, params)
    torch.manual_seed(5)
    pyro_loss = pyro_objective(model, guide, module, X, y)(None)
    pyro_grads = torch.autograd.grad(pyro_loss, params)
    torch.manual_seed(5)
    assert fast.item() == pytest.approx(Trace_ELBO().loss(model.model, guide, X, y, module=module), rel=1e-10)
    assert fast.item() == pytest.approx(pyro_loss.item(), rel=1e-10)
    for a, b in zip(fast_grads, pyro_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_svi_shrinks_the_scales_of_dead_units_and_prune_removes_them() -> None:
    """Units 0 and 1 start at a 2-unit teacher's weights; units 2–5 are read by zero
    output weights, so only the prior acts on them."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 4, generator=g, dtype=torch.float64)
    w1 = torch.tensor([[1.5, -1.0, 0.5, 0.0], [0.0, 1.0, -1.5, 1.0]], dtype=torch.float64)
    b1 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    w2 = torch.tensor([[1.2, -1.0]], dtype=torch.float64)
    y = torch.tanh(X @ w1.T + b1) @ w2.T + 0.1 * torch.randn(200, 1, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    with torch.no_grad():
        net[0].weight[:2] = w1
        net[0].bias[:2] = b1
        net[2].weight.zero_()
        net[2].weight[:, :2] = w2
        net[2].bias.zero_()
    model = bg.GuidedModel(net, GroupHorseshoe(tau0=0.1), "gaussian", noise=0.1)
    fit = bg.fit_svi(model, X, y, steps=1000, lr=2e-2, progress=False)

    scale = HorseshoeScale()(fit)["0"]
    assert scale[:2].min() > 5 * scale[2:].max()
    assert bg.prune(fit, threshold=0.4, score=HorseshoeScale()).widths == (2,)
    candidate = bg.prune(fit, threshold=5.0, score="snr")
    assert candidate.widths == (2,)
    assert isinstance(candidate.guide, MeanFieldGuide)
    values, log_q = candidate.guide.sample_values()  # the sliced guide is a valid guide
    assert values["0.units.lambda"].shape == (2,)
    assert torch.isfinite(log_q)
    # the fitted scale factors travel with the kept units (not reset to the prior median)
    old, new = fit.guide.latent_factors, candidate.guide.latent_factors
    kept = list(candidate.kept["0"])
    for name in ("0.units.lambda", "0.units.tau"):
        want = old.loc_scale(name)[0].detach()
        want = want if want.ndim == 0 else want[kept]
        torch.testing.assert_close(new.loc_scale(name)[0].detach(), want, rtol=0, atol=0)


def test_fit_map_is_refused() -> None:
    model, X, y = _model()
    with pytest.raises(ValueError, match=r"MAP estimation is degenerate.*bg\.fit_svi"):
        bg.fit_map(model, X, y, steps=2, progress=False)


def test_bad_tau0_and_guidance_raise() -> None:
    with pytest.raises(ValueError, match="tau0 must be a positive finite number"):
        GroupHorseshoe(tau0=0.0)
    with pytest.raises(ValueError, match="tau0 must be a positive finite number"):
        GroupHorseshoe(tau0=float("inf"))
    with pytest.raises(TypeError, match="tau0 must be a number"):
        GroupHorseshoe(tau0="big")  # type: ignore[arg-type]
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="positive guidance coefficients"):
        bg.GuidedModel(net, GroupHorseshoe(tau0=1.0, guidance=bg.guidance.partial(count=1)), "gaussian", noise=1.0)


def test_conditional_prior_needs_the_latent_values() -> None:
    model, _, _ = _model()
    with pytest.raises(ValueError, match="pass the values of its latent sites"):
        model.site_distribution(model.prunable_sites[0])


def test_with_guidance_keeps_tau0() -> None:
    prior = GroupHorseshoe(tau0=0.05).with_guidance(bg.guidance.linear())
    assert prior.tau0 == 0.05 and prior.guidance == bg.guidance.linear()
