"""The evidence benchmark runs (tiny smoke mode), with or without laplace-torch installed;
timings are never asserted."""

from __future__ import annotations

import builtins
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evidence.py"


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("evidence_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "evidence_benchmark", module)
    spec.loader.exec_module(module)
    return module


def test_evidence_benchmark_smoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load(monkeypatch)
    results = bench.main(["--smoke"])
    out = capsys.readouterr().out
    if not results:  # laplace-torch is not installed: a message and nothing else
        assert "laplace-torch is not usable here" in out
        return
    assert set(results) == {"full", "kron"}
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["cpu_ratio"] > 0 for r in results.values())
    assert "full median ratio bayesguide/laplace-torch:" in out
    # the same curvature gives the same number on both sides (float32 peer)
    assert results["full"]["rel_diff"] < 1e-5
    assert results["kron"]["rel_diff_same_curvature"] < 1e-5


def test_evidence_benchmark_without_the_peer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_laplace(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "laplace" or name.startswith("laplace."):
            raise ImportError("No module named 'laplace'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_laplace)
    bench = _load(monkeypatch)
    assert bench.main(["--smoke"]) == {}
    assert "laplace-torch is not usable here (ImportError" in capsys.readouterr().out
