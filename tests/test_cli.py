from __future__ import annotations

from pathlib import Path

import pytest

from bayesguide.cli import main
from bayesguide.results import load_results


def test_demo_runs_the_built_in_default_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--steps", "30", "--quiet"]) == 0
    results = load_results(tmp_path)
    assert results["status"] == "complete"
    assert results["config"]["network"]["hidden"] == [128, 128]
    assert results["data"]["name"] == "digits"
    assert results["fit"]["steps"] == 30
    assert len(results["fit"]["unit_norms"]["0"][0]) == 128
    assert results["candidates"][0]["widths"] == [128, 128]
    assert results["candidates"][0]["n_params"] == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert results["best"] is not None
    assert (tmp_path / "report.html").is_file()
    out = capsys.readouterr().out
    assert "best" in out and "report.html" in out
    assert not list(tmp_path.glob(".results.json.*"))  # no temporary file left behind


def test_bad_value_exits_1_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--steps", "0", "--quiet"]) == 1
    assert "steps must be a positive int" in capsys.readouterr().err


def test_missing_experiment_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out and "run" in out and "report" in out


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["frobnicate"])


def test_run_help_lists_every_method_and_its_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for word in ("sparse_group", "alpha", "l0", "l0_weight_decay", "horseshoe", "tau0", "relevance", "partial",
                 'method = "map"', 'method = "svi"'):
        assert word in out


def test_docs_show_the_methods_help() -> None:
    from bayesguide.cli import methods_help

    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for line in methods_help().splitlines():
        assert line in docs, line


def test_run_names_the_fit_it_picked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    path = tmp_path / "exp.toml"
    path.write_text(
        f'[data]\nsource = "{tmp_path / "d.npz"}"\n[network]\nhidden = [3]\n[prior]\nkind = "l0"\n'
        f'[fit]\nsteps = 5\n[select]\nn_candidates = 2\nfine_tune = 0\n[output]\ndir = "{tmp_path / "run"}"\n'
    )
    assert main(["run", str(path), "--quiet"]) == 0
    assert "fit    fit_l0: 5 steps" in capsys.readouterr().out
    assert load_results(tmp_path / "run")["status"] == "complete"
