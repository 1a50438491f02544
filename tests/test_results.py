"""Typed result records round-trip the ``results.json`` document exactly."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayesguide.cli import main
from bayesguide.results import CandidateRecord, DataRecord, FitRecord, RunResults, load_results, significant

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


def _document(n_candidates: int = 3) -> RunResults:
    """A document with a fit (its unit norms at full float64 precision) and candidates, NaN included."""
    rng = np.random.default_rng(0)
    fit = FitRecord(method="map", prior="GuidedLaplace(λ=0.1)", steps=100, wall_time_s=1.5, stop_reason="steps",
                    final_loss=0.25, losses=rng.random(50).tolist(), loss_steps=list(range(50)),
                    unit_norms={"0": rng.random((20, 16)).tolist(), "2": (rng.random((20, 8)) * 1e-9).tolist()},
                    norm_steps=list(range(20)), loss_terms={"nll": [0.5, math.nan], "penalty": [0.1, 0.2]})
    cands = tuple(CandidateRecord(name=f"w{16 - i}", widths=[16 - i, 8], kept={"0": list(range(16 - i))},
                                  n_params=100 - i, flops=None, log_evidence=math.nan if i == 1 else -10.0 - i,
                                  status="ok", metrics={"train": 0.9, "test": None}, columns={"elpd_loo": -3.5})
                  for i in range(n_candidates))
    return RunResults(status="running", config={"fit": {"steps": 100}, "name": "ünïcode"},
                      data=DataRecord(name="d", task="classification", n_train=10), fit=fit, metric="accuracy",
                      candidates=cands, flags=("a flag",), timings={"total_s": 1.0}, config_hash="abc")


def test_the_file_is_compact_and_reads_back_as_the_document(tmp_path: Path) -> None:
    doc = _document()
    path = doc.save(tmp_path)
    text = path.read_text()
    assert json.loads(text) == doc.to_json()
    assert RunResults.load(tmp_path) == RunResults.from_json(doc.to_json())
    lines = text.splitlines()
    assert len(lines) == len(doc.to_json()) + len(doc.candidates)  # one per top-level key and per candidate
    assert all(", " not in line.replace('", "', "") and not line.startswith(" ") for line in lines)
    indented = json.dumps(doc.to_json(), indent=1)  # how the file was written before
    assert len(text) < 0.8 * len(indented)


def test_files_written_indented_by_older_versions_still_load(tmp_path: Path) -> None:
    doc = _document()
    (tmp_path / "results.json").write_text(json.dumps(doc.to_json(), indent=1))
    assert RunResults.load(tmp_path) == RunResults.from_json(doc.to_json())
    assert load_results(tmp_path) == doc.to_json()


def test_the_memo_serialises_unchanged_records_once_and_changed_ones_again(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    fit_to_json, cand_to_json = FitRecord.to_json, CandidateRecord.to_json

    def fit_counted(self: FitRecord) -> dict[str, object]:
        calls.append("fit")
        return fit_to_json(self)

    def cand_counted(self: CandidateRecord) -> dict[str, object]:
        calls.append(self.name)
        return cand_to_json(self)

    monkeypatch.setattr(FitRecord, "to_json", fit_counted)
    monkeypatch.setattr(CandidateRecord, "to_json", cand_counted)
    memo: dict[int, tuple[object, str]] = {}
    doc = _document(2)
    first = doc.dumps(memo)
    assert calls == ["fit", "w16", "w15"]
    extra = dataclasses.replace(doc.candidates[0], name="w14", widths=[14, 8])
    grown = dataclasses.replace(doc, candidates=(*doc.candidates, extra), status="complete")
    second = grown.dumps(memo)
    assert calls == ["fit", "w16", "w15", "w14"]  # only the new candidate
    assert json.loads(second) == grown.to_json() and json.loads(first) == doc.to_json()
    assert grown.fit is not None
    fit = dataclasses.replace(grown.fit, final_loss=0.125)  # a new fit record is serialised afresh
    third = dataclasses.replace(grown, fit=fit).dumps(memo)
    assert json.loads(third)["fit"]["final_loss"] == 0.125
    assert len(memo) == 4  # the memo holds this document's records only


def test_unit_norms_keep_float32_precision_in_seven_digits() -> None:
    values = [0.509972333908081, 1.2345678912e-9, 123456.789, 0.0, -2.5, math.nan]
    rounded = significant([values, [values[0]]])
    assert rounded[0][:5] == [0.5099723, 1.234568e-9, 123456.8, 0.0, -2.5] and math.isnan(rounded[0][5])
    for x, r in zip(values[:5], rounded[0][:5]):
        assert abs(r - x) <= 5e-7 * abs(x)
        assert len(json.dumps(r)) <= 13


def test_a_fit_record_rounds_its_unit_norms(tmp_path: Path) -> None:
    import torch

    import bayesguide as bg
    from bayesguide.report.convert import fit_record

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedLaplace(0.1)), X, y, steps=12, progress=False)
    record = fit_record(fit)
    exact = np.asarray(fit.unit_norms["0"], dtype=np.float64)
    got = np.asarray(record.unit_norms["0"])
    assert got.shape == exact.shape
    np.testing.assert_allclose(got, exact, rtol=5e-7, atol=0)
    assert all(float(f"{v:.7g}") == v for v in got.ravel())
