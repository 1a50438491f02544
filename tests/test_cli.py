from __future__ import annotations

import re
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


@pytest.mark.parametrize(("args", "pattern"), [
    (["--steps", "0"], r"argument --steps: must be an integer in 1 … 1,000,000,000, got '0'"),
    (["--steps", "ten"], r"argument --steps: must be a positive integer, got 'ten'"),
    (["--out", ""], r"argument --out: must name a directory, got ''"),
])
def test_bad_argument_exits_2_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], pattern: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *(args if "--out" in args else ["--out", str(tmp_path / "d"), *args]), "--quiet"])
    assert exit_.value.code == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not (tmp_path / "d").exists()


def test_missing_experiment_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"bayesguide: error: experiment file {tmp_path / 'nope.toml'} does not exist\n"


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
