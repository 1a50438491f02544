"""Figures: drawn from what the results hold, skipped when they lack it, never warning."""

from __future__ import annotations

from typing import Any

from bayesguide.report import render_figures
from bayesguide.report.figures import FIGURE_TITLES

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_figure_from_complete_results(results: dict[str, Any]) -> None:
    figures = render_figures(results)
    assert list(figures) == list(FIGURE_TITLES)
    assert all(png.startswith(PNG) for png in figures.values())


def test_figures_without_loo_and_with_a_failed_candidate(results_no_loo: dict[str, Any]) -> None:
    figures = render_figures(results_no_loo)
    assert "elpd" not in figures
    assert {"loss", "unit_norms", "metric", "decomposition"} <= set(figures)


def test_no_figures_from_empty_results() -> None:
    assert render_figures({"candidates": [], "fit": {"losses": [], "unit_norms": {}}}) == {}


def test_odd_names_draw(results: dict[str, Any]) -> None:
    """Dollar signs (mathtext), glyphs the font lacks, zero and NaN norms: still a PNG."""
    results["candidates"][0]["name"] = "$\\frac{1}{$ 幅"
    results["best"] = results["candidates"][0]["name"]
    norms = results["fit"]["unit_norms"]
    norms["$x$"] = norms.pop("0")
    norms["$x$"][3][0] = 0.0
    norms["$x$"][4][1] = None
    results["fit"]["losses"][5] = None
    assert set(render_figures(results)) == set(FIGURE_TITLES)
