"""What a sweep report says, independent of its format.

A sweep's ``sweep.json`` (written by the sweep orchestrator) lists grid points, each one
a whole experiment. This module reads that document and returns plain, *unescaped*
text and numbers: the points table, the effect of each grid key (mean ± standard
deviation over seeds), the rank correlation between the evidence and the held-out
metric, and the summary lines. The HTML and Markdown pages and the figures only read
what it returns. Nothing here changes the document, and nothing raises on odd values:
missing, ``None``, NaN or wrongly typed entries are left out or shown as a dash.

Grid keys whose last dotted component is ``seed`` (``fit.seed``, ``data.seed``) are
*seed-like*: they give the spread of a setting, never an axis.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesguide.report._format import (
    as_float,
    fmt_float,
    fmt_int,
    fmt_log,
    fmt_metric,
    fmt_prob,
    fmt_seconds,
    fmt_value,
    fmt_widths,
    get,
)
from bayesguide.report.content import Table

__all__ = [
    "Correlation", "KeyEffect", "Series", "Stat", "SweepDoc", "effects_table", "evidence_test_correlation",
    "failures", "grid", "is_seed_key", "key_effects", "metric_label", "point_rows", "point_value",
    "points_table", "setup_groups", "summary", "title",
]

SweepDoc = Mapping[str, Any]
MAX_SERIES = 6
"""At most this many combinations of the other keys are drawn as separate series; more are pooled."""
WEAK_RHO = 0.3
"""|ρ| below this is "no clear relation"."""
_STATUSES = ("complete", "failed", "pending", "running", "busy")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (``ddof=1``) of ``n`` finite values; ``None`` when undefined."""

    mean: float | None
    std: float | None
    n: int

    def __str__(self) -> str:
        return f"{fmt_float(self.mean)} ± {fmt_float(self.std)} (n={self.n})"


@dataclass(frozen=True)
class Series:
    """One setting of the other grid keys (``label`` empty when there is none): one `Stat` per value."""

    label: str
    units: tuple[Stat, ...]
    log_evidence: tuple[Stat, ...]
    test_metric: tuple[Stat, ...]
    counts: tuple[int, ...]  # complete points per value


@dataclass(frozen=True)
class KeyEffect:
    """The effect of one non-seed grid key: its values in grid order and one series per other setting."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    series: tuple[Series, ...]
    pooled: bool  # the other keys had more than MAX_SERIES combinations and were pooled

    def __str__(self) -> str:
        return f"{self.key}: {len(self.values)} values × {len(self.series)} series" + (" (pooled)" if self.pooled
                                                                                       else "")


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ between log evidence and the test metric, with its reading in one sentence."""

    rho: float
    p_value: float | None
    n: int
    verdict: str  # "agrees", "disagrees", "no clear relation" or "direction unknown"
    sentence: str

    def __str__(self) -> str:
        return self.sentence


def _seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def point_rows(doc: SweepDoc) -> list[Mapping[str, Any]]:
    """The point entries that are mappings (anything else in the list is skipped)."""
    raw = get(doc, "points")
    return [p for p in raw if isinstance(p, Mapping)] if _seq(raw) else []


def grid(doc: SweepDoc) -> dict[str, list[Any]]:
    """The grid: each key's values in file order (a lone value becomes a one-value list)."""
    raw = get(doc, "grid")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): list(v) if _seq(v) else [v] for k, v in raw.items()}


def is_seed_key(key: str) -> bool:
    """Whether a grid key is seed-like (last dotted component ``seed``).

    >>> is_seed_key("fit.seed"), is_seed_key("prior.strength")
    (True, False)
    """
    return str(key).rsplit(".", 1)[-1] == "seed"


def metric_label(doc: SweepDoc) -> str:
    """``"accuracy"``, ``"RMSE"`` or ``"metric"`` when the document does not say."""
    return {"accuracy": "accuracy", "rmse": "RMSE"}.get(str(get(doc, "metric")), "metric")


def title(doc: SweepDoc) -> str:
    """The page title, naming the sweep when known."""
    name = get(doc, "name")
    return "bayesguide sweep" + (f" — {name}" if name not in (None, "") else "")


def _status(point: Mapping[str, Any]) -> str:
    return str(point.get("status"))


def _complete(doc: SweepDoc) -> list[Mapping[str, Any]]:
    return [p for p in point_rows(doc) if _status(p) == "complete"]


def point_value(doc: SweepDoc, point: Mapping[str, Any], key: str) -> Any:
    """A point's value of a dotted key: its override, else the base experiment's value (``None`` if absent)."""
    overrides = point.get("overrides")
    if isinstance(overrides, Mapping) and key in overrides:
        return overrides[key]
    return get(get(doc, "base"), *key.split("."))


def _units(point: Mapping[str, Any]) -> float | None:
    units = as_float(point.get("units"))
    widths = point.get("widths")
    if units is None and _seq(widths) and widths:
        vals = [as_float(w) for w in widths]
        units = sum(v for v in vals if v is not None) if all(v is not None for v in vals) else None
    return units


def _evidence(point: Mapping[str, Any]) -> float | None:
    return as_float(point.get("log_evidence"))


def _test(point: Mapping[str, Any]) -> float | None:
    return as_float(point.get("test_metric"))


def _canon(value: Any) -> str:
    """A hashable key under which equal configuration values (``1`` and ``1.0``, lists) coincide."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        try:
            return repr(float(value))
        except OverflowError:
            return repr(value)
    if _seq(value):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_canon(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    return json.dumps(str(value))


def _stat(values: list[float]) -> Stat:
    arr = np.array(values, dtype=float)
    if not arr.size:
        return Stat(None, None, 0)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(arr))
        std = float(np.std(arr, ddof=1)) if arr.size > 1 else float("nan")
    return Stat(as_float(mean), as_float(std), int(arr.size))


def key_effects(doc: SweepDoc) -> list[KeyEffect]:
    """Per non-seed grid key, mean and standard deviation of units, log evidence and test metric.

    For each value of the key (in grid order) the statistics run over the complete
    points having that value; seeds give the spread. The combinations of the *other*
    non-seed keys are separate series when there are at most `MAX_SERIES`,
    otherwise pooled into one. Points that override a key outside the grid, or hold a
    value the grid does not list, are left out (a key a point does not override takes
    the base experiment's value). Means that overflow become ``None``.

    Examples
    --------
    >>> pts = [{"status": "complete", "overrides": {"prior.strength": s, "fit.seed": seed}, "units": s + seed}
    ...        for s in (1, 3) for seed in (0, 2)]
    >>> [effect] = key_effects({"grid": {"prior.strength": [1, 3], "fit.seed": [0, 2]}, "points": pts})
    >>> [str(stat) for stat in effect.series[0].units]
    ['2 ± 1.414 (n=2)', '4 ± 1.414 (n=2)']
    """
    g = grid(doc)
    keys = [k for k, v in g.items() if not is_seed_key(k) and v]
    canon = {k: [_canon(v) for v in g[k]] for k in keys}
    usable = []
    for p in _complete(doc):
        overrides = p.get("overrides")
        if isinstance(overrides, Mapping) and not set(map(str, overrides)) <= set(g):
            continue
        values = {k: _canon(point_value(doc, p, k)) for k in keys}
        if all(values[k] in canon[k] for k in keys):
            usable.append((p, values))
    out = []
    for key in keys:
        order = list(dict.fromkeys(canon[key]))  # drop repeated grid values, keep the first
        firsts = [g[key][canon[key].index(c)] for c in order]
        others = [k for k in keys if k != key]
        combos = list(itertools.product(*(list(dict.fromkeys(canon[k])) for k in others)))
        pooled = len(combos) > MAX_SERIES
        groups: list[tuple[str, tuple[str, ...] | None]] = [("", None)] if pooled or not others else [
            ("; ".join(f"{k}={fmt_value(g[k][canon[k].index(c)])}" for k, c in zip(others, combo)), combo)
            for combo in combos]
        series = []
        for label, combo in groups:
            cells = [[p for p, vals in usable if vals[key] == c
                      and (combo is None or all(vals[k] == ck for k, ck in zip(others, combo)))] for c in order]
            units, evidence, test = (tuple(_stat([x for x in map(fn, cell) if x is not None]) for cell in cells)
                                     for fn in (_units, _evidence, _test))
            series.append(Series(label, units, evidence, test, tuple(len(cell) for cell in cells)))
        out.append(KeyEffect(key, tuple(firsts), tuple(fmt_value(v) for v in firsts), tuple(series), pooled))
    return out


def evidence_test_correlation(doc: SweepDoc) -> Correlation | None:
    """Spearman's rank correlation between log evidence and test metric over the complete points.

    Only points with both values finite count; ``None`` when fewer than three remain or
    either quantity is constant. Higher accuracy and lower RMSE are better, so the
    evidence *agrees* with the held-out data when ρ ≥ 0.3 for accuracy (≤ −0.3 for RMSE).
    """
    pairs = [(as_float(p.get("log_evidence")), as_float(p.get("test_metric"))) for p in _complete(doc)]
    ok = [(e, t) for e, t in pairs if e is not None and t is not None]
    if len(ok) < 3:
        return None
    ev, test = np.array([e for e, _ in ok]), np.array([t for _, t in ok])
    if np.all(ev == ev[0]) or np.all(test == test[0]):
        return None
    # imported here: scipy.stats costs ~0.6 s of start-up, and sweep workers import this package
    # (through bayesguide.report) without ever drawing a sweep page
    from scipy.stats import spearmanr

    result = spearmanr(ev, test)
    rho, p_value = float(result[0]), as_float(result[1])
    metric = get(doc, "metric")
    sign = {"accuracy": 1.0, "rmse": -1.0}.get(str(metric))
    if abs(rho) < WEAK_RHO:
        verdict = "no clear relation"
    elif sign is None:
        verdict = "direction unknown"
    else:
        verdict = "agrees" if rho * sign > 0 else "disagrees"
    label = metric_label(doc)
    head = f"Spearman ρ = {rho:+.2f} between log evidence and test {label} over {len(ok)} complete points"
    reading = {
        "agrees": f"the evidence orders the settings like the held-out {label} does (it agrees)",
        "disagrees": f"the evidence orders the settings against the held-out {label} (it disagrees)",
        "no clear relation": f"no clear relation between the evidence and the held-out {label}",
        "direction unknown": "the metric's direction is unknown, so whether the evidence agrees cannot be said",
    }[verdict]
    return Correlation(rho, p_value, len(ok), verdict, f"{head}: {reading}.")


def _best(points: list[Mapping[str, Any]], key: str, higher: bool) -> Mapping[str, Any] | None:
    scored = [(x, p) for p in points if (x := as_float(p.get(key))) is not None]
    if not scored:
        return None
    pick = max if higher else min
    return pick(scored, key=lambda s: s[0])[1]


def summary(doc: SweepDoc) -> list[str]:
    """The summary box: point counts, wall time, the best points and the correlation, one line each."""
    points = point_rows(doc)
    counts = {s: sum(_status(p) == s for p in points) for s in _STATUSES}
    other = len(points) - sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in _STATUSES if counts[s] or s in ("complete", "failed")]
    parts += [f"{other} other"] if other else []
    lines = [f"{len(points)} point{'s' if len(points) != 1 else ''}: {', '.join(parts)}"]
    status = get(doc, "status")
    if status is not None and status != "complete":
        lines[0] += f"; sweep status: {status}"
    walls = [w for p in points if (w := as_float(p.get("wall_s"))) is not None]
    lines.append(f"Total wall time {fmt_seconds(get(doc, 'timings', 'total_s'))}; "
                 f"the points' own times sum to {fmt_seconds(sum(walls) if walls else None)}")
    done, metric, label = _complete(doc), get(doc, "metric"), metric_label(doc)
    best_test = None if metric not in ("accuracy", "rmse") else _best(done, "test_metric", metric == "accuracy")
    best_ev = _best(done, "log_evidence", True)
    if best_test is not None:
        lines.append(f"Best test {label}: {best_test.get('name')} ({fmt_metric(best_test.get('test_metric'), metric)})")
    else:
        lines.append(f"Best test {label}: not determined (no complete point with a test {label}"
                     + ("" if metric in ("accuracy", "rmse") else ", or the metric is unknown") + ")")
    if best_ev is not None:
        same = best_test is not None and best_test is best_ev
        lines.append(f"Highest log evidence: {best_ev.get('name')} ({fmt_log(best_ev.get('log_evidence'))}) — "
                     + ("the same point" if same else "a different point" if best_test is not None
                        else "no held-out pick to compare"))
    else:
        lines.append("Highest log evidence: no complete point has a log evidence")
    corr = evidence_test_correlation(doc)
    lines.append(corr.sentence if corr is not None else
                 "Evidence against held-out metric: not enough complete points with both values (3 needed, "
                 "neither constant).")
    return lines


def points_table(doc: SweepDoc) -> Table:
    """One row per point, in the document's order; failed points show their error in the status cell.

    The point of highest log evidence is tagged ``"best"``; failed points ``"failed"``.
    """
    keys, metric, label = list(grid(doc)), get(doc, "metric"), metric_label(doc)
    columns = ("point", *keys, "status", "widths", "units", "params", "log evidence", "posterior prob.",
               f"test {label}", f"full net test {label}", "wall time", "flags")
    numeric = tuple(c not in ("point", "status", "widths", *keys) for c in columns)
    best = _best(_complete(doc), "log_evidence", True)
    rows, kinds = [], []
    for p in point_rows(doc):
        status = fmt_value(p.get("status"))
        if status == "failed" and p.get("error") not in (None, ""):
            status = f"failed: {p.get('error')}"
        n_flags = p.get("n_flags")
        if as_float(n_flags) is None and _seq(p.get("flags")):
            n_flags = len(p["flags"])
        rows.append((fmt_value(p.get("name")), *(fmt_value(point_value(doc, p, k)) for k in keys), status,
                     fmt_widths(p.get("widths")), fmt_int(_units(p)), fmt_int(p.get("n_params")),
                     fmt_log(p.get("log_evidence")), fmt_prob(p.get("posterior_prob")),
                     fmt_metric(p.get("test_metric"), metric), fmt_metric(p.get("full_test_metric"), metric),
                     fmt_seconds(p.get("wall_s")), fmt_int(n_flags)))
        kinds.append("failed" if _status(p) == "failed" else "best" if p is best else "")
    return Table(columns, tuple(rows), tuple(kinds), numeric)


def effects_table(effect: KeyEffect, metric: Any) -> Table:
    """The numbers behind one key's figure: per value (and series), ``mean ± sd`` of each quantity."""
    label = {"accuracy": "accuracy", "rmse": "RMSE"}.get(str(metric), "metric")
    several = len(effect.series) > 1
    columns = (effect.key, *(("setting",) if several else ()), "complete points", "units", "log evidence",
               f"test {label}")

    def cell(stat: Stat, fmt: Any) -> str:
        return fmt(stat.mean) + ("" if stat.std is None else f" ± {fmt(stat.std)}")

    rows = []
    for s in effect.series:
        for i, value in enumerate(effect.labels):
            rows.append((value, *((s.label,) if several else ()), fmt_int(s.counts[i]), cell(s.units[i], fmt_float),
                         cell(s.log_evidence[i], fmt_log), cell(s.test_metric[i], lambda v: fmt_metric(v, metric))))
    numeric = (False, *((False,) if several else ()), True, True, True, True)
    return Table(columns, tuple(rows), ("",) * len(rows), numeric)


def failures(doc: SweepDoc) -> list[tuple[str, str]]:
    """``(point name, error message)`` of every failed point."""
    return [(fmt_value(p.get("name")), fmt_value(p.get("error")) if p.get("error") not in (None, "") else
             "no error message recorded") for p in point_rows(doc) if _status(p) == "failed"]


def setup_groups(doc: SweepDoc) -> list[tuple[str, list[tuple[str, str]]]]:
    """The sweep, its grid, extra points and executor, as labelled key–value groups."""
    sweep = [("name", fmt_value(get(doc, "name"))), ("status", fmt_value(get(doc, "status"))),
             ("metric", fmt_value(get(doc, "metric"))), ("started", fmt_value(get(doc, "timings", "started"))),
             ("finished", fmt_value(get(doc, "timings", "finished"))),
             ("total wall time", fmt_seconds(get(doc, "timings", "total_s")))]
    grid_items = [(k + (" (seed: spread)" if is_seed_key(k) else ""), "; ".join(fmt_value(v) for v in vals))
                  for k, vals in grid(doc).items()]
    extra = get(doc, "extra_points")
    extra_items = [(f"extra point {i + 1}", ", ".join(f"{k}={fmt_value(v)}" for k, v in e.items()))
                   for i, e in enumerate(extra if _seq(extra) else []) if isinstance(e, Mapping)]
    executor = get(doc, "executor")
    exec_items = [(str(k), fmt_value(v)) for k, v in executor.items()] if isinstance(executor, Mapping) else []
    groups = [("Sweep", sweep), ("Grid", grid_items or [("grid", "—")])]
    groups += [("Extra points", extra_items)] if extra_items else []
    groups += [("Executor", exec_items)] if exec_items else []
    return groups
