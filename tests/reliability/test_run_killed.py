"""A run killed with SIGKILL at several points and resumed ends with the same
``results.json`` as an uninterrupted run (to 1e-6; timings and latencies aside)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]

EXPERIMENT = """
[data]
source = "{data}"
task = "regression"
[network]
hidden = [8]
activation = "tanh"
[prior]
kind = "group"
[fit]
steps = 150
lr = 0.02
[select]
n_candidates = 5
threshold = 0.0
fine_tune = 60
[output]
dir = "{out}"
"""

#: what differs between two honest runs: wall-clock measurements
VOLATILE = {"timings", "latency_ms", "latency_full_ms", "speedup", "wall_time_s"}


def _command(path: Path) -> list[str]:
    return [sys.executable, "-m", "bayesguide.cli", "run", str(path), "--quiet"]


def _write(tmp_path: Path, name: str) -> Path:
    data = tmp_path / "d.npz"
    if not data.exists():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((80, 3))
        np.savez(data, X=X, y=np.tanh(X @ np.array([1.0, -1.0, 0.5])) + 0.1 * rng.standard_normal(80))
    path = tmp_path / f"{name}.toml"
    path.write_text(EXPERIMENT.format(data=data, out=tmp_path / name))
    return path


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _close(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _kill_when(path: Path, run_dir: Path, done: int) -> None:
    """Start a run and SIGKILL it once ``done`` candidates are in results.json (0: the fit is)."""
    proc = subprocess.Popen(_command(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            results = run_dir / "results.json"
            if results.exists():
                state = json.loads(results.read_text())
                if state["fit"] is not None and len(state["candidates"]) >= done:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("done", [0, 1, 3])
def test_a_killed_run_resumes_to_the_same_results(tmp_path: Path, done: int) -> None:
    clean = _write(tmp_path, "clean")
    subprocess.run(_command(clean), check=True, stdout=subprocess.DEVNULL)
    expected = json.loads((tmp_path / "clean" / "results.json").read_text())

    killed = _write(tmp_path, "killed")
    _kill_when(killed, tmp_path / "killed", done)
    state = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert state["status"] == "running"
    subprocess.run(_command(killed), check=True, stdout=subprocess.DEVNULL)
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["status"] == "complete"
    _close(_strip(expected | {"config": None}), _strip(resumed | {"config": None}))
