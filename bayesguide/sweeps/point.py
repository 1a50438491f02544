"""One sweep point, run where an executor puts it: [`run_point`][bayesguide.sweeps.point.run_point] and its summary.

[`run_point`][bayesguide.sweeps.point.run_point] is the only function an executor ships to a worker (a process of
the local pool, a Dask worker, or this process for ``serial``). It runs the point's
experiment into its run directory with [`bayesguide.runner.run_experiment`][] — so a
point is an ordinary run: resumable, locked while it runs, reported — under a fixed
number of torch threads, and returns a plain summary ([`summarize`][bayesguide.sweeps.point.summarize]). It never
raises for a point that fails: a failed run is a summary with ``status = "failed"`` and
the error, so an engine's retries are spent only on workers that died, not on points
that fail the same way every time. A point another process is running (its run
directory is locked) comes back ``"busy"`` — it is not run twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayesguide.experiment import Experiment
from bayesguide.process import freeze_at_exit
from bayesguide.results import load_results
from bayesguide.runner import RunLockedError, run_experiment

__all__ = ["SUMMARY_KEYS", "PointTask", "prepare_worker", "run_point", "summarize", "worker_id"]

SUMMARY_KEYS = ("best", "widths", "units", "n_params", "n_params_full", "log_evidence", "posterior_prob",
                "evidence_prob", "train_metric", "test_metric", "full_test_metric", "metric", "n_flags", "flags",
                "wall_s", "worker")
"""The keys of a point's summary (beside ``status`` and ``error``), as ``sweep.json`` lists them."""


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to run one point: its name, its whole experiment and the thread count."""

    name: str
    config: dict[str, Any]
    threads: int = 1

    @property
    def dir(self) -> Path:
        return Path(self.config["output"]["dir"])


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def prepare_worker() -> None:
    """Set up a worker process of a sweep: [`freeze_at_exit`][bayesguide.process.freeze_at_exit].

    A sweep waits for its workers to end, and a worker that has run a fit spent 2.2–2.75 s
    of that in the interpreter's last garbage collections; with this, 0.4 s. Called in the
    processes the sweep starts — the local pool's and the LocalCluster's workers — never in
    the user's own process (the ``serial`` executor).
    """
    freeze_at_exit()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize(document: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of a run's results document: its pick, evidence, metrics, flags and time.

    Examples
    --------
    >>> doc = {"status": "complete", "metric": "accuracy", "best": "w3",
    ...        "candidates": [{"name": "w3", "widths": [3], "n_params": 20, "log_evidence": -5.0,
    ...                        "metrics": {"train": 1.0, "test": 0.9}}],
    ...        "fit": {"test_metric": 0.8}, "flags": [], "timings": {"total_s": 2.0}}
    >>> s = summarize(doc)
    >>> s["units"], s["log_evidence"], s["test_metric"], s["full_test_metric"]
    (3, -5.0, 0.9, 0.8)
    """
    best = document.get("best")
    rows = {c.get("name"): c for c in document.get("candidates") or [] if isinstance(c, Mapping)}
    row = rows.get(best, {}) if best is not None else {}
    widths = row.get("widths")
    metrics = row.get("metrics") or {}
    recommended = document.get("recommended") or {}
    fit = document.get("fit") or {}
    flags = [str(f) for f in document.get("flags") or []]
    return {
        "status": "complete" if document.get("status") == "complete" else "failed",
        "error": None if document.get("status") == "complete" else f"run status {document.get('status')!r}",
        "best": best, "widths": list(widths) if isinstance(widths, list) else None,
        "units": sum(widths) if isinstance(widths, list) else None,
        "n_params": row.get("n_params"), "n_params_full": recommended.get("n_params_full"),
        "log_evidence": _number(row.get("log_evidence")), "posterior_prob": _number(row.get("posterior_prob")),
        "evidence_prob": _number(row.get("evidence_prob")),
        "train_metric": _number(metrics.get("train")), "test_metric": _number(metrics.get("test")),
        "full_test_metric": _number(fit.get("test_metric")), "metric": document.get("metric"),
        "n_flags": len(flags), "flags": flags, "wall_s": _number((document.get("timings") or {}).get("total_s")),
    }


def completed_summary(run_dir: Path, chash: str) -> dict[str, Any] | None:
    """The summary of a complete run of this configuration in ``run_dir``, or ``None``."""
    try:
        document = load_results(run_dir)
    except (OSError, ValueError):
        return None
    if document.get("config_hash") != chash or document.get("status") != "complete":
        return None
    return summarize(document) | {"worker": None}


def run_point(task: PointTask) -> dict[str, Any]:
    """Run one point into its run directory; return its summary (never raises for a failed run).

    The summary's ``status``: ``"complete"``; ``"failed"`` with ``error`` (the exception in
    one line) when the run raised; ``"busy"`` when another process holds the run
    directory's lock.
    """
    start = time.perf_counter()
    where = {"worker": worker_id()}
    log_file = task.dir / "sweep-point.log"

    def log(line: str) -> None:
        with contextlib.suppress(OSError), log_file.open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    try:
        task.dir.mkdir(parents=True, exist_ok=True)
        document = run_experiment(Experiment.from_dict(task.config), progress=False, log=log, threads=task.threads)
    except RunLockedError as err:
        return {"status": "busy", "error": " ".join(str(err).split()), **where}
    except Exception as err:  # a failed point is a result, not a crash of the sweep
        message = " ".join(str(err).split()) or type(err).__name__
        log(f"failed: {type(err).__name__}: {message}")
        return {"status": "failed", "error": f"{type(err).__name__}: {message}",
                "wall_s": time.perf_counter() - start, **where}
    return summarize(document) | where
