"""Test isolation, as in Pyro's own suite: every test starts seeded, with an empty
parameter store and Pyro's validation on."""

from __future__ import annotations

from collections.abc import Iterator

import pyro
import pytest


@pytest.fixture(autouse=True)
def _isolate() -> Iterator[None]:
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)  # seeds torch, numpy and random
    yield
    pyro.clear_param_store()
