"""``sweep.json``: the sweep's record of every point, rewritten atomically after each one.

Schema (``schema_version`` 1; plain JSON, ``null`` where not known)::

    {
      "schema_version": 1, "kind": "sweep",
      "status": "running" | "complete" | "incomplete",   # incomplete: a point failed or was busy
      "name": "...",                                       # the sweep file's stem
      "base": {...the base experiment tables...},
      "grid": {"table.key": [values...]}, "extra_points": [{"table.key": value}],
      "executor": {"name", "workers", "scheduler", "threads", "retries"},
      "metric": "accuracy" | "rmse" | null,
      "points": [{"name", "dir" (relative to the sweep directory), "overrides": {"table.key": value},
                  "config_hash", "status": "pending" | "complete" | "failed" | "busy",
                  "attempts", "error", "best", "widths", "units", "n_params", "n_params_full",
                  "log_evidence", "posterior_prob", "evidence_prob", "train_metric", "test_metric",
                  "full_test_metric", "n_flags", "flags", "wall_s", "worker"}],
      "timings": {"total_s", "started", "finished"}
    }

The run directories are the truth; ``sweep.json`` is their index. When two invocations
of one sweep run at once (each point is locked by the run that holds it, so none runs
twice) each rewrites the file: a point one of them finished is never overwritten by the
other's ``pending`` or ``busy`` ([`SweepState.save`][bayesguide.sweeps.state.SweepState.save] merges with the file on
disk).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from bayesguide.atomic import write_json_atomic
from bayesguide.sweeps.point import SUMMARY_KEYS
from bayesguide.sweeps.spec import Point, SweepSpec

__all__ = ["FINAL", "SCHEMA_VERSION", "SWEEP_FILE", "SweepState"]

SCHEMA_VERSION = 1
SWEEP_FILE = "sweep.json"
"""The file in the sweep directory that records every point and its outcome."""

FINAL = ("complete", "failed")
"""Statuses that end a point in this invocation (``busy``: another invocation runs it)."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class SweepState:
    """The ``sweep.json`` document of one invocation, saved after every change."""

    def __init__(self, spec: SweepSpec, points: list[Point], executor: dict[str, Any]) -> None:
        self.out = spec.dir
        self.path = self.out / SWEEP_FILE
        self.start = time.perf_counter()
        self.points: dict[str, dict[str, Any]] = {
            p.name: {"name": p.name, "dir": Path(p.experiment.output.dir).relative_to(self.out).as_posix(),
                     "overrides": p.overrides, "config_hash": p.config_hash, "status": "pending", "attempts": 0,
                     "error": None, **dict.fromkeys(SUMMARY_KEYS)}
            for p in points}
        self.document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "kind": "sweep", "status": "running", "name": spec.name,
            "base": spec.base, "grid": spec.grid, "extra_points": spec.extra, "executor": executor, "metric": None,
            "points": [], "timings": {"total_s": 0.0, "started": _now(), "finished": None},
        }

    def set(self, name: str, **fields: Any) -> None:
        """Change a point's record (e.g. its summary) and save."""
        record = self.points[name]
        record.update({k: v for k, v in fields.items() if k in record})
        if record["status"] == "complete":
            record["error"] = None
        if fields.get("metric"):
            self.document["metric"] = fields["metric"]
        self.save()

    def _merged(self) -> list[dict[str, Any]]:
        """Our records, except where the file on disk finished a point we did not."""
        try:
            disk = json.loads(self.path.read_text(encoding="utf-8"))
            theirs = {p["name"]: p for p in disk.get("points", []) if isinstance(p, dict) and "name" in p}
        except (OSError, ValueError, TypeError, AttributeError):
            theirs = {}
        merged = []
        for name, ours in self.points.items():
            other = theirs.get(name)
            if (other is not None and other.get("config_hash") == ours["config_hash"]
                    and ours["status"] not in FINAL and other.get("status") in FINAL):
                ours.update({k: other.get(k) for k in ours if k in other})
            merged.append(ours)
        return merged

    def save(self, status: str | None = None) -> None:
        """Write ``sweep.json`` atomically (``status``: the sweep's, when it ends)."""
        self.document["points"] = self._merged()
        if status is not None:
            self.document["status"] = status
            self.document["timings"]["finished"] = _now()
        self.document["timings"]["total_s"] = time.perf_counter() - self.start
        write_json_atomic(self.path, self.document)
