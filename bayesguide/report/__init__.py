"""Model-comparison reports: HTML, Markdown and JSON.

Compute, then report: the functions here read a results dictionary (the schema of
[`bayesguide.results`][]) or a [`Comparison`][bayesguide.Comparison] and never change it.

* [`write_report`][bayesguide.write_report] — a file whose extension chooses the format (``.html``, ``.md``,
  ``.json``); [`write_reports`][bayesguide.report.write_reports] — several of them, the figures drawn once;
* [`render_html`][bayesguide.report.render_html] / [`render_markdown`][bayesguide.report.render_markdown] — the page as
a string;
* [`results_from_comparison`][bayesguide.report.results_from_comparison] — the results dictionary of a comparison;
* [`render_figures`][bayesguide.report.render_figures] — the figures as PNG bytes;
* [`write_sweep_report`][bayesguide.report.write_sweep_report] — a sweep's report (``sweep-report.html`` and ``.md``)
from
  its ``sweep.json`` document; [`render_sweep_html`][bayesguide.report.render_sweep_html] /
  [`render_sweep_markdown`][bayesguide.report.render_sweep_markdown]
  give the pages as strings.

The HTML page is self-contained (inline style, figures as base64 PNG, no scripts, no
network access). Its sections: 1 Setup, 2 Training (loss curve, unit-norm heat maps),
3 Candidates (table, metric against units kept, evidence/prior/posterior trade-off),
4 Predictive comparison (PSIS-LOO when computed), 5 Recommendation, 6 Diagnostics.
"""

from __future__ import annotations

from bayesguide.report.convert import results_from_comparison
from bayesguide.report.figures import render_figures
from bayesguide.report.html import render_html
from bayesguide.report.markdown import render_markdown
from bayesguide.report.sweep_pages import render_sweep_html, render_sweep_markdown, write_sweep_report
from bayesguide.report.writer import FORMATS, write_report, write_reports

__all__ = [
    "FORMATS",
    "render_figures",
    "render_html",
    "render_markdown",
    "render_sweep_html",
    "render_sweep_markdown",
    "results_from_comparison",
    "write_report",
    "write_reports",
    "write_sweep_report",
]
