"""``BAYESGUIDE_SMOKE`` / ``BAYESGUIDE_DEBUG`` are on/off flags: ``0``, ``false``, ``no`` mean off.

The notebooks are user examples, so they do not import the private helper: each
spells the same one-line parse, and this test runs that line against `env_flag`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bayesguide._options import OFF, env_flag

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

VALUES = ["0", "", "false", "FALSE", " no ", "off", "1", "true", "yes", "smoke"]


@pytest.mark.parametrize("value", VALUES)
def test_env_flag(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BAYESGUIDE_TEST_FLAG", value)
    assert env_flag("BAYESGUIDE_TEST_FLAG") is (value.strip().lower() not in ("", "0", "false", "no", "off"))
    monkeypatch.delenv("BAYESGUIDE_TEST_FLAG")
    assert env_flag("BAYESGUIDE_TEST_FLAG") is False
    assert set(OFF) == {"", "0", "false", "no", "off"}


def _smoke_line(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code" for line in c["source"] if line.startswith("SMOKE =")]
    assert len(lines) == 1, notebook.name
    return lines[0]


def test_every_notebook_spells_the_same_smoke_line() -> None:
    assert len(NOTEBOOKS) >= 6
    assert len({_smoke_line(nb) for nb in NOTEBOOKS}) == 1


@pytest.mark.parametrize("ci", [None, "true", "0"])
@pytest.mark.parametrize("smoke", [None, *VALUES])
def test_the_notebooks_smoke_line_reads_the_flag(monkeypatch: pytest.MonkeyPatch, smoke: str | None,
                                                 ci: str | None) -> None:
    for name, value in (("BAYESGUIDE_SMOKE", smoke), ("CI", ci)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    scope: dict[str, object] = {"os": os}
    exec(_smoke_line(NOTEBOOKS[0]), scope)
    # BAYESGUIDE_SMOKE decides when it is set; otherwise CI (set by CI services) does
    expected = env_flag("BAYESGUIDE_SMOKE") if smoke is not None else env_flag("CI")
    assert scope["SMOKE"] is expected
