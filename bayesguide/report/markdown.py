"""The Markdown report: the HTML report's twin, for notebooks, READMEs and diffs.

It shows the same sections and the same formatted numbers as the HTML page (both are
built from `bayesguide.report.content`). Figures are not embedded: given
``figures`` (name → relative path, as [`bayesguide.report.write_report`][] saves
them in a ``figures/`` folder next to the ``.md`` file) the page links them as images;
without it the page holds the tables only.

User strings are escaped twice over: HTML-special characters (Markdown renderers pass
raw HTML through) and the Markdown characters that would start emphasis, links, code
or a table cell.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping

from bayesguide.report import content
from bayesguide.report.content import Results, Table
from bayesguide.report.figures import FIGURE_TITLES

__all__ = ["escape_markdown", "render_markdown"]

_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")
"""
Characters that start emphasis, code, links or table cells (parentheses and ``#`` only matter after ``]`` or at a line
start, which these escapes and the layout rule out).
"""


def escape_markdown(text: object) -> str:
    """``text`` safe inside a Markdown paragraph or table cell (one line)."""
    s = html.escape(str(text), quote=False)
    s = _SPECIAL.sub(r"\\\1", s)
    return " ".join(s.splitlines())


_m = escape_markdown


def _table(table: Table) -> str:
    head = "| " + " | ".join(_m(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in table.numeric) + "|"
    rows = []
    for row, kind in zip(table.rows, table.kinds):
        cells = [_m(c) for c in row]
        if kind == "best":
            cells[0] = f"**{cells[0]}** ★"
        elif kind == "failed":
            cells[0] = f"{cells[0]} ✗"
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def _kv(items: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {_m(k)}: {_m(v)}" for k, v in items)


def _figure(figures: Mapping[str, str] | None, name: str) -> list[str]:
    if not figures or name not in figures:
        return []
    path = str(figures[name]).replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return [f"![{_m(FIGURE_TITLES[name])}]({html.escape(path, quote=True)})", ""]


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}json\n{text}\n{fence}"


def render_markdown(results: Results, figures: Mapping[str, str] | None = None) -> str:
    """The report as Markdown.

    Parameters
    ----------
    results
        A results dictionary (schema of [`bayesguide.results`][]); only read.
    figures
        Optional relative paths of figure PNG files by name (``"loss"``,
        ``"unit_norms"``, ``"metric"``, ``"decomposition"``, ``"elpd"``, ``"sensitivity"``); each one given
        is linked in its section.

    Returns
    -------
    str
        The Markdown page.
    """
    flags = content.flags(results)
    summary = content.summary(results)
    out = [f"# {_m(content.title(results))}", ""]
    out += [f"> **{_m(summary[0])}**  ", *(f"> {_m(line)}  " for line in summary[1:])]
    if flags:
        out.append(f"> ⚠ **{len(flags)} diagnostic flag{'s' if len(flags) != 1 else ''}** — see Diagnostics")
    out += ["", "## 1. Setup", ""]
    for name, items in content.setup_groups(results):
        out += [f"**{_m(name)}**", "", _kv(items), ""]
    config = results.get("config")
    if isinstance(config, Mapping) and config:
        text = json.dumps(config, indent=2, ensure_ascii=False, default=str)
        out += ["<details><summary>Full configuration</summary>", "", _fence(html.escape(text, quote=False)),
                "", "</details>", ""]
    out += ["## 2. Training", ""]
    training = _figure(figures, "loss") + _figure(figures, "unit_norms")
    if training:
        training += [f"_{_m(content.loss_caption(results))}_", ""]
    out += training or ["_Figures not included; see the HTML report for the loss curve and unit norms._", ""]
    out += ["## 3. Candidates", ""]
    table = content.candidates_table(results)
    if table.rows:
        out += [_table(table), "",
                "Log quantities in nats; log posterior = log evidence + log architecture prior (the prior "
                "over architectures, unnormalised; not the Laplace Occam factor inside the evidence); "
                "\"P, evidence alone\" is P(M | D) under a uniform prior; "
                "★ recommended, ✗ excluded.", ""]
        out += _figure(figures, "metric") + _figure(figures, "decomposition") + _figure(figures, "sensitivity")
    else:
        out += ["_No candidates in these results._", ""]
    out += ["## 4. Predictive comparison", ""]
    loo = content.loo_table(results)
    if loo is None:
        out += [f"_PSIS-LOO was not computed for these candidates ({_m(content.loo_hint(results))})._", ""]
    else:
        out += [_table(loo), "", *_figure(figures, "elpd")]
    out += ["## 5. Recommendation", ""]
    rec = content.recommendation(results)
    if rec is not None:
        out += [_kv(rec), ""]
    elif results.get("best") is None:
        out += ["_No recommendation: no candidate could be scored._", ""]
    else:
        out += [f"_No measured recommendation in these results; the candidate of highest posterior "
                f"probability is_ **{_m(results.get('best'))}**.", ""]
    out += ["## 6. Diagnostics", ""]
    out += [f"- ⚠ {_m(f)}" for f in flags] if flags else ["No diagnostic flags were raised."]
    out.append("")
    return "\n".join(out)
