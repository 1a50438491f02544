"""Property-based fuzzing of everything a user hands to bayesguide (hypothesis).

The property, everywhere: bad input ends in a *named* bayesguide error — a ``ValueError``
or ``TypeError`` (experiment files: ``ExperimentError``) whose message is one line —
raised before any fitting, or the call succeeds with a valid result; never another
exception type, never a hang (a hypothesis deadline bounds every example). The default
suite runs a small example budget; ``-m slow`` runs a large one.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

import bayesguide as bg
from bayesguide.experiment import Experiment, ExperimentError
from bayesguide.report import render_html, render_markdown

# Deadlines bound every example (an example that hangs fails): generous, since the
# machines are shared, yet far below "minutes in a full Hessian".
_FAST = {"deadline": timedelta(seconds=10), "suppress_health_check": [HealthCheck.too_slow]}
SMALL = settings(max_examples=25, **_FAST)
LARGE = settings(max_examples=150, **_FAST)
# a report renders five figures (~0.5 s): fewer examples, a longer deadline
_REPORT = {"deadline": timedelta(seconds=60), "suppress_health_check": [HealthCheck.too_slow]}
REPORT_SMALL = settings(max_examples=8, **_REPORT)
REPORT_LARGE = settings(max_examples=60, **_REPORT)
NAMED = (ValueError, TypeError)


def _one_line(err: BaseException) -> None:
    message = str(err)
    assert message and "\n" not in message.strip(), f"{type(err).__name__}: {message!r}"
    assert "Traceback" not in message


# ------------------------------------------------------------------ data through validation

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_, np.complex128, np.uint8])


@st.composite
def arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, str]:
    n = draw(st.integers(0, 12))
    d = draw(st.sampled_from([0, 1, 3, 4]))
    X = draw(hnp.arrays(draw(DTYPES), (n, d) if draw(st.booleans()) else (n,), elements=None))
    likelihood = draw(st.sampled_from(["categorical", "gaussian", "bernoulli"]))
    y_shape = draw(st.sampled_from([(n,), (n, 1), (n, 2), (max(n - 1, 0),)]))
    y = draw(hnp.arrays(draw(DTYPES), y_shape, elements=None))
    return X, y, likelihood


def _validate(X: np.ndarray, y: np.ndarray, likelihood: str) -> None:
    out = 3 if likelihood == "categorical" else 1
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, out)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood, **({"noise": 1.0} if likelihood == "gaussian"
                                                                       else {}))
    try:
        Xt, yt = model.prepare_data(X, y)
    except NAMED as err:
        _one_line(err)
        return
    assert Xt.shape[0] == yt.shape[0] > 0 and Xt.shape[1] == 3
    assert bool(torch.isfinite(Xt).all())
    if likelihood == "categorical":
        assert int(yt.min()) >= 0 and int(yt.max()) < 3


@SMALL
@given(arrays())
def test_data_validation_is_named_or_valid(case: tuple[np.ndarray, np.ndarray, str]) -> None:
    _validate(*case)


@pytest.mark.slow
@LARGE
@given(arrays())
def test_data_validation_is_named_or_valid_many(case: tuple[np.ndarray, np.ndarray, str]) -> None:
    _validate(*case)


# ------------------------------------------------------------------ guidance vectors

@st.composite
def guidance_vectors(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.sampled_from([3, 4, 5]))
    return draw(hnp.arrays(np.float64, (n,), elements=FLOATS))


def _guidance(g: np.ndarray) -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    try:
        model = bg.GuidedModel(net, bg.GuidedLaplace(1.0, bg.guidance.custom(torch.as_tensor(g))), "gaussian",
                               noise=1.0)
    except NAMED as err:
        _one_line(err)
        return
    coefficients = model.coefficients["0.units"]
    assert coefficients.shape == (4,) and bool(torch.isfinite(coefficients).all()) and bool((coefficients >= 0).all())


@SMALL
@given(guidance_vectors())
def test_guidance_is_named_or_valid(g: np.ndarray) -> None:
    _guidance(g)


@pytest.mark.slow
@LARGE
@given(guidance_vectors())
def test_guidance_is_named_or_valid_many(g: np.ndarray) -> None:
    _guidance(g)


# ------------------------------------------------------------------ experiment tables

SCALARS = st.one_of(st.integers(-3, 10**13), FLOATS, st.booleans(), st.text(max_size=8),
                    st.lists(st.integers(-2, 300), max_size=3))
KEYS = {
    "data": ["source", "task", "target", "test_fraction", "seed"],
    "network": ["hidden", "activation"],
    "prior": ["kind", "strength", "guidance", "alpha", "tau0", "l0_weight_decay"],
    "fit": ["method", "steps", "lr", "seed", "batch_size", "schedule", "guide"],
    "select": ["evidence", "occam", "kappa", "n_candidates", "threshold", "fine_tune", "hessian", "optimize_prior",
               "loo"],
    "output": ["dir"],
}
CHOICE = st.sampled_from(["digits", "teacher", "regression", "classification", "relu", "tanh", "l1", "l0",
                          "horseshoe", "relevance", "partial", "map", "svi", "laplace", "elbo", "auto", "full",
                          "cosine", "lowrank", "guidance", "flops", "x"])


@st.composite
def experiments(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for table in draw(st.lists(st.sampled_from([*KEYS, "extra"]), max_size=4, unique=True)):
        keys = [*KEYS.get(table, ["x"]), "bogus"]
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        doc[table] = {k: draw(st.one_of(SCALARS, CHOICE)) for k in chosen}
    return doc


def _experiment(doc: dict[str, Any]) -> None:
    try:
        exp = Experiment.from_dict(doc)
    except ExperimentError as err:
        _one_line(err)
        return
    # a valid experiment: every number finite, and the objects it describes can be built
    for table in exp.to_dict().values():
        for value in table.values():
            if isinstance(value, float):
                assert math.isfinite(value)
    exp.prior.build()
    exp.selection()


@SMALL
@given(experiments())
def test_experiment_tables_are_named_or_valid(doc: dict[str, Any]) -> None:
    _experiment(doc)


@pytest.mark.slow
@LARGE
@given(experiments())
def test_experiment_tables_are_named_or_valid_many(doc: dict[str, Any]) -> None:
    _experiment(doc)


# ------------------------------------------------------------------ results documents through the report

NUMBERS = st.one_of(st.none(), FLOATS, st.integers(-10**6, 10**6))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 4))
    candidates = [{
        "name": draw(st.text(max_size=6)), "widths": draw(st.lists(st.integers(0, 50), max_size=3)),
        "n_params": draw(NUMBERS), "flops": draw(NUMBERS), "log_evidence": draw(NUMBERS),
        "log_prior": draw(NUMBERS), "log_posterior": draw(NUMBERS), "posterior_prob": draw(NUMBERS),
        "log_bayes_factor": draw(NUMBERS), "status": draw(st.sampled_from(["ok", "failed: x", ""])),
        "metrics": {"train": draw(NUMBERS), "test": draw(NUMBERS)}, "elpd_loo": draw(NUMBERS),
        "elpd_se": draw(NUMBERS), "pareto_k_max": draw(NUMBERS), "prior_used": draw(st.sampled_from(
            ["own", "uniform", None, "x"])),
    } for _ in range(n)]
    steps = draw(st.integers(0, 5))
    fit = None if draw(st.booleans()) else {
        "method": "map", "prior": "x", "steps": steps, "wall_time_s": draw(NUMBERS), "stop_reason": "completed",
        "final_loss": draw(NUMBERS), "losses": draw(st.lists(NUMBERS, min_size=steps, max_size=steps)),
        "loss_steps": list(range(steps)),
        "unit_norms": {"0": [draw(st.lists(NUMBERS, min_size=2, max_size=2)) for _ in range(steps)]},
        "norm_steps": list(range(steps)),
    }
    return {"schema_version": 1, "status": "complete", "config": {}, "data": {"name": None, "task": "x",
                                                                           "n_train": 1},
            "fit": fit, "metric": draw(st.sampled_from(["accuracy", "rmse", "x"])), "candidates": candidates,
            "best": candidates[0]["name"] if candidates else None, "recommended": None, "flags": ["<b>x</b>"],
            "timings": {}}


def _report(doc: dict[str, Any]) -> None:
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>") and "<b>x</b>" not in page  # escaped
    assert render_markdown(doc)


@REPORT_SMALL
@given(documents())
def test_any_results_document_renders(doc: dict[str, Any]) -> None:
    _report(doc)


@pytest.mark.slow
@REPORT_LARGE
@given(documents())
def test_any_results_document_renders_many(doc: dict[str, Any]) -> None:
    _report(doc)


def test_the_fuzzers_reach_both_outcomes(tmp_path: Path) -> None:
    """The strategies are not vacuous: each produces accepted and refused inputs."""
    ok = np.random.default_rng(0).standard_normal((6, 3))
    _validate(ok, np.array([0, 1, 2, 0, 1, 2]), "categorical")
    with pytest.raises(ValueError):
        bg.GuidedModel(nn.Sequential(nn.Linear(3, 2)).double(), bg.GuidedNormal(1.0)).prepare_data(ok, np.ones(5))
    assert Experiment.from_dict(tomllib.loads("[prior]\nkind = 'l1'\n")).prior.kind == "l1"
    with pytest.raises(ExperimentError):
        Experiment.from_dict({"prior": {"strength": float("nan")}})
