"""Continuing a fit is the fitter's job (``bg.resume_fit`` picks the fitter that made it), and
every kind of fit round-trips to disk without pickled code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg


def _regression(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.tanh(X[:, :1] * 2.0) + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return X, y


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()


def test_resuming_a_relevance_fit_goes_on_reestimating_the_guidance() -> None:
    """Regression: ``fit.resume`` on a relevance fit used to run plain MAP with frozen
    coefficients and record method "map"."""
    X, y = _regression()
    prior = bg.GuidedNormal(2.0, bg.guidance.relevance(every=5))
    model = bg.GuidedModel(_net(), prior, "gaussian", noise=0.2)
    fit = bg.fit_relevance(model, X, y, steps=20, lr=0.02)
    before = {k: v.clone() for k, v in fit.model.coefficients.items()}
    more = bg.resume_fit(fit, X, y, 20)
    assert more.fitter == "relevance" and more.steps == 40
    assert any(not torch.equal(before[k], more.model.coefficients[k]) for k in before if k == "0.units")
    # the same as one uninterrupted 40-step fit (blocks of 5, seeds seed + block, Adam state carried)
    whole = bg.fit_relevance(model, X, y, steps=40, lr=0.02)
    np.testing.assert_allclose(more.losses, whole.losses, rtol=1e-10)
    torch.testing.assert_close(more.model.coefficients["0.units"], whole.model.coefficients["0.units"])
    # and the caller's model never changed
    assert torch.equal(model.coefficients["0.units"], torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("fitter", ["map", "svi", "l0", "relevance", "marglik"])
def test_resume_equals_one_uninterrupted_fit(fitter: str) -> None:
    X, y = _regression()
    priors = {"map": bg.GuidedGroupLasso(1.0), "svi": bg.GuidedNormal(1.0), "l0": bg.HardConcreteGates(2.0),
              "relevance": bg.GuidedNormal(1.0, bg.guidance.relevance(every=4)),
              "marglik": bg.GuidedNormal(1.0, bg.guidance.marglik(every=5, burn_in=3))}
    model = bg.GuidedModel(_net(), priors[fitter], "gaussian", noise=0.2)
    fit = {"map": bg.fit_map, "svi": bg.fit_svi, "l0": bg.fit_l0, "relevance": bg.fit_relevance,
           "marglik": bg.fit_marglik}[fitter]
    part = fit(model, X, y, steps=12, lr=0.01, progress=False)
    resumed = bg.resume_fit(part, X, y, 12)
    whole = fit(model, X, y, steps=24, lr=0.01, progress=False)
    assert resumed.fitter == fitter and resumed.steps == whole.steps == 24
    np.testing.assert_allclose(resumed.losses[:12], whole.losses[:12], rtol=1e-12)
    if fitter == "marglik":  # the updates at 3, 8, 13, 18, 23 happened in both, at the same weights
        assert resumed.extras["precisions"].steps == whole.extras["precisions"].steps == (3, 8, 13, 18, 23)
        torch.testing.assert_close(resumed.model.coefficients["0.units"], whole.model.coefficients["0.units"])
    if fitter in ("map", "relevance", "marglik"):  # full batch, no noise: continuing is exactly the uninterrupted fit
        np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-9)
    else:  # the draws after the break come from a reseeded stream (seed + steps): the same fit, not the same noise
        assert resumed.losses[12:].mean() == pytest.approx(whole.losses[12:].mean(), rel=0.2)
        restart = fit(model, X, y, steps=12, lr=0.01, progress=False, seed=5)
        assert resumed.losses[12:15].mean() < restart.losses[:3].mean()  # it continued, it did not restart


@pytest.mark.parametrize("fitter", ["map", "svi-normal", "svi-lowrank", "l0", "relevance", "marglik"])
def test_every_fit_round_trips_to_disk(fitter: str, tmp_path: Path) -> None:
    X, y = _regression()
    if fitter == "marglik":  # learns σ, and its learned precisions are coefficients
        model = bg.GuidedModel(_net(), bg.GuidedNormal(1.0, bg.guidance.marglik(every=4, burn_in=4)), "gaussian")
        fit = bg.fit_marglik(model, X, y, steps=12, lr=0.01)
        assert not torch.equal(fit.model.coefficients["0.units"], model.coefficients["0.units"])
    elif fitter == "relevance":
        model = bg.GuidedModel(_net(), bg.GuidedNormal(1.0, bg.guidance.relevance(every=4)), "gaussian", noise=0.2)
        fit = bg.fit_relevance(model, X, y, steps=12, lr=0.01)
    elif fitter == "l0":
        model = bg.GuidedModel(_net(), bg.HardConcreteGates(2.0), "gaussian", noise=0.2)
        fit = bg.fit_l0(model, X, y, steps=12, progress=False)
    elif fitter == "map":
        model = bg.GuidedModel(_net(), bg.GuidedLaplace(1.0), "gaussian")  # learns σ
        fit = bg.fit_map(model, X, y, steps=12, lr=0.01, progress=False)
    else:
        model = bg.GuidedModel(_net(), bg.GuidedNormal(1.0), "gaussian", noise=0.2)
        fit = bg.fit_svi(model, X, y, guide=fitter.split("-")[1], steps=12, lr=0.01, progress=False)
    fit.save(tmp_path / "fit")
    loaded = bg.FitResult.load(tmp_path / "fit", model)
    assert (loaded.method, loaded.fitter, loaded.steps, loaded.stop_reason) == (fit.method, fit.fitter, 12,
                                                                                 fit.stop_reason)
    np.testing.assert_array_equal(loaded.losses, fit.losses)
    for k in fit.unit_norms:
        np.testing.assert_allclose(loaded.unit_norms[k], fit.unit_norms[k], rtol=1e-6)
    torch.testing.assert_close(loaded.predict(X), fit.predict(X))
    for (ka, va), (kb, vb) in zip(loaded.guide.state_dict().items(), fit.guide.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert loaded.noise == fit.noise
    for k, v in fit.model.coefficients.items():
        assert torch.equal(loaded.model.coefficients[k], v)
    if fitter == "l0":
        assert bg.l0_gates(loaded).n_open == bg.l0_gates(fit).n_open
    if fitter == "marglik":
        assert loaded.extras["precisions"] == fit.extras["precisions"]
    # the loaded fit continues exactly as the original would
    a, b = bg.resume_fit(fit, X, y, 4), bg.resume_fit(loaded, X, y, 4)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9)


def test_loading_with_another_model_is_refused(tmp_path: Path) -> None:
    X, y = _regression()
    model = bg.GuidedModel(_net(), bg.GuidedNormal(1.0), "gaussian", noise=0.2)
    bg.fit_map(model, X, y, steps=3, progress=False).save(tmp_path)
    other = bg.GuidedModel(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double(),
                           bg.GuidedNormal(1.0), "gaussian", noise=0.2)
    with pytest.raises(ValueError, match="not its model"):
        bg.FitResult.load(tmp_path, other)
    with pytest.raises(FileNotFoundError, match=r"is .* a saved fit"):
        bg.FitResult.load(tmp_path / "nothing", model)


def test_resuming_the_same_fit_twice_gives_the_same_result() -> None:
    """Adam's state is copied on resume: the fit being resumed is not changed by it."""
    torch.manual_seed(0)
    X = torch.randn(40, 3)
    y = (X[:, 0] > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedGroupLasso(strength=1.0)), X, y, steps=5, lr=0.01, seed=0,
                     progress=False)
    a = bg.resume_fit(fit, X, y, 5)
    b = bg.resume_fit(fit, X, y, 5)
    assert np.array_equal(a.losses, b.losses) and a.final_loss == b.final_loss
