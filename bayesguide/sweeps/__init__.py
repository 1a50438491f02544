"""Sweeps: many experiments over a grid of settings, on this machine or a Dask cluster.

``bayesguide sweep SWEEP.toml`` and [`sweep`][bayesguide.sweep] run a base experiment at every point
of a ``[grid]`` (plus ``[[point]]`` s), each point an ordinary run directory (so
``bayesguide report`` works on it) under the sweep directory, and write ``sweep.json``
(point → status, pick, evidence, metrics, wall time; rewritten atomically after every
point) and the sweep report (``sweep-report.html`` / ``.md``: the points, each grid
key's effect on the selected width, the evidence and the test metric, and whether the
evidence orders the settings like the held-out data). Rerunning a sweep does only the
points not complete; an edited grid keeps the points it still contains.

* [`spec`][bayesguide.sweeps.spec] — the sweep file and its points;
* [`point`][bayesguide.sweeps.point] — one point, run in a worker;
* [`executors`][bayesguide.sweeps.executors] — ``serial``, ``local`` (process pool), ``dask``;
* [`state`][bayesguide.sweeps.state] — ``sweep.json``;
* [`run`][bayesguide.sweeps.run] — the whole sweep.

The sweep directory is the only state the workers share: on a cluster it must be on
storage every worker sees (see docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayesguide.experiment import Experiment
from bayesguide.sweeps.executors import DaskExecutor, Executor, LocalExecutor, SerialExecutor, make_executor
from bayesguide.sweeps.point import PointTask, run_point, summarize
from bayesguide.sweeps.run import SweepResults, place_points, run_sweep
from bayesguide.sweeps.spec import EXECUTORS, Point, SweepError, SweepSettings, SweepSpec, load_sweep, parse_sweep
from bayesguide.sweeps.state import SWEEP_FILE

__all__ = [
    "EXECUTORS", "SWEEP_FILE", "DaskExecutor", "Executor", "LocalExecutor", "Point", "PointTask", "SerialExecutor",
    "SweepError", "SweepResults", "SweepSettings", "SweepSpec", "load_sweep", "make_executor", "parse_sweep",
    "place_points", "run_point", "run_sweep", "summarize", "sweep",
]


def _base(source: Experiment | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Experiment):
        base = source.to_dict()
        base.pop("output")
        return base
    return {k: dict(v) for k, v in source.items()}


def sweep(source: str | Path | Experiment | Mapping[str, Any] | SweepSpec, *,
          grid: Mapping[str, Sequence[Any]] | None = None, points: Sequence[Mapping[str, Any]] = (),
          dir: str | Path | None = None, executor: str | None = None, workers: int | None = None,
          scheduler: str | None = None, retries: int | None = None, threads: int | None = None,
          progress: bool = True) -> SweepResults:
    """Run a sweep: a sweep file, or a base experiment with a grid.

    Parameters
    ----------
    source
        A sweep file's path (TOML: see [`bayesguide.sweeps.spec`][]), a validated
        [`SweepSpec`][bayesguide.sweeps.SweepSpec], or the base experiment — an
        [`Experiment`][bayesguide.experiment.Experiment]
        or a dictionary of experiment tables (``{"data": {...}, "fit": {...}}``).
    grid
        ``{"table.key": [values]}``: every combination is a point (with a base experiment).
    points
        Extra points outside the grid, ``{"table.key": value}`` each.
    dir
        The sweep directory (``[sweep] dir``); given here it overrides the file's, as
        do the five below.
    executor
        ``"local"`` (a process pool), ``"dask"`` or ``"serial"`` (``[sweep] executor``).
    workers
        Processes of the local pool, or workers of a local Dask cluster (0: one per
        core).
    scheduler
        Dask: ``"local"`` (a ``LocalCluster``) or a scheduler address ``"tcp://HOST:8786"``.
    retries
        Times a point whose worker died is run again.
    threads
        Torch threads per point.
    progress
        A progress bar over the points.

    Returns
    -------
    SweepResults
        The sweep directory and its ``sweep.json`` document; ``.table()`` is a DataFrame.

    Examples
    --------
    >>> import bayesguide as bg
    >>> res = bg.sweep({"data": {"source": "digits"}, "network": {"hidden": [32]}},
    ...                grid={"prior.strength": [0.3, 1.0]}, dir="runs/strengths")  # doctest: +SKIP
    >>> res.table()[["prior.strength", "best", "log_evidence", "test_metric"]]  # doctest: +SKIP
    """
    settings = {"dir": None if dir is None else str(dir), "executor": executor, "workers": workers,
                "scheduler": scheduler, "retries": retries, "threads": threads}
    given = {k: v for k, v in settings.items() if v is not None}
    if scheduler and executor is None:
        given["executor"] = "dask"
    if isinstance(source, SweepSpec):
        spec = source if not given else parse_sweep(
            {**source.base, "sweep": dataclasses.asdict(source.settings) | given, "grid": source.grid,
             "point": source.extra}, name=source.name)
    elif isinstance(source, (str, Path)):
        if grid is not None or points:
            raise TypeError("sweep(path): the grid and points come from the file; pass a base experiment "
                            "(a dict of tables or an Experiment) to give them here")
        spec = load_sweep(source, **given)
    else:
        raw: dict[str, Any] = {**_base(source), "sweep": given, "grid": dict(grid or {}),
                               "point": [dict(p) for p in points]}
        spec = parse_sweep(raw)
    return run_sweep(spec, progress=progress)
