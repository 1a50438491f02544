"""``benchmarks/teacher_student.py``: its teachers, its tally, and one case run as a user would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_student.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("teacher_student_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["teacher_student_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_teachers_are_deterministic_and_as_described(bench: ModuleType) -> None:
    a = bench.teacher_data("relu", 3, 4, 50, 0.0, seed=1, n_test=20)
    b = bench.teacher_data("relu", 3, 4, 50, 0.0, seed=1, n_test=20)
    assert a["X"].shape == (50, 4) and a["X_test"].shape == (20, 4) and a["y"].shape == (50,)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert len(bench.cases(quick=False)) == 36 and len(bench.cases(quick=True)) == 4


def test_summary_counts_exact_and_within_one(bench: ModuleType) -> None:
    rec = {"activation": "tanh", "d": 4, "n": 300, "seed": 0, "posterior": 0.9, "test_rmse_over_noise": 1.1}
    records = [{**rec, "method": "m", "width": 5, "picked": 5}, {**rec, "method": "m", "width": 5, "picked": 6},
               {**rec, "method": "m", "width": 2, "picked": 4}, {**rec, "method": "m", "width": 8, "picked": 8}]
    text = bench.summarise(records)
    assert "m            4    50%       75%" in text
    assert "misses: tanh w5 d4 n300 s0 -> 6; tanh w2 d4 n300 s0 -> 4" in text


@pytest.mark.slow
def test_one_case_runs_end_to_end(bench: ModuleType, tmp_path: Path) -> None:
    case = {"activation": "tanh", "width": 2, "d": 4, "n": 300, "noise": 0.2, "seed": 1}
    record = bench.run_case(case, "default", tmp_path, {"fit": {"steps": 300}, "select": {"fine_tune": 50}})
    assert 1 <= record["picked"] <= 6 and record["path"][0] <= 6
    assert 0.0 <= record["posterior"] <= 1.0 and record["test_rmse_over_noise"] > 0
