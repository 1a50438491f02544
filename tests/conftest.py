"""Test isolation, as in Pyro's own suite: every test starts seeded, with an empty
parameter store and Pyro's validation on; and the documentation site, built once per
session for the docs tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pyro
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolate() -> Iterator[None]:
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)  # seeds torch, numpy and random
    yield
    pyro.clear_param_store()


@pytest.fixture
def load_benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """A loader of ``benchmarks/<file>`` as a fresh module, registered in ``sys.modules`` for the test
    (dataclasses look their module up there) under ``benchmark_<stem>``."""

    def load(file: str) -> ModuleType:
        name = "benchmark_" + Path(file).stem
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built once per test session with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("latex2mathml")
    site = tmp_path_factory.getbasetemp() / "docs-site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return site
