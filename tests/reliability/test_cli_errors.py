"""Issue 14, item 10: every failure of the ``bayesguide`` command ends in one line on
stderr with the documented exit code (2 bad input, 1 a failed run, 130 interrupted);
``--debug`` and ``BAYESGUIDE_DEBUG=1`` show the traceback instead."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import bayesguide as bg
import bayesguide.runner as runner
from bayesguide.cli import main
from bayesguide.results import load_results


def _one_line(err: str) -> str:
    """The single stderr line (fails if there is not exactly one)."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("bayesguide: "), err
    return err[:-1]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bayesguide.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_nan_during_training_exits_1_with_its_message(tmp_path: Path, small_experiment: Callable[..., Path]) -> None:
    done = _cli("run", str(small_experiment(tmp_path, lr="1e30")), "--quiet", env={"BAYESGUIDE_DEBUG": ""})
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert re.match(r"bayesguide: the run failed: the loss became (nan|inf) at step 1: prior term of site ", line)
    assert line.endswith("(try a smaller [fit] lr or a weaker prior)")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_bayesguide_debug_shows_the_traceback(tmp_path: Path, small_experiment: Callable[..., Path]) -> None:
    done = _cli("run", str(small_experiment(tmp_path, lr="1e30")), "--quiet", env={"BAYESGUIDE_DEBUG": "1"})
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert re.search(r"\nbayesguide\.infer\.loop\.NonFiniteLossError: the loss became (nan|inf) at step 1",
                     done.stderr)


def test_debug_flag_re_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_experiment: Callable[..., Path],
) -> None:
    monkeypatch.delenv("BAYESGUIDE_DEBUG", raising=False)
    path = small_experiment(tmp_path, lr="1e30")
    with pytest.raises(bg.NonFiniteLossError, match=r"the loss became (nan|inf) at step 1"):
        main(["--debug", "run", str(path), "--quiet"])
    assert not (tmp_path / "run" / runner.LOCK_FILE).exists()  # released on the way out
    monkeypatch.setenv("BAYESGUIDE_DEBUG", "1")
    with pytest.raises(bg.NonFiniteLossError, match=r"the loss became (nan|inf) at step 1"):
        main(["run", str(path), "--quiet"])


def test_a_truncated_npz_is_bad_data_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path)
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    assert main(["run", str(path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"bayesguide: bad data: {tmp_path / 'd.npz'}: ")
    assert not (tmp_path / "run").exists()


def test_a_raw_bad_zip_file_error_is_bad_data_naming_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    small_experiment: Callable[..., Path],
) -> None:
    def bad_zip(*args: object, **kwargs: object) -> None:
        raise zipfile.BadZipFile("File is not a zip file")

    monkeypatch.setattr(runner, "load_data", bad_zip)
    assert main(["run", str(small_experiment(tmp_path)), "--quiet"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"bayesguide: bad data: {tmp_path / 'd.npz'}: BadZipFile: File is not a zip file")
    assert not (tmp_path / "run").exists()


def test_a_missing_data_file_is_bad_data_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path)
    (tmp_path / "d.npz").unlink()
    assert main(["run", str(path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bayesguide: bad data: ") and f"{tmp_path / 'd.npz'} does not exist" in line


class _Evil:
    """A pickle that runs a command when unpickled without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_weights_file_on_resume_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path)
    assert main(["run", str(path), "--quiet"]) == 0
    results = tmp_path / "run" / "results.json"
    document = json.loads(results.read_text())
    document["status"], document["candidates"] = "running", document["candidates"][:1]
    results.write_text(json.dumps(document))  # an interrupted run: the fit is loaded on resume
    marker = tmp_path / "pwned"
    (tmp_path / "run" / "fit" / "weights.pt").write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    capsys.readouterr()
    assert main(["run", str(path), "--quiet"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"bayesguide: error: {tmp_path / 'run' / 'fit'}: the saved fit cannot be loaded (")
    assert "not a plain tensor file, refused by torch.load(weights_only=True)" in line
    assert "weights_only=False" not in line and "will likely succeed" not in line  # no advice to run its code
    assert line.endswith(f"remove {tmp_path / 'run'} or choose another [output] dir to start afresh")
    assert not marker.exists()  # nothing was executed
    assert not (tmp_path / "run" / runner.LOCK_FILE).exists()


def test_deeply_nested_toml_is_an_invalid_experiment_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["run", str(path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"bayesguide: invalid experiment: {path} is not a usable experiment file: its arrays or tables are "
        f"nested too deeply to read")


def test_an_experiment_file_that_is_not_utf8_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[data]\nsource = "caf\xe9.npz"\n')
    assert main(["run", str(path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"bayesguide: invalid experiment: {path} is not valid TOML: not UTF-8 text (byte 20)")  # 7 + 10 + len("caf")


def test_keyboard_interrupt_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    small_experiment: Callable[..., Path],
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "fit_model", interrupted)
    assert main(["run", str(small_experiment(tmp_path)), "--quiet"]) == 130
    assert _one_line(capsys.readouterr().err).startswith("bayesguide: interrupted; ")
    assert not (tmp_path / "run" / runner.LOCK_FILE).exists()
    assert load_results(tmp_path / "run")["status"] == "running"


def test_an_unexpected_error_is_one_line_naming_its_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    small_experiment: Callable[..., Path],
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory.\n  Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "fit_model", out_of_memory)
    assert main(["run", str(small_experiment(tmp_path)), "--quiet"]) == 1
    assert _one_line(capsys.readouterr().err) == (
        "bayesguide: error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB "
        "(run with --debug for the traceback)")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        main(["--debug", "run", str(small_experiment(tmp_path)), "--quiet"])


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes: 0 success; 1 the run failed; 2 bad input (arguments, experiment file, data);" in out
    assert "--debug" in out and "BAYESGUIDE_DEBUG=1" in out
    import bayesguide.cli as cli

    assert cli.__doc__ is not None and "130 — interrupted" in cli.__doc__ and "2 — bad input" in cli.__doc__


def test_report_on_a_deeply_nested_results_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results.json").write_text('{"schema_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["report", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"bayesguide: error: {tmp_path / 'results.json'} is nested too deeply to read: not a bayesguide results file")


def test_report_on_a_directory_without_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"bayesguide: error: {tmp_path / 'results.json'} does not exist: is {tmp_path} a bayesguide run directory?")
