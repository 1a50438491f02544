"""The run directory's ``results.json``: its schema, atomic writes and loading.

A run directory (``bayesguide run`` / ``bayesguide demo``) holds

* ``results.json`` — this schema (``schema_version`` 1), rewritten atomically after
  every finished step, so a crash keeps everything finished before it;
* ``fit/`` — the full network's ``state_dict`` (``weights.pt``) and ``architecture.json``;
* ``candidates/<name>/`` — each candidate's ``weights.pt`` and ``architecture.json``;
* ``posterior.nc`` — the ArviZ ``InferenceData`` (posterior draws and pointwise log
  likelihood) of the best candidate, written for SVI fits, whose candidates keep a
  sliced posterior guide;
* ``report.html`` and ``report.md``.

Schema (all numbers plain JSON floats; ``null`` where not computed)::

    {
      "schema_version": 1,
      "status": "running" | "complete",
      "config": {...the experiment, every key filled with its default...},
      "config_hash": "...",                                   # a resumed run must match it
      "data": {"name", "task", "n_train", "n_test", "n_features", "n_outputs"},
      "fit": {"method", "prior" (str of the prior), "steps", "wall_time_s", "stop_reason", "final_loss",
              "losses": [...], "loss_steps": [...],           # at most 500 points
              "unit_norms": {layer: [[...units] per record]}, "norm_steps": [...],
              "train_metric", "test_metric",
              "coefficients": {site: [...]}},                  # relevance fits only: the last estimate
      "metric": "accuracy" | "rmse",
      "candidates": [{"name", "widths", "kept": {layer: [...]}, "n_params", "flops",
                      "log_evidence", "log_prior", "log_posterior", "posterior_prob",
                      "log_bayes_factor", "prior_scale", "substituted", "status",
                      "prior_used": "own" | "counterpart" | "uniform",   # the Gaussian prior of the evidence
                      "metrics": {"train", "test"},
                      "elpd_loo", "elpd_se", "pareto_k_max", "stacking_weight"}],  # LOO keys only with loo
      "best": name | null,
      "recommended": {"name", "widths", "n_params", "flops", "n_params_full",
                      "flops_full", "latency_ms", "latency_full_ms", "speedup"} | null,
      "flags": ["...warnings in words..."],
      "posterior_file": "posterior.nc",                      # SVI runs only
      "timings": {"total_s": ...}
    }
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCHEMA_VERSION", "downsample", "jsonable", "load_results", "write_json_atomic"]

SCHEMA_VERSION = 1

_REQUIRED = ("schema_version", "status", "config", "data", "fit", "candidates", "best", "flags")


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy / torch scalars and arrays; NaN and inf become ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return jsonable(value.item())
    return value


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(jsonable(payload), handle, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def downsample(values: np.ndarray, steps: np.ndarray, most: int = 500) -> tuple[list[float], list[int]]:
    """At most ``most`` evenly spaced points of a history (the last point always kept)."""
    n = len(values)
    if n <= most:
        idx = np.arange(n)
    else:
        idx = np.unique(np.linspace(0, n - 1, most).round().astype(int))
    return [float(v) for v in np.asarray(values)[idx]], [int(s) for s in np.asarray(steps)[idx]]


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read and check a run directory's ``results.json``.

    Raises
    ------
    FileNotFoundError
        If the directory has no ``results.json``.
    ValueError
        If the file is not valid JSON, has another schema version, or lacks a key.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a bayesguide run directory?")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} must hold a JSON object")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {version!r}; this bayesguide reads {SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED if k not in results]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}")
    return results
