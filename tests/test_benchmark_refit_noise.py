"""benchmarks/refit_noise.py in smoke mode: the spreads it reports are those of its own runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # trains a (tiny) fit: run by `python -m pytest -q -m slow` (and in .ci/run)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_reported_spread_is_the_spread_of_the_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))  # the script imports the compression benchmark next to it
    try:
        spec = importlib.util.spec_from_file_location("refit_noise", BENCH / "refit_noise.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        threads = torch.get_num_threads()
        out = tmp_path / "noise.json"
        try:
            assert module.main(["--smoke", "--fits", "uniform-l2|0.001|0", "--points", "0", "3",
                                "--seeds", "0", "1", "--out", str(out)]) == 0
        finally:
            torch.set_num_threads(threads)
    finally:
        sys.path.remove(str(BENCH))
    doc = json.loads(out.read_text())
    assert doc["meta"]["smoke"] and doc["meta"]["points"] == [0, 3]
    fit = doc["fits"]["uniform-l2|0.001|0"]
    assert set(fit["runs"]) == {"constant", "cosine"}
    for schedule, runs in fit["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(len(r["candidates"]) == 2 for r in runs)
        # the spread recomputed by hand: per candidate, max - min over the re-fit seeds; the largest
        test = max(max(r["candidates"][i]["test"] for r in runs) - min(r["candidates"][i]["test"] for r in runs)
                   for i in range(2))
        ev = max(max(r["candidates"][i]["log_evidence"] for r in runs)
                 - min(r["candidates"][i]["log_evidence"] for r in runs) for i in range(2))
        assert fit["spread"][schedule]["test_points"] == pytest.approx(100 * test)
        assert fit["spread"][schedule]["log_evidence_nats"] == pytest.approx(ev)
        widths = [c["units"] for c in runs[0]["candidates"]]
        assert widths[0] == 512 and widths[1] < 512  # the path's first point is the full network
