from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyro
import pytest

import bayesguide as bg
from bayesguide.cli import main
from bayesguide.results import load_results


@pytest.mark.slow  # the whole demo (its candidates fine-tuned to convergence): ~1.5 min
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


# --------------------------------------------------------------------------- issue 12: what researchers see


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="0"):
        main(argv)
    return capsys.readouterr().out


def test_run_help_lists_every_table_and_key_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from bayesguide.experiment.tables import TABLES, PriorConfig, choices
    from bayesguide.priors import families

    out = _help(["run", "--help"], capsys)
    lines = out.splitlines()
    for table, config in TABLES.items():
        assert f"  [{table}]" in lines
        for field in dataclasses.fields(config):
            if config is PriorConfig and field.name == "options":
                continue
            default = getattr(config(), field.name)
            written = {bool: str(default).lower(), str: f'"{default}"'}.get(type(default), str(default))
            assert any(line.startswith(f"    {field.name} = {written}") for line in lines), (table, field.name)
    for family in families():
        for option in family.options:
            assert any(line.startswith(f"    {option.key} = {option.default!r}") for line in lines), option.key
    flowing = " ".join(out.split())  # a long list of choices wraps onto the next line
    for values in choices().values():
        assert " | ".join(values) in flowing


def test_top_level_help_points_to_run_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["--help"], capsys)
    assert "bayesguide run --help" in out and "--version" in out
    assert _help(["--version"], capsys).startswith("bayesguide ")


def test_the_cli_executors_are_the_sweeps_executors() -> None:
    from bayesguide import cli, sweeps

    assert cli.EXECUTORS == sweeps.EXECUTORS


@pytest.mark.parametrize("command", ["demo", "run"])
def test_bad_threads_exit_2(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, *(["x.toml"] if command == "run" else []), "--threads", "0"])
    assert exit_.value.code == 2
    assert "argument --threads: must be an integer in 1 … 4096, got '0'" in capsys.readouterr().err


def _small_run(tmp_path: Path, source: str, task: str | None = None) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        f'[data]\nsource = "{source}"\n' + (f'task = "{task}"\n' if task else "")
        + f'[network]\nhidden = [3]\n[fit]\nsteps = 5\n[select]\nn_candidates = 2\nfine_tune = 0\n'
        f'[output]\ndir = "{tmp_path / "run"}"\n'
    )
    return path


def test_threads_are_used_recorded_and_restored(tmp_path: Path) -> None:
    import os
    import platform

    import torch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    before = torch.get_num_threads()
    assert main(["run", str(_small_run(tmp_path, str(tmp_path / "d.npz"))), "--quiet", "--threads", "2"]) == 0
    assert torch.get_num_threads() == before
    env = load_results(tmp_path / "run")["environment"]
    assert env["threads"] == 2
    assert env["versions"] == {"bayesguide": bg.__version__, "torch": torch.__version__,
                               "pyro": pyro.__version__, "numpy": np.__version__,
                               "python": platform.python_version()}
    assert env["cpu_count"] == os.cpu_count() and env["machine"] == platform.machine()


def test_a_relative_source_is_read_from_the_experiment_files_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bayesguide.experiment import load_experiment

    folder = tmp_path / "experiments"
    folder.mkdir()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(folder / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    path = _small_run(folder, "d.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory has no d.npz
    assert load_experiment(path).data.source == str((folder / "d.npz").resolve())
    assert main(["run", str(path), "--quiet"]) == 0
    assert load_results(folder / "run")["data"]["name"] == "d"
    # an absolute path and a built-in name are left as they are
    assert load_experiment(_small_run(tmp_path, str(folder / "d.npz"))).data.source == str(folder / "d.npz")
    assert load_experiment(_small_run(tmp_path, "digits")).data.source == "digits"
    assert load_experiment(_small_run(tmp_path, "~/d.npz")).data.source == str(Path.home() / "d.npz")


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_float_targets_without_a_task_suggest_regression(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = X[:, 0] * 0.7 + 0.1
    data = tmp_path / f"d{suffix}"
    if suffix == ".npz":
        np.savez(data, X=X, y=y)
    else:
        data.write_text("a,b,t\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, y)))
    path = _small_run(tmp_path, str(data))
    if suffix == ".csv":
        path.write_text(path.read_text().replace("[network]", 'target = "t"\n[network]'))
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesguide: bad data: ") and "classification targets must be integer class labels" in err
    assert err.rstrip().endswith('[data] task = "classification": for real-valued targets set task = "regression" '
                                 "in the [data] table")


@pytest.mark.parametrize(("value", "debug"), [("0", False), ("", False), ("false", False), ("No", False),
                                              ("1", True), ("yes", True)])
def test_bayesguide_debug_is_read_as_an_on_off_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str,
        debug: bool) -> None:
    from bayesguide.cli.commands import InputError

    monkeypatch.setenv("BAYESGUIDE_DEBUG", value)
    if debug:  # re-raised with its traceback instead of the one-line message
        with pytest.raises(InputError, match="does not exist"):
            main(["run", str(tmp_path / "nope.toml")])
    else:
        assert main(["run", str(tmp_path / "nope.toml")]) == 2


def test_docs_show_the_help_transcripts(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io

    monkeypatch.setenv("COLUMNS", "80")  # the width the transcripts in docs/cli.md were taken at
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for argv in (["--help"], ["run", "--help"], ["demo", "--help"]):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
            main(argv)
        for line in buffer.getvalue().splitlines():
            if not line.startswith("usage:"):  # argparse wraps the usage line by the terminal's width
                assert line in docs, (argv, line)


@pytest.mark.parametrize(("table", "flags", "expected"), [
    ("", {}, ()),  # the default executor: the local pool
    ('executor = "serial"', {}, None),
    ('executor = "serial"', {"executor": "local"}, ()),  # a flag beats the file
    ('executor = "local"', {"executor": "serial"}, None),
    ('scheduler = "local"', {}, ("distributed",)),  # a LocalCluster's workers need distributed too
    ('executor = "dask"', {}, ("distributed",)),  # dask without an address starts a LocalCluster
    ('scheduler = "tcp://10.0.0.1:8786"', {}, None),  # a cluster of the user's own: its workers are not ours
    ("", {"scheduler": "tcp://10.0.0.1:8786"}, None),
    ("this is not TOML", {}, None),  # unreadable: nothing started; the sweep reports the file
])
def test_sweep_starts_its_workers_fork_server_only_for_workers_it_starts(
        tmp_path: Path, table: str, flags: dict[str, str], expected: tuple[str, ...] | None) -> None:
    from argparse import Namespace

    from bayesguide.cli import _sweep_workers

    path = tmp_path / "sweep.toml"
    path.write_text(f"[sweep]\n{table}\n" if table != "this is not TOML" else table)
    args = Namespace(sweep=str(path), executor=flags.get("executor"), scheduler=flags.get("scheduler"))
    assert _sweep_workers(args) == expected
