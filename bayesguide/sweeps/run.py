"""Running a sweep: place the points, skip the finished ones, run the rest, report.

[`run_sweep`][bayesguide.sweeps.run.run_sweep] is ``bayesguide sweep`` and [`bayesguide.sweep`][] — it

1. places every point in a run directory under ``<dir>/points/``: the directory that
   already holds this configuration's results (found by its configuration hash, so
   an edited grid keeps its finished points), else ``points/<name>`` (or
   ``points/<name>-<hash>`` when that name holds another configuration's results,
   which are never overwritten);
2. takes the summary of every point already complete there — a rerun does only the
   missing, failed or interrupted points (an interrupted point resumes from its saved
   fit and candidates, as ``bayesguide run`` does);
3. submits the rest to the executor ([`bayesguide.sweeps.executors`][]), the points
   with the most work first ([`Point.work`][bayesguide.sweeps.spec.Point.work]: network size × steps) so that
   the sweep does not end waiting on one long point, and records
   each outcome in ``sweep.json`` ([`bayesguide.sweeps.state`][]) as it arrives; a
   point whose worker died is submitted again, up to ``retries`` times;
4. writes the sweep report (``sweep-report.html``, ``sweep-report.md``).

One progress bar counts the points; each finished point prints one status line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from bayesguide.report import write_sweep_report
from bayesguide.results import load_results
from bayesguide.sweeps.executors import WorkerLost, make_executor
from bayesguide.sweeps.point import PointTask, completed_summary
from bayesguide.sweeps.spec import Point, SweepSpec
from bayesguide.sweeps.state import FINAL, SweepState

__all__ = ["SweepResults", "place_points", "run_sweep"]


@dataclass(frozen=True)
class SweepResults:
    """A finished (or interrupted) sweep: its directory and its ``sweep.json`` document."""

    dir: Path
    document: dict[str, Any]

    @property
    def points(self) -> list[dict[str, Any]]:
        return list(self.document["points"])

    @property
    def complete(self) -> bool:
        """Whether every point is complete."""
        return self.document["status"] == "complete"

    def table(self) -> pd.DataFrame:
        """One row per point: its grid values (one column per key), status, pick, evidence and metrics."""
        rows = []
        for p in self.points:
            row = {"name": p["name"], **p["overrides"]}
            row.update({k: p.get(k) for k in ("status", "best", "units", "n_params", "log_evidence",
                                               "posterior_prob", "train_metric", "test_metric", "full_test_metric",
                                               "wall_s", "error")})
            rows.append(row)
        return pd.DataFrame(rows)


def _existing(out: Path) -> dict[str, str]:
    """configuration hash → directory name of the runs already under ``out/points``."""
    found: dict[str, str] = {}
    root = out / "points"
    if not root.is_dir():
        return found
    for child in sorted(root.iterdir()):
        with contextlib.suppress(OSError, ValueError):
            chash = load_results(child).get("config_hash")
            if isinstance(chash, str):
                found.setdefault(chash, child.name)
    return found


def place_points(spec: SweepSpec) -> list[Point]:
    """Every point of ``spec`` in its run directory (see the module docstring, step 1)."""
    existing = _existing(spec.dir)
    taken = set(existing.values())
    placed = []
    for point in spec.points:
        name = existing.get(point.config_hash)
        if name is None:
            name = point.name
            if name in taken or (spec.dir / "points" / name / "results.json").exists():
                name = f"{point.name}-{point.config_hash[:8]}"
            taken.add(name)
        placed.append(point.with_dir(point.name, spec.dir / "points" / name))
    return placed


def _line(name: str, summary: dict[str, Any]) -> str:
    """One status line for a finished point."""
    status = summary.get("status")
    if status != "complete":
        return f"{name}: {status} — {summary.get('error')}"
    parts = [f"{name}: best {summary.get('best')}"]
    if summary.get("log_evidence") is not None:
        parts.append(f"log evidence {summary['log_evidence']:.1f}")
    if summary.get("test_metric") is not None:
        parts.append(f"test {summary.get('metric')} {summary['test_metric']:.4f}")
    if summary.get("wall_s") is not None:
        parts.append(f"{summary['wall_s']:.1f} s")
    if summary.get("worker"):
        parts.append(f"on {summary['worker']}")
    return ", ".join(parts)


def run_sweep(spec: SweepSpec, *, progress: bool = True, log: Callable[[str], None] = print) -> SweepResults:
    """Run every point of ``spec`` not yet complete; return the sweep's results.

    Parameters
    ----------
    spec
        A validated sweep ([`bayesguide.sweeps.load_sweep`][] / [`parse_sweep`][bayesguide.sweeps.parse_sweep]).
    progress
        Show a progress bar over the points (status lines go through ``log`` either way).
    log
        Where the status lines go.

    Returns
    -------
    SweepResults
        ``complete`` is False when a point failed (its error is in ``sweep.json`` and the
        report) or another invocation was running it; run the sweep again to retry.
    """
    spec.dir.mkdir(parents=True, exist_ok=True)
    points = place_points(spec)
    with make_executor(spec.settings) as executor:
        info = executor.describe()
        state = SweepState(spec, points, info)
        todo = []
        for point in points:
            done = completed_summary(Path(point.experiment.output.dir), point.config_hash)
            if done is not None:
                state.points[point.name].update({k: v for k, v in done.items() if k in state.points[point.name]})
                state.document["metric"] = state.document["metric"] or done.get("metric")
            else:
                todo.append(point)
        state.save()
        log(f"sweep  {len(points)} points in {spec.dir}: {len(points) - len(todo)} already complete, "
            f"{len(todo)} to run on {executor.name} ({info['workers']} worker(s))")
        for point in sorted(todo, key=lambda p: -p.work):  # the longest first; ties in the grid's order
            executor.submit(PointTask(point.name, point.experiment.to_dict(), spec.settings.threads))
        bar = tqdm(total=len(todo), desc="points", unit="point", disable=not progress or not todo, leave=False)
        write = bar.write if progress and todo else log
        try:
            for task, outcome in executor.completed():
                record = state.points[task.name]
                record["attempts"] += 1
                if isinstance(outcome, WorkerLost):
                    if record["attempts"] <= spec.settings.retries:
                        write(f"{task.name}: {outcome}; running it again "
                              f"(attempt {record['attempts'] + 1} of {spec.settings.retries + 1})")
                        executor.submit(task)
                        continue
                    outcome = {"status": "failed", "error": f"worker lost {record['attempts']} times: {outcome}"}
                state.set(task.name, **outcome)
                bar.update()
                write(_line(task.name, outcome))
        finally:
            bar.close()
            _refresh(state, points)
            ended = all(p["status"] == "complete" for p in state.points.values())
            state.save("complete" if ended else "incomplete")
    paths = write_sweep_report(state.document, spec.dir)
    log(f"wrote {', '.join(str(p) for p in paths)}")
    return SweepResults(spec.dir, state.document)


def _refresh(state: SweepState, points: list[Point]) -> None:
    """Points left busy or pending: completed meanwhile by another invocation?"""
    for point in points:
        record = state.points[point.name]
        if record["status"] not in FINAL:
            done = completed_summary(Path(point.experiment.output.dir), point.config_hash)
            if done is not None:
                record.update({k: v for k, v in done.items() if k in record})
