"""The notebooks in ``notebooks/`` run top to bottom, in smoke mode, and are stored stripped.

Each notebook is executed with nbclient in a fresh kernel running this interpreter
(``sys.executable``, through a kernelspec written for the test, so a user's own
``python3`` kernelspec cannot substitute another environment). ``BAYESGUIDE_SMOKE=1``
makes the notebooks shrink their data and step counts; any cell error fails the test.
The quick-start runs in the default test run, every notebook in the slow one (CI runs both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "bayesguide-smoke"
QUICK = "01_quickstart.ipynb"
"""The notebook the default test run executes; the others (13–16 s each) run with ``-m slow``."""
SMOKE_RUNS = [pytest.param(p, id=p.name, marks=() if p.name == QUICK else pytest.mark.slow) for p in NOTEBOOKS]


@pytest.fixture
def smoke_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this interpreter on ``JUPYTER_PATH``, and smoke mode switched on."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bayesguide smoke test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("BAYESGUIDE_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


def test_the_notebooks_are_there() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {
        "01_quickstart.ipynb",
        "02_guided_vs_plain.ipynb",
        "03_partial_regularization.ipynb",
        "04_teacher_student_selection.ipynb",
        "05_svi_posterior.ipynb",
        "06_baselines.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has stored outputs"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.parametrize("path", SMOKE_RUNS)
def test_notebook_runs_in_smoke_mode(path: Path, smoke_kernel: str) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=smoke_kernel, timeout=300, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, on any error
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), f"{path.name}: not every cell ran"
    warnings = [
        o["text"] for c in code for o in c.outputs
        if o.get("output_type") == "stream" and o.get("name") == "stderr" and "Warning" in o["text"]
    ]
    assert not warnings, f"{path.name} emitted warnings: {warnings}"
