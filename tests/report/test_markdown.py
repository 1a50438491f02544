"""The Markdown twin: the same numbers as the HTML page, escaped for Markdown."""

from __future__ import annotations

from typing import Any

from bayesguide.report import render_markdown
from bayesguide.report.content import candidates_table, loo_table
from bayesguide.report.markdown import escape_markdown


def test_markdown_has_the_same_table_numbers(results: dict[str, Any]) -> None:
    md = render_markdown(results)
    for table in (candidates_table(results), loo_table(results)):
        assert table is not None
        for row in table.rows:
            for cell in row[1:]:
                assert escape_markdown(cell) in md
    assert "| **w12-8** ★ |" in md  # the recommended row
    assert md.count("\n| w") + md.count("\n| **w") == 12  # six rows in each of the two tables
    assert ("> **Recommended: w12-8 — 974 parameters (35.1 % of full), posterior probability 0.996 "
            "(evidence alone: 0.931)**") in md
    assert "- ⚠ candidate w4-3: 12 observations with Pareto k &gt; 0.7" in md


def test_markdown_tables_only_without_figures(results: dict[str, Any]) -> None:
    md = render_markdown(results)
    assert "![" not in md
    linked = render_markdown(results, figures={"loss": "figures/r_loss.png", "elpd": "figures/r elpd.png"})
    assert "![Training objective](figures/r_loss.png)" in linked
    assert "(figures/r%20elpd.png)" in linked


def test_markdown_escapes_user_strings(results: dict[str, Any]) -> None:
    results["candidates"][0]["name"] = "<script>alert(1)</script> | *x*"
    md = render_markdown(results)
    assert "<script>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\*x\\*" in md


def test_markdown_without_loo_or_recommendation(results_no_loo: dict[str, Any]) -> None:
    md = render_markdown(results_no_loo)
    assert "PSIS-LOO was not computed" in md
    assert "No measured recommendation" in md
    assert "w4-3 ✗" in md


def test_the_fine_tuning_column_shows_the_convergence_check(results: dict[str, Any]) -> None:
    assert "fine-tuning" not in candidates_table(results).columns  # no re-fit, no column
    for cand, (converged, steps) in zip(results["candidates"], [(True, 500), (False, 500)] * 3, strict=True):
        cand.update({"converged": converged, "fine_tune_steps": steps})
    results["candidates"][5]["converged"] = "yes"  # not a bool: shown as unknown, never as converged
    table = candidates_table(results)
    col = table.columns.index("fine-tuning")
    assert [row[col] for row in table.rows] == ["500 steps, converged", "500 steps, NOT converged"] * 2 + [
        "500 steps, converged", "–"]
    assert "| 500 steps, NOT converged |" in render_markdown(results)
