"""The run directory's ``results.json``: typed records, their JSON round trip, and loading.

A run directory (``bayesguide run`` / ``bayesguide demo``) holds

* ``results.json`` — this schema (``schema_version`` 1), rewritten atomically after
  every finished step, so a crash keeps everything finished before it. The file is
  compact JSON, one line per top-level key and per candidate
  ([`RunResults.dumps`][bayesguide.results.RunResults.dumps]); a writer that passes the same ``memo`` to every
  save serialises the ``fit`` section (its histories are most of the file) and each
  finished candidate once, not at every rewrite;
* ``fit/`` — the full network's ``state_dict`` (``weights.pt``) and ``architecture.json``;
* ``candidates/<name>/`` — each candidate's ``weights.pt`` and ``architecture.json`` (and,
  when it was fine-tuned, the fine-tuning fit: ``FitResult.save``);
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
      "data_fingerprint": "...",                              # and its training data must match this
      "data": {"name", "task", "n_train", "n_test", "n_features", "n_outputs"},
      "fit": {"method", "fitter", "prior" (str of the prior), "steps", "wall_time_s", "stop_reason", "final_loss",
              "losses": [...], "loss_steps": [...],           # at most 500 points
              "loss_terms": {"nll": [...], "penalty": [...]}, # MAP fits: the two parts of losses, same steps
              "unit_norms": {layer: [[...units] per record]}, "norm_steps": [...],  # 7 significant digits
              "train_metric", "test_metric",
              "coefficients": {site: [...]}},                  # relevance fits only: the last estimate
      "metric": "accuracy" | "rmse",
      "candidates": [{"name", "widths", "kept": {layer: [...]}, "n_params", "flops",
                      "log_evidence", "log_prior", "log_posterior", "posterior_prob",
                      "log_bayes_factor", "evidence_prob", "occam_cost", "prior_scale", "substituted", "status",
                      "prior_used": "own" | "counterpart" | "uniform",   # the Gaussian prior of the evidence
                      "metrics": {"train", "test"},
                      "elpd_loo", "elpd_se", "pareto_k_max", "pareto_k_q", "loo_corrected",
                      "stacking_weight"}],                                      # LOO keys only with loo
      "best": name | null,
      "recommended": {"name", "widths", "n_params", "flops", "n_params_full",
                      "flops_full", "latency_ms", "latency_full_ms", "speedup"} | null,
      "flags": ["...warnings in words..."],
      "selection": {"kappa", "kappa_rule", "kappa_interval": [lo, hi], "evidence_best",
                    "hessian", "hessian_reason", ...},          # how the comparison decided
      "posterior_file": "posterior.nc",                      # SVI runs only
      "timings": {"total_s": ...},                            # every invocation's time, summed
      "environment": {"versions": {"bayesguide", "torch", "pyro", "numpy", "python"},
                      "threads",                              # torch's intra-op threads during the run
                      "platform", "machine", "cpu_count"}     # the invocation that wrote the file last
    }

``config_hash`` and ``data_fingerprint`` (a hash of the prepared training tensors,
[`bayesguide.model.data_fingerprint`][]) are the run's identity: a run directory is
only resumed by the same experiment on the same data. Files written before
``data_fingerprint`` existed are read with it ``None``.

The document is built and read through typed records — [`RunResults`][bayesguide.results.RunResults] holding a
[`DataRecord`][bayesguide.results.DataRecord], a [`FitRecord`][bayesguide.results.FitRecord],
[`CandidateRecord`][bayesguide.results.CandidateRecord] s and a
[`Recommendation`][bayesguide.results.Recommendation] — whose ``to_json()`` / ``from_json()`` round-trip it exactly;
a candidate's columns beyond the fixed ones (LOO, variational diagnostics) travel in
``CandidateRecord.columns``. Foundation module: it imports nothing from bayesguide but
the atomic writer.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayesguide.atomic import jsonable, write_atomic, write_json_atomic

__all__ = [
    "SCHEMA_VERSION",
    "CandidateRecord",
    "DataRecord",
    "EnvironmentRecord",
    "FitRecord",
    "Recommendation",
    "RunResults",
    "downsample",
    "jsonable",
    "load_results",
    "significant",
    "write_json_atomic",
]

SCHEMA_VERSION = 1
"""The version of the `results.json` layout this code writes (and the newest it reads)."""

_REQUIRED = ("schema_version", "status", "config", "data", "fit", "candidates", "best", "flags")


def _fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (missing ones default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class DataRecord:
    """The ``data`` section: what the run was trained and tested on."""

    name: str | None
    task: str
    n_train: int
    n_test: int | None = None
    n_features: int | None = None
    n_outputs: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataRecord:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class FitRecord:
    """The ``fit`` section: the full network's fit, histories at most 500 points long."""

    method: str
    prior: str
    steps: int
    wall_time_s: float
    stop_reason: str
    final_loss: float | None
    losses: list[float]
    loss_steps: list[int]
    unit_norms: dict[str, list[list[float]]]
    norm_steps: list[int]
    train_metric: float | None = None
    test_metric: float | None = None
    fitter: str | None = None
    coefficients: dict[str, list[float]] | None = None
    loss_terms: dict[str, list[float | None]] | None = None
    """The data term (``"nll"``) and the penalty (``"penalty"``) at ``loss_steps``; absent in older files."""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.coefficients is None:
            out.pop("coefficients")
        if self.loss_terms is None:
            out.pop("loss_terms")
        if self.fitter is None:
            out.pop("fitter")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitRecord:
        return cls(**_fields(cls, data))


_CANDIDATE_KEYS = ("name", "widths", "kept", "n_params", "flops", "log_evidence", "log_prior", "log_posterior",
                   "posterior_prob", "log_bayes_factor", "status", "metrics")
"""The fixed keys of a candidate entry (everything else is a column of `CandidateRecord.columns`)."""


@dataclass(frozen=True)
class CandidateRecord:
    """One ``candidates`` entry: a pruned architecture and how it scored.

    ``log_prior``, ``log_posterior``, ``posterior_prob`` and ``log_bayes_factor`` are
    ``None`` until the comparison is assembled; ``columns`` holds the estimator's and
    LOO's columns (``prior_scale``, ``substituted``, ``prior_used``, ``elpd_loo``, …).
    """

    name: str
    widths: list[int]
    kept: dict[str, list[int]]
    n_params: int
    flops: int | None
    log_evidence: float | None
    status: str
    metrics: dict[str, float | None]
    log_prior: float | None = None
    log_posterior: float | None = None
    posterior_prob: float | None = None
    log_bayes_factor: float | None = None
    columns: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any], kept: dict[str, list[int]]) -> CandidateRecord:
        """The record of a comparison-table row (``train_metric`` / ``test_metric`` go to ``metrics``)."""
        row = jsonable(dict(row))
        rest = {k: v for k, v in row.items() if k not in _CANDIDATE_KEYS and k not in ("train_metric", "test_metric")}
        return cls(
            name=str(row["name"]), widths=[int(w) for w in row["widths"]], kept=kept, n_params=int(row["n_params"]),
            flops=row.get("flops"), log_evidence=row.get("log_evidence"), status=str(row.get("status")),
            metrics={"train": row.get("train_metric"), "test": row.get("test_metric")},
            log_prior=row.get("log_prior"), log_posterior=row.get("log_posterior"),
            posterior_prob=row.get("posterior_prob"), log_bayes_factor=row.get("log_bayes_factor"), columns=rest,
        )

    def row(self) -> dict[str, Any]:
        """The comparison-table row again (what [`bayesguide.comparison.assemble`][] reads)."""
        nan = float("nan")
        out: dict[str, Any] = {"name": self.name, "widths": list(self.widths), "n_params": self.n_params,
                               "flops": self.flops, "status": self.status,
                               "log_evidence": nan if self.log_evidence is None else self.log_evidence,
                               "train_metric": self.metrics.get("train")}
        if self.metrics.get("test") is not None:
            out["test_metric"] = self.metrics["test"]
        out.update(self.columns)
        return out

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _CANDIDATE_KEYS}
        out.update(self.columns)
        return jsonable(out)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        known = _fields(cls, data)
        known.pop("columns", None)
        return cls(**known, columns={k: v for k, v in data.items() if k not in _CANDIDATE_KEYS})


@dataclass(frozen=True)
class Recommendation:
    """The ``recommended`` section: the best candidate's size and measured speed."""

    name: str
    widths: list[int]
    n_params: int
    flops: int | None
    n_params_full: int
    flops_full: int | None
    latency_ms: float | None = None
    latency_full_ms: float | None = None
    speedup: float | None = None
    latency_batch: int | None = None
    """Examples per timed forward pass (``None`` in runs that did not record it: those used 256)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recommendation:
        return cls(**_fields(cls, data))


_VERSIONED = {"bayesguide": "bayesguide", "torch": "torch", "pyro": "pyro-ppl", "numpy": "numpy"}
"""The distributions whose versions a run records: the name in ``results.json`` → the distribution's name."""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class EnvironmentRecord:
    """The ``environment`` section: what computed the run — versions, threads and machine.

    Written by every invocation (a resumed run records the one that wrote the file last),
    so that a timing or a last-digit difference can be traced to the software and the
    machine that produced it.
    """

    versions: dict[str, str | None]
    """``bayesguide``, ``torch``, ``pyro``, ``numpy`` (installed distributions) and ``python``."""
    threads: int
    """Torch's intra-op threads during the run (``torch.get_num_threads()``)."""
    platform: str
    """``platform.platform()``, e.g. ``Linux-6.8.0-x86_64-with-glibc2.39``."""
    machine: str
    """``platform.machine()``, e.g. ``x86_64``."""
    cpu_count: int | None
    """``os.cpu_count()``: the machine's logical cores (not what this process may use)."""

    @classmethod
    def current(cls, threads: int) -> EnvironmentRecord:
        """This process's environment.

        Parameters
        ----------
        threads
            torch's intra-op thread count during the run (the caller reads it from torch).

        Returns
        -------
        EnvironmentRecord
            The versions of the installed distributions (``None`` for one not installed),
            Python's version, ``threads`` and the machine.
        """
        versions = {name: _version(dist) for name, dist in _VERSIONED.items()}
        versions["python"] = platform.python_version()
        return cls(versions, int(threads), platform.platform(), platform.machine(), os.cpu_count())

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvironmentRecord:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class RunResults:
    """The whole ``results.json`` document (see the module docstring for its schema)."""

    status: str
    config: dict[str, Any]
    data: DataRecord
    fit: FitRecord | None
    metric: str
    candidates: tuple[CandidateRecord, ...] = ()
    best: str | None = None
    recommended: Recommendation | None = None
    flags: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    config_hash: str | None = None
    posterior_file: str | None = None
    schema_version: int = SCHEMA_VERSION
    data_fingerprint: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    """The comparison's settings as used (the κ taken and why, the curvature and why, …)."""
    environment: EnvironmentRecord | None = None
    """The software and machine of the invocation that wrote the document last (``None``: not recorded)."""

    def _layout(self) -> dict[str, Any]:
        """The document's top-level entries in file order, ``fit`` and ``candidates`` still records."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version, "status": self.status, "config": self.config,
            "config_hash": self.config_hash, "data": self.data.to_json(),
            "fit": self.fit, "metric": self.metric, "candidates": self.candidates, "best": self.best,
            "recommended": None if self.recommended is None else self.recommended.to_json(),
            "flags": list(self.flags), "timings": dict(self.timings),
        }
        if self.config_hash is None:
            out.pop("config_hash")
        if self.data_fingerprint is not None:
            out["data_fingerprint"] = self.data_fingerprint
        if self.posterior_file is not None:
            out["posterior_file"] = self.posterior_file
        if self.selection:
            out["selection"] = dict(self.selection)
        if self.environment is not None:
            out["environment"] = self.environment.to_json()
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON document (plain types; NaN and inf as ``null``)."""
        out = self._layout()
        out["fit"] = None if self.fit is None else self.fit.to_json()
        out["candidates"] = [c.to_json() for c in self.candidates]
        result: dict[str, Any] = jsonable(out)
        return result

    def dumps(self, memo: dict[int, tuple[Any, str]] | None = None) -> str:
        """The document as compact JSON text: one line per top-level key and per candidate.

        Parameters
        ----------
        memo
            The texts of records serialised by an earlier call, by identity: a run that
            rewrites the file after every step passes the same dictionary each time, so
            that the ``fit`` record (its histories are most of the file) and the
            finished candidates are serialised once. Updated to hold this document's
            records only.

        Returns
        -------
        str
            The text [`save`][bayesguide.results.RunResults.save] writes; ``json.loads`` of it equals
            [`to_json`][bayesguide.results.RunResults.to_json] ().
        """
        memo = {} if memo is None else memo
        now: dict[int, tuple[Any, str]] = {}

        def record(rec: FitRecord | CandidateRecord) -> str:
            hit = memo.get(id(rec))
            text = hit[1] if hit is not None and hit[0] is rec else _dump(rec.to_json())
            now[id(rec)] = (rec, text)
            return text

        lines = []
        for key, value in self._layout().items():
            if key == "fit" and value is not None:
                text = record(value)
            elif key == "candidates":
                text = "[" + "".join(f"\n{record(c)}," for c in value).rstrip(",") + "]"
            else:
                text = _dump(value)
            lines.append(f"{json.dumps(key)}:{text}")
        memo.clear()
        memo.update(now)
        return "{" + ",\n".join(lines) + "}\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResults:
        """The records of a document [`to_json`][bayesguide.results.RunResults.to_json] (or an older run) wrote."""
        return cls(
            status=data["status"], config=dict(data["config"]), data=DataRecord.from_json(data["data"]),
            fit=None if data.get("fit") is None else FitRecord.from_json(data["fit"]), metric=data.get("metric", ""),
            candidates=tuple(CandidateRecord.from_json(c) for c in data.get("candidates", [])),
            best=data.get("best"),
            recommended=None if data.get("recommended") is None else Recommendation.from_json(data["recommended"]),
            flags=tuple(data.get("flags", [])), timings=dict(data.get("timings", {})),
            config_hash=data.get("config_hash"), posterior_file=data.get("posterior_file"),
            schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
            data_fingerprint=data.get("data_fingerprint"), selection=dict(data.get("selection") or {}),
            environment=None if not data.get("environment") else EnvironmentRecord.from_json(data["environment"]),
        )

    def save(self, run_dir: str | Path, memo: dict[int, tuple[Any, str]] | None = None) -> Path:
        """Write ``run_dir/results.json`` atomically ([`dumps`][bayesguide.results.RunResults.dumps] ``(memo)``)."""
        return write_atomic(Path(run_dir) / "results.json", self.dumps(memo))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResults:
        """Read and check ``run_dir/results.json`` (see [`load_results`][bayesguide.results.load_results])."""
        return cls.from_json(load_results(run_dir))


def _dump(value: Any) -> str:
    """Compact JSON of ``value`` (through [`jsonable`][bayesguide.atomic.jsonable]: NaN and inf as ``null``)."""
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False)


def significant(values: Any, digits: int = 7) -> Any:
    """Floats in nested lists rounded to ``digits`` significant digits (float32's precision by default).

    Examples
    --------
    >>> significant([[0.509972333908081, 1e-9 / 3], [2.0, None]])
    [[0.5099723, 3.333333e-10], [2.0, None]]
    """
    if isinstance(values, (list, tuple)):
        return [significant(v, digits) for v in values]
    if isinstance(values, float):
        return float(f"{values:.{digits}g}")
    return values


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
        If the file is not valid JSON (or nested too deeply to read), has another schema
        version, or lacks a key.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a bayesguide run directory?")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    except RecursionError:  # json decodes nested arrays and objects recursively
        raise ValueError(f"{path} is nested too deeply to read: not a bayesguide results file") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} must hold a JSON object")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {version!r}; this bayesguide reads {SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED if k not in results]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}")
    return results
