"""The evidence benchmark runs (tiny smoke mode) against laplace-torch, and without it;
timings are never asserted.

laplace-torch comes with the ``peers`` extra. Without it the comparison is *skipped*,
visibly — and CI (``BAYESGUIDE_REQUIRE_PEERS=1``) fails instead, so the agreement with
the peer is checked on every run there."""

from __future__ import annotations

import builtins
import importlib.util
import math
import os
import sys
import warnings
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


def _require_laplace_torch() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its dependencies use torch.jit.script
            import laplace  # noqa: F401
    except (ImportError, RuntimeError) as err:
        if os.environ.get("BAYESGUIDE_REQUIRE_PEERS"):
            raise AssertionError(f"laplace-torch is required here (BAYESGUIDE_REQUIRE_PEERS) but: {err}") from err
        pytest.skip(f"laplace-torch is not usable ({err}): pip install -c constraints.txt -e '.[peers]'")


def test_evidence_benchmark_smoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_laplace_torch()
    bench = _load(monkeypatch)
    results = bench.main(["--smoke"])
    out = capsys.readouterr().out
    assert set(results) == {"full", "kron"}, out
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
