"""Sweep files: a base experiment, a ``[grid]`` of dotted keys and extra ``[[point]]`` s.

A sweep file holds the tables of an experiment file (``[data]``, ``[network]``,
``[prior]``, ``[fit]``, ``[select]``; see [`bayesguide.experiment`][]) — the *base*
every point starts from — plus::

    [sweep]
    dir = "bayesguide-sweep"   # the sweep directory: sweep.json, the reports, points/<name>/
    executor = "local"         # local (a process pool) | dask | serial (in this process)
    workers = 0                # local: processes (0: one per core); dask with scheduler = "local": workers
    scheduler = ""             # dask: "local" (a LocalCluster on loopback) or "tcp://HOST:8786"
    retries = 2                # times a point whose worker died is run again
    threads = 1                # torch threads per point (the same in every executor: same numbers)

    [grid]                     # every combination of these values is a point
    "prior.strength" = [0.3, 1.0, 3.0]
    "fit.seed" = [0, 1, 2]
    "network.hidden" = [[64, 64], [128, 128]]

    [[point]]                  # a point outside the grid (any number of these)
    "prior.kind" = "l1"
    "prior.strength" = 0.1

Grid keys are ``"table.key"`` (quoted) or written as nested tables (``[grid.prior]``
``strength = [...]``): both mean the same. ``[output]`` is not allowed — each point is
an ordinary run directory, ``<dir>/points/<name>/``. Every point is validated as an
experiment before any work; an invalid one is a [`SweepError`][bayesguide.sweeps.spec.SweepError] naming the point
and the key. A relative ``[data] source`` file is read relative to the sweep file's
folder.

A point's *name* (its directory) spells its values (``strength=0.3,seed=0``); its
*identity* is its experiment's configuration hash ([`bayesguide.runner.config_hash`][]),
so a point whose configuration an edited grid still contains keeps its directory and
its results even when its name would change.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayesguide.experiment import Experiment, ExperimentError, OutputConfig, resolve_source
from bayesguide.runner import config_hash

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["EXECUTORS", "MAX_POINTS", "Point", "SweepError", "SweepSettings", "SweepSpec", "load_sweep",
           "parse_sweep"]

EXECUTORS = ("local", "dask", "serial")
"""The executors a sweep can run on."""

MAX_POINTS = 100_000
"""The most points one sweep may have (a grid beyond this is almost surely a typo)."""

_TABLES = ("data", "network", "prior", "fit", "select")
"""The experiment tables a sweep's base and its keys may set."""

_MAX_NAME = 96
"""The longest point name (a directory name); longer names are cut and made unique by a hash."""


class SweepError(ExperimentError):
    """An invalid sweep file: the message names the point (or table) and the key."""


@dataclass(frozen=True)
class SweepSettings:
    """The ``[sweep]`` table."""

    dir: str = "bayesguide-sweep"
    executor: str = "local"
    workers: int = 0
    scheduler: str = ""
    retries: int = 2
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.dir.strip():
            raise SweepError(f"[sweep] dir must name a directory, got {self.dir!r}")
        if self.executor not in EXECUTORS:
            raise SweepError(f"[sweep] executor = {self.executor!r} is not accepted; choose one of: "
                             f"{', '.join(EXECUTORS)}")
        for key, low, high in (("workers", 0, 4096), ("retries", 0, 100), ("threads", 1, 4096)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise SweepError(f"[sweep] {key} must be an integer in {low} … {high}, got {value!r}")
        if self.scheduler and self.executor == "serial":
            raise SweepError(f"[sweep] scheduler = {self.scheduler!r} needs executor = \"dask\", not \"serial\"")
        if self.scheduler and self.scheduler != "local" and "://" not in self.scheduler:
            raise SweepError(f"[sweep] scheduler must be \"local\" or an address like \"tcp://HOST:8786\", "
                             f"got {self.scheduler!r}")

    @property
    def engine(self) -> str:
        """The executor that runs: a scheduler address means Dask, whatever ``executor`` says."""
        return "dask" if self.scheduler else self.executor

    @property
    def n_workers(self) -> int:
        """``workers``, with 0 meaning one per core."""
        return self.workers or (os.cpu_count() or 1)


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its overrides of the base, its experiment and its identity."""

    name: str
    overrides: dict[str, Any]
    experiment: Experiment
    config_hash: str

    @property
    def work(self) -> int:
        """A relative estimate of the point's run time: its network's size times its training steps.

        The size counts each hidden unit once (its weights to the data's inputs and outputs,
        the same for every point of a sweep over one data set) and the weights between
        hidden layers; the steps are the fit's and every candidate's fine-tuning. Only the
        order matters: the sweep submits the points with the most work first, so the last
        points to finish are short and no worker idles long at the end.

        Examples
        --------
        >>> from bayesguide.experiment import Experiment
        >>> small = Experiment.from_dict({"network": {"hidden": [32]}, "fit": {"steps": 400}})
        >>> wide = Experiment.from_dict({"network": {"hidden": [64, 64]}, "fit": {"steps": 400}})
        >>> Point("a", {}, small, "").work < Point("b", {}, wide, "").work
        True
        """
        hidden = self.experiment.network.hidden
        size = sum(hidden) + sum(a * b for a, b in itertools.pairwise(hidden))
        select = self.experiment.select
        return size * (int(self.experiment.fit.steps) + select.n_candidates * select.fine_tune)

    def with_dir(self, name: str, out: Path) -> Point:
        """The same point, named ``name``, writing into the run directory ``out``."""
        exp = dataclasses.replace(self.experiment, output=OutputConfig(dir=str(out)))
        return Point(name, self.overrides, exp, self.config_hash)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the settings, the base tables, the grid and every point."""

    settings: SweepSettings
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    extra: list[dict[str, Any]]
    points: list[Point] = field(default_factory=list)
    name: str = "sweep"

    @property
    def dir(self) -> Path:
        return Path(self.settings.dir)


def _flatten(table: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``{"prior": {"strength": v}}`` and ``{"prior.strength": v}`` both as ``{"prior.strength": v}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, where, dotted + "."))
        else:
            if dotted in out:
                raise SweepError(f"{where}: key {dotted!r} is given twice")
            out[dotted] = value
    for dotted in out:
        parts = dotted.split(".")
        if len(parts) != 2 or not all(parts):
            raise SweepError(f"{where}: key {dotted!r} must be \"table.key\", e.g. \"prior.strength\"")
        if parts[0] == "output":
            raise SweepError(f"{where}: {dotted!r} cannot vary: every point writes <[sweep] dir>/points/<name>")
        if parts[0] not in _TABLES:
            raise SweepError(f"{where}: key {dotted!r} names no experiment table; tables: {', '.join(_TABLES)}")
    return out


def _fmt(value: Any) -> str:
    """A value as it appears in a point's name."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return str(value)


def point_name(overrides: Mapping[str, Any]) -> str:
    """A point's directory name: ``key=value`` pairs (short keys where they are unique), file-system safe.

    Examples
    --------
    >>> point_name({"prior.strength": 0.3, "fit.seed": 0, "network.hidden": [64, 64]})
    'strength=0.3,seed=0,hidden=64x64'
    >>> point_name({"fit.seed": 1, "data.seed": 2})
    'fit.seed=1,data.seed=2'
    >>> point_name({})
    'base'
    """
    if not overrides:
        return "base"
    short = [k.split(".")[1] for k in overrides]
    keys = [s if short.count(s) == 1 else k for k, s in zip(overrides, short)]
    text = ",".join(f"{k}={_fmt(v)}" for k, v in zip(keys, overrides.values()))
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _apply(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    raw = {table: dict(values) for table, values in base.items()}
    for dotted, value in overrides.items():
        table, key = dotted.split(".")
        raw.setdefault(table, {})[key] = value
    return raw


def _points(base: dict[str, Any], grid: dict[str, list[Any]], extra: list[dict[str, Any]],
            out: Path) -> list[Point]:
    combos: Iterable[tuple[Any, ...]] = itertools.product(*grid.values())
    overrides = [dict(zip(grid, combo)) for combo in combos] if grid else []
    overrides += [dict(p) for p in extra]
    points: list[Point] = []
    seen: dict[str, str] = {}
    names: set[str] = set()
    for values in overrides:
        name = point_name(values)
        try:
            exp = Experiment.from_dict(_apply(base, values))
        except ExperimentError as err:
            raise SweepError(f"point {name}: {err}") from None
        chash = config_hash(exp)
        if chash in seen:  # the same experiment twice (a [[point]] inside the grid): run it once
            continue
        if len(name) > _MAX_NAME or name in names:
            name = f"{name[:_MAX_NAME - 9]}-{chash[:8]}"
        seen[chash] = name
        names.add(name)
        points.append(Point(name, values, exp, chash).with_dir(name, out / "points" / name))
    return points


def parse_sweep(raw: Mapping[str, Any], *, folder: Path | None = None, name: str = "sweep") -> SweepSpec:
    """Validate a parsed sweep document (the tables of the module docstring) and list its points.

    Parameters
    ----------
    raw
        The TOML document as a dictionary.
    folder
        The sweep file's folder: a relative ``[data] source`` is read from there.
    name
        The sweep's name in reports (the file's stem).

    Raises
    ------
    SweepError
        An unknown table, a bad ``[sweep]`` key, a grid key that is not ``"table.key"`` or
        does not list values, no points at all, too many, or a point that is not a valid
        experiment (the message names the point and the key).
    """
    unknown = sorted(set(raw) - {*_TABLES, "sweep", "grid", "point", "output"})
    if unknown:
        raise SweepError(f"unknown table [{unknown[0]}]; a sweep file has [sweep], [grid], [[point]] and the "
                         f"experiment tables {', '.join('[' + t + ']' for t in _TABLES)}")
    if "output" in raw:
        raise SweepError("[output] is not part of a sweep file: every point writes <[sweep] dir>/points/<name>; "
                         "set [sweep] dir")
    table = raw.get("sweep", {})
    if not isinstance(table, Mapping):
        raise SweepError(f"[sweep] must be a table, got {type(table).__name__}")
    known = SweepSettings.__dataclass_fields__
    bad = sorted(set(table) - set(known))
    if bad:
        raise SweepError(f"[sweep] has no key {bad[0]!r}; keys: {', '.join(known)}")
    settings = SweepSettings(**table)
    grid_table = raw.get("grid", {})
    if not isinstance(grid_table, Mapping):
        raise SweepError(f"[grid] must be a table, got {type(grid_table).__name__}")
    grid = _flatten(grid_table, "[grid]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"[grid] {key} must list its values, e.g. {key!r} = [{_fmt(values)}], got {values!r}")
    extra_list = raw.get("point", [])
    if not isinstance(extra_list, list) or not all(isinstance(p, Mapping) for p in extra_list):
        raise SweepError("[[point]] entries must be tables of \"table.key\" = value")
    extra = [_flatten(p, f"[[point]] {i + 1}") for i, p in enumerate(extra_list)]
    if not grid and not extra:
        raise SweepError("a sweep needs a [grid] table of lists or [[point]] entries; this file has neither")
    size = math.prod(len(v) for v in grid.values()) if grid else 0
    if size + len(extra) > MAX_POINTS:
        raise SweepError(f"the sweep has {size + len(extra):,} points, more than {MAX_POINTS:,}; split it")
    base = resolve_source({t: dict(raw[t]) for t in _TABLES if isinstance(raw.get(t), Mapping)}, folder)
    for t in _TABLES:
        if t in raw and not isinstance(raw[t], Mapping):
            raise SweepError(f"[{t}] must be a table, got {type(raw[t]).__name__}")
    points = _points(base, grid, extra, Path(settings.dir))
    return SweepSpec(settings, base, grid, extra, points, name)


def load_sweep(path: str | Path, **settings: Any) -> SweepSpec:
    """Read and validate a sweep file; keyword arguments override its ``[sweep]`` keys.

    A ``scheduler`` given here without an ``executor`` means ``executor = "dask"``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        If ``path`` is not a file.
    SweepError
        If the file is not TOML or the sweep is invalid (see [`parse_sweep`][bayesguide.sweeps.spec.parse_sweep]).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"sweep file {path} is a directory, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise SweepError(f"{path} is not valid TOML: {err}") from None
    if settings.get("scheduler") and not settings.get("executor"):  # a scheduler given here means Dask
        settings = {**settings, "executor": "dask"}
    table = dict(raw.get("sweep", {})) if isinstance(raw.get("sweep", {}), Mapping) else raw.get("sweep")
    if settings and isinstance(table, dict):
        raw = {**raw, "sweep": table | {k: v for k, v in settings.items() if v is not None}}
    return parse_sweep(raw, folder=path.parent.resolve(), name=path.stem)
