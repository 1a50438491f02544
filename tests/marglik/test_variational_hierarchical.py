"""ELBO / importance-weighted evidence of group-horseshoe fits (latent scale sites)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

import bayesguide as bg
from bayesguide.marglik.variational import log_weights
from bayesguide.posterior import guide_draws
from bayesguide.priors import GroupHorseshoe


def _fit(guide: str) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = torch.tanh(X[:, :1]) + 0.1 * torch.randn(40, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    model = bg.GuidedModel(net, GroupHorseshoe(tau0=0.5, guidance=bg.guidance.linear()), "gaussian", noise=0.2)
    return bg.fit_svi(model, X, y, guide=guide, steps=60, lr=0.02, progress=False), X, y


def test_log_weights_equal_a_hand_computation_for_a_mean_field_horseshoe_guide() -> None:
    fit, X, y = _fit("normal")
    Xt, yt = fit.prepare(X, y)
    lw = log_weights(fit, Xt, yt, particles=3, seed=5)
    values, _ = guide_draws(fit.guide, fit.model, 3, torch.Generator().manual_seed(5))  # the same draws
    model, guide = fit.model, fit.guide
    locs, scales = guide.mean_values(), guide.scales()
    factors = guide.latent_factors
    assert factors is not None
    for s in range(3):
        draw = {k: v[s] for k, v in values.items()}
        loglik, logprior = model.log_joint(model.chain(fit.module), draw, Xt, yt)  # tested against scipy elsewhere
        log_q = 0.0
        for site in model.sites:
            log_q += norm.logpdf(draw[site.name].numpy(), locs[site.name].detach().double().numpy(),
                                 scales[site.name].detach().double().numpy()).sum()
        for name in factors.names:  # log-normal: the Normal density of log z, minus log z
            loc, scale = (t.detach().double().numpy() for t in factors.loc_scale(name))
            z = draw[name].numpy()
            log_q += (norm.logpdf(np.log(z), loc, scale) - np.log(z)).sum()
        assert float(lw[s]) == pytest.approx(float(loglik + logprior) - log_q, rel=1e-9)


@pytest.mark.parametrize("guide", ["normal", "lowrank"])
def test_elbo_and_iw_bound_run_for_horseshoe_fits_and_their_candidates(guide: str) -> None:
    fit, X, y = _fit(guide)
    elbo = bg.evidence(fit, X, y, method="elbo", particles=50)
    iw = bg.evidence(fit, X, y, method="iwae", particles=50)
    assert np.isfinite(elbo.log_evidence) and iw.log_evidence >= elbo.log_evidence - 1e-9  # log-mean-exp ≥ mean
    cands = bg.pruning_path(fit, X, y, n_candidates=2, score=bg.HorseshoeScale())
    cmp = bg.compare(cands, X, y, evidence="elbo", progress=False)
    assert (cmp.table["status"] == "ok").all() and cmp.best is not None


def test_log_prior_draws_need_the_latent_values() -> None:
    from bayesguide.posterior import log_prior_draws

    fit, _, _ = _fit("normal")
    values, _ = guide_draws(fit.guide, fit.model, 2)
    del values["0.units.tau"]
    with pytest.raises(ValueError, match=r"the draws lack the latent sites \['0.units.tau'\]"):
        log_prior_draws(fit.model, values)
