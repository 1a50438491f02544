"""A fine-tuned candidate is scored at its fine-tuned weights by every scorer.

Regression: the runner used to set ``Candidate.tuned`` directly, so PSIS-LOO and the
ELBO / IWAE were computed on the untuned weights while the Laplace evidence and the
metrics used the tuned ones.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import flat_weights
from bayesguide.pruning import fine_tune_fit, with_tuning


def _path(fine_tune: int) -> tuple[list[bg.Candidate], torch.Tensor, torch.Tensor, bg.FitResult]:
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(60, 2, generator=gen, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([1.5, -1.0], dtype=torch.float64)).unsqueeze(-1)
    y = y + 0.1 * torch.randn(60, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), "gaussian", noise=0.1)
    fit = bg.fit_svi(model, X, y, steps=150, lr=0.02, progress=False)
    return bg.pruning_path(fit, X, y, n_candidates=3, fine_tune=fine_tune, lr=0.01), X, y, fit


def test_tuned_can_only_be_set_with_the_tuned_weights() -> None:
    path, X, y, _ = _path(0)
    cand = path[1]
    tuned = fine_tune_fit(cand, X, y, steps=5)
    with pytest.raises(ValueError, match="with_tuning"):
        dataclasses.replace(cand, tuned=tuned)
    good = with_tuning(cand, tuned)
    assert good.module is tuned.module and good.guide is tuned.guide and not good.variational


def test_every_scorer_reads_the_fine_tuned_weights() -> None:
    path, X, y, _ = _path(200)
    for cand in path:
        assert cand.tuned is not None
        tuned_theta = flat_weights(cand.model, cand.tuned.module).to(torch.float64)
        cut_theta = flat_weights(cand.model, cand.model.net).to(torch.float64)  # the weights right after the cut
        assert float((tuned_theta - cut_theta).abs().max()) > 1e-3  # fine-tuning moved them
        # Laplace evidence: the same as computed by hand from the tuned fit
        ev = bg.evidence(cand, X, y, hessian="full")
        ref = bg.marglik.laplace_evidence(cand.tuned.model, cand.tuned.module, *cand.prepare(X, y), hessian="full")
        assert ev.log_evidence == pytest.approx(ref.log_evidence, rel=1e-12)
        # posterior draws (PSIS-LOO reads these): centred on the tuned weights
        idata = cand.to_inference_data(X, y, posterior="laplace", hessian="full", draws=4000, seed=1)
        mean = torch.cat([torch.as_tensor(idata.posterior[s.name.replace(".", "_")].values).mean((0, 1)).reshape(-1)
                          for s in cand.model.sites])
        # Monte Carlo error of the mean is ~ sd/√4000: far below the distance fine-tuning moved the weights
        assert float((mean - tuned_theta).norm()) < 0.3 * float((tuned_theta - cut_theta).norm())
        # the variational estimators need a posterior: a MAP fine-tuned candidate has none any more
        with pytest.raises(ValueError, match="point-mass"):
            bg.evidence(cand, X, y, method="elbo")


def test_loo_in_compare_uses_the_tuned_weights() -> None:
    path, X, y, _ = _path(30)
    cmp = bg.compare(path, X, y, loo=True, loo_draws=50, progress=False)
    hessian = "full" if cmp.settings["hessian"] == "full" else "diag"
    for cand, elpd, scale in zip(cmp.candidates, cmp.table["elpd_loo"], cmp.table["prior_scale"], strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # high Pareto k with 50 draws: not what is tested
            # the comparison draws each candidate's Laplace posterior at its type-II prior scale
            ref = bg.predictive.loo(cand, X, y, draws=50, hessian=hessian, prior_scale=float(scale))
        assert elpd == pytest.approx(ref.elpd, rel=1e-12)
        assert cand.module is cand.tuned.module
