"""The curvature benchmark runs (smoke mode; timings are never asserted) and the two
diagonals it compares are the same numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "curvature.py"


def test_curvature_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("curvature_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--smoke"])
    assert [r["params"] for r in results] == [682, 1482]
    assert all(r["max rel diff"] < 1e-6 for r in results)  # float32 network: the same diagonal
    assert all(r["diag/kron"] > 0 for r in results)
    assert "diag/kron" in capsys.readouterr().out


@pytest.mark.slow
def test_full_ggn_memory_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """Both sides run in fresh processes and compute the same log evidence; peaks are reported, not asserted."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "full_ggn_memory.py"
    spec = importlib.util.spec_from_file_location("full_ggn_memory_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (pair,) = module.main(["--smoke"])
    ours, reference = pair["bayesguide"], pair["reference"]
    assert ours["P"] == reference["P"] == 610
    assert ours["log_evidence"] == pytest.approx(reference["log_evidence"], rel=1e-10)
    assert ours["after"] >= ours["before"] > 0
    assert "peak increase bayesguide/reference" in capsys.readouterr().out
