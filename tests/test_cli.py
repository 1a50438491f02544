from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayesguide.cli import main


def test_demo_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--steps", "30", "--quiet"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fit"]["steps"] == 30
    assert set(results["alive_units"]) == {"0", "2"}
    assert len(results["final_unit_norms"]["0"]) == 128
    assert 0.0 <= results["test_accuracy"] <= 1.0
    pruned = results["pruned"]
    assert len(pruned["widths"]) == 2
    full_size = 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert pruned["n_params"] <= pruned["original_n_params"] == full_size
    assert "test accuracy" in capsys.readouterr().out
    assert not list(tmp_path.glob(".results.json.*"))  # no temporary file left behind


def test_bad_value_exits_1_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--steps", "0", "--quiet"]) == 1
    assert "steps must be a positive int" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["frobnicate"])
