"""``write_report``: a report file whose format follows the file's extension."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bayesguide.atomic import write_atomic, write_json_atomic
from bayesguide.comparison import Comparison
from bayesguide.report.convert import results_from_comparison
from bayesguide.report.figures import render_figures
from bayesguide.report.html import render_html
from bayesguide.report.markdown import render_markdown

__all__ = ["FORMATS", "write_report"]

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
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ValueError(
            f"cannot tell the report format from {str(path)!r}: the extension must be one of "
            f"{', '.join(FORMATS)}"
        )
    results = _as_results(source)
    if ext == ".json":
        write_json_atomic(path, dict(results))
    elif ext == ".html":
        write_atomic(path, render_html(results).encode("utf-8"))
    else:
        links = {}
        for name, png in render_figures(results).items():
            rel = f"figures/{path.stem}_{name}.png"
            write_atomic(path.parent / rel, png)
            links[name] = rel
        write_atomic(path, render_markdown(results, figures=links).encode("utf-8"))
    return path
