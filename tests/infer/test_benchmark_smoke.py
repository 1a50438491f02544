"""The overhead benchmark runs (tiny smoke mode); timings are never asserted."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

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
