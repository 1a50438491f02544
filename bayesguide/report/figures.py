"""The report's figures, drawn with matplotlib's Agg backend into PNG bytes.

Each ``*_figure`` function reads a results dictionary (the schema of
[`bayesguide.results`][]) and returns a `matplotlib.figure.Figure`, or ``None``
when the results lack what it needs (no loss history, no LOO, …).
[`render_figures`][bayesguide.report.render_figures] draws every available one and returns PNG bytes by name.

Figures are built with `Figure` directly, never through
``pyplot``: no global figure registry, nothing to close, no GUI backend. User strings
(candidate and layer names) are drawn as plain text: their ``$`` are escaped, so they
never start mathtext, and long ones are shortened.

Drawing never raises on odd numbers in the results: values that are missing, not
numbers, not finite or beyond ``±1e100`` (which matplotlib cannot place on an axis)
are left out; a negative standard error draws no error bar; stacking weights outside
``[0, 1]`` are not annotated; unit norms that are all zero (a network initialised at
zero) are drawn on a linear colour scale.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bayesguide.comparison.sensitivity import DEFAULT_RANGE, probabilities
from bayesguide.report._format import as_float, get
from bayesguide.report.content import Results, candidate_rows, layer_label, loss_terms, metric_label

__all__ = [
    "FIGURE_TITLES",
    "decomposition_figure",
    "elpd_figure",
    "loss_figure",
    "metric_figure",
    "render_figures",
    "sensitivity_figure",
    "to_png",
    "unit_norms_figure",
]

FIGURE_TITLES: dict[str, str] = {
    "loss": "Training objective",
    "unit_norms": "Unit norms over training",
    "metric": "Metric against units kept",
    "decomposition": "Evidence, architecture prior and posterior probability",
    "elpd": "Predictive comparison (PSIS-LOO)",
    "sensitivity": "Posterior probability against the strength of the architecture prior",
}
"""Figure names, in report order, with their captions."""

_BLUE, _ORANGE, _GREEN, _GREY, _RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"
_DPI = 110
_SYMLOG_ABOVE = 60.0
"""Nats of spread above which the decomposition's top panel switches to a symlog scale."""
_PLOTTABLE = 1e100
"""Magnitudes beyond this are not drawn: axis and tick arithmetic would overflow."""
_MAX_LABEL = 40
"""User strings longer than this are shortened in figures (tick labels, titles, legends)."""


def _plottable(x: float | None) -> float:
    """``x`` if it can be drawn, else NaN."""
    return x if x is not None and abs(x) <= _PLOTTABLE else np.nan


def _floats(values: Any) -> np.ndarray:
    """A 1-D float array; ``None``, non-numbers and values beyond ``±1e100`` become NaN."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return np.array([], dtype=float)
    return np.array([_plottable(as_float(v)) for v in values], dtype=float)


def _sequence(value: Any) -> bool:
    """Whether ``value`` is a list-like sequence (a string is not)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _records(value: Any) -> bool:
    """Whether ``value`` is a non-empty sequence of sequences: a layer's unit-norm records."""
    return _sequence(value) and bool(value) and all(_sequence(r) for r in value)


def _txt(value: Any) -> str:
    """A user string as plain text for matplotlib (no mathtext), at most ``_MAX_LABEL`` characters."""
    text = str(value)
    if len(text) > _MAX_LABEL:
        text = text[: _MAX_LABEL - 1] + "…"
    return text.replace("$", r"\$")


def _new(width: float, height: float, **kwargs: Any) -> Figure:
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained", **kwargs)


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg, no metadata), drawn under the report's style."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a user string with characters the bundled font lacks is drawn as boxes, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing", category=UserWarning)
        # odd values (huge labels, many candidates) can leave no room for the layout: drawn unlaid
        warnings.filterwarnings("ignore", message="constrained_layout not applied", category=UserWarning)
        fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _loss_panel(ax: Any, steps: np.ndarray, values: np.ndarray, color: str, ylabel: str, title: str) -> None:
    """One history against the step (log scale when positive over > 2 decades)."""
    if steps.shape != values.shape:
        steps = np.arange(len(values), dtype=float)
    ax.plot(steps, values, color=color, lw=1.2)
    finite = values[np.isfinite(values)]
    # decades compared as logarithms: the ratio of a huge and a subnormal value overflows
    if finite.size and finite.min() > 0 and np.log10(finite.max()) - np.log10(finite.min()) > 2:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def loss_figure(results: Results) -> Figure | None:
    """The training history: the data term and the penalty in two panels, when recorded.

    The data term (summed negative log-likelihood) and the penalty (the prior's negative
    log-density without its normalising constant) are drawn separately: the constant can
    be tens of thousands of nats and would hide convergence. Results that record only the
    total objective (older files, non-MAP fits) get the objective alone.
    """
    steps = _floats(get(results, "fit", "loss_steps"))
    terms = loss_terms(results)
    if terms is not None:
        nll, penalty = _floats(terms[0]), _floats(terms[1])
        if np.isfinite(nll).any():
            fig = _new(8.5, 4.4)
            top, bottom = fig.subplots(2, 1, sharex=True)
            _loss_panel(top, steps, nll, _BLUE, "nats", "Data term: negative log-likelihood (summed)")
            _loss_panel(bottom, steps, penalty, _ORANGE, "nats",
                        "Penalty: the prior's −log density without its constant (regulariser)")
            bottom.set_xlabel("step")
            return fig
    losses = _floats(get(results, "fit", "losses"))
    if not np.isfinite(losses).any():
        return None
    fig = _new(8.5, 2.8)
    ax = fig.add_subplot()
    _loss_panel(ax, steps, losses, _BLUE, "objective (−log joint)", FIGURE_TITLES["loss"])
    ax.set_xlabel("step")
    return fig


def unit_norms_figure(results: Results) -> Figure | None:
    """Per prunable layer, unit-group norms over training (log colour): the guided ordering."""
    norms = get(results, "fit", "unit_norms")
    if not isinstance(norms, Mapping) or not norms:
        return None
    layers: list[tuple[str, np.ndarray]] = []
    for name, records in norms.items():
        if _records(records):
            width = max(len(r) for r in records)
            grid = np.full((len(records), width), np.nan)
            for i, r in enumerate(records):
                grid[i, : len(r)] = _floats(r)
            if width and np.isfinite(grid).any():
                layers.append((str(name), grid))
    if not layers:
        return None
    steps = _floats(get(results, "fit", "norm_steps"))
    ncols = min(len(layers), 3)
    nrows = -(-len(layers) // ncols)
    fig = _new(8.5, 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    low, norm, label = _norm_scale(np.concatenate([g.ravel() for _, g in layers]))
    cmap = mpl.colormaps["viridis"].with_extremes(bad="#440154", under="#440154")
    mesh = None
    for ax, (name, grid) in zip(axes.flat, layers):
        n_rec, n_units = grid.shape
        x = steps if steps.shape == (n_rec,) and np.isfinite(steps).all() else np.arange(n_rec, dtype=float)
        x_edges = _edges(x)
        y_edges = np.arange(n_units + 1) - 0.5
        mesh = ax.pcolormesh(x_edges, y_edges, np.clip(grid, low, None).T, cmap=cmap, norm=norm,
                             shading="flat", rasterized=True)
        ax.set_title(f"{_txt(layer_label(results, name))} ({n_units} units)")
        ax.set_xlabel("step")
        ax.set_ylabel("unit index")
        ax.grid(False)
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label=label, shrink=0.9)
    return fig


NEGLIGIBLE_NORM = 1e-250
"""Unit norms at most this small are drawn as zero (far below any float32 or float64 weight that matters)."""


def _norm_scale(values: np.ndarray) -> tuple[float, Normalize, str]:
    """The clip floor, colour scale and colour-bar label for unit norms.

    A log scale over the positive norms (at most six decades below the largest); when no
    norm is positive (all zero: a zero-initialised network), a linear scale on ``[0, 1]``.
    Norms below `NEGLIGIBLE_NORM` count as zero: matplotlib takes a scale whose largest
    value is that small for a singular one and moves it below 0, where a log scale fails.
    """
    positive = values[np.isfinite(values) & (values > NEGLIGIBLE_NORM)]
    if not positive.size:
        return 0.0, Normalize(vmin=0.0, vmax=1.0), "‖θ unit‖₂ (all zero)"
    top = float(positive.max())
    low = max(float(positive.min()), top * 1e-6)
    return low, LogNorm(vmin=low, vmax=top if top > low else low * 10), "‖θ unit‖₂ (log scale)"


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around increasing centres (a unit-width cell for a single record)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def _units(cand: Mapping[str, Any]) -> float:
    widths = cand.get("widths")
    if isinstance(widths, Sequence) and not isinstance(widths, str):
        vals = [as_float(w) for w in widths]
        if vals and all(v is not None for v in vals):
            return float(sum(v for v in vals if v is not None))
    return float("nan")


def metric_figure(results: Results) -> Figure | None:
    """Train (and test) metric against the number of hidden units kept; the best marked."""
    cands = candidate_rows(results)
    units = np.array([_units(c) for c in cands])
    train = _floats([get(c, "metrics", "train") for c in cands])
    test = _floats([get(c, "metrics", "test") for c in cands])
    if not (np.isfinite(units) & (np.isfinite(train) | np.isfinite(test))).any():
        return None
    order = np.argsort(units)
    fig = _new(8.5, 3.0)
    ax = fig.add_subplot()
    for values, label, color, marker in ((train, "train", _BLUE, "o"), (test, "test", _ORANGE, "s")):
        ok = order[np.isfinite(units[order]) & np.isfinite(values[order])]
        if ok.size:
            ax.plot(units[ok], values[ok], marker=marker, ms=4, color=color, label=label, lw=1.2)
    best = results.get("best")
    for c, u in zip(cands, units):
        if best is not None and str(c.get("name")) == str(best) and np.isfinite(u):
            ax.axvline(u, color=_GREEN, ls="--", lw=1, label=f"recommended: {_txt(c.get('name'))}")
    label = metric_label(results)
    ax.set_xlabel("hidden units kept (all layers)")
    ax.set_ylabel(label)
    ax.set_title(f"{label[0].upper()}{label[1:]} against units kept")
    if ax.get_legend_handles_labels()[0]:  # nothing finite to draw: no legend either
        ax.legend(loc="best")
    return fig


def decomposition_figure(results: Results) -> Figure | None:
    """Top: log evidence and log posterior (relative to their maxima) and the log
    architecture prior, per candidate; bottom: the posterior probability."""
    cands = candidate_rows(results)
    if not cands:
        return None
    ev = _floats([c.get("log_evidence") for c in cands])
    prior = _floats([c.get("log_prior") for c in cands])
    post = _floats([c.get("log_posterior") for c in cands])
    prob = _floats([c.get("posterior_prob") for c in cands])
    if not (np.isfinite(ev).any() or np.isfinite(prob).any()):
        return None
    names = [str(c.get("name")) for c in cands]
    labels = [_txt(n) for n in names]
    x = np.arange(len(cands))
    fig = _new(8.5, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.6, 1])
    for values, label, color, marker in (
        (ev - np.nanmax(ev) if np.isfinite(ev).any() else ev, "log evidence − max", _BLUE, "o"),
        (prior, "log architecture prior", _ORANGE, "s"),
        (post - np.nanmax(post) if np.isfinite(post).any() else post, "log posterior − max", _GREEN, "D"),
    ):
        if np.isfinite(values).any():
            top.plot(x, values, marker=marker, ms=4, lw=1.2, color=color, label=label)
    finite = [v for s in top.lines for v in np.asarray(s.get_ydata(), dtype=float) if np.isfinite(v)]
    if finite and max(finite) - min(finite) > _SYMLOG_ABOVE:
        # a candidate thousands of nats behind would flatten the others: linear near 0, log beyond
        top.set_yscale("symlog", linthresh=10)
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        top.set_ylabel("nats (symmetric log scale)")
    else:
        top.set_ylabel("nats")
    fig.suptitle(FIGURE_TITLES["decomposition"], fontsize=10)
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)  # above the lines, never on them
    best = results.get("best")
    colors = [_GREEN if best is not None and n == str(best) else _GREY for n in names]
    bottom.bar(x, np.nan_to_num(prob, nan=0.0), color=colors, width=0.6)
    for i in np.flatnonzero(~np.isfinite(prob)):
        bottom.annotate("excluded", (x[i], 0), ha="center", va="bottom", color=_RED, fontsize=7, rotation=90)
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("P(M | D)")
    bottom.set_xticks(x, labels, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    bottom.set_xlabel("candidate")
    return fig


def elpd_figure(results: Results) -> Figure | None:
    """ELPD (LOO) with ± se per candidate, best on top (like ``arviz.plot_compare``)."""
    cands = [c for c in candidate_rows(results) if np.isfinite(_plottable(as_float(c.get("elpd_loo"))))]
    if not cands:
        return None
    elpd = _floats([c.get("elpd_loo") for c in cands])
    se = _floats([c.get("elpd_se") for c in cands])
    se = np.where(np.isfinite(se) & (se > 0), se, 0.0)  # a negative or missing se draws no bar
    weights = [as_float(c.get("stacking_weight")) for c in cands]
    weights = [w if w is not None and 0.0 <= w <= 1.0 else None for w in weights]
    order = np.argsort(-elpd)
    fig = _new(8.5, 0.9 + 0.32 * len(cands))
    ax = fig.add_subplot()
    y = np.arange(len(cands))[::-1]
    ax.errorbar(elpd[order], y, xerr=se[order], fmt="o", mfc="white", color="black", ms=5, capsize=3)
    ax.axvline(elpd[order[0]], color=_GREY, ls="--", lw=1)
    ax.set_yticks(y, [_txt(cands[i].get("name")) for i in order])
    for yi, i in zip(y, order):
        if weights[i] is not None:
            ax.annotate(f"w = {weights[i]:.2f}", (1.0, yi), xycoords=("axes fraction", "data"),
                        ha="left", va="center", fontsize=8, color=_GREY, xytext=(6, 0),
                        textcoords="offset points")
    ax.set_xlabel("ELPD (leave-one-out), higher is better")
    ax.set_title(FIGURE_TITLES["elpd"])
    ax.grid(False, axis="y")
    return fig


def sensitivity_figure(results: Results) -> Figure | None:
    """``P(M | D)`` of the leading candidates against the architecture prior's range over the
    candidates (``κ · (max − min cost)``, nats, log scale), with the κ used and the
    default range marked; the left end is the evidence alone."""
    cands = candidate_rows(results)
    ev = _floats([c.get("log_evidence") for c in cands])
    cost = _floats([c.get("occam_cost") for c in cands])
    ok = np.isfinite(ev) & np.isfinite(cost) & np.array([str(c.get("status", "ok")) == "ok" for c in cands],
                                                         dtype=bool)
    if ok.sum() < 2 or not np.ptp(cost[ok]) > 0:
        return None
    span = float(np.ptp(cost[ok]))
    ranges = np.logspace(-2, 3, 241)
    probs = np.stack([probabilities(ev, cost, r / span, ok) for r in ranges])
    top = np.nan_to_num(np.vstack([probs, probabilities(ev, cost, 0.0, ok)]), nan=0.0).max(axis=0)
    leading = [int(k) for k in np.argsort(-top) if top[k] >= 0.05][:6]
    fig = _new(8.5, 3.6)
    ax = fig.add_subplot()
    ax.axvspan(ranges[0], DEFAULT_RANGE, color=_GREY, alpha=0.12, lw=0,
               label=f"default range (prior spans ≤ {DEFAULT_RANGE:g} nats)")
    for k in leading:
        ax.plot(ranges, probs[:, k], lw=1.5, label=_txt(cands[k].get("name")))
    kappa = _plottable(as_float(get(results, "selection", "kappa")))
    if np.isfinite(kappa) and kappa * span > 0:
        ax.axvline(min(max(kappa * span, ranges[0]), ranges[-1]), color="black", ls="--", lw=1,
                   label=f"κ used ({kappa:.3g})")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("range of the architecture prior over the candidates, κ · (max − min cost), nats")
    ax.set_ylabel("P(M | D)")
    ax.set_title(FIGURE_TITLES["sensitivity"])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


_BUILDERS = {
    "loss": loss_figure,
    "unit_norms": unit_norms_figure,
    "metric": metric_figure,
    "decomposition": decomposition_figure,
    "elpd": elpd_figure,
    "sensitivity": sensitivity_figure,
}


def render_figures(results: Results) -> dict[str, bytes]:
    """Every figure the results allow, as PNG bytes keyed by the names of `FIGURE_TITLES`."""
    out: dict[str, bytes] = {}
    with mpl.rc_context({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
                         "legend.frameon": False}):
        for name, build in _BUILDERS.items():
            fig = build(results)
            if fig is not None:
                out[name] = to_png(fig)
    return out
