"""The optimisation loop and ``FitResult``: seeds, isolation, resuming, early stopping,
records, the non-finite guard and settings validation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyro
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer import OptimSettings, optimize
from bayesguide.infer.loop import lr_factor
from bayesguide.infer.settings import Schedule


def _net(dropout: bool = False, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(5, 7), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers += [nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)]
    return nn.Sequential(*layers).to(dtype)


def _model(dropout: bool = False, dtype: torch.dtype = torch.float64) -> bg.GuidedModel:
    return bg.GuidedModel(_net(dropout, dtype), bg.GuidedGroupLasso(0.1, bg.guidance.linear()))


def _data(n: int = 40, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 5, dtype=dtype), torch.randint(0, 3, (n,))


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("method", ["map", "svi"])
def test_same_seed_reproduces_and_other_seed_differs(method: str) -> None:
    model = _model(dropout=True)
    X, y = _data()
    fit = bg.fit_map if method == "map" else bg.fit_svi
    kwargs = {"steps": 30, "lr": 1e-2, "batch_size": 8, "progress": False}
    a, b = fit(model, X, y, seed=3, **kwargs), fit(model, X, y, seed=3, **kwargs)
    c = fit(model, X, y, seed=4, **kwargs)
    assert np.array_equal(a.losses, b.losses)
    assert _same_state(_state(a.module), _state(b.module))
    assert not np.allclose(a.losses, c.losses)


def test_seeded_fit_leaves_the_global_rng_alone() -> None:
    model = _model(dropout=True)
    X, y = _data()
    before = torch.get_rng_state()
    bg.fit_map(model, X, y, steps=10, batch_size=8, seed=1, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    # without a seed the fit draws its dropout masks from the global RNG
    bg.fit_map(model, X, y, steps=10, batch_size=8, seed=None, progress=False)
    assert not torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------- isolation


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_fits_of_same_named_networks_share_nothing(engine: str) -> None:
    X, y = _data()
    first_model, second_model = _model(), _model()  # layer names "0", "2", "4" in both
    assert [s.name for s in first_model.sites] == [s.name for s in second_model.sites]
    first = bg.fit_map(first_model, X, y, steps=20, lr=1e-2, engine=engine, progress=False)
    kept = _state(first.module)
    second = bg.fit_map(second_model, X, y, steps=20, lr=1e-2, engine=engine, progress=False)
    svi = bg.fit_svi(second_model, X, y, steps=20, lr=1e-2, engine=engine, progress=False)
    assert _same_state(_state(first.module), kept)
    ptrs = {p.data_ptr() for p in first.module.parameters()}
    assert not ptrs & {p.data_ptr() for p in second.module.parameters()}
    assert not ptrs & {p.data_ptr() for p in svi.guide.parameters()}
    assert len(pyro.get_param_store()) == 0


def test_fits_never_change_the_users_network() -> None:
    model = _model(dropout=True)
    X, y = _data()
    before = _state(model.net)
    assert model.net.training
    fit = bg.fit_map(model, X, y, steps=15, lr=0.1, progress=False)
    bg.resume_fit(fit, X, y, 5, progress=False)
    bg.fit_map(model, X, y, steps=5, lr=0.1, engine="pyro", progress=False)
    post = bg.fit_svi(model, X, y, steps=15, lr=0.1, progress=False)
    bg.resume_fit(post, X, y, 5, progress=False)
    bg.fit_svi(model, X, y, guide="lowrank", steps=5, lr=0.1, init=fit, progress=False)
    assert _same_state(_state(model.net), before)
    assert model.net.training
    assert fit.module is not model.net and not _same_state(_state(fit.module), before)


# --------------------------------------------------------------------------- resume


def test_map_resume_equals_one_long_fit() -> None:
    model = _model()
    X, y = _data()
    whole = bg.fit_map(model, X, y, steps=100, lr=5e-2, progress=False)
    part = bg.fit_map(model, X, y, steps=60, lr=5e-2, progress=False)
    part_losses, part_state = part.losses.copy(), _state(part.module)
    resumed = bg.resume_fit(part, X, y, 40, progress=False)

    assert resumed.steps == whole.steps == 100
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-12, atol=0)
    for a, b in zip(resumed.module.parameters(), whole.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # histories concatenate, and the first fit is left as it was
    assert np.array_equal(resumed.losses[:60], part_losses) and part.steps == 60
    assert _same_state(_state(part.module), part_state)
    assert np.array_equal(resumed.norm_steps, np.arange(100))
    assert np.array_equal(resumed.norm_steps, whole.norm_steps)
    for layer, norms in whole.unit_norms.items():
        np.testing.assert_allclose(resumed.unit_norms[layer], norms, rtol=1e-12)
    assert resumed.wall_time >= part.wall_time


def test_svi_resume_continues_the_guide() -> None:
    """SVI draws are reseeded per segment (seed + step offset), so a resumed fit is not
    the long fit draw for draw; it continues from the fitted guide and its histories."""
    model = _model()
    X, y = _data()
    part = bg.fit_svi(model, X, y, steps=60, lr=5e-2, progress=False)
    guide_state = _state(part.guide)
    resumed = bg.resume_fit(part, X, y, 3, lr=1e-12, progress=False)
    for name, value in _state(resumed.guide).items():
        torch.testing.assert_close(value, guide_state[name], rtol=0, atol=1e-9)
    assert resumed.steps == 63 and np.array_equal(resumed.losses[:60], part.losses)
    assert np.array_equal(resumed.norm_steps, np.arange(63))
    assert resumed.settings["lr"] == 1e-12
    assert _same_state(_state(part.guide), guide_state)


# --------------------------------------------------------------------------- early stopping and records


def test_patience_stops_on_a_plateau() -> None:
    model = _model()
    X, y = _data()
    # lr so small that the loss is flat: no relative improvement above min_delta
    fit = bg.fit_map(model, X, y, steps=500, lr=1e-12, patience=20, progress=False)
    assert fit.steps == 21  # the best at step 0, then 20 steps without improvement
    assert fit.stop_reason.startswith("plateau") and "20 steps" in fit.stop_reason
    assert fit.norm_steps[-1] == 20  # the state at the stop is recorded
    full = bg.fit_map(model, X, y, steps=30, lr=1e-2, patience=20, progress=False)
    assert full.steps == 30 and full.stop_reason == "completed"


def test_patience_stops_a_converged_fit_early() -> None:
    model = _model()
    X, y = _data()
    fit = bg.fit_map(model, X, y, steps=3000, lr=5e-2, patience=50, min_delta=1e-3, progress=False)
    assert 50 < fit.steps < 3000
    assert "plateau" in fit.stop_reason


def test_unit_norms_shapes_and_record_every() -> None:
    model = _model()
    X, y = _data()
    fit = bg.fit_map(model, X, y, steps=50, record_every=7, progress=False)
    assert np.array_equal(fit.norm_steps, [0, 7, 14, 21, 28, 35, 42, 49])
    assert {k: v.shape for k, v in fit.unit_norms.items()} == {"0": (8, 7), "2": (8, 6)}
    for name in ("0", "2"):
        layer = dict(fit.module.named_children())[name]
        rows = torch.cat([layer.weight, layer.bias.unsqueeze(1)], dim=1)
        expected = rows.detach().pow(2).sum(1).sqrt().numpy()
        np.testing.assert_allclose(fit.final_unit_norms()[name], expected, rtol=1e-12)
    default = bg.fit_map(model, X, y, steps=250, progress=False)  # every steps // 100 = 2
    assert np.array_equal(default.norm_steps, [*range(0, 250, 2), 249])
    assert default.unit_norms["0"].shape == (126, 7)
    post = bg.fit_svi(model, X, y, steps=20, record_every=10, progress=False)
    assert np.array_equal(post.norm_steps, [0, 10, 19])
    assert post.unit_norms["2"].shape == (3, 6)


# --------------------------------------------------------------------------- non-finite guard


def test_huge_learning_rate_raises_naming_step_and_site() -> None:
    model = _model(dtype=torch.float32)
    X, y = _data(dtype=torch.float32)
    with pytest.raises(bg.NonFiniteLossError, match=r"at step 1: .*prior term of site '0\.units'"):
        bg.fit_map(model, X, y, steps=20, lr=1e30, progress=False)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
@pytest.mark.parametrize("method", ["map", "svi"])
def test_non_finite_initial_weight_raises_at_step_0(method: str, bad: float) -> None:
    net = _net()
    with torch.no_grad():
        net[2].weight[1, 3] = bad
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(0.1))
    X, y = _data()
    fit = bg.fit_map if method == "map" else bg.fit_svi
    with pytest.raises(bg.NonFiniteLossError, match=r"at step 0: site '2\.units' has non-finite parameters"):
        fit(model, X, y, steps=5, progress=False)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, r"steps must be a positive int, got 0"),
        ({"steps": 2.5}, r"steps must be a positive int"),
        ({"lr": -1}, r"lr must be a positive number, got -1"),
        ({"lr": float("nan")}, r"lr must be a positive number"),
        ({"batch_size": 0}, r"batch_size must be a positive int or None"),
        ({"schedule": "linear"}, r"unknown schedule 'linear'; choose one of: constant, cosine, anneal"),
        ({"engine": "jax"}, r"unknown engine 'jax'; choose one of: fast, pyro"),
        ({"patience": 0}, r"patience must be a positive int or None"),
        ({"min_delta": -1.0}, r"min_delta must be >= 0"),
        ({"min_delta_abs": float("nan")}, r"min_delta_abs must be >= 0 \(a finite number\), got nan"),
        ({"record_every": 0}, r"record_every must be a positive int or None"),
    ],
)
@pytest.mark.parametrize("method", ["map", "svi"])
def test_bad_settings_raise_before_training(method: str, kwargs: dict, message: str) -> None:
    model = _model()
    X, y = _data()
    fit = bg.fit_map if method == "map" else bg.fit_svi
    with pytest.raises(ValueError, match=message):
        fit(model, X, y, progress=False, **kwargs)


def test_bad_svi_settings() -> None:
    model = _model()
    X, y = _data()
    with pytest.raises(ValueError, match=r"unknown guide 'flow'; choose one of: normal, lowrank"):
        bg.fit_svi(model, X, y, guide="flow", progress=False)
    with pytest.raises(ValueError, match=r"rank must be a positive int, got 0"):
        bg.fit_svi(model, X, y, guide="lowrank", rank=0, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"init_scale must be positive, got -0.1"):
        bg.fit_svi(model, X, y, init_scale=-0.1, steps=2, progress=False)


def test_init_must_be_a_fit_of_the_same_model() -> None:
    X, y = _data()
    model, other = _model(), _model()
    fit = bg.fit_map(model, X, y, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"init is a fit of another GuidedModel"):
        bg.fit_map(other, X, y, steps=2, init=fit, progress=False)
    with pytest.raises(ValueError, match=r"init is a fit of another GuidedModel"):
        bg.fit_svi(other, X, y, steps=2, init=fit, progress=False)
    with pytest.raises(TypeError, match=r"init must be a FitResult, got dict"):
        bg.fit_map(model, X, y, steps=2, init={}, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a bg.GuidedModel, got Sequential"):
        bg.fit_map(model.net, X, y, steps=2, progress=False)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- optimize itself


def _quadratic() -> tuple[nn.Parameter, Callable[[torch.Tensor | None], torch.Tensor]]:
    w = nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    return w, lambda idx: (w - 1).pow(2).sum()


def test_optimize_records_snapshots_of_each_step() -> None:
    w, objective = _quadratic()
    settings = OptimSettings(steps=20, lr=0.1, progress=False, record_every=5)
    out = optimize(objective, [w], 10, settings, record=lambda: {"w": w, "sum": w.sum().reshape(1)},
                   diagnose=lambda idx: "")
    # independent trajectory: plain torch Adam on the same function
    v = nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    adam, expected = torch.optim.Adam([v], lr=0.1), {}
    for step in range(20):
        adam.zero_grad()
        (v - 1).pow(2).sum().backward()
        adam.step()
        expected[step] = v.detach().clone()
    assert list(out.record_steps) == [0, 5, 10, 15, 19]
    for step, rec in zip(out.record_steps, out.records):
        # a copy at that step, even though record() returned the live parameter
        torch.testing.assert_close(rec["w"], expected[int(step)], rtol=1e-12, atol=0)
        torch.testing.assert_close(rec["sum"], expected[int(step)].sum().reshape(1), rtol=1e-12, atol=0)


def test_optimize_keeps_records_whose_shape_changes() -> None:
    w, objective = _quadratic()
    calls: list[int] = []

    def record() -> dict[str, torch.Tensor]:
        calls.append(len(calls))
        return {"seen": torch.arange(len(calls))}

    settings = OptimSettings(steps=6, lr=0.1, progress=False, record_every=2)
    out = optimize(objective, [w], 10, settings, record=record, diagnose=lambda idx: "")
    assert [r["seen"].tolist() for r in out.records] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    empty = optimize(objective, [w], 10, settings, record=dict, diagnose=lambda idx: "")
    assert empty.records == [{}, {}, {}, {}]


def test_bool_settings_are_refused() -> None:
    model = _model()
    X, y = _data()
    with pytest.raises(ValueError, match="patience must be a positive int"):
        bg.fit_map(model, X, y, steps=5, patience=True, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record_every must be a positive int"):
        bg.fit_map(model, X, y, steps=5, record_every=True, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank must be a positive int"):
        bg.fit_svi(model, X, y, steps=5, rank=0, progress=False)


def test_resume_keeps_progress_setting_and_cross_method_init_is_a_warm_start() -> None:
    model = _model()
    X, y = _data()
    fit = bg.fit_map(model, X, y, steps=10, lr=1e-2, progress=False)
    assert fit.settings["progress"] is False
    assert bg.resume_fit(fit, X, y, 5).settings["progress"] is False
    post = bg.fit_svi(model, X, y, steps=7, lr=1e-2, init=fit, progress=False)
    # the SVI history does not continue the MAP objective's
    assert post.steps == 7
    assert post.norm_steps[0] == 0


def test_anneal_is_constant_then_the_cosine_over_the_second_half() -> None:
    total = 10
    factors = [lr_factor(Schedule.ANNEAL, step, total) for step in range(total)]
    assert factors[:5] == [1.0] * 5
    # the second half is the cosine schedule of a 5-step run: 1 → 0.01
    assert factors[5:] == pytest.approx([0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)])
    assert factors[-1] == pytest.approx(0.01)
