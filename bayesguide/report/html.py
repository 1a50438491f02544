"""The self-contained HTML report.

One page, no network access: no scripts, no web fonts, no external CSS; figures are
embedded as ``data:image/png;base64`` images and the style sheet is inline. Every piece
of text from the results (names, configuration values, flags, errors) passes through
`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping

from bayesguide.report import content
from bayesguide.report.content import Results, Table
from bayesguide.report.figures import FIGURE_TITLES, render_figures

__all__ = ["render_html"]

_CSS = """
:root { --fg:#1d2330; --muted:#5b6474; --line:#dde2ea; --accent:#2f6fb3; --ok:#1e7d3c;
        --okbg:#eaf6ee; --warn:#8a5a00; --warnbg:#fff6e0; --bad:#b42318; }
* { box-sizing:border-box; }
body { margin:0; background:#f5f7fa; color:var(--fg);
       font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1280px; margin:0 auto; padding:28px 32px 48px; background:#fff;
       box-shadow:0 0 0 1px var(--line); min-height:100vh; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:19px; margin:34px 0 10px; padding-bottom:5px; border-bottom:2px solid var(--line); }
h3 { font-size:14px; margin:0 0 6px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.subtitle { color:var(--muted); margin:0 0 18px; font-size:13px; }
nav { font-size:13px; margin:0 0 18px; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; }
.summary { border:1px solid #b7dfc3; background:var(--okbg); border-radius:8px; padding:14px 18px; }
.summary.none { border-color:#f0c36d; background:var(--warnbg); }
.summary .headline { font-size:18px; font-weight:600; margin:0 0 4px; }
.summary p { margin:0; }
.summary .alert { margin-top:8px; color:var(--warn); font-weight:600; }
.summary ul { margin:2px 0 0; padding-left:22px; color:var(--warn); font-size:14px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(300px,1fr)); gap:14px 20px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:0; font-size:14px; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; font-variant-numeric:tabular-nums; overflow-wrap:break-word; min-width:0; }
.tablewrap { overflow-x:auto; max-width:100%; }
table { border-collapse:collapse; font-size:12.5px; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:4px 6px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
th { background:#eef2f7; font-weight:600; white-space:normal; vertical-align:bottom; line-height:1.25; }
td.num, th.num { text-align:right; }
tbody tr:nth-child(even) { background:#fafbfd; }
tr.best td { background:var(--okbg); font-weight:600; }
tr.failed td { color:var(--bad); }
.nowrap { white-space:nowrap; }
td.text { white-space:normal; min-width:6em; max-width:16em; overflow-wrap:anywhere; }
figure { margin:16px 0; }
figure img { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.note { color:var(--muted); font-size:13px; }
.flags { border:1px solid #f0c36d; background:var(--warnbg); border-radius:8px; padding:10px 18px;
         list-style:none; margin:0; }
.flags li { color:var(--warn); margin:3px 0; overflow-wrap:anywhere; }
.clean { border:1px solid #b7dfc3; background:var(--okbg); border-radius:8px; padding:10px 18px; }
details { margin-top:14px; font-size:13px; }
pre { background:#f3f5f8; padding:10px; border-radius:6px; overflow-x:auto; }
footer { margin-top:40px; color:var(--muted); font-size:12px; }
"""

_SECTIONS = (("setup", "1. Setup"), ("training", "2. Training"), ("candidates", "3. Candidates"),
             ("predictive", "4. Predictive comparison"), ("recommendation", "5. Recommendation"),
             ("diagnostics", "6. Diagnostics"))


_SUMMARY_FLAGS = 3
"""Flags repeated in the summary box (all of them are listed under Diagnostics)."""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cls(name: str) -> str:
    return f' class="{name}"' if name else ""


def _kv(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<dl class="kv">{rows}</dl>'


def _head(name: str) -> str:
    """A column heading; one joined by no-break spaces (``P(M | D)``) is kept on one line."""
    return f'<span class="nowrap">{_e(name)}</span>' if "\u00a0" in name else _e(name)


_WRAPPING = frozenset({"status", "fine-tuning", "evidence prior"})
"""Text columns whose cells may wrap (long free text: a failure reason, a convergence verdict)."""


def _table(table: Table) -> str:
    """A table inside a horizontally scrolling container (``div.tablewrap``).

    Numbers never wrap; the free-text columns (``status``, ``fine-tuning``, ``evidence
    prior``) wrap, so that the table fits the page; only on a narrow screen does the
    container scroll.
    """
    num_cls = ' class="num"'
    head = "".join(f"<th{num_cls if num else ''}>{_head(c)}</th>" for c, num in zip(table.columns, table.numeric))
    body = []
    for row, kind in zip(table.rows, table.kinds):
        cells = []
        for col, cell, num in zip(table.columns, row, table.numeric):
            cls = "num" if num else "text" if col in _WRAPPING else ""
            cells.append(f"<td{_cls(cls)}>{_e(cell)}</td>")
        body.append(f"<tr{_cls(kind)}>{''.join(cells)}</tr>")
    return (f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _figure(figures: Mapping[str, bytes], name: str, caption: str) -> str:
    png = figures.get(name)
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(FIGURE_TITLES[name])}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _summary(results: Results, flags: list[str]) -> str:
    lines = content.summary(results)
    none = results.get("best") is None and not isinstance(results.get("recommended"), Mapping)
    alert = ""
    if flags:
        n, shown = len(flags), flags[:_SUMMARY_FLAGS]
        more = f"<li>… and {n - len(shown)} more</li>" if n > len(shown) else ""
        alert = (f'<p class="alert">⚠ {n} diagnostic flag{"s" if n != 1 else ""} — '
                 f'see <a href="#diagnostics">Diagnostics</a></p>'
                 f'<ul>{"".join(f"<li>{_e(f)}</li>" for f in shown)}{more}</ul>')
    rest = "".join(f"<p>{_e(line)}</p>" for line in lines[1:])
    return (f'<section class="summary{" none" if none else ""}">'
            f'<p class="headline">{_e(lines[0])}</p>{rest}{alert}</section>')


def _setup(results: Results) -> str:
    groups = "".join(f"<div><h3>{_e(name)}</h3>{_kv(items)}</div>" for name, items in content.setup_groups(results))
    config = results.get("config")
    raw = ""
    if isinstance(config, Mapping) and config:
        text = json.dumps(config, indent=2, ensure_ascii=False, default=str)
        raw = f"<details><summary>Full configuration</summary><pre>{_e(text)}</pre></details>"
    return f'<div class="grid">{groups}</div>{raw}'


def _training(results: Results, figures: Mapping[str, bytes]) -> str:
    parts = [
        _figure(figures, "loss", content.loss_caption(results)),
        _figure(figures, "unit_norms", "Norm of each unit's weight group over training, per prunable "
                "hidden layer, counted from the input (log colour scale). Under ordered guidance the "
                "high-index units collapse first, so the surviving units form a prefix."),
    ]
    body = "".join(parts)
    return body or '<p class="note">No training history in these results.</p>'


def _candidates(results: Results, figures: Mapping[str, bytes]) -> str:
    table = content.candidates_table(results)
    if not table.rows:
        return '<p class="note">No candidates in these results.</p>'
    return "".join([
        _table(table),
        '<p class="note">Log quantities in nats. log posterior = log evidence + log architecture prior '
        "(the prior over architectures, unnormalised; not the Laplace Occam factor, which is part of the "
        "log evidence); P(M | D) normalises it over the candidates that did not fail, and “P, evidence "
        "alone” is the same under a uniform prior; log Bayes "
        "factor is against the candidate with the highest evidence. The recommended row is "
        "highlighted; excluded candidates are in red.</p>",
        _figure(figures, "metric", f"{content.metric_label(results).capitalize()} of each candidate "
                "against the number of hidden units it keeps."),
        _figure(figures, "decomposition", "The trade-off: the evidence rewards fit, the architecture prior "
                "rewards simplicity; their sum gives the posterior probability (bottom)."),
        _figure(figures, "sensitivity", "How much the architecture prior decides: the posterior probability of the "
                "leading candidates as the prior's strength κ grows (left end: the evidence alone). "
                "The dashed line is the κ used; in the shaded default range a change of pick is flagged."),
    ])


def _predictive(results: Results, figures: Mapping[str, bytes]) -> str:
    table = content.loo_table(results)
    if table is None:
        return (f'<p class="note">PSIS-LOO was not computed for these candidates '
                f"({_e(content.loo_hint(results))}).</p>")
    return _table(table) + _figure(figures, "elpd", "Expected log predictive density by PSIS-LOO, ± one "
                                   "standard error; the dashed line marks the best. Pareto k above 0.7 "
                                   "means the estimate is unreliable.")


def _recommendation(results: Results) -> str:
    items = content.recommendation(results)
    if items is None:
        best = results.get("best")
        if best is None:
            return '<p class="note">No recommendation: no candidate could be scored.</p>'
        return (f'<p class="note">No measured recommendation in these results; the candidate of highest '
                f"posterior probability is <strong>{_e(best)}</strong>.</p>")
    return _kv(items)


def _diagnostics(flags: list[str]) -> str:
    if not flags:
        return '<div class="clean">No diagnostic flags were raised.</div>'
    return '<ul class="flags">' + "".join(f"<li>⚠ {_e(f)}</li>" for f in flags) + "</ul>"


def render_html(results: Results, figures: Mapping[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page.

    Parameters
    ----------
    results
        A results dictionary (schema of [`bayesguide.results`][]); only read.
    figures
        The figures as PNG bytes by name, already drawn from ``results``
        ([`render_figures`][bayesguide.report.render_figures]; what
        [`write_reports`][bayesguide.report.write_reports] passes, so that the Markdown report's figures are not
        drawn again); ``None``: drawn here.

    Returns
    -------
    str
        The page, with figures embedded as base64 PNG and every user string escaped.
    """
    figures = render_figures(results) if figures is None else figures
    flags = content.flags(results)
    sections = {
        "setup": _setup(results),
        "training": _training(results, figures),
        "candidates": _candidates(results, figures),
        "predictive": _predictive(results, figures),
        "recommendation": _recommendation(results),
        "diagnostics": _diagnostics(flags),
    }
    nav = "".join(f'<a href="#{key}">{_e(label)}</a>' for key, label in _SECTIONS)
    body = "".join(f'<section id="{key}"><h2>{_e(label)}</h2>{sections[key]}</section>'
                   for key, label in _SECTIONS)
    page_title = content.title(results)
    status = results.get("status")
    subtitle = "Bayesian model selection of network widths: evidence × architecture prior → posterior"
    if status is not None:
        subtitle += f" · run status: {status}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page_title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{_e(page_title)}</h1>"
        f'<p class="subtitle">{_e(subtitle)}</p>'
        f"<nav>{nav}</nav>{_summary(results, flags)}{body}"
        "<footer>Generated by bayesguide. Self-contained page: no scripts, no network access.</footer>"
        "</main></body></html>\n"
    )
