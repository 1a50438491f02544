"""ArviZ, imported lazily and without its import-time ``FutureWarning`` banner.

A leaf module (no bayesguide imports), so every stage can use it without an import
cycle.
"""

from __future__ import annotations

import warnings
from types import ModuleType

__all__ = ["arviz", "arviz_name"]


def arviz() -> ModuleType:
    """The ``arviz`` module (0.x: ``InferenceData``, ``loo``, ``psislw``, ``compare``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def arviz_name(name: str) -> str:
    """``name`` as an ArviZ variable or dimension name: dots (which ArviZ's plots read as indexing) become ``_``."""
    return name.replace(".", "_")
