"""The sweep report's figures, drawn with matplotlib's Agg backend into PNG bytes.

* one *effect* figure per non-seed grid key: selected units, log evidence and test
  metric against the key's values, mean ± one standard deviation over the seeds (the
  numbers of `bayesguide.report.sweep_content.key_effects`);
* the *evidence against held-out metric* scatter over the complete points, with
  Spearman's ρ in the title.

Like `bayesguide.report.figures` (whose helpers it reuses), figures are built with
`Figure` directly, never ``pyplot``; user strings are drawn as
plain text (no mathtext) and shortened; values that are missing, not finite or beyond
``±1e100`` are left out, and drawing never raises on odd numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bayesguide.report._format import as_float
from bayesguide.report.figures import _new, _plottable, _txt, to_png
from bayesguide.report.sweep_content import (
    KeyEffect,
    Stat,
    SweepDoc,
    evidence_test_correlation,
    key_effects,
    metric_label,
    point_rows,
)

__all__ = ["SCATTER", "effect_figure", "effect_figure_names", "render_sweep_figures", "scatter_figure"]

SCATTER = "evidence_vs_metric"
"""Name of the evidence-against-held-out-metric figure."""
_LOG_SPAN = 20.0
"""A numeric axis becomes logarithmic when its values are all positive and span more than this factor."""
_DODGE = 0.08
"""Horizontal offset between series on a categorical axis, so their error bars do not overlap."""
_MAX_TICKS = 8
"""A numeric axis shows the grid's values as ticks when there are at most this many."""
_TICK_CHARS = 14
"""Tick labels longer than this are shortened."""


def effect_figure_names(effects: Sequence[KeyEffect]) -> dict[str, str]:
    """Grid key → figure name (``effect_<key>``, file-name safe and unique)."""
    names: dict[str, str] = {}
    for i, effect in enumerate(effects):
        name = "effect_" + re.sub(r"[^A-Za-z0-9_.-]", "_", effect.key)[:60]
        names[effect.key] = name if name not in names.values() and name != SCATTER else f"{name}_{i}"
    return names


def _short(label: str) -> str:
    return _txt(label if len(label) <= _TICK_CHARS else label[: _TICK_CHARS - 1] + "…")


def _numeric_axis(values: Sequence[Any]) -> np.ndarray | None:
    """The values as x positions when they are all plottable numbers (not booleans), else ``None``."""
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return None
    x = np.array([_plottable(as_float(v)) for v in values], dtype=float)
    return x if np.isfinite(x).all() else None


def _arrays(stats: Sequence[Stat]) -> tuple[np.ndarray, np.ndarray]:
    mean = np.array([_plottable(s.mean) for s in stats], dtype=float)
    std = np.array([_plottable(s.std) for s in stats], dtype=float)
    return mean, np.where(np.isfinite(std) & (std >= 0), std, 0.0)


def effect_figure(effect: KeyEffect, metric: str) -> Figure | None:
    """Three panels against one key's values; one line per series; ``None`` when nothing is finite."""
    panels = (("selected units", "units"), ("log evidence (nats)", "log_evidence"), (f"test {metric}", "test_metric"))
    if not any(np.isfinite(_arrays(getattr(s, attr))[0]).any() for s in effect.series for _, attr in panels):
        return None
    x_num = _numeric_axis(effect.values)
    x = x_num if x_num is not None else np.arange(len(effect.values), dtype=float)
    log_x = (x_num is not None and bool((x_num > 0).all())
             and float(np.log10(x_num.max()) - np.log10(x_num.min())) > np.log10(_LOG_SPAN))
    fig = _new(8.5, 3.0)
    axes: Sequence[Axes] = fig.subplots(1, 3)
    several = len(effect.series) > 1
    for ax, (ylabel, attr) in zip(axes, panels):
        for j, series in enumerate(effect.series):
            mean, std = _arrays(getattr(series, attr))
            ok = np.isfinite(mean) & np.isfinite(x)
            if not ok.any():
                continue
            shift = (j - (len(effect.series) - 1) / 2) * _DODGE if x_num is None else 0.0
            ax.errorbar(x[ok] + shift, mean[ok], yerr=std[ok], marker="o", ms=4, lw=1.2, capsize=3,
                        color=f"C{j % 10}", label=_txt(series.label) if several else None)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(_txt(effect.key))
        if log_x:
            ax.set_xscale("log")
        if x_num is None or len(x) <= _MAX_TICKS:  # the grid's own values as ticks
            ax.minorticks_off()
            ax.set_xticks(x, [_short(v) for v in effect.labels], rotation=30 if len(x) > 3 else 0,
                          ha="right" if len(x) > 3 else "center")
    pooled = " (other keys pooled)" if effect.pooled else ""
    fig.suptitle(f"Effect of {_txt(effect.key)}{pooled}; error bars: ± 1 sd over seeds", fontsize=10)
    if several:
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:  # a series may be drawn only in a later panel
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8)
    return fig


def scatter_figure(doc: SweepDoc) -> Figure | None:
    """Test metric against log evidence over the complete points (``None`` under two such points)."""
    pts = [p for p in point_rows(doc) if str(p.get("status")) == "complete"]
    ev = np.array([_plottable(as_float(p.get("log_evidence"))) for p in pts], dtype=float)
    test = np.array([_plottable(as_float(p.get("test_metric"))) for p in pts], dtype=float)
    ok = np.flatnonzero(np.isfinite(ev) & np.isfinite(test))
    if ok.size < 2:
        return None
    fig = _new(8.5, 3.4)
    ax = fig.add_subplot()
    ax.scatter(ev[ok], test[ok], s=22, color="C0", zorder=3)
    if ok.size <= 12:
        for i in ok:
            ax.annotate(_txt(pts[i].get("name"))[:24], (ev[i], test[i]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="#5b6474")
    label = metric_label(doc)
    corr = evidence_test_correlation(doc)
    rho = "Spearman ρ not available" if corr is None else f"Spearman ρ = {corr.rho:+.2f} (n = {corr.n})"
    ax.set_xlabel("log evidence (nats)")
    ax.set_ylabel(f"test {label}")
    ax.set_title(f"Log evidence against held-out {label}: {rho}")
    return fig


def render_sweep_figures(doc: SweepDoc) -> dict[str, bytes]:
    """Every figure the sweep document allows, as PNG bytes by name.

    Names: ``effect_<key>`` per non-seed grid key (see `effect_figure_names`)
    and `SCATTER`.
    """
    effects = key_effects(doc)
    names = effect_figure_names(effects)
    label = metric_label(doc)
    out: dict[str, bytes] = {}
    with mpl.rc_context({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,  # figures.py's style
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False}):
        for effect in effects:
            fig = effect_figure(effect, label)
            if fig is not None:
                out[names[effect.key]] = to_png(fig)
        scatter = scatter_figure(doc)
        if scatter is not None:
            out[SCATTER] = to_png(scatter)
    return out
