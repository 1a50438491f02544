"""Issue 14, item 13: two ``bayesguide run`` processes on one directory — the second is
refused naming the first's PID (exit code 1); a lock left by a dead process is taken
over; the lock is released at the end, on errors and on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bayesguide.runner as runner
from bayesguide.cli import main
from bayesguide.experiment import load_experiment
from bayesguide.results import load_results
from bayesguide.rundir import RunLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="PIDs are checked with os.kill(pid, 0)")

def _cli_run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bayesguide.cli", "run", str(path), "--quiet"],
                          capture_output=True, text=True, timeout=300)


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _refusal(pid: int, lock: Path) -> str:
    return (f"bayesguide: error: {lock.parent} is in use by another bayesguide run (process {pid}, lock file "
            f"{lock}); wait for it to finish, or remove {lock} if no such process runs\n")


@pytest.mark.slow
def test_a_second_process_is_refused_while_another_holds_the_lock(
    tmp_path: Path, small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path, n_candidates=2)
    lock = tmp_path / "run" / runner.LOCK_FILE
    holder = subprocess.Popen(  # a second process holding the run directory's lock, as a running run does
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from pathlib import Path
            from bayesguide.rundir import RunLock
            Path(sys.argv[1]).mkdir()
            with RunLock(Path(sys.argv[1])):
                print("locked", flush=True)
                sys.stdin.readline()
        """), str(tmp_path / "run")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert lock.read_text() == f"{holder.pid}\n"
        refused = _cli_run(path)
        assert refused.returncode == 1
        assert refused.stderr == _refusal(holder.pid, lock)
        assert not (tmp_path / "run" / "results.json").exists()  # it did no work
        assert lock.read_text() == f"{holder.pid}\n"  # and left the holder's lock alone
    finally:
        holder.communicate("\n", timeout=60)  # let it go (and close the pipes)
    assert holder.returncode == 0
    assert not lock.exists()  # released by its holder
    done = _cli_run(path)  # now the run goes ahead
    assert done.returncode == 0, done.stderr
    assert load_results(tmp_path / "run")["status"] == "complete"
    assert not lock.exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over_even_before_it_is_reaped(
    tmp_path: Path, small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path, n_candidates=2)
    lock = tmp_path / "run" / runner.LOCK_FILE
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from pathlib import Path
            from bayesguide.rundir import RunLock
            Path(sys.argv[1]).mkdir()
            with RunLock(Path(sys.argv[1])):
                print("locked", flush=True)
                time.sleep(600)
        """), str(tmp_path / "run")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        os.kill(holder.pid, signal.SIGKILL)  # as the OOM killer would: no clean-up, and not yet reaped
        time.sleep(0.5)
        assert lock.read_text() == f"{holder.pid}\n"
        assert main(["run", str(path), "--quiet"]) == 0
        assert load_results(tmp_path / "run")["status"] == "complete"
        assert not lock.exists()
    finally:
        holder.kill()
        holder.communicate(timeout=60)


def test_a_lock_held_by_a_live_pid_refuses_the_cli(tmp_path: Path, small_experiment: Callable[..., Path]) -> None:
    path = small_experiment(tmp_path, n_candidates=2)
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / runner.LOCK_FILE
    lock.write_text(f"{os.getpid()}\n")  # this test process stands in for a running run
    refused = _cli_run(path)
    assert refused.returncode == 1
    assert refused.stderr == _refusal(os.getpid(), lock)
    assert lock.read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("content", ["dead", "own", "garbage"])
def test_a_stale_lock_is_taken_over_and_released(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str],
    small_experiment: Callable[..., Path],
) -> None:
    path = small_experiment(tmp_path, n_candidates=2)
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / runner.LOCK_FILE
    if content == "dead":
        lock.write_text(f"{_dead_pid()}\n")
    elif content == "own":  # our own PID, but not taken by this process: left by an earlier container's process
        lock.write_text(f"{os.getpid()}\n")
    else:  # not a PID, and old: a crash while the lock was being written
        lock.write_text("")
        os.utime(lock, (0, 0))
    assert main(["run", str(path), "--quiet"]) == 0, capsys.readouterr().err
    assert load_results(tmp_path / "run")["status"] == "complete"
    assert not lock.exists()
    assert not list((tmp_path / "run").glob(f"{runner.LOCK_FILE}*"))  # nothing moved aside is left


def test_the_same_process_cannot_take_its_own_lock_twice(tmp_path: Path, small_experiment: Callable[..., Path]) -> None:
    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        exp = load_experiment(small_experiment(tmp_path, n_candidates=2))
        with pytest.raises(runner.RunLockedError, match=rf"in use by another bayesguide run \(process {os.getpid()},"):
            runner.run_experiment(exp, progress=False, log=lambda s: None)
        assert (tmp_path / "run" / runner.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "run" / runner.LOCK_FILE).exists()


def test_the_lock_is_released_after_a_failed_and_an_interrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    small_experiment: Callable[..., Path],
) -> None:
    lock = tmp_path / "run" / runner.LOCK_FILE
    assert main(["run", str(small_experiment(tmp_path, lr="1e30", n_candidates=2)), "--quiet"]) == 1  # NaN loss
    assert (tmp_path / "run").is_dir() and not lock.exists()

    def interrupted(*args: object, **kwargs: object) -> None:
        assert lock.read_text() == f"{os.getpid()}\n"  # held while the run works
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "fit_model", interrupted)
    assert main(["run", str(small_experiment(tmp_path, n_candidates=2)), "--quiet"]) == 130
    assert not lock.exists()
