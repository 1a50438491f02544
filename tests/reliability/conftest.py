"""A small classification experiment file shared by the CLI and run-lock tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

EXPERIMENT = """
[data]
source = "{data}"
task = "classification"
[network]
hidden = [4]
activation = "tanh"
[fit]
steps = 20
lr = {lr}
[select]
n_candidates = {n_candidates}
threshold = 0.0
fine_tune = 0
[output]
dir = "{out}"
"""


def write_experiment(tmp_path: Path, lr: str = "0.02", n_candidates: int = 3) -> Path:
    """``tmp_path/exp.toml`` on 60 random 3-feature examples (``d.npz``), output in ``tmp_path/run``."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(data=tmp_path / "d.npz", out=tmp_path / "run", lr=lr,
                                      n_candidates=n_candidates))
    return path


@pytest.fixture
def small_experiment() -> Callable[..., Path]:
    """:func:`write_experiment`, for the tests of this folder."""
    return write_experiment
