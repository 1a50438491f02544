"""Start-up: the package is lazy, the command's help and version need no torch.

Not timing tests: they check *what is imported* (``sys.modules`` in a fresh
interpreter), which is what makes ``bayesguide --help`` answer at once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bayesguide

ROOT = Path(__file__).resolve().parents[1]

#: modules the start-up must not load (each takes seconds)
HEAVY = ("torch", "pyro", "numpy", "scipy", "pandas", "arviz", "matplotlib")


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints a JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["demo", "--help"], ["sweep", "--help"], []])
def test_help_and_version_do_not_import_the_heavy_stack(argv: list[str]) -> None:
    out = _fresh(
        "import contextlib, io, json, sys\n"
        "import bayesguide.cli as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        cli.main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps({{'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n"
    )
    assert out == {"heavy": []}


def test_run_help_imports_the_registries_it_lists() -> None:
    # the contrast that shows the check above can fail: `run --help` reads the registries (torch)
    out = _fresh(
        "import contextlib, io, json, sys\n"
        "import bayesguide.cli as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        cli.main(['run', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps({'torch': 'torch' in sys.modules}))\n"
    )
    assert out == {"torch": True}


def test_import_bayesguide_loads_no_submodule() -> None:
    out = _fresh("import json, sys\nimport bayesguide\n"
                 "loaded = sorted(m for m in sys.modules if m.startswith(('bayesguide.', 'torch')))\n"
                 "print(json.dumps({'loaded': loaded}))")
    assert out == {"loaded": []}


def test_the_console_script_prints_the_installed_version() -> None:
    done = subprocess.run([sys.executable, "-m", "bayesguide.cli", "--version"], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout == f"bayesguide {importlib.metadata.version('bayesguide')}\n"
    assert bayesguide.__version__ == importlib.metadata.version("bayesguide")


@pytest.mark.parametrize("name", [n for n in bayesguide.__all__ if n != "__version__"])
def test_every_public_name_is_the_object_its_submodule_defines(name: str) -> None:
    where = bayesguide._WHERE[name]
    module = importlib.import_module(where)
    expected = module if where == f"bayesguide.{name}" else getattr(module, name)
    assert getattr(bayesguide, name) is expected
    assert name in dir(bayesguide)


def test_the_lazy_table_the_type_checking_imports_and_all_agree() -> None:
    tree = ast.parse((ROOT / "bayesguide" / "__init__.py").read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen: dict[str, str] = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        for alias in node.names:
            seen[alias.name] = f"bayesguide.{alias.name}" if node.module == "bayesguide" else node.module
    assert seen == bayesguide._WHERE
    assert set(bayesguide.__all__) == {*seen, "__version__"}


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'bayesguide' has no attribute 'fit_mapp'"):
        _ = bayesguide.fit_mapp  # type: ignore[attr-defined]  # the checkers see no __getattr__
    assert not hasattr(bayesguide, "nothing_here")


@pytest.mark.parametrize("name", ["pruning", "priors", "infer", "marglik", "report", "experiment", "runner"])
def test_every_submodule_is_an_attribute_as_before(name: str) -> None:
    assert getattr(bayesguide, name) is importlib.import_module(f"bayesguide.{name}")


def test_a_sweep_worker_loads_neither_xarray_nor_scipy_stats() -> None:
    # a worker imports the point runner (and through it the run report) once per process; xarray
    # (~0.5 s) is only for the ArviZ views and scipy.stats (~0.6 s) only for the sweep page's ρ
    out = _fresh("import json, sys\nimport bayesguide.sweeps.point\n"
                 "print(json.dumps({'loaded': sorted(m for m in ('xarray', 'scipy.stats') if m in sys.modules)}))")
    assert out == {"loaded": []}


def test_the_arviz_view_and_the_sweep_correlation_load_what_they_need() -> None:
    # the contrast: the lazy imports happen where they are used
    out = _fresh(
        "import json, sys\n"
        "from bayesguide._arviz import xarray\n"
        "from bayesguide.report.sweep_content import evidence_test_correlation\n"
        "before = 'xarray' in sys.modules or 'scipy.stats' in sys.modules\n"
        "xarray()\n"
        "points = [{'status': 'complete', 'log_evidence': float(i), 'test_metric': 0.5 + i / 10} for i in range(4)]\n"
        "got = evidence_test_correlation({'points': points, 'metric': 'accuracy'})\n"
        "print(json.dumps({'before': before, 'after': ['xarray' in sys.modules, 'scipy.stats' in sys.modules],\n"
        "                  'rho': None if got is None else got.rho}))"
    )
    assert out == {"before": False, "after": [True, True], "rho": 1.0}
