"""The HTML report in a real headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from bayesguide.report import write_report

_spec = importlib.util.spec_from_file_location("report_screenshot", Path(__file__).with_name("screenshot.py"))
assert _spec is not None and _spec.loader is not None
screenshot_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot_module)

requires_chromium = pytest.mark.skipif(
    screenshot_module.find_chromium() is None,
    reason="chromium is not installed (Debian: apt-get install chromium)",
)


@requires_chromium
def test_chromium_renders_the_report(results: dict[str, Any], tmp_path: Path) -> None:
    page = write_report(results, tmp_path / "report.html")
    png = screenshot_module.screenshot(page, tmp_path / "report.png", width=1280, height=1600)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1600)
    assert len(data) > 20_000  # a rendered page, not a blank one
