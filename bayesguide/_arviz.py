"""ArviZ and xarray, imported lazily; ArviZ without its import-time ``FutureWarning`` banner.

A leaf module (no bayesguide imports), so every stage can use it without an import
cycle. Lazily, because only the ArviZ views (``to_arviz``, PSIS-LOO) need them and
xarray alone costs about 0.5 s of start-up, which every sweep worker would otherwise pay
when it imports the pipeline.
"""

from __future__ import annotations

import warnings
from types import ModuleType

__all__ = ["arviz", "arviz_name", "xarray"]


def arviz() -> ModuleType:
    """The ``arviz`` module (0.x: ``InferenceData``, ``loo``, ``psislw``, ``compare``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def xarray() -> ModuleType:
    """The ``xarray`` module (what ArviZ's ``InferenceData`` groups are made of)."""
    import xarray as xr

    return xr


def arviz_name(name: str) -> str:
    """``name`` as an ArviZ variable or dimension name: dots (which ArviZ's plots read as indexing) become ``_``."""
    return name.replace(".", "_")
