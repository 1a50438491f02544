"""write_report: format by extension, atomic files, and the errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bayesguide.report import render_figures, write_report, write_reports
from bayesguide.results import load_results


def test_json_round_trips(results: dict[str, Any], tmp_path: Path) -> None:
    out = write_report(results, tmp_path / "results.json")
    assert out == tmp_path / "results.json"
    assert load_results(tmp_path) == json.loads(json.dumps(results))


def test_html_written_atomically(results: dict[str, Any], tmp_path: Path) -> None:
    path = write_report(results, tmp_path / "sub" / "report.HTML")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.HTML"]  # no temporary file left


def test_markdown_saves_and_links_figures(results: dict[str, Any], tmp_path: Path) -> None:
    path = write_report(results, tmp_path / "report.md")
    md = path.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    names = ("loss", "unit_norms", "metric", "decomposition", "elpd", "sensitivity")
    assert pngs == sorted(f"report_{n}.png" for n in names)
    for name in pngs:
        assert f"(figures/{name})" in md


@pytest.mark.parametrize("name", ["report.pdf", "report", "report.htm"])
def test_unknown_extension(results: dict[str, Any], tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"extension must be one of \.html, \.md, \.json"):
        write_report(results, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_wrong_source_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Comparison or a results dictionary, not list"):
        write_report([1, 2], tmp_path / "r.html")  # type: ignore[arg-type]


def test_write_reports_draws_the_figures_once_for_both_pages(
    results: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    import bayesguide.report.html as html_module
    import bayesguide.report.writer as writer

    calls: list[int] = []
    drawn: dict[str, bytes] = {}

    def counting(res: dict[str, Any]) -> dict[str, bytes]:
        calls.append(1)
        drawn.update(render_figures(res))
        return dict(drawn)

    monkeypatch.setattr(writer, "render_figures", counting)
    monkeypatch.setattr(html_module, "render_figures", counting)  # a page drawing its own would count too
    paths = write_reports(results, [tmp_path / "report.html", tmp_path / "report.md", tmp_path / "r.json"])
    assert paths == [tmp_path / "report.html", tmp_path / "report.md", tmp_path / "r.json"]
    assert len(calls) == 1
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(drawn) == 6
    for name, png in drawn.items():  # the page embeds the very bytes the Markdown links as files
        assert (tmp_path / "figures" / f"report_{name}.png").read_bytes() == png
        assert f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" in page
    assert "<script" not in page and 'src="figures/' not in page  # still self-contained
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(results))


def test_write_reports_checks_every_extension_first(results: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'.*report\.pdf'.*extension must be one of"):
        write_reports(results, [tmp_path / "report.html", tmp_path / "report.pdf"])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_write_reports_draws_nothing_for_json_alone(
    results: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bayesguide.report.writer as writer

    def refuse(res: dict[str, Any]) -> dict[str, bytes]:
        raise AssertionError("no figure is needed")

    monkeypatch.setattr(writer, "render_figures", refuse)
    assert write_reports(results, [tmp_path / "a.json"]) == [tmp_path / "a.json"]
    assert write_reports(results, []) == []
