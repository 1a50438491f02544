"""Atomic file writes: a temporary file in the same folder, then a rename.

Every file bayesguide writes for a user (results, reports, saved networks and fits)
goes through [`write_atomic`][bayesguide.atomic.write_atomic], so a crash or Ctrl-C never leaves a half-written
file: a reader sees the old file or the new one. Scripts use it too
(``benchmarks/``). Leaf module: no bayesguide imports.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     path = write_json_atomic(pathlib.Path(d) / "a.json", {"x": float("nan")})
...     path.read_text()
'{\\n "x": null\\n}'
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "write_atomic", "write_json_atomic"]


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, empty temporary file beside ``path``: its descriptor and name.

    It is created like any new file (mode ``0o666`` less the umask), not with
    ``tempfile.mkstemp``'s fixed ``0o600``: every file of a run directory gets the same
    permissions, whichever way it was written.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:  # pragma: no cover - 32 random bits collide
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


def write_atomic(path: str | os.PathLike[str], data: bytes | str | Callable[[str], None]) -> Path:
    """Write ``data`` to ``path`` atomically; return the path.

    Parameters
    ----------
    path
        The file to write (its folder is created if needed).
    data
        The content (``bytes`` or ``str``, UTF-8) or a function that writes the
        temporary file whose name it is given (e.g. ``lambda tmp: torch.save(obj, tmp)``).

    Returns
    -------
    Path
        ``path``.

    The file gets the permissions of an ordinary new file: ``0o666`` less the process's
    umask (``0o644`` under the usual umask ``022``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy / torch scalars and arrays; NaN and inf become ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return jsonable(value.item())
    return value


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as JSON (through [`jsonable`][bayesguide.atomic.jsonable]) atomically; return the path."""
    return write_atomic(path, json.dumps(jsonable(payload), indent=1, allow_nan=False))
