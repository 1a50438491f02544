"""Typed result records round-trip the ``results.json`` document exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bayesguide.cli import main
from bayesguide.results import CandidateRecord, RunResults, load_results

EXPERIMENT = """
[data]
source = "teacher"
[network]
hidden = [6]
activation = "tanh"
[prior]
kind = "group"
[fit]
steps = 40
lr = 0.02
[select]
n_candidates = 3
fine_tune = 5
loo = true
[output]
dir = "{out}"
"""


def test_a_run_directory_round_trips_through_the_records(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(out=tmp_path / "run"))
    assert main(["run", str(path), "--quiet"]) == 0
    document = load_results(tmp_path / "run")
    records = RunResults.load(tmp_path / "run")
    assert records.to_json() == document
    assert json.loads(json.dumps(records.to_json())) == document
    assert records.best == document["best"] and records.fit is not None and records.fit.fitter == "map"
    assert records.timings["total_s"] > 0
    for cand, raw in zip(records.candidates, document["candidates"], strict=True):
        assert cand.columns["elpd_loo"] == raw["elpd_loo"]  # the LOO columns travel in `columns`
        row = cand.row()  # and back to a comparison row
        assert row["train_metric"] == raw["metrics"]["train"] and row["name"] == raw["name"]
        assert CandidateRecord.from_row(row, cand.kept).row() == row


def test_nan_becomes_null_and_back() -> None:
    row = {"name": "w2", "widths": [2], "n_params": 9, "flops": 18, "status": "failed: x",
           "log_evidence": math.nan, "train_metric": 0.5, "prior_used": "own"}
    record = CandidateRecord.from_row(row, {"0": [0, 1]})
    assert record.log_evidence is None and record.to_json()["log_evidence"] is None
    assert math.isnan(record.row()["log_evidence"])
    assert CandidateRecord.from_json(record.to_json()) == record
    with pytest.raises(KeyError):
        CandidateRecord.from_row({"widths": [1]}, {})


def test_the_environment_round_trips_and_older_files_have_none() -> None:
    import os
    import platform

    from bayesguide.results import DataRecord, EnvironmentRecord

    env = EnvironmentRecord.current(threads=3)
    assert env.threads == 3 and env.cpu_count == os.cpu_count() and env.platform == platform.platform()
    assert env.versions["python"] == platform.python_version()
    assert set(env.versions) == {"bayesguide", "torch", "pyro", "numpy", "python"}
    old = RunResults(status="running", config={}, data=DataRecord(name="d", task="regression", n_train=3),
                     fit=None, metric="rmse")
    assert "environment" not in old.to_json()  # a file written before the key existed reads back the same
    assert RunResults.from_json(old.to_json()) == old
    new = RunResults.from_json({**old.to_json(), "environment": env.to_json()})
    assert new.environment == env and new.to_json()["environment"]["threads"] == 3
