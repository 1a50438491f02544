"""The sweep report: a self-contained HTML page, its Markdown twin, and the writer.

Both pages render the content of `bayesguide.report.sweep_content` in six
sections: 1 Summary, 2 Points (each complete point's name links to its own report,
``<dir>/report.html`` or ``<dir>/report.md``, relative to the sweep directory),
3 Effects of each grid key, 4 Evidence against the held-out metric, 5 Failures,
6 Setup. The HTML page has the style of `bayesguide.report.html` (inline style,
figures as base64 PNG, no scripts, no external URLs); every user string passes
through `html.escape` (and `escape_markdown`
in Markdown), every link through `urllib.parse.quote`.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from bayesguide.atomic import write_atomic
from bayesguide.report import sweep_content as content
from bayesguide.report._format import get
from bayesguide.report.content import Table
from bayesguide.report.html import _CSS, _cls, _e, _kv
from bayesguide.report.markdown import _fence, escape_markdown
from bayesguide.report.sweep_content import SweepDoc
from bayesguide.report.sweep_figures import SCATTER, effect_figure_names, render_sweep_figures

__all__ = ["point_link", "render_sweep_html", "render_sweep_markdown", "write_sweep_report"]

_SECTIONS = (("summary", "1. Summary"), ("points", "2. Points"), ("effects", "3. Effects of each grid key"),
             ("evidence", "4. Evidence against the held-out metric"), ("failures", "5. Failures"),
             ("setup", "6. Setup"))
_m = escape_markdown


def point_link(point: Mapping[str, object], page: str) -> str | None:
    """The relative, percent-encoded link to a complete point's own report, or ``None``.

    ``None`` for a point that is not complete or whose ``dir`` is missing or absolute
    (a link must stay inside the sweep directory's tree).

    >>> point_link({"status": "complete", "dir": "points/a b,seed=0"}, "report.html")
    'points/a%20b,seed=0/report.html'
    """
    folder = point.get("dir")
    if str(point.get("status")) != "complete" or not isinstance(folder, str):
        return None
    folder = folder.replace("\\", "/").rstrip("/")
    if not folder or folder.startswith("/") or (len(folder) > 1 and folder[1] == ":"):
        return None
    return quote(f"{folder}/{page}", safe="/=,")


def _links(doc: SweepDoc, page: str) -> list[str | None]:
    return [point_link(p, page) for p in content.point_rows(doc)]


def _html_table(table: Table, links: Sequence[str | None] = ()) -> str:
    num = ' class="num"'
    head = "".join(f"<th{num if n else ''}>{_e(c)}</th>" for c, n in zip(table.columns, table.numeric))
    body = []
    for i, (row, kind) in enumerate(zip(table.rows, table.kinds)):
        cells = []
        for j, (col, cell, n) in enumerate(zip(table.columns, row, table.numeric)):
            text = _e(cell)
            if j == 0 and i < len(links) and links[i] is not None:
                text = f'<a href="{_e(links[i])}">{text}</a>'
            cells.append(f"<td{_cls('num' if n else 'status' if col == 'status' else '')}>{text}</td>")
        body.append(f"<tr{_cls(kind)}>{''.join(cells)}</tr>")
    return (f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _img(figures: Mapping[str, bytes], name: str, alt: str, caption: str) -> str:
    png = figures.get(name)
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


_POINTS_NOTE = ("Log evidence in nats; units = hidden units kept (all layers). The point of highest log evidence "
                "is highlighted, failed points are in red; a complete point's name links to its own report.")
_EFFECTS_NOTE = ("Mean ± sample standard deviation over the complete points with each value (seed-like keys "
                 "give the spread); a setting of the other keys is a separate series when there are at most "
                 f"{content.MAX_SERIES}, otherwise they are pooled.")


def _html(doc: SweepDoc, figures: Mapping[str, bytes]) -> str:
    metric, label = get(doc, "metric"), content.metric_label(doc)
    lines = content.summary(doc)
    effects = content.key_effects(doc)
    names = effect_figure_names(effects)
    table = content.points_table(doc)
    points = (_html_table(table, _links(doc, "report.html")) + f'<p class="note">{_e(_POINTS_NOTE)}</p>'
              if table.rows else '<p class="note">No points in this sweep.</p>')
    parts = [f"<h3>{_e(e.key)}</h3>" + _img(figures, names[e.key], f"Effect of {e.key}",
                                             f"Selected units, log evidence and test {label} against {e.key}.")
             + _html_table(content.effects_table(e, metric)) for e in effects]
    effect_html = ("".join(parts) + f'<p class="note">{_e(_EFFECTS_NOTE)}</p>' if parts else
                   '<p class="note">No grid key other than seeds: nothing to compare.</p>')
    corr = content.evidence_test_correlation(doc)
    evidence = _img(figures, SCATTER, "Log evidence against the held-out metric",
                    f"Each complete point's test {label} against its log evidence.")
    evidence += f"<p>{_e(lines[-1] if corr is None else corr.sentence)}</p>"
    fails = content.failures(doc)
    failures = ('<ul class="flags">' + "".join(f"<li><strong>{_e(n)}</strong>: {_e(err)}</li>" for n, err in fails)
                + "</ul>") if fails else '<div class="clean">No point failed.</div>'
    groups = "".join(f"<div><h3>{_e(n)}</h3>{_kv(items)}</div>" for n, items in content.setup_groups(doc))
    base = get(doc, "base")
    raw = (f"<details><summary>Base experiment</summary><pre>"
           f"{_e(json.dumps(base, indent=2, ensure_ascii=False, default=str))}</pre></details>"
           if isinstance(base, Mapping) and base else "")
    summary = (f'<section class="summary{" none" if not table.rows else ""}"><p class="headline">{_e(lines[0])}'
               f'</p>{"".join(f"<p>{_e(line)}</p>" for line in lines[1:])}</section>')
    sections = {"summary": summary, "points": points, "effects": effect_html, "evidence": evidence,
                "failures": failures, "setup": f'<div class="grid">{groups}</div>{raw}'}
    nav = "".join(f'<a href="#{key}">{_e(lab)}</a>' for key, lab in _SECTIONS)
    body = "".join(f'<section id="{key}"><h2>{_e(lab)}</h2>{sections[key]}</section>' for key, lab in _SECTIONS)
    page_title = content.title(doc)
    subtitle = "Bayesian model selection across a sweep of experiments"
    if get(doc, "status") is not None:
        subtitle += f" · sweep status: {get(doc, 'status')}"
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(page_title)}</title><style>{_CSS}</style></head>"
            f'<body><main><h1>{_e(page_title)}</h1><p class="subtitle">{_e(subtitle)}</p>'
            f"<nav>{nav}</nav>{body}"
            "<footer>Generated by bayesguide. Self-contained page: no scripts, no network access.</footer>"
            "</main></body></html>\n")


def render_sweep_html(doc: SweepDoc) -> str:
    """The sweep report as one self-contained HTML page.

    Parameters
    ----------
    doc
        A sweep document (``sweep.json``); only read, odd values shown as a dash.

    Returns
    -------
    str
        The page, figures embedded as base64 PNG, every user string escaped.
    """
    return _html(doc, render_sweep_figures(doc))


def _md_table(table: Table, links: Sequence[str | None] = ()) -> str:
    head = "| " + " | ".join(_m(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    rows = []
    for i, (row, kind) in enumerate(zip(table.rows, table.kinds)):
        cells = [_m(c) for c in row]
        link = links[i] if i < len(links) else None
        if link is not None:
            cells[0] = f"[{cells[0]}]({html.escape(link, quote=True)})"
        cells[0] += " ★" if kind == "best" else " ✗" if kind == "failed" else ""
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def _md_figure(figures: Mapping[str, str] | None, name: str, alt: str) -> list[str]:
    if not figures or name not in figures:
        return []
    return [f"![{_m(alt)}]({html.escape(quote(str(figures[name]), safe='/'), quote=True)})", ""]


def render_sweep_markdown(doc: SweepDoc, figures: Mapping[str, str] | None = None) -> str:
    """The sweep report as Markdown, the HTML page's twin.

    Parameters
    ----------
    doc
        A sweep document (``sweep.json``); only read.
    figures
        Optional relative paths of figure PNG files by name (the names of
        `render_sweep_figures`); each one given is linked.

    Returns
    -------
    str
        The Markdown page; complete points link to ``<dir>/report.md``.
    """
    metric = get(doc, "metric")
    lines = content.summary(doc)
    out = [f"# {_m(content.title(doc))}", "", "## 1. Summary", "", f"> **{_m(lines[0])}**  ",
           *(f"> {_m(line)}  " for line in lines[1:]), "", "## 2. Points", ""]
    table = content.points_table(doc)
    out += ([_md_table(table, _links(doc, "report.md")), "", _m(_POINTS_NOTE) + " ★ highest evidence, ✗ failed.", ""]
            if table.rows else ["_No points in this sweep._", ""])
    out += ["## 3. Effects of each grid key", ""]
    effects = content.key_effects(doc)
    names = effect_figure_names(effects)
    for e in effects:
        out += [f"### {_m(e.key)}", "", *_md_figure(figures, names[e.key], f"Effect of {e.key}"),
                _md_table(content.effects_table(e, metric)), ""]
    out += [_m(_EFFECTS_NOTE) if effects else "_No grid key other than seeds: nothing to compare._", ""]
    out += ["## 4. Evidence against the held-out metric", "",
            *_md_figure(figures, SCATTER, "Log evidence against the held-out metric"), _m(lines[-1]), ""]
    out += ["## 5. Failures", ""]
    fails = content.failures(doc)
    out += [f"- **{_m(n)}**: {_m(err)}" for n, err in fails] if fails else ["No point failed."]
    out += ["", "## 6. Setup", ""]
    for name, items in content.setup_groups(doc):
        out += [f"**{_m(name)}**", "", *(f"- {_m(k)}: {_m(v)}" for k, v in items), ""]
    base = get(doc, "base")
    if isinstance(base, Mapping) and base:
        text = json.dumps(base, indent=2, ensure_ascii=False, default=str)
        out += ["<details><summary>Base experiment</summary>", "", _fence(html.escape(text, quote=False)), "",
                "</details>", ""]
    return "\n".join(out)


def write_sweep_report(doc: SweepDoc, sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``sweep-report.html`` and ``sweep-report.md`` (figures in ``figures/``) into the sweep directory.

    Each figure is drawn once: embedded in the HTML page and saved as
    ``figures/sweep_<name>.png`` for the Markdown page. Every file is written atomically.

    Parameters
    ----------
    doc
        The sweep document (``sweep.json``); only read.
    sweep_dir
        The sweep directory (created when missing).

    Returns
    -------
    list of pathlib.Path
        The HTML page, the Markdown page, then the figure files.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     [p.name for p in write_sweep_report({"points": []}, d)]
    ['sweep-report.html', 'sweep-report.md']
    """
    folder = Path(sweep_dir)
    figures = render_sweep_figures(doc)
    written, links = [], {}
    for name, png in figures.items():
        rel = f"figures/sweep_{name}.png"
        written.append(write_atomic(folder / rel, png))
        links[name] = rel
    page = write_atomic(folder / "sweep-report.html", _html(doc, figures))
    md = write_atomic(folder / "sweep-report.md", render_sweep_markdown(doc, links))
    return [page, md, *written]
