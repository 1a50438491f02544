"""The overhead benchmark runs (tiny smoke mode); timings are never asserted."""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import bayesguide as bg

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "map_overhead.py"


def test_map_overhead_smoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("map_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "map_overhead", module)  # dataclasses look their module up
    spec.loader.exec_module(module)

    ratios = module.main(["--smoke"])

    out = capsys.readouterr().out
    assert set(ratios) == {"map", "svi"}
    assert all(math.isfinite(r) and r > 0 for r in ratios.values())
    assert "MAP median ratio bayesguide/reference:" in out
    assert "SVI median ratio bayesguide/reference:" in out
    # the benchmark's two MAP objectives are the same function (up to the constant)
    gap = float(out.split("relative gap ")[1].split(")")[0])
    assert gap < 1e-5


def _load(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("map_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "map_overhead", module)
    spec.loader.exec_module(module)
    return module


def test_interleaved_steps_do_the_same_work_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand loop takes the same minibatches as fit_map and follows the same trajectory, so the
    per-step times compare like with like; the interleaved mode runs and times every step."""
    mo = _load(monkeypatch)
    problem = mo.make_problem("group", 16, 200)
    fit = bg.fit_map(problem.model, problem.X, problem.y, steps=12, lr=mo.LR, progress=False, batch_size=32)
    hand = mo.reference_map(problem, copy.deepcopy(problem.net), 12, batch=32, fused=True)
    np.testing.assert_allclose(fit.losses, np.asarray(hand) - problem.log_normaliser, rtol=2e-5)

    lib, ref = mo.interleaved(problem, 12, 32, True, warmup=2)
    assert len(lib) == len(ref) == 10 and all(t > 0 for t in lib + ref)
    assert math.isfinite(mo.main(["--smoke", "--interleaved", "--fused", "--batch", "32"])["map@32"])
