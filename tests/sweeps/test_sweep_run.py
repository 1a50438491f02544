"""Running sweeps serially: every point an ordinary run, sweep.json their index, reruns
do only what is missing, an edited grid keeps the points it still contains, a failing
point does not stop the others."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bayesguide as bg
import bayesguide.sweeps.point as point_module
from bayesguide.cli import main
from bayesguide.results import load_results
from bayesguide.sweeps import load_sweep, run_sweep, summarize


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the run directory of every run the sweep starts."""
    runs: list[str] = []
    real = point_module.run_experiment

    def counted(exp: Any, **kwargs: Any) -> dict[str, Any]:
        runs.append(Path(exp.output.dir).name)
        return real(exp, **kwargs)

    monkeypatch.setattr(point_module, "run_experiment", counted)
    return runs


def test_a_serial_sweep_writes_one_run_per_point_and_an_index(sweep_file: Callable[..., Path],
                                                                tmp_path: Path) -> None:
    res = bg.sweep(sweep_file(tmp_path), progress=False)
    out = tmp_path / "out"
    assert res.complete and res.dir == out
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["status"] == "complete" and doc["kind"] == "sweep" and doc["metric"] == "accuracy"
    assert doc["grid"] == {"prior.strength": [0.5, 2.0], "fit.seed": [0, 1]}
    assert doc["executor"]["name"] == "serial"
    assert len(doc["points"]) == 4
    for p in doc["points"]:
        run = load_results(out / p["dir"])  # an ordinary run directory
        assert run["status"] == "complete"
        assert run["config"]["prior"]["strength"] == p["overrides"]["prior.strength"]
        assert run["config"]["fit"]["seed"] == p["overrides"]["fit.seed"]
        # the index holds the run's own pick, evidence and metrics
        best = next(c for c in run["candidates"] if c["name"] == run["best"])
        assert p["best"] == run["best"] and p["widths"] == best["widths"] and p["units"] == sum(best["widths"])
        assert p["log_evidence"] == pytest.approx(best["log_evidence"], abs=0)
        assert p["test_metric"] == best["metrics"]["test"]
        assert p["full_test_metric"] == run["fit"]["test_metric"]
        assert p["attempts"] == 1 and p["error"] is None and p["worker"]
        assert (out / p["dir"] / "report.html").is_file()
    for name in ("sweep-report.html", "sweep-report.md"):
        assert (out / name).is_file()
    table = res.table()
    assert list(table["prior.strength"]) == [0.5, 0.5, 2.0, 2.0] and set(table["status"]) == {"complete"}
    # bayesguide report works on a point
    assert main(["report", str(out / doc["points"][0]["dir"])]) == 0


def test_the_points_with_the_most_work_are_submitted_first(sweep_file: Callable[..., Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[list[int], int]] = []

    def record(exp: Any, **kwargs: Any) -> dict[str, Any]:
        started.append((exp.network.hidden, exp.fit.seed))
        raise RuntimeError("recorded, not run")

    monkeypatch.setattr(point_module, "run_experiment", record)
    grid = '"network.hidden" = [[3], [8], [4, 4]]\n"fit.seed" = [0, 1]'
    res = bg.sweep(sweep_file(tmp_path, grid=grid), progress=False)
    # work = (units + weights between hidden layers) x steps: [4, 4] 24, [8] 8, [3] 3; ties in grid order
    assert started == [([4, 4], 0), ([4, 4], 1), ([8], 0), ([8], 1), ([3], 0), ([3], 1)]
    # sweep.json keeps the grid's order
    assert [p["overrides"]["network.hidden"] for p in res.points] == [[3], [3], [8], [8], [4, 4], [4, 4]]
    assert {p["status"] for p in res.points} == {"failed"}


@pytest.mark.slow
def test_a_rerun_runs_nothing_and_a_removed_point_only_that(sweep_file: Callable[..., Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = sweep_file(tmp_path)
    first = bg.sweep(path, progress=False)
    runs = _counting(monkeypatch)
    again = bg.sweep(path, progress=False)
    assert runs == [] and again.complete
    assert [p["log_evidence"] for p in again.points] == [p["log_evidence"] for p in first.points]
    gone = tmp_path / "out" / first.points[1]["dir"]
    (gone / "results.json").unlink()
    bg.sweep(path, progress=False)
    assert runs == [gone.name]


@pytest.mark.slow
def test_an_edited_grid_keeps_the_points_it_still_contains(sweep_file: Callable[..., Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bg.sweep(sweep_file(tmp_path), progress=False)
    runs = _counting(monkeypatch)
    # a third strength, and a key at its default value: the four old points are the same experiments
    grid = '"prior.strength" = [0.5, 2.0, 8.0]\n"fit.seed" = [0, 1]\n"network.activation" = ["tanh"]'
    res = bg.sweep(sweep_file(tmp_path, grid=grid), progress=False)
    assert sorted(runs) == ["strength=8.0,seed=0,activation=tanh", "strength=8.0,seed=1,activation=tanh"]
    assert len(res.points) == 6 and res.complete
    old = {p["name"]: p["dir"] for p in res.points if p["overrides"]["prior.strength"] != 8.0}
    assert sorted(Path(d).name for d in old.values()) == ["strength=0.5,seed=0", "strength=0.5,seed=1",
                                                          "strength=2.0,seed=0", "strength=2.0,seed=1"]


@pytest.mark.slow
def test_a_changed_base_never_overwrites_old_results(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    bg.sweep(sweep_file(tmp_path, grid='"fit.seed" = [0]'), progress=False)
    before = (tmp_path / "out" / "points" / "seed=0" / "results.json").read_text()
    res = bg.sweep(sweep_file(tmp_path, grid='"fit.seed" = [0]', steps=31), progress=False)
    assert res.complete
    assert (tmp_path / "out" / "points" / "seed=0" / "results.json").read_text() == before
    (point,) = res.points
    assert point["dir"].startswith("points/seed=0-") and load_results(tmp_path / "out" / point["dir"])[
        "config"]["fit"]["steps"] == 31


@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_others_finish(sweep_file: Callable[..., Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = point_module.run_experiment

    def fails_at_seed_1(exp: Any, **kwargs: Any) -> dict[str, Any]:
        if exp.fit.seed == 1:
            raise FloatingPointError("the loss became NaN at step 3")
        return real(exp, **kwargs)

    monkeypatch.setattr(point_module, "run_experiment", fails_at_seed_1)
    path = sweep_file(tmp_path)
    assert main(["sweep", str(path), "--quiet"]) == 1
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert doc["status"] == "incomplete"
    status = {p["name"]: (p["status"], p["error"]) for p in doc["points"]}
    assert status["strength=0.5,seed=1"] == ("failed", "FloatingPointError: the loss became NaN at step 3")
    assert status["strength=0.5,seed=0"] == ("complete", None)
    assert sum(s == "complete" for s, _ in status.values()) == 2
    monkeypatch.setattr(point_module, "run_experiment", real)  # fixed: the rerun does the two failed points
    runs = _counting(monkeypatch)
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert sorted(runs) == ["strength=0.5,seed=1", "strength=2.0,seed=1"]


@pytest.mark.slow
def test_the_python_api_takes_a_base_experiment_and_a_grid(tmp_path: Path, sweep_file: Callable[..., Path]) -> None:
    spec = load_sweep(sweep_file(tmp_path))
    base = {t: dict(v) for t, v in spec.base.items()}
    res = bg.sweep(base, grid={"prior.strength": [0.5]}, points=[{"prior.strength": 3.0}],
                   dir=tmp_path / "api", executor="serial", progress=False)
    assert [p["name"] for p in res.points] == ["strength=0.5", "strength=3.0"] and res.complete
    with pytest.raises(TypeError, match="the grid and points come from the file"):
        bg.sweep(tmp_path / "sweep.toml", grid={"fit.seed": [0]})
    # the spec object runs too, with a setting changed: the same points, already complete
    again = run_sweep(load_sweep(sweep_file(tmp_path), dir=str(tmp_path / "api")), progress=False)
    assert len(again.points) == 4 and again.complete
    reused = next(p for p in again.points if p["name"] == "strength=0.5,seed=0")
    assert reused["dir"] == "points/strength=0.5"  # the same experiment: its directory from the first sweep


def test_summaries_read_odd_documents() -> None:
    assert summarize({"status": "running"})["status"] == "failed"
    s = summarize({"status": "complete", "best": "w1", "candidates": [{"name": "w1", "widths": [1],
                                                                        "log_evidence": "x"}]})
    assert s["units"] == 1 and s["log_evidence"] is None and s["n_flags"] == 0


def test_cli_errors_exit_2_before_any_work(tmp_path: Path, sweep_file: Callable[..., Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = sweep_file(tmp_path, grid='"prior.kind" = ["nope"]')
    assert main(["sweep", str(path)]) == 2
    assert "point kind=nope" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--workers", "-1"])
