"""``write_report``: a report file whose format follows the file's extension.

``write_reports`` writes several of one results document (a run's ``report.html`` and
``report.md``) and draws the figures once for all of them: the HTML page embeds the
same PNG bytes that the Markdown page links as files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bayesguide.atomic import write_atomic, write_json_atomic
from bayesguide.comparison import Comparison
from bayesguide.report.convert import results_from_comparison
from bayesguide.report.figures import render_figures
from bayesguide.report.html import render_html
from bayesguide.report.markdown import render_markdown

__all__ = ["FORMATS", "write_report", "write_reports"]

FORMATS = {
    ".html": "self-contained HTML page (figures embedded)",
    ".md": "Markdown page, figures saved as PNG in a figures/ folder beside it",
    ".json": "the results dictionary (schema of bayesguide.results)",
}
"""Accepted extensions and what each writes."""


def _as_results(source: Comparison | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Comparison):
        return results_from_comparison(source)
    if isinstance(source, Mapping):
        return source
    raise TypeError(
        f"write_report needs a bayesguide Comparison or a results dictionary, not {type(source).__name__}"
    )


def write_report(source: Comparison | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a model-comparison report; the extension of ``path`` chooses the format.

    Parameters
    ----------
    source
        A [`Comparison`][bayesguide.Comparison] (from [`bayesguide.compare`][]) or a results
        dictionary (schema of [`bayesguide.results`][], e.g. from
        [`bayesguide.results.load_results`][]); only read.
    path
        ``*.html`` — one self-contained page (no network access; figures embedded as
        base64 PNG); ``*.md`` — its Markdown twin, with the figures saved as
        ``figures/<stem>_<name>.png`` beside it and linked; ``*.json`` — the results
        dictionary itself.

    Returns
    -------
    pathlib.Path
        The file written (atomically: a temporary file, then a rename).

    Raises
    ------
    ValueError
        If the extension is not one of ``.html``, ``.md``, ``.json``.
    TypeError
        If ``source`` is neither a comparison nor a mapping.

    Examples
    --------
    >>> import bayesguide.report as report  # doctest: +SKIP
    >>> report.write_report(cmp, "report.html")  # doctest: +SKIP
    """
    return write_reports(source, [path])[0]


def _format(path: Path) -> str:
    """The extension of ``path`` (lower case), checked against `FORMATS`."""
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ValueError(
            f"cannot tell the report format from {str(path)!r}: the extension must be one of "
            f"{', '.join(FORMATS)}"
        )
    return ext


def write_reports(source: Comparison | Mapping[str, Any], paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Write several reports of one source, drawing the figures once for all of them.

    Parameters
    ----------
    source
        A [`Comparison`][bayesguide.Comparison] or a results dictionary, as for
        [`write_report`][bayesguide.report.write_report]; only read.
    paths
        The files, each as in [`write_report`][bayesguide.report.write_report] (``*.html``, ``*.md``,
        ``*.json``); every extension is checked before anything is written.

    Returns
    -------
    list[pathlib.Path]
        The files written (each atomically), in the order given.

    Raises
    ------
    ValueError
        If an extension is not one of ``.html``, ``.md``, ``.json``.
    TypeError
        If ``source`` is neither a comparison nor a mapping.

    Examples
    --------
    >>> import bayesguide.report as report  # doctest: +SKIP
    >>> report.write_reports(cmp, ["report.html", "report.md"])  # doctest: +SKIP
    """
    targets = [(Path(p), _format(Path(p))) for p in paths]
    results = _as_results(source)
    figures = render_figures(results) if any(ext != ".json" for _, ext in targets) else {}
    for path, ext in targets:
        if ext == ".json":
            write_json_atomic(path, dict(results))
        elif ext == ".html":
            write_atomic(path, render_html(results, figures).encode("utf-8"))
        else:
            links = {}
            for name, png in figures.items():
                rel = f"figures/{path.stem}_{name}.png"
                write_atomic(path.parent / rel, png)
                links[name] = rel
            write_atomic(path, render_markdown(results, figures=links).encode("utf-8"))
    return [path for path, _ in targets]
