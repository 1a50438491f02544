"""Number and text formatting shared by the HTML and Markdown reports.

Every formatter takes whatever a ``results.json`` may hold (a number, ``None``, a
string, a NaN that slipped through) and returns plain text; a missing or non-finite
value becomes `MISSING` (an em dash). Escaping for the output format is the
renderer's job, not this module's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MISSING",
    "as_float",
    "fmt_float",
    "fmt_int",
    "fmt_log",
    "fmt_metric",
    "fmt_percent",
    "fmt_prob",
    "fmt_seconds",
    "fmt_value",
    "fmt_widths",
    "get",
]

MISSING = "—"
"""Shown for a value that is missing, ``None`` or not finite."""


def get(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]…``, or ``None`` as soon as a level is missing or not a mapping."""
    value = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, not a number, NaN or infinite)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond the float range
        return None
    return x if math.isfinite(x) else None


def _not_number(value: Any) -> str:
    """A value that should have been a number: its text, or the dash when empty."""
    return MISSING if value is None or (isinstance(value, float)) else str(value)


def fmt_int(value: Any) -> str:
    """An integer count with thousands separators: ``1,245``."""
    x = as_float(value)
    return _not_number(value) if x is None else f"{round(x):,}"


def fmt_float(value: Any, digits: int = 4) -> str:
    """A float to ``digits`` significant digits, scientific only when very large or small."""
    x = as_float(value)
    if x is None:
        return _not_number(value)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
        text = f"{x:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{x:.{digits - 1}e}"


def fmt_log(value: Any) -> str:
    """A log-density in nats, two decimals: ``-1,234.57``."""
    x = as_float(value)
    return _not_number(value) if x is None else f"{x:,.2f}"


def fmt_prob(value: Any) -> str:
    """A probability: three decimals, scientific below 0.001 (``2.3e-07``)."""
    x = as_float(value)
    if x is None:
        return _not_number(value)
    if x == 0 or x >= 1e-3:
        return f"{x:.3f}"
    return f"{x:.1e}"


def fmt_percent(value: Any) -> str:
    """A fraction as a percentage: ``0.048`` → ``4.8 %``."""
    x = as_float(value)
    if x is None:
        return _not_number(value)
    pct = 100 * x
    return f"{pct:.1f} %" if abs(pct) >= 0.1 or pct == 0 else f"{pct:.2g} %"


def fmt_metric(value: Any, metric: str | None) -> str:
    """Accuracy to four decimals, RMSE (or anything else) to four significant digits."""
    x = as_float(value)
    if x is None:
        return _not_number(value)
    return f"{x:.4f}" if metric == "accuracy" else fmt_float(x)


def fmt_seconds(value: Any) -> str:
    """A duration: ``0.42 s``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``."""
    x = as_float(value)
    if x is None:
        return _not_number(value)
    if x < 10:
        return f"{x:.2f} s"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)} min {int(x % 60):02d} s"
    return f"{int(x // 3600)} h {int(x % 3600 // 60):02d} min"


def fmt_widths(value: Any) -> str:
    """Hidden widths as ``15 · 10``."""
    if isinstance(value, (list, tuple)):
        return " · ".join(fmt_int(v) for v in value) if value else MISSING
    return _not_number(value)


def fmt_value(value: Any) -> str:
    """Any configuration value: numbers compactly, lists joined, ``None`` as the dash."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value) if value else MISSING
    return str(value)
