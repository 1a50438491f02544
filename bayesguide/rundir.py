"""The run directory's housekeeping: its lock, its identity, and reading back what it holds.

A run directory belongs to one run at a time — [`RunLock`][bayesguide.rundir.RunLock], the lock file
``.bayesguide.lock`` holding the PID, created with ``O_CREAT | O_EXCL`` (a lock whose
process no longer exists is taken over) — and to one experiment on one data set:
[`previous_results`][bayesguide.rundir.previous_results] refuses a directory holding another experiment's results or
results on other training data, and hands back the results to resume. A run that
failed before any result ([`is_empty`][bayesguide.rundir.is_empty]) is replaced
([`clear_run`][bayesguide.rundir.clear_run]).
[`restored_fit`][bayesguide.rundir.restored_fit] loads a saved fit back, turning any failure (a damaged or crafted
file) into one message naming the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bayesguide.infer import FitResult
from bayesguide.results import RunResults

__all__ = [
    "LOCK_FILE", "RunDirectoryError", "RunLock", "RunLockedError", "clear_run", "fit_fingerprint", "is_empty",
    "previous_results", "restored_fit",
]

LOCK_FILE = ".bayesguide.lock"
"""The lock file a running process holds in its run directory (its PID)."""

_RUN_FILES = ("results.json", "fit", "candidates", "posterior.nc", "report.html", "report.md")
"""What a run directory holds besides the lock: replaced when a run that failed before any result is rerun."""

_HELD: set[Path] = set()
"""The run directories whose lock this process holds (a lock with our own PID is ours only if listed)."""

class RunDirectoryError(ValueError):
    """The output directory holds another experiment's results, or results that cannot be resumed."""


class RunLockedError(RunDirectoryError):
    """Another live process is running into the same run directory (the message names its PID)."""


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie, exited but not reaped, does not count)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would terminate it: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:  # Linux: the state letter after the command name in /proc/PID/stat
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class RunLock:
    """``out/.bayesguide.lock``, created with ``O_CREAT | O_EXCL`` and holding this process's PID.

    A lock whose PID is not alive (a killed run) is taken over; one held by a live process
    is an error naming that PID. Released on exit, whatever ends the run.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        self.pid = os.getpid()

    def _holder(self, path: Path | None = None) -> int | None:
        """The PID in the lock file (``None``: unreadable or not a PID); ``FileNotFoundError`` if gone."""
        text = (path or self.path).read_text()
        return int(text) if text.strip().isdigit() else None

    def _stale(self, pid: int | None) -> bool:
        if pid is None:  # being written right now, or garbage left behind: stale once it is old
            try:
                return time.time() - self.path.stat().st_mtime > 10.0
            except FileNotFoundError:
                return True
        if pid == self.pid:
            return self.path.resolve() not in _HELD
        return not _alive(pid)

    def __enter__(self) -> RunLock:
        deadline = time.monotonic() + 2.0
        for _ in range(1000):  # each pass ends in the lock, a refusal, or another process's move
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # umask applies
            except FileExistsError:
                try:
                    pid = self._holder()
                except FileNotFoundError:  # released meanwhile: try again
                    continue
                if self._stale(pid):
                    self._take_over(pid)
                    continue
                if pid is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                who = f"process {pid}" if pid is not None else "a process that is starting"
                raise RunLockedError(
                    f"{self.path.parent} is in use by another bayesguide run ({who}, lock file {self.path}); "
                    f"wait for it to finish, or remove {self.path} if no such process runs"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.pid}\n")
            _HELD.add(self.path.resolve())
            return self
        raise RunLockedError(f"could not take the lock file {self.path}: other processes keep replacing it")

    def _take_over(self, stale: int | None) -> None:
        """Remove a stale lock; moved aside first, so that a lock taken meanwhile is put back."""
        aside = self.path.with_name(f"{LOCK_FILE}.{self.pid}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:  # another process took it over first
            return
        try:
            if self._holder(aside) != stale:  # not the stale lock we saw: another process's fresh one
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(OSError):
                aside.unlink()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        _HELD.discard(self.path.resolve())
        with contextlib.suppress(OSError, ValueError):
            if self._holder() == self.pid:
                self.path.unlink()


def is_empty(results: RunResults) -> bool:
    """A run that failed before any result: nothing in it to resume."""
    return results.fit is None and not results.candidates


def previous_results(out: Path, chash: str, source: str, fingerprint: str | None) -> RunResults | None:
    """The results to resume in ``out`` (``None``: none), after checking they are this run's.

    A run that failed before any result is returned whatever its identity (the caller
    replaces it); any other must have the same configuration and, once ``fingerprint`` is
    known, the same training data (``data_fingerprint``, or the saved fit's for files
    written before it existed).
    """
    path = out / "results.json"
    if not path.exists():
        return None
    try:
        previous = RunResults.load(out)
    except (KeyError, TypeError, AttributeError) as err:
        raise RunDirectoryError(f"{path} cannot be read ({type(err).__name__}: {err}); "
                                f"remove {out} or choose another [output] dir") from None
    if is_empty(previous):
        return previous
    if previous.config_hash != chash:
        raise RunDirectoryError(
            f"{out} holds the results of a different experiment; choose another [output] dir or remove it"
        )
    saved = previous.data_fingerprint or fit_fingerprint(out)
    if fingerprint is not None and saved is not None and saved != fingerprint:
        raise RunDirectoryError(
            f"the data of [data] source = {source!r} changed since the run in {out} started "
            f"(training-data fingerprint {saved} then, {fingerprint} now): resuming would mix two data sets; "
            f"restore the data, or choose another [output] dir (or remove {out}) to start afresh"
        )
    return previous


def fit_fingerprint(out: Path) -> str | None:
    """The training-data fingerprint the saved fit recorded (``None``: no readable fit)."""
    try:
        value = json.loads((out / "fit" / "fit.json").read_text()).get("data_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def clear_run(out: Path) -> None:
    """Remove what a run wrote into ``out`` (and nothing else: the directory may hold other files)."""
    for name in _RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def restored_fit(where: Path, out: Path, load: Callable[[], FitResult]) -> FitResult:
    """A saved fit loaded back; any failure (a damaged or crafted file) names its directory.

    Warnings raised while loading are held back: a file that fails gets one message, a
    file that loads gets its warnings re-issued.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = load()
        except Exception as err:  # torch.load(weights_only=True) and the JSON decoders raise many kinds
            raise RunDirectoryError(
                f"{where}: the saved fit cannot be loaded ({_why(err)}); "
                f"remove {out} or choose another [output] dir to start afresh"
            ) from err
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fit


def _why(err: Exception) -> str:
    """A short reason for a failed load.

    torch's own message for a refused pickle is pages long and advises loading the file
    with ``weights_only=False``, i.e. running its code: it is replaced by what happened.
    """
    text = " ".join(str(err).split())
    chain: BaseException | None = err
    while chain is not None and not isinstance(chain, pickle.UnpicklingError):
        chain = chain.__cause__ or chain.__context__
    if chain is None:
        return f"{type(err).__name__}: {text[:300]}"
    detail = " ".join(str(chain).split())
    reason = detail.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0].strip()
    file = next((w for w in text.split() if w.endswith(".pt")), None)
    return ((f"{file}: " if file else "") + "not a plain tensor file, refused by torch.load(weights_only=True)"
            + (f": {reason}" if reason else ""))
