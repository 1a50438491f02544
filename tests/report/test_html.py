"""The HTML report: self-contained, well-formed, escaped, and honest about missing values."""

from __future__ import annotations

import base64
import copy
import re
from html.parser import HTMLParser
from typing import Any

from bayesguide.report import render_html
from bayesguide.report.content import candidates_table

EVIL = "<script>alert(1)</script>"


class _Collector(HTMLParser):
    """Collects tags, <img> sources and the page's text; checks tags are balanced."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def test_page_is_well_formed_and_self_contained(complete_page: str) -> None:
    page = complete_page
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert len(parsed.images) == 6  # loss, unit norms, metric, decomposition, ELPD, κ sensitivity
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r"https?://", page)
    for header in ("1. Setup", "2. Training", "3. Candidates", "4. Predictive comparison",
                   "5. Recommendation", "6. Diagnostics"):
        assert f">{header}</h2>" in page


def test_page_shows_the_table_and_summary(complete_page: str, results: dict[str, Any]) -> None:
    text = " ".join(_parse(complete_page).text)
    for row in candidates_table(results).rows:
        for cell in row:
            assert cell in text
    assert ("Recommended: w12-8 — 974 parameters (35.1 % of full), posterior probability 0.996 "
            "(evidence alone: 0.931)") in text
    assert "candidate w4-3: 12 observations with Pareto k > 0.7" in text
    assert "2.24×" in text and "0.021 ms" in text


def test_user_strings_are_escaped(results: dict[str, Any]) -> None:
    results["candidates"][0]["name"] = EVIL
    results["best"] = EVIL
    results["recommended"]["name"] = EVIL
    results["data"]["name"] = EVIL
    results["config"]["prior"]["guidance"] = EVIL
    results["fit"]["stop_reason"] = EVIL
    results["candidates"][1]["status"] = f"failed: {EVIL}"
    results["flags"] = [f"flag {EVIL}"]
    results["fit"]["unit_norms"][EVIL] = results["fit"]["unit_norms"].pop("0")
    page = render_html(results)
    assert EVIL not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script" not in _parse(page).tags


def test_missing_optional_fields_show_a_dash(results_no_loo: dict[str, Any]) -> None:
    res = results_no_loo
    del res["candidates"][0]["flops"]
    res["candidates"][1]["metrics"] = {"train": None}
    res["fit"]["wall_time_s"] = float("nan")
    page = render_html(res)
    table = candidates_table(res)
    rows = {r[0]: dict(zip(table.columns, r)) for r in table.rows}
    assert rows["w32-16"]["FLOPs"] == "—"
    assert rows["w24-12"]["train accuracy"] == "—" and rows["w24-12"]["test accuracy"] == "—"
    failed = rows["w4-3"]  # evidence failed: only the prior is known
    for col in ("log evidence", "log posterior", "P(M\u00a0|\u00a0D)", "log Bayes factor", "prior scale"):
        assert failed[col] == "—"
    assert failed["log architecture prior"] != "—"
    assert failed["status"] == "failed: Cholesky factor not positive definite"
    assert table.kinds == ("", "", "", "best", "", "failed")
    assert "<dt>wall time</dt><dd>—</dd>" in page
    assert "PSIS-LOO was not computed" in page
    assert "No measured recommendation" in page and "w12-8" in page
    assert 'class="failed"' in page


def test_empty_results_still_render() -> None:
    page = render_html({"schema_version": 1, "status": "running", "candidates": [], "best": None, "flags": []})
    _parse(page)
    assert "No architecture recommended" in page
    assert "No candidates in these results" in page
    assert "No diagnostic flags were raised" in page


def test_rendering_does_not_change_the_results(results: dict[str, Any]) -> None:
    before = copy.deepcopy(results)
    render_html(results)
    assert results == before


def test_evidence_prior_column_appears_only_when_a_candidate_used_a_substitute(
    results_no_loo: dict[str, Any],
) -> None:
    res = results_no_loo
    for c in res["candidates"]:
        c["prior_used"] = "own"
    assert "evidence prior" not in candidates_table(res).columns
    res["candidates"][0]["prior_used"] = "uniform"
    table = candidates_table(res)
    col = table.columns.index("evidence prior")
    assert [r[col] for r in table.rows][:2] == ["uniform", "own"]
    assert not table.numeric[col]
    assert "evidence prior" in render_html(res)
