"""Number formatting: missing and non-finite values are a dash, the rest is readable."""

from __future__ import annotations

import math

import pytest

from bayesguide.report._format import (
    MISSING,
    fmt_float,
    fmt_int,
    fmt_log,
    fmt_metric,
    fmt_percent,
    fmt_prob,
    fmt_seconds,
    fmt_value,
    fmt_widths,
)


@pytest.mark.parametrize("fmt", [fmt_float, fmt_int, fmt_log, fmt_percent, fmt_prob, fmt_seconds])
@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_is_a_dash(fmt: object, value: object) -> None:
    assert fmt(value) == MISSING  # type: ignore[operator]


@pytest.mark.parametrize(("fmt", "value", "expected"), [
    (fmt_int, 1245, "1,245"),
    (fmt_int, 1245.0, "1,245"),
    (fmt_float, 0.082336, "0.08234"),
    (fmt_float, 42.146, "42.15"),
    (fmt_float, 1.5, "1.5"),
    (fmt_float, 123456.0, "123,456"),
    (fmt_float, 2.5e-7, "2.500e-07"),
    (fmt_float, 0, "0"),
    (fmt_log, -1234.567, "-1,234.57"),
    (fmt_prob, 0.97, "0.970"),
    (fmt_prob, 2.3e-7, "2.3e-07"),
    (fmt_prob, 0.0, "0.000"),
    (fmt_percent, 0.048, "4.8 %"),
    (fmt_seconds, 0.421, "0.42 s"),
    (fmt_seconds, 125, "2 min 05 s"),
    (fmt_seconds, 3725, "1 h 02 min"),
    (fmt_widths, [15, 10], "15 · 10"),
    (fmt_widths, [], MISSING),
    (fmt_value, True, "yes"),
    (fmt_value, [1, 2.5], "1, 2.5"),
    (fmt_value, "linear", "linear"),
])
def test_formats(fmt: object, value: object, expected: str) -> None:
    assert fmt(value) == expected  # type: ignore[operator]


def test_metric_depends_on_its_kind() -> None:
    assert fmt_metric(0.98765, "accuracy") == "0.9877"
    assert fmt_metric(0.123456, "rmse") == "0.1235"


def test_a_string_where_a_number_was_expected_is_shown_as_is() -> None:
    assert fmt_int("n/a") == "n/a"
