"""The sweep report: effects and correlation against independent answers, escaped and linked pages, odd values.

Documents are built by hand in the schema of ``sweep.json``; every expected number is
computed here with numpy from the raw points, never through the report's own helpers.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bayesguide.report import render_sweep_html, render_sweep_markdown, sweep_pages, write_sweep_report
from bayesguide.report.sweep_content import (
    evidence_test_correlation,
    is_seed_key,
    key_effects,
    points_table,
    summary,
)
from bayesguide.report.sweep_figures import SCATTER, render_sweep_figures

STRENGTHS = [0.3, 1, 3]
SEEDS = [0, 1, 2]
HIDDEN = [[64, 64], [128, 128]]
PNG = b"\x89PNG\r\n\x1a\n"


def make_doc() -> dict[str, Any]:
    """A 3 × 2 grid (prior strength × hidden widths) with three seeds: 18 points, some failed, pending or odd."""
    rng = np.random.default_rng(1)
    points = []
    for s, seed, h in itertools.product(STRENGTHS, SEEDS, HIDDEN):
        name = f"strength={s},seed={seed},hidden={h[0]}"
        widths = [int(rng.integers(5, 40)), int(rng.integers(5, 40))]
        points.append({
            "name": name, "dir": f"points/{name}", "config_hash": "abc",
            "overrides": {"prior.strength": s, "fit.seed": seed, "network.hidden": h},
            "status": "complete", "attempts": 1, "error": None, "best": f"w{widths[0]}-{widths[1]}",
            "widths": widths, "units": sum(widths), "n_params": 1000 + 10 * sum(widths), "n_params_full": 26122,
            "log_evidence": float(-1000 - 50 * s + rng.normal(0, 5)), "posterior_prob": 0.9,
            "evidence_prob": 0.9, "train_metric": 0.99, "test_metric": float(0.97 - 0.01 * s + rng.normal(0, 0.002)),
            "full_test_metric": 0.975, "n_flags": 0, "flags": [], "wall_s": 10.0 + seed, "worker": "host:1",
        })
    points[1].update(status="failed", error="Cholesky <failed> & stopped", log_evidence=None, test_metric=None)
    points[4].update(status="pending", log_evidence=-1.0, test_metric=1.0)  # not complete: must not count
    points[7]["log_evidence"] = float("nan")
    points[8]["test_metric"] = "n/a"  # wrong type
    points[9]["units"] = None  # falls back to the sum of widths
    points[10]["status"] = "busy"
    return {
        "schema_version": 1, "kind": "sweep", "status": "incomplete", "name": "digits-sweep",
        "base": {"data": {"source": "digits"}, "network": {"hidden": [128, 128]}, "prior": {"strength": 1.0},
                 "fit": {"seed": 0}},
        "grid": {"prior.strength": STRENGTHS, "fit.seed": SEEDS, "network.hidden": HIDDEN},
        "extra_points": [{"prior.kind": "l1", "prior.strength": 0.1}],
        "executor": {"name": "local", "workers": 2, "scheduler": None, "threads": 1, "retries": 2},
        "metric": "accuracy", "points": points,
        "timings": {"total_s": 120.5, "started": "2026-12-01T00:00:00+00:00", "finished": None},
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _expected(doc: dict[str, Any], match: dict[str, Any], quantity: str) -> tuple[float | None, float | None, int]:
    """Mean, sample sd and count of a quantity over the complete points whose overrides include ``match``."""
    vals = []
    for p in doc["points"]:
        if p["status"] != "complete" or any(p["overrides"].get(k) != v for k, v in match.items()):
            continue
        x = _finite(p[quantity]) if quantity != "units" else _finite(p["units"] if p["units"] is not None
                                                                     else sum(p["widths"]))
        if x is not None:
            vals.append(x)
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None, len(vals)


def test_seed_keys() -> None:
    assert [is_seed_key(k) for k in ("fit.seed", "data.seed", "seed", "prior.seeds", "seed.strength")] == [
        True, True, True, False, False]


def test_key_effects_match_numpy() -> None:
    doc = make_doc()
    effects = {e.key: e for e in key_effects(doc)}
    assert list(effects) == ["prior.strength", "network.hidden"]  # seeds are no axis
    for key, other, values, other_values in (("prior.strength", "network.hidden", STRENGTHS, HIDDEN),
                                             ("network.hidden", "prior.strength", HIDDEN, STRENGTHS)):
        effect = effects[key]
        assert list(effect.values) == values and not effect.pooled
        assert len(effect.series) == len(other_values)
        for series, ov in zip(effect.series, other_values):
            for i, v in enumerate(values):
                for quantity in ("units", "log_evidence", "test_metric"):
                    mean, std, n = _expected(doc, {key: v, other: ov}, quantity)
                    stat = getattr(series, quantity)[i]
                    assert stat.n == n
                    assert stat.mean == (None if mean is None else pytest.approx(mean, rel=1e-12))
                    assert stat.std == (None if std is None else pytest.approx(std, rel=1e-12))
    # the odd points really were left out: strength 0.3 / hidden 64 holds seeds 0 (failed), 1 and 2
    assert effects["prior.strength"].series[0].log_evidence[0].n == 2


def test_many_other_settings_are_pooled() -> None:
    """Three keys: for ``c`` the others make 3 × 3 = 9 > 6 settings (pooled), for ``a`` 3 × 2 = 6 (series)."""
    rng = np.random.default_rng(2)
    grid = {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [True, False], "fit.seed": [0, 1]}
    points = [{"name": str(i), "status": "complete", "overrides": dict(zip(grid, combo)), "units": int(rng.integers(9)),
               "log_evidence": float(rng.normal()), "test_metric": float(rng.random())}
              for i, combo in enumerate(itertools.product(*grid.values()))]
    doc = {"grid": grid, "points": points, "metric": "rmse"}
    effects = {e.key: e for e in key_effects(doc)}
    assert effects["c"].pooled and len(effects["c"].series) == 1
    assert not effects["a"].pooled and len(effects["a"].series) == 6
    for i, v in enumerate([True, False]):
        vals = [p["log_evidence"] for p in points if p["overrides"]["c"] is v]
        stat = effects["c"].series[0].log_evidence[i]
        assert (stat.n, stat.mean, stat.std) == (len(vals), pytest.approx(np.mean(vals)),
                                                 pytest.approx(np.std(vals, ddof=1)))


def _corr_doc(ev: list[Any], test: list[Any], metric: str | None = "accuracy") -> dict[str, Any]:
    points = [{"name": f"p{i}", "status": "complete", "log_evidence": e, "test_metric": t}
              for i, (e, t) in enumerate(zip(ev, test))]
    return {"metric": metric, "grid": {}, "points": points}


def test_spearman_against_hand_ranks() -> None:
    up = evidence_test_correlation(_corr_doc([1, 2, 3, 4], [0.1, 0.5, 0.6, 0.9]))
    down = evidence_test_correlation(_corr_doc([1, 2, 3, 4], [0.9, 0.6, 0.5, 0.1]))
    assert up is not None and down is not None
    assert up.rho == pytest.approx(1.0) and down.rho == pytest.approx(-1.0)
    # ranks 1 5 2 4 3 against 1 3 2 5 4: d² = 0 + 4 + 0 + 1 + 1 = 6, ρ = 1 − 6·6 / (5·24) = 0.7
    ev, test = [1.0, 5.0, 2.0, 4.0, 3.0], [10.0, 30.0, 20.0, 50.0, 40.0]
    acc, rmse = evidence_test_correlation(_corr_doc(ev, test)), evidence_test_correlation(_corr_doc(ev, test, "rmse"))
    assert acc is not None and rmse is not None
    assert acc.rho == pytest.approx(0.7) and acc.n == 5
    assert acc.verdict == "agrees" and rmse.verdict == "disagrees"  # lower RMSE is better
    assert "agrees" in acc.sentence and "+0.70" in acc.sentence
    # ranks 1 2 3 4 5 against 4 1 2 5 3: d² = 9 + 1 + 1 + 1 + 4 = 16, ρ = 1 − 96 / 120 = 0.2
    weak = evidence_test_correlation(_corr_doc([1, 2, 3, 4, 5], [4, 1, 2, 5, 3]))
    assert weak is not None and weak.rho == pytest.approx(0.2) and weak.verdict == "no clear relation"


def test_spearman_needs_three_varied_complete_points() -> None:
    assert evidence_test_correlation(_corr_doc([1, 2], [0.1, 0.2])) is None
    assert evidence_test_correlation(_corr_doc([1, 2, None, float("nan")], [0.1, 0.2, 0.3, 0.4])) is None
    assert evidence_test_correlation(_corr_doc([1, 2, 3], [0.5, 0.5, 0.5])) is None  # constant metric
    doc = _corr_doc([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.0])
    doc["points"][3]["status"] = "failed"  # the one discordant point does not count
    corr = evidence_test_correlation(doc)
    assert corr is not None and corr.rho == pytest.approx(1.0) and corr.n == 3


def test_summary_counts_and_picks() -> None:
    doc = make_doc()
    lines = summary(doc)
    assert lines[0].startswith("18 points: 15 complete, 1 failed, 1 pending, 1 busy")
    assert "sweep status: incomplete" in lines[0]
    assert "2 min 00 s" in lines[1]
    done = [p for p in doc["points"] if p["status"] == "complete"]
    best_test = max((p for p in done if _finite(p["test_metric"]) is not None), key=lambda p: p["test_metric"])
    best_ev = max((p for p in done if _finite(p["log_evidence"]) is not None), key=lambda p: p["log_evidence"])
    assert f"Best test accuracy: {best_test['name']}" in lines[2]
    assert f"Highest log evidence: {best_ev['name']}" in lines[3]
    assert ("the same point" in lines[3]) == (best_test is best_ev)
    same = _corr_doc([1, 2, 3], [0.1, 0.2, 0.3])
    assert "the same point" in summary(same)[3] and "p2" in summary(same)[2]
    assert "Best test RMSE: p0" in summary(_corr_doc([1, 2, 3], [0.1, 0.2, 0.3], "rmse"))[2]


def test_points_table_rows() -> None:
    doc = make_doc()
    table = points_table(doc)
    assert table.columns[:5] == ("point", "prior.strength", "fit.seed", "network.hidden", "status")
    assert table.columns[10:12] == ("test accuracy", "full net test accuracy")
    assert len(table.rows) == 18
    assert table.rows[1][4] == "failed: Cholesky <failed> & stopped" and table.kinds[1] == "failed"
    p9 = doc["points"][9]
    assert table.rows[9][3] == "128, 128" and table.rows[9][6] == str(sum(p9["widths"]))
    assert table.rows[8][10] == "n/a" and table.rows[7][8] == "—"


class _Links(HTMLParser):
    """Every src and href of a page, and whether its tags balance."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [(tag, v or "") for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag
        self.stack.pop()


def _parse(page: str) -> _Links:
    parser = _Links()
    parser.feed(page)
    parser.close()
    assert not parser.stack
    return parser


@pytest.fixture(scope="module")
def evil_doc() -> dict[str, Any]:
    doc = make_doc()
    doc["name"] = "<i>sweep</i>"
    doc["points"][0].update(name='<b>&"', dir='points/<b>&" x')
    doc["points"][2]["dir"] = "/etc/absolute"
    doc["points"][3]["dir"] = "//evil.example/x"
    return doc


@pytest.fixture(scope="module")
def evil_page(evil_doc: dict[str, Any]) -> str:
    return render_sweep_html(evil_doc)


def test_html_is_self_contained_and_escaped(evil_page: str) -> None:
    parsed = _parse(evil_page)
    assert "<script" not in evil_page.lower() and "script" not in parsed.tags
    assert not any("http" in url for _, url in parsed.urls)
    images = [url for tag, url in parsed.urls if tag == "img"]
    assert len(images) == 3  # two grid keys and the scatter
    assert all(url.startswith("data:image/png;base64,") for url in images)
    assert "<b>&" not in evil_page and "&lt;b&gt;&amp;&quot;" in evil_page
    assert "<i>sweep" not in evil_page and "&lt;i&gt;sweep&lt;/i&gt;" in evil_page
    assert "Cholesky &lt;failed&gt; &amp; stopped" in evil_page  # the failures section and the status cell
    for header in ("1. Summary", "2. Points", "3. Effects of each grid key", "4. Evidence against the held-out "
                   "metric", "5. Failures", "6. Setup"):
        assert f">{header}</h2>" in evil_page


def test_html_links_to_point_reports(evil_doc: dict[str, Any], evil_page: str) -> None:
    hrefs = [url for tag, url in _parse(evil_page).urls if tag == "a" and not url.startswith("#")]
    # 15 complete points, two of them with an absolute dir (no link); failed, pending and busy ones: none
    assert len(hrefs) == 13
    assert hrefs[0] == "points/%3Cb%3E%26%22%20x/report.html"  # the evil name, percent-encoded
    assert hrefs[1] == "points/strength=0.3,seed=2,hidden=128/report.html"  # points 1-4: failed, absolute, pending
    assert "points/strength=0.3,seed=0,hidden=128/report.html" not in hrefs  # the failed point
    assert 'href="points/%3Cb%3E%26%22%20x/report.html"' in evil_page
    assert all(h.endswith("/report.html") and h.startswith("points/") for h in hrefs)


def test_markdown_escapes_and_links() -> None:
    doc = make_doc()
    doc["points"][0].update(name="a|b*c", dir="points/a b")
    doc["points"][1]["name"] = "fail|ed*"
    md = render_sweep_markdown(doc)
    assert "a\\|b\\*c" in md and "a|b*c" not in md
    assert "fail\\|ed\\*" in md
    assert "[a\\|b\\*c](points/a%20b/report.md)" in md
    assert "report.html" not in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 18 + 2 * (3 * 2 + 1)  # points table; one row per value and series per key
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[:19])  # no stray cell separators


def test_write_sweep_report_draws_each_figure_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counting(doc: Any) -> dict[str, bytes]:
        calls.append(1)
        return render_sweep_figures(doc)

    monkeypatch.setattr(sweep_pages, "render_sweep_figures", counting)
    paths = write_sweep_report(make_doc(), tmp_path / "sweep")
    assert len(calls) == 1
    folder = tmp_path / "sweep"
    assert paths[:2] == [folder / "sweep-report.html", folder / "sweep-report.md"]
    pngs = sorted(p.name for p in (folder / "figures").iterdir())
    assert pngs == sorted(["sweep_effect_prior.strength.png", "sweep_effect_network.hidden.png",
                           f"sweep_{SCATTER}.png"])
    assert sorted(p.name for p in paths[2:]) == pngs
    assert all((folder / "figures" / name).read_bytes().startswith(PNG) for name in pngs)
    md = paths[1].read_text(encoding="utf-8")
    assert all(f"](figures/{name})" in md for name in pngs)
    assert paths[0].read_text(encoding="utf-8").count("data:image/png;base64,") == 3


ODD_POINT: dict[str, Any] = {
    "name": None, "dir": 7, "overrides": ["not", "a", "mapping"], "status": None, "widths": "wide",
    "units": float("inf"), "n_params": "many", "log_evidence": 1e308, "posterior_prob": float("nan"),
    "test_metric": True, "full_test_metric": 10**400, "n_flags": None, "flags": "x", "wall_s": -1e309,
}


@pytest.mark.parametrize("doc", [
    {},
    {"points": "not a list", "grid": [1, 2], "timings": "soon", "executor": 3, "base": None},
    {"grid": {"prior.strength": 1.0, "fit.seed": None}, "points": [None, 3, ODD_POINT], "metric": 5},
    {"grid": {"a": [1e300, 1e-300, 1e300]}, "metric": "accuracy", "points": [
        {"name": f"p{i}", "status": "complete", "overrides": {"a": [1e300, 1e-300, 1e300][i % 3]},
         "log_evidence": [1e99, -1e99, 1e308, float("nan")][i % 4], "test_metric": [0.5, 1e99, 0.2][i % 3],
         "units": [1e308, 3, 4][i % 3]} for i in range(9)]},
    {"grid": {"net": [[1, "$x$"], {"k": [None]}, "幅 $\\frac{1}{$"], "data.seed": [0, 1]}, "points": [
        {"name": "$\\frac{", "status": "complete", "overrides": {"net": v, "data.seed": s}, "units": 3 + s,
         "log_evidence": float(s), "test_metric": 0.1 * s} for v in ([1, "$x$"], {"k": [None]}) for s in (0, 1)]},
], ids=["empty", "wrong-types", "odd-point", "huge-numbers", "odd-values"])
def test_odd_values_never_raise(doc: dict[str, Any], tmp_path: Path) -> None:
    before = copy.deepcopy(doc)
    paths = write_sweep_report(doc, tmp_path)
    assert paths[0].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert summary(doc)[0].split(":")[0].endswith(("points", "point"))
    assert repr(doc) == repr(before)  # only read


def test_one_point_sweep() -> None:
    doc = make_doc()
    doc["points"] = doc["points"][:1]
    doc["points"][0]["status"] = "complete"
    doc["points"][0]["log_evidence"], doc["points"][0]["test_metric"] = -5.0, 0.8
    assert summary(doc)[0].startswith("1 point: 1 complete, 0 failed")
    assert evidence_test_correlation(doc) is None
    effect = key_effects(doc)[0]
    stat = effect.series[1].log_evidence[0]  # strength 0.3 with hidden 128: no point
    assert (effect.series[0].log_evidence[0].mean, stat.n) == (-5.0, 0)
    assert effect.series[0].log_evidence[0].std is None  # one value: no spread
    assert SCATTER not in render_sweep_figures(doc)


def test_all_failed_sweep() -> None:
    doc = make_doc()
    for i, p in enumerate(doc["points"]):
        p.update(status="failed", error=f"error number {i}")
    assert summary(doc)[0].startswith("18 points: 0 complete, 18 failed")
    assert "no complete point" in summary(doc)[3]
    assert all(s.n == 0 for e in key_effects(doc) for series in e.series for s in series.units)
    md = render_sweep_markdown(doc)
    assert all(f"error number {i}" in md for i in range(18))
    assert re.search(r"\]\(points/", md) is None  # no links to reports that do not exist
