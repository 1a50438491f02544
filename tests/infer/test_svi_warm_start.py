"""``fit_svi(warm_start=k)``: the first ``k`` steps are MAP steps the posterior starts from.

The reference is the same fit written by hand as two calls: ``fit_map`` of the model's MAP
counterpart for ``k`` steps, then ``fit_svi`` of a model around the network it reached for
the other ``steps - k``; both must give the same draws, losses and posterior.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.experiment import ExperimentError, load_experiment
from bayesguide.runner import config_hash


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([[1.0], [-1.0], [0.5]], dtype=torch.float64))
    return X, y + 0.1 * torch.randn(64, 1, generator=g, dtype=torch.float64)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()


@pytest.mark.parametrize("prior", [bg.GroupHorseshoe(strength=2.0, tau0=0.1), bg.GuidedGroupLasso(0.5)],
                         ids=["horseshoe", "group-lasso"])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_warm_start_is_map_steps_then_svi_from_their_point(prior: bg.priors.UnitPrior,
                                                            batch_size: int | None) -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), prior, "gaussian", noise=0.1)
    common = {"lr": 1e-2, "seed": 4, "batch_size": batch_size, "schedule": "cosine", "progress": False}
    fit = bg.fit_svi(model, X, y, steps=50, warm_start=20, **common)

    # by hand: the MAP counterpart (the horseshoe has no MAP: GuidedNormal(strength, uniform()))
    if prior.has_density:
        counterpart = model
    else:
        counterpart = bg.GuidedModel(model.net, bg.GuidedNormal(2.0, bg.guidance.uniform()), "gaussian", noise=0.1)
    warm = bg.fit_map(counterpart, X, y, steps=20, **common)
    by_hand = bg.fit_svi(bg.GuidedModel(warm.module, prior, "gaussian", noise=0.1), X, y, steps=30, **common)

    np.testing.assert_allclose(fit.losses, by_hand.losses, rtol=1e-12)
    for (name, a), b in zip(fit.module.state_dict().items(), by_hand.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0, msg=name)
    info = fit.extras["warm_start"]
    assert info.steps == 20 and info.prior == str(counterpart.prior)
    assert info.final_loss == pytest.approx(float(warm.losses[-1]), rel=1e-12)
    assert fit.settings["steps"] == 50 and len(fit.losses) == 30  # the MAP part is not in the SVI losses


@pytest.mark.parametrize(("value", "match"), [
    (-1, "non-negative int"), (2.5, "non-negative int"), (True, "non-negative int"), (30, "smaller than steps"),
])
def test_bad_warm_start_is_refused_before_any_step(value: object, match: str) -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GroupHorseshoe(tau0=0.1), "gaussian", noise=0.1)
    with pytest.raises(ValueError, match=match):
        bg.fit_svi(model, X, y, steps=30, warm_start=value, progress=False)  # type: ignore[arg-type]


def test_warm_start_and_init_are_exclusive_and_a_resume_does_not_repeat_it() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GroupHorseshoe(tau0=0.1), "gaussian", noise=0.1)
    fit = bg.fit_svi(model, X, y, steps=20, warm_start=5, progress=False)
    with pytest.raises(ValueError, match="pass one of them"):
        bg.fit_svi(model, X, y, steps=20, warm_start=5, init=fit, progress=False)
    resumed = bg.resume_fit(fit, X, y, 10)  # continues the SVI fit: no MAP steps again
    assert len(resumed.losses) == 25
    np.testing.assert_array_equal(resumed.losses[:15], fit.losses)
    assert resumed.extras["warm_start"] == fit.extras["warm_start"]  # the record of where it started is kept


def test_the_warm_start_record_survives_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GroupHorseshoe(tau0=0.1), "gaussian", noise=0.1)
    fit = bg.fit_svi(model, X, y, steps=20, warm_start=5, progress=False)
    loaded = bg.FitResult.load(fit.save(tmp_path / "fit"), model)
    assert loaded.extras["warm_start"] == fit.extras["warm_start"]
    assert "warm start: 5 MAP steps under GuidedNormal" in str(fit.extras["warm_start"])


def _experiment(tmp_path, fit: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\nsource = "teacher"\n[prior]\nkind = "horseshoe"\n[fit]\n{fit}\n')
    return load_experiment(path)


def test_experiment_files_pass_warm_start_to_the_svi_fitter_and_check_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exp = _experiment(tmp_path, 'method = "svi"\nsteps = 100\nwarm_start = 25')
    assert exp.fitter_options()["warm_start"] == 25
    with pytest.raises(ExperimentError, match=r"warm_start must lie in \[0, steps\)"):
        _experiment(tmp_path, 'method = "svi"\nsteps = 100\nwarm_start = 100')
    path = tmp_path / "map.toml"
    path.write_text('[data]\nsource = "teacher"\n[prior]\nkind = "group"\n[fit]\nsteps = 100\nwarm_start = 10\n')
    with pytest.raises(ExperimentError, match="warm_start = 10 is for SVI fits"):
        load_experiment(path)


def test_auto_warm_start_is_a_quarter_of_the_steps_for_the_horseshoe_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _experiment(tmp_path, 'method = "svi"\nsteps = 101').fit.warm_start == 25  # 101 // 4
    assert _experiment(tmp_path, 'method = "svi"\nsteps = 100\nwarm_start = 0').fit.warm_start == 0
    for fit in ('method = "svi"', 'method = "map"'):  # a prior with a MAP: no warm start unless asked
        path = tmp_path / "group.toml"
        path.write_text(f'[data]\nsource = "teacher"\n[prior]\nkind = "group"\n[fit]\n{fit}\nsteps = 100\n')
        exp = load_experiment(path)
        assert exp.fit.warm_start == 0
        assert "warm_start" not in exp.to_dict()["fit"]  # the identity of runs made before the key existed


def test_warm_start_is_part_of_a_runs_identity_when_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    auto = _experiment(tmp_path, 'method = "svi"\nsteps = 100')
    explicit = _experiment(tmp_path, 'method = "svi"\nsteps = 100\nwarm_start = 25')
    none = _experiment(tmp_path, 'method = "svi"\nsteps = 100\nwarm_start = 0')
    assert auto.to_dict()["fit"]["warm_start"] == 25
    assert config_hash(auto) == config_hash(explicit) != config_hash(none)
