"""``benchmarks/sweep_scaling.py --cli`` writes the sweep it times in process as a file: the two must be one sweep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import bayesguide as bg


def test_the_sweep_file_is_the_in_process_sweep(load_benchmark: Callable[[str], ModuleType], tmp_path: Path) -> None:
    bench = load_benchmark("sweep_scaling.py")
    base = {"data": {"source": "digits"}, "network": {"hidden": [32]}, "fit": {"steps": 30, "lr": 0.01},
            "select": {"n_candidates": 4, "bisect": 0, "fine_tune": 0}}
    grid = {"prior.strength": [0.5, 2.0], "network.hidden": [[32], [64]], "fit.seed": [0, 1]}
    path = tmp_path / "sweep.toml"
    path.write_text(bench.sweep_file(base, grid))
    from_file = bg.sweeps.load_sweep(path, dir=str(tmp_path / "a"))
    in_process = bg.sweeps.parse_sweep({**base, "grid": grid, "sweep": {"dir": str(tmp_path / "a")}})
    assert from_file.grid == in_process.grid == grid
    assert [p.name for p in from_file.points] == [p.name for p in in_process.points]
    assert len(from_file.points) == 8
    assert [p.config_hash for p in from_file.points] == [p.config_hash for p in in_process.points]
