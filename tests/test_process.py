"""bayesguide's own processes freeze the garbage collector at exit, after their other exit handlers;
a user's process that did not ask is left alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

# An exit handler registered before anything else runs after every other one: it sees whether the
# collector was frozen by the time the process ends.
_PROBE = """
import atexit, gc, sys
atexit.register(lambda: sys.stdout.write(f"frozen at exit: {gc.get_freeze_count() > 0}\\n"))
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("asked", [True, False])
def test_freeze_at_exit_runs_after_the_handlers_registered_later(asked: bool) -> None:
    code = f"""
from bayesguide.process import freeze_at_exit
if {asked}:
    freeze_at_exit()
    freeze_at_exit()  # once is enough, twice is harmless
atexit.register(lambda: sys.stdout.write(f"later handler saw frozen: {{gc.get_freeze_count() > 0}}\\n"))
"""
    assert _run(code).splitlines() == ["later handler saw frozen: False", f"frozen at exit: {asked}"]


@pytest.mark.parametrize(("call", "frozen"), [("console", True), ("main", False)])
def test_the_executable_freezes_and_main_called_from_python_does_not(call: str, frozen: bool) -> None:
    code = f"""
from bayesguide.cli import {call}
sys.argv = ["bayesguide", "--version"]
try:
    {call}(["--version"]) if "{call}" == "main" else {call}()
except SystemExit:
    pass
"""
    out = _run(code).splitlines()
    assert out[-1] == f"frozen at exit: {frozen}" and out[0].startswith("bayesguide")
