"""A small sweep file over a small classification task, shared by the sweep tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SWEEP = """
[sweep]
dir = "{out}"
executor = "serial"
{settings}

[data]
source = "d.npz"
task = "classification"
[network]
hidden = [5]
activation = "tanh"
[fit]
steps = {steps}
lr = 0.02
[select]
n_candidates = 3
threshold = 0.0
bisect = 0
fine_tune = 0

[grid]
{grid}
"""

GRID = '"prior.strength" = [0.5, 2.0]\n"fit.seed" = [0, 1]'


def write_sweep(tmp_path: Path, grid: str = GRID, steps: int = 30, settings: str = "",
                name: str = "sweep.toml") -> Path:
    """``tmp_path/sweep.toml`` over 80 random 3-feature examples (``d.npz``, a relative source),
    writing into ``tmp_path/out``."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64))
    path = tmp_path / name
    path.write_text(SWEEP.format(out=tmp_path / "out", grid=grid, steps=steps, settings=settings))
    return path


@pytest.fixture
def sweep_file() -> Callable[..., Path]:
    """:func:`write_sweep`, for the tests of this folder."""
    return write_sweep
