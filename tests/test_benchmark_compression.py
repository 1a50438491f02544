"""benchmarks/compression.py in smoke mode: every method on every task, resumable, honest summary."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow  # over ~5 s: run by `python -m pytest -q -m slow` (and in .ci/run)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compression.py"


@pytest.fixture(scope="module")
def compression() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compression", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compression"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(compression: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compression")
    threads = torch.get_num_threads()
    try:
        assert compression.main(["--smoke", "--workers", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _peers(compression: ModuleType) -> list[str]:
    """The peers the smoke run includes (skipped when their library is not installed)."""
    return list(compression.PEERS) if compression.torch_pruning_available() else []


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


def test_every_method_runs_on_every_task(compression: ModuleType, smoke_run: Path) -> None:
    records = _records(smoke_run)
    keys = {(r["task"], r["method"]) for r in records}
    expected = {(t, m) for t in compression.DEFAULT_TASKS
                for m in [*compression.METHODS, *_peers(compression), "reference"]}
    assert keys == expected
    failed = [(r["key"], r["status"]) for r in records if r["status"] != "ok"]
    assert not failed
    for r in records:
        units = [row["units"] for row in r["path"]]
        assert units == sorted(units, reverse=True) and len(units) >= 2  # a path, largest first
        if r["method"] in compression.PEERS:
            assert "evidence" not in r  # no model, no evidence pick
        elif r["method"] != "reference":
            ev = r["evidence"]
            assert "error" not in ev, ev
            assert ev["fine_tune_steps"] == 2 and ev["selected"] in {c["name"] for c in ev["candidates"]}
            assert len(ev["candidates"]) == len(r["path"])  # smoke mode scores every path point


def test_summary_matches_a_hand_recomputation(compression: ModuleType, smoke_run: Path) -> None:
    records = {r["key"]: r for r in _records(smoke_run)}
    summary = json.loads((smoke_run / "summary.json").read_text())["summary"]
    refs = {(r["task"], r["seed"]): r["path"][0]["test"] for r in records.values() if r["method"] == "reference"}
    checked = 0
    for task, methods in summary.items():
        spec = compression.TASKS[task]
        for method, entry in methods.items():
            for seed in entry["seeds"]:
                rec = records[f"{task}|{method}|{entry['strength']:g}|{seed['seed']}"]
                ref = refs[(task, seed["seed"])]
                # the rule, written out: fewest units whose test metric is within tolerance of the reference
                best_units = None
                for row in rec["path"]:
                    ok = (row["test"] >= ref - 0.01) if spec.likelihood == "categorical" else (
                        row["test"] <= ref * 1.05)
                    if ok and (best_units is None or row["units"] < best_units):
                        best_units = row["units"]
                got = seed["small"]["units"] if seed["small"] is not None else None
                assert got == best_units, (task, method)
                checked += 1
    assert checked == len(compression.DEFAULT_TASKS) * (len(compression.METHODS) + len(_peers(compression)))


def test_page_has_every_table_row_and_the_claims(compression: ModuleType, smoke_run: Path) -> None:
    page = (smoke_run / "benchmarks.md").read_text()
    for task in (compression.TASKS[t] for t in compression.DEFAULT_TASKS):
        assert f"### {task.title}" in page
    for method in [*compression.METHODS.values(), *(compression.PEERS[p] for p in _peers(compression))]:
        assert page.count(f"| {method.title} |") >= len(compression.DEFAULT_TASKS)
    for section in ("## Protocol", "## Claims, checked", "Guided against uniform", "evidence-selected",
                    "Who keeps the fewest units at equal accuracy",
                    "## What the numbers show", "<!-- notes:start -->"):
        assert section in page
    assert (smoke_run / "img" / "benchmarks" / "digits-mlp.png").stat().st_size > 1000


def test_rerun_resumes_and_keeps_hand_notes(
    compression: ModuleType, smoke_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = smoke_run / "benchmarks.md"
    text = page.read_text()
    start, end = text.index("<!-- notes:start -->"), text.index("<!-- notes:end -->")
    page.write_text(text[:start] + "<!-- notes:start -->\nhand-written verdicts\n" + text[end:])
    n_lines = len((smoke_run / "runs.jsonl").read_text().splitlines())
    capsys.readouterr()
    assert compression.main(["--smoke", "--workers", "1", "--out", str(smoke_run)]) == 0
    assert "fits to run" not in capsys.readouterr().out  # everything was already stored
    assert len((smoke_run / "runs.jsonl").read_text().splitlines()) == n_lines
    assert "hand-written verdicts" in page.read_text()


def test_a_failing_fit_is_recorded_and_retried(
    compression: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fit = compression._fit

    def broken(job: Any, task: Any, split: Any) -> Any:
        if job.method == "uniform-l2":
            raise RuntimeError("simulated divergence")
        return real_fit(job, task, split)

    args = ["--smoke", "--workers", "1", "--out", str(tmp_path), "--tasks", "teacher",
            "--methods", "uniform-l2", "guided-l2"]
    monkeypatch.setattr(compression, "_fit", broken)
    assert compression.main(args) == 0
    status = {r["method"]: r["status"] for r in _records(tmp_path)}
    assert status["uniform-l2"] == "failed: RuntimeError: simulated divergence"
    assert status["guided-l2"] == "ok" and status["reference"] == "ok"
    assert "## Failed fits" in (tmp_path / "benchmarks.md").read_text()
    monkeypatch.setattr(compression, "_fit", real_fit)
    assert compression.main(args) == 0
    latest = {r["method"]: r["status"] for r in _records(tmp_path)}  # later lines win
    assert latest["uniform-l2"] == "ok"
    assert "## Failed fits" not in (tmp_path / "benchmarks.md").read_text()


def test_fewest_units_table_matches_a_hand_recomputation(compression: ModuleType, smoke_run: Path) -> None:
    summary = json.loads((smoke_run / "summary.json").read_text())["summary"]
    page = (smoke_run / "benchmarks.md").read_text()
    table = page[page.index("### Who keeps the fewest units"):]
    rows = 0
    for task, methods in summary.items():
        def units(entry: dict[str, Any]) -> float:  # the rule, written out: a seed with none counts as full
            seeds = [s for s in entry["seeds"] if s["status"] == "ok"]
            return sum(s["small"]["units"] if s["small"] else s["full_units"] for s in seeds) / len(seeds)

        ours = {m: units(e) for m, e in methods.items() if m in compression.METHODS}
        best = min(ours.values())
        for p in _peers(compression):
            theirs = units(methods[p])
            verdict = ("bayesguide keeps fewer" if best < theirs - 1 else "**the peer keeps fewer**"
                       if theirs < best - 1 else "tie")
            title = compression.TASKS[task].title
            line = next(line for line in table.splitlines() if line.startswith(f"| {title} |"))
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[4] == f"{best:.0f}" and cells[6] == f"{theirs:.0f}" and cells[7] == verdict, line
            rows += 1
    assert rows == len(compression.DEFAULT_TASKS) * len(_peers(compression))


def test_the_peer_is_skipped_with_a_note_without_torch_pruning(
    compression: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(compression, "torch_pruning_available", lambda: False)
    args = ["--smoke", "--workers", "1", "--out", str(tmp_path), "--tasks", "teacher",
            "--methods", "guided-l2", "torch-pruning"]
    assert compression.main(args) == 0
    assert "the Torch-Pruning peer is skipped" in capsys.readouterr().out
    assert {r["method"] for r in _records(tmp_path)} == {"reference", "guided-l2"}


def test_a_fit_stored_with_another_budget_is_refitted(
    compression: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--smoke", "--workers", "1", "--out", str(tmp_path), "--tasks", "teacher", "--methods", "guided-l2"]
    assert compression.main(args) == 0
    runs = tmp_path / "runs.jsonl"
    records = _records(tmp_path)
    fit = next(r for r in records if r["method"] == "guided-l2")
    ref = next(r for r in records if r["method"] == "reference")
    changed = {fit["key"]: {**fit, "steps": fit["steps"] + 1},  # fitted with other steps
               ref["key"]: {**ref, "budget": {**ref["budget"], "lr": 2 * ref["budget"]["lr"]}}}  # another lr
    runs.write_text("".join(json.dumps(changed.get(r["key"], r)) + "\n" for r in records))
    capsys.readouterr()
    assert compression.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("1 fits to run") == 2  # the reference (phase 1), then the guided fit (phase 2)
    latest = {r["key"]: r for r in _records(tmp_path)}
    assert latest[fit["key"]]["steps"] == fit["steps"] and latest[ref["key"]]["budget"] == ref["budget"]
    assert compression.main(args) == 0 and "fits to run" not in capsys.readouterr().out  # now all current


def test_the_evidence_refit_is_part_of_a_scored_fits_budget(compression: ModuleType) -> None:
    """A scored fit is reused only with the task's re-fit and the current evidence record.

    A record stored before the re-fit was recorded counts as 100 steps at the task's lr
    and as evidence record 1 (no κ interval): re-scored; one stored before the re-fit's
    schedule was recorded counts as re-fitted at a constant rate.
    """
    def record(task: str, method: str, refit: list[float] | None,
               schedule: str | None = None) -> tuple[dict[str, Any], Any]:
        t = compression.TASKS[task]
        job = compression.Job(task, method, 1e-3, 0, t.steps)
        budget: dict[str, Any] = {"batch_size": t.batch_size, "lr": t.lr, "strength_scale": t.strength_scale}
        if refit is not None:
            budget["refit"] = refit
            budget["evidence_record"] = compression.EVIDENCE_RECORD
        if schedule is not None:
            budget["refit_schedule"] = schedule
        return {"status": "ok", "steps": t.steps, "budget": budget}, job

    assert compression.TASKS["digits-mlp"].refit == (100, 3e-3)  # the default: the task's own lr
    assert compression.TASKS["mnist1d-mlp"].refit == (300, 1e-3)
    assert compression.TASKS["digits-mlp"].refit_schedule == "constant"
    assert compression.TASKS["mnist1d-mlp"].refit_schedule == "cosine"
    assert compression._done(*record("digits-mlp", "guided-l1", [100, 3e-3]))  # no schedule stored: constant
    assert not compression._done(*record("digits-mlp", "guided-l1", [100, 3e-3], "cosine"))
    assert not compression._done(*record("digits-mlp", "guided-l1", None))  # legacy record: no κ interval
    assert not compression._done(*record("mnist1d-mlp", "guided-l1", None))  # legacy record, protocol changed
    assert not compression._done(*record("mnist1d-mlp", "guided-l1", [300, 1e-3]))  # re-fitted at a constant rate
    assert compression._done(*record("mnist1d-mlp", "guided-l1", [300, 1e-3], "cosine"))
    assert not compression._done(*record("mnist1d-mlp", "guided-l1", [100, 1e-2], "cosine"))
    # --refit-schedule overrides the task's schedule through the job: what the job re-fits with and reuses
    stored, job = record("mnist1d-mlp", "guided-l1", [300, 1e-3], "cosine")
    control = compression.Job(job.task, job.method, job.strength, job.seed, job.steps, refit_schedule="constant")
    assert control.task_spec.refit_schedule == "constant" and control.task_spec.refit == (300, 1e-3)
    assert not compression._done(stored, control)
    assert compression._done(*record("mnist1d-mlp", "guided-l1", [300, 1e-3], "constant")[:1], control)
    # fits the evidence does not score keep their record whatever the re-fit
    assert compression._done(*record("mnist1d-mlp", "reference", None))
    assert compression._done(*record("mnist1d-mlp", "torch-pruning", [100, 1e-2]))


def test_the_schedule_is_part_of_every_stored_fits_budget(compression: ModuleType) -> None:
    """A fit is reused only under its task's learning-rate schedule, peers and references too.

    Records stored before the schedule was recorded were fitted with the cosine schedule.
    """
    cnn = compression.TASKS["mnist1d-cnn"]
    assert cnn.schedule == "constant" and compression.TASKS["digits-mlp"].schedule == "cosine"
    for method in ("guided-l1", "reference", "torch-pruning"):
        for task, stored, reused in (("digits-mlp", None, True), ("digits-mlp", "constant", False),
                                     ("mnist1d-cnn", None, False), ("mnist1d-cnn", "constant", True)):
            t = compression.TASKS[task]
            budget = {k: v for k, v in compression._budget(t).items() if k != "schedule"}
            if stored is not None:
                budget["schedule"] = stored
            record = {"status": "ok", "steps": t.steps, "budget": budget}
            assert compression._done(record, compression.Job(task, method, 1e-3, 0, t.steps)) is reused, \
                (method, task, stored)
