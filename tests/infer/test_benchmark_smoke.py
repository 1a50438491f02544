"""The overhead benchmark runs (tiny smoke mode); timings are never asserted."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

import bayesguide as bg

Loader = Callable[[str], ModuleType]
"""The ``load_benchmark`` fixture (tests/conftest.py): ``benchmarks/<file>`` as a fresh module."""


def test_map_overhead_smoke(capsys: pytest.CaptureFixture[str], load_benchmark: Loader) -> None:
    module = load_benchmark("map_overhead.py")

    ratios = module.main(["--smoke"])

    out = capsys.readouterr().out
    assert set(ratios) == {"map", "svi"}
    assert all(math.isfinite(r) and r > 0 for r in ratios.values())
    assert "MAP median ratio bayesguide/reference:" in out
    assert "SVI median ratio bayesguide/reference:" in out
    # the benchmark's two MAP objectives are the same function (up to the constant)
    gap = float(out.split("relative gap ")[1].split(")")[0])
    assert gap < 1e-5




def test_interleaved_steps_do_the_same_work_on_both_sides(load_benchmark: Loader) -> None:
    """The hand loop takes the same minibatches as fit_map and follows the same trajectory, so the
    per-step times compare like with like; the interleaved mode runs and times every step."""
    mo = load_benchmark("map_overhead.py")
    problem = mo.make_problem("group", 16, 200)
    fit = bg.fit_map(problem.model, problem.X, problem.y, steps=12, lr=mo.LR, progress=False, batch_size=32)
    hand = mo.reference_map(problem, copy.deepcopy(problem.net), 12, batch=32, fused=True)
    np.testing.assert_allclose(fit.losses, np.asarray(hand) - problem.log_normaliser, rtol=2e-5)

    lib, ref = mo.interleaved(problem, 12, 32, True, warmup=2)
    assert len(lib) == len(ref) == 10 and all(t > 0 for t in lib + ref)
    assert math.isfinite(mo.main(["--smoke", "--interleaved", "--fused", "--batch", "32"])["map@32"])


def test_svi_warm_start_benchmark_smoke(load_benchmark: Loader) -> None:
    rows = load_benchmark("svi_warm_start.py").main(["--smoke"])
    # every case fitted from the initialisation and from a quarter of its steps of MAP
    assert [(r["case"], r["task"], r["warm"]) for r in rows] == [
        ("horseshoe", "mnist1d-mlp", 0), ("horseshoe", "mnist1d-mlp", 2),
        ("group", "mnist1d-mlp", 0), ("group", "mnist1d-mlp", 2),
        ("group", "digits-mlp", 0), ("group", "digits-mlp", 2),
    ]
    assert all(0.0 <= r["test"] <= 1.0 and r["steps"] == 8 for r in rows)
