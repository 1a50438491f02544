"""Guidance profiles against their closed forms, and every error path of the module."""

from __future__ import annotations

import math

import pytest
import torch

from bayesguide import guidance
from bayesguide.guidance import coefficients_for_layer, validate_coefficients

# --------------------------------------------------------------------------- linear


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_linear_default_is_j_plus_one_over_n(n: int) -> None:
    g = guidance.linear()(n)
    expected = torch.tensor([(j + 1) / n for j in range(n)], dtype=torch.float64)
    assert g.dtype == torch.float64
    assert g.shape == (n,)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("low", [0.0, 0.25, 1.0])
def test_linear_low_rises_to_one(low: float) -> None:
    n = 5
    g = guidance.linear(low=low)(n)
    expected = torch.tensor([low + (1 - low) * j / (n - 1) for j in range(n)], dtype=torch.float64)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-15)
    assert g[0].item() == pytest.approx(low, abs=1e-15)
    assert g[-1].item() == pytest.approx(1.0, abs=1e-15)


def test_linear_low_zero_values() -> None:
    g = guidance.linear(low=0.0)(3)
    assert g.tolist() == [0.0, 0.5, 1.0]


def test_linear_single_unit_is_one() -> None:
    assert guidance.linear(low=0.0)(1).tolist() == [1.0]


@pytest.mark.parametrize("low", [2.0, -0.1, math.nan, math.inf])
def test_linear_bad_low(low: float) -> None:
    with pytest.raises(ValueError, match=r"linear\(low=\.\.\.\) must lie in \[0, 1\]"):
        guidance.linear(low=low)


# --------------------------------------------------------------------------- geometric


@pytest.mark.parametrize(("growth", "n"), [(100.0, 5), (4.0, 3), (2.0, 9)])
def test_geometric_endpoints_and_constant_ratio(growth: float, n: int) -> None:
    g = guidance.geometric(growth=growth)(n)
    assert g.shape == (n,)
    assert g[0].item() == pytest.approx(1.0 / growth, rel=1e-12)
    assert g[-1].item() == pytest.approx(1.0, rel=1e-12)
    ratios = g[1:] / g[:-1]
    expected_ratio = growth ** (1.0 / (n - 1))
    expected = torch.full((n - 1,), expected_ratio, dtype=torch.float64)
    torch.testing.assert_close(ratios, expected, rtol=1e-12, atol=0)


def test_geometric_default_growth_is_100() -> None:
    g = guidance.geometric()(3)
    torch.testing.assert_close(g, torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("growth", [0.0, -1.0, math.inf, math.nan])
def test_geometric_bad_growth(growth: float) -> None:
    with pytest.raises(ValueError, match=r"geometric\(growth=\.\.\.\) must be a positive finite number"):
        guidance.geometric(growth=growth)


# --------------------------------------------------------------------------- uniform


@pytest.mark.parametrize("n", [1, 4])
def test_uniform_is_all_ones(n: int) -> None:
    g = guidance.uniform()(n)
    assert g.dtype == torch.float64
    assert g.tolist() == [1.0] * n


@pytest.mark.parametrize("profile", [guidance.linear(), guidance.uniform(), guidance.geometric()])
@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_profiles_reject_bad_unit_count(profile: guidance.Profile, n: object) -> None:
    with pytest.raises(ValueError, match="a layer needs at least one unit"):
        profile(n)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- partial


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 15, 16, 17, 24, 100])
def test_partial_default_protects_last_floor_n_over_8(n: int) -> None:
    # E & Gao's code: the first n - floor(n/8) rows are penalised, the last floor(n/8) are free.
    g = guidance.partial()(n)
    k = n // 8
    expected = [1.0] * (n - k) + [0.0] * k
    assert g.tolist() == expected


@pytest.mark.parametrize(
    ("fraction", "n", "k"), [(0.25, 8, 2), (0.3, 10, 3), (0.29, 100, 29), (0.5, 3, 1), (0.0, 5, 0)]
)
def test_partial_fraction_counts(fraction: float, n: int, k: int) -> None:
    g = guidance.partial(fraction=fraction)(n)
    assert g.tolist() == [1.0] * (n - k) + [0.0] * k


@pytest.mark.parametrize(("count", "n"), [(0, 4), (2, 5), (5, 5), (9, 3)])
def test_partial_count(count: int, n: int) -> None:
    k = min(count, n)
    assert guidance.partial(count=count)(n).tolist() == [1.0] * (n - k) + [0.0] * k


def test_partial_first_position() -> None:
    assert guidance.partial(count=2, position="first")(5).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert guidance.partial(fraction=0.5, position="first")(4).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_partial_fraction_and_count_together() -> None:
    with pytest.raises(ValueError, match="takes fraction or count, not both"):
        guidance.partial(0.5, count=1)


@pytest.mark.parametrize("fraction", [1.0, 1.5, -0.1, math.nan])
def test_partial_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"partial\(fraction=\.\.\.\) must lie in \[0, 1\)"):
        guidance.partial(fraction=fraction)


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_partial_bad_count(count: object) -> None:
    with pytest.raises(ValueError, match=r"partial\(count=\.\.\.\) must be a non-negative int"):
        guidance.partial(count=count)  # type: ignore[arg-type]


def test_partial_bad_position() -> None:
    with pytest.raises(ValueError, match=r"partial\(position=\.\.\.\) must be 'last' or 'first', got 'mid'"):
        guidance.partial(position="mid")


# --------------------------------------------------------------------------- custom


def test_custom_tensor_is_returned_as_float64_copy() -> None:
    src = torch.tensor([3, 0, 1])
    profile = guidance.custom(src)
    g = profile(3)
    assert g.dtype == torch.float64
    assert g.tolist() == [3.0, 0.0, 1.0]
    g[0] = 99.0  # the profile must hand out copies
    assert profile(3).tolist() == [3.0, 0.0, 1.0]


def test_custom_list_accepted() -> None:
    assert guidance.custom([0.5, 2.0])(2).tolist() == [0.5, 2.0]


def test_custom_callable() -> None:
    profile = guidance.custom(lambda n: torch.arange(n) ** 2)
    assert profile(4).tolist() == [0.0, 1.0, 4.0, 9.0]
    assert profile(2).tolist() == [0.0, 1.0]


def test_custom_tensor_must_be_1d() -> None:
    with pytest.raises(ValueError, match=r"custom guidance tensor must be 1-D .* got shape \(2, 2\)"):
        guidance.custom(torch.ones(2, 2))


def test_custom_tensor_of_wrong_length_is_caught_where_used() -> None:
    with pytest.raises(ValueError, match=r"guidance for layer '0' has shape \(3,\), expected \(5,\)"):
        coefficients_for_layer(guidance.custom(torch.ones(3)), "0", 5)


def test_custom_callable_returning_negative_is_caught_where_used() -> None:
    profile = guidance.custom(lambda n: torch.arange(n, dtype=torch.float64) - 1.0)
    with pytest.raises(ValueError, match=r"layer '2' has a negative coefficient -1\.0 at unit 0"):
        coefficients_for_layer(profile, "2", 3)


# --------------------------------------------------------------------------- per-layer mapping


def test_mapping_by_layer_name_and_default() -> None:
    spec = {"0": guidance.uniform(), 2: guidance.linear(low=0.0), "*": guidance.partial(count=1)}
    torch.testing.assert_close(coefficients_for_layer(spec, "0", 3), torch.ones(3, dtype=torch.float64))
    # integer keys match the layer name as a string
    assert coefficients_for_layer(spec, "2", 3).tolist() == [0.0, 0.5, 1.0]
    assert coefficients_for_layer(spec, "4", 3).tolist() == [1.0, 1.0, 0.0]


def test_mapping_missing_key_without_default() -> None:
    spec = {"0": guidance.uniform(), "3": guidance.linear()}
    pattern = r"no entry for prunable layer '2' and no '\*' default; keys given: \['0', '3'\]"
    with pytest.raises(ValueError, match=pattern):
        coefficients_for_layer(spec, "2", 4)


def test_single_profile_applies_to_every_layer() -> None:
    for layer in ("0", "1.0", "7"):
        torch.testing.assert_close(
            coefficients_for_layer(guidance.linear(), layer, 4),
            torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64),
        )


def test_non_callable_profile_is_type_error() -> None:
    with pytest.raises(TypeError, match=r"guidance for layer '0' must be a profile .* got float"):
        coefficients_for_layer({"*": 1.0}, "0", 3)  # type: ignore[dict-item]


# --------------------------------------------------------------------------- validate_coefficients


def test_validate_coefficients_accepts_and_converts() -> None:
    g = validate_coefficients(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float32), 3, "layer '0'")
    assert g.dtype == torch.float64
    assert g.tolist() == [0.0, 1.0, 2.0]


_X = r"guidance for layer 'x' has "


@pytest.mark.parametrize(
    ("g", "pattern"),
    [
        (torch.tensor([1.0, -0.5, 2.0]), _X + r"a negative coefficient -0\.5 at unit 1"),
        (torch.tensor([1.0, 2.0, math.nan]), _X + r"a non-finite coefficient at unit 2"),
        (torch.tensor([math.inf, 1.0, 1.0]), _X + r"a non-finite coefficient at unit 0"),
        (torch.tensor([1.0, -math.inf, 1.0]), _X + r"a non-finite coefficient at unit 1"),
        (torch.ones(4), _X + r"shape \(4,\), expected \(3,\): one coefficient per unit"),
        (torch.ones(3, 1), _X + r"shape \(3, 1\), expected \(3,\)"),
        (torch.ones(3, 3), _X + r"shape \(3, 3\), expected \(3,\)"),
        (torch.tensor(1.0), _X + r"shape \(\), expected \(3,\)"),
    ],
)
def test_validate_coefficients_errors(g: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        validate_coefficients(g, 3, "layer 'x'")


# --------------------------------------------------------------------------- get


def test_get_by_name() -> None:
    assert guidance.get("linear")(4).tolist() == [0.25, 0.5, 0.75, 1.0]
    assert guidance.get("LINEAR", low=0.0)(3).tolist() == [0.0, 0.5, 1.0]
    assert guidance.get("uniform")(2).tolist() == [1.0, 1.0]
    assert guidance.get("partial", fraction=0.5)(2).tolist() == [1.0, 0.0]
    torch.testing.assert_close(
        guidance.get(guidance.ProfileName.GEOMETRIC, growth=4.0)(3),
        torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64),
    )


def test_get_unknown_name_lists_choices() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown guidance profile 'cubic'; choose one of: linear, geometric, uniform, partial",
    ):
        guidance.get("cubic")


def test_get_bad_options() -> None:
    with pytest.raises(ValueError, match=r"bad options for guidance profile 'uniform'"):
        guidance.get("uniform", low=0.5)
    with pytest.raises(ValueError, match=r"linear\(low=\.\.\.\) must lie in \[0, 1\]"):
        guidance.get("linear", low=2.0)


@pytest.mark.parametrize("name", guidance.ProfileName.choices())
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_every_named_profile_meets_the_contract(name: str, n: int) -> None:
    """profile(n) -> (n,) float64, finite, >= 0, and validate_coefficients accepts it unchanged."""
    g = guidance.get(name)(n)
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float64 and g.shape == (n,)
    assert bool(torch.isfinite(g).all()) and bool((g >= 0).all())
    assert torch.equal(guidance.validate_coefficients(g, n, "x"), g)
    # and it is what a model built with it uses for a layer of that width
    net = torch.nn.Sequential(torch.nn.Linear(2, n), torch.nn.ReLU(), torch.nn.Linear(n, 1))
    import bayesguide as bg

    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, guidance.get(name)), "gaussian", noise=1.0)
    assert torch.equal(model.coefficients["0.units"], g)
