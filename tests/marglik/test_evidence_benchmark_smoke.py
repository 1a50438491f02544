"""The evidence benchmark runs (tiny smoke mode) against laplace-torch, and without it;
timings are never asserted.

laplace-torch comes with the ``peers`` extra. Without it the comparison is *skipped*,
visibly — and CI (``BAYESGUIDE_REQUIRE_PEERS=1``) fails instead, so the agreement with
the peer is checked on every run there."""

from __future__ import annotations

import builtins
import math
import os
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

Loader = Callable[[str], ModuleType]
"""The ``load_benchmark`` fixture (tests/conftest.py): ``benchmarks/<file>`` as a fresh module."""


def _require_laplace_torch() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its dependencies use torch.jit.script
            import laplace  # noqa: F401
    except (ImportError, RuntimeError) as err:
        if os.environ.get("BAYESGUIDE_REQUIRE_PEERS"):
            raise AssertionError(f"laplace-torch is required here (BAYESGUIDE_REQUIRE_PEERS) but: {err}") from err
        pytest.skip(f"laplace-torch is not usable ({err}): pip install -c constraints.txt -e '.[peers]'")


def test_evidence_benchmark_smoke(capsys: pytest.CaptureFixture[str], load_benchmark: Loader) -> None:
    _require_laplace_torch()
    bench = load_benchmark("evidence.py")
    results = bench.main(["--smoke"])
    out = capsys.readouterr().out
    assert set(results) == {"full", "kron"}, out
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["cpu_ratio"] > 0 for r in results.values())
    assert "full median ratio bayesguide/laplace-torch:" in out
    # the same curvature gives the same number on both sides (float32 peer)
    assert results["full"]["rel_diff"] < 1e-5
    assert results["kron"]["rel_diff_same_curvature"] < 1e-5


def test_evidence_benchmark_without_the_peer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, load_benchmark: Loader
) -> None:
    real_import = builtins.__import__

    def no_laplace(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "laplace" or name.startswith("laplace."):
            raise ImportError("No module named 'laplace'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_laplace)
    bench = load_benchmark("evidence.py")
    assert bench.main(["--smoke"]) == {}
    assert "laplace-torch is not usable here (ImportError" in capsys.readouterr().out
