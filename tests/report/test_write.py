"""write_report: format by extension, atomic files, and the errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bayesguide.report import write_report
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
