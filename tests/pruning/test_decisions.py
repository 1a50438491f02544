"""Pruning decisions on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from bayesguide.pruning import Budget, Context, KeepK, Prefix, PruningWarning, Relative, Threshold
from bayesguide.pruning.decisions import guard_empty

SCORES = {"0": np.array([0.5, 0.0, 2.0, 1.0]), "2": np.array([3.0, 0.2, 0.2])}


def ctx() -> Context:
    return Context.trivial(SCORES)


def test_threshold_and_relative() -> None:
    assert Threshold(0.2)(SCORES, ctx())["2"].tolist() == [True, False, False]
    assert Threshold(0.0)(SCORES, ctx())["0"].tolist() == [True, False, True, True]
    assert Relative(0.3)(SCORES, ctx())["0"].tolist() == [False, False, True, True]


def test_keep_k_per_layer_and_by_mapping_with_ties_to_the_lower_index() -> None:
    assert KeepK(2)(SCORES, ctx())["2"].tolist() == [True, True, False]
    assert KeepK({"0": 1, "2": 3})(SCORES, ctx())["0"].tolist() == [False, False, True, False]


def test_prefix_follows_the_guided_order_not_the_scores() -> None:
    order = Context({"0": np.array([3, 2, 1, 0]), "2": np.array([0, 1, 2])}, ctx().cost)
    assert Prefix(keep=2)(SCORES, order)["0"].tolist() == [False, False, True, True]
    # shortest prefix of the order holding every unit above 0.1: units 3, 2, 1, 0 → up to 0
    assert Prefix(threshold=0.1)(SCORES, order)["0"].tolist() == [True, True, True, True]
    assert Prefix(threshold=0.25)(SCORES, order)["2"].tolist() == [True, False, False]


def test_budget_removes_the_globally_weakest_first() -> None:
    # trivial cost = total width (7 units); a budget of 4 removes the 3 weakest:
    # 0:1 (0.0), then the 0.2 tie in layer 2 (higher index first: 2:2, 2:1)
    masks = Budget(4)(SCORES, ctx())
    assert masks["0"].tolist() == [True, False, True, True]
    assert masks["2"].tolist() == [True, False, False]


def test_budget_below_the_smallest_network_is_refused() -> None:
    with pytest.raises(ValueError, match="below the smallest network"):
        Budget(1)(SCORES, ctx())


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf")])
def test_bad_thresholds(bad: float) -> None:
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        Threshold(bad)
    with pytest.raises(ValueError, match="relative fraction must be a finite number >= 0"):
        Relative(bad)


def test_relative_above_one_and_bad_budgets() -> None:
    with pytest.raises(ValueError, match=r"relative fraction must lie in \[0, 1\]"):
        Relative(1.5)
    with pytest.raises(ValueError, match="budget must be positive"):
        Budget(0)
    with pytest.raises(ValueError, match="unknown budget unit 'macs'; choose one of: params, flops"):
        Budget(10, "macs")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, 5, -1, 2.5, True])
def test_keep_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=r"keep-k for layer '0' must be an int in \[1, 4\]"):
        KeepK(k)(SCORES, ctx())


def test_keep_k_mapping_must_name_every_layer() -> None:
    with pytest.raises(ValueError, match="keep has no entry for prunable layer '2'"):
        KeepK({"0": 1})(SCORES, ctx())


def test_prefix_needs_exactly_one_argument() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Prefix()


def test_a_rule_that_empties_a_layer_keeps_its_best_unit_and_warns() -> None:
    masks = Threshold(2.5)(SCORES, ctx())
    with pytest.warns(
        PruningWarning, match="removes every unit of layer '0'; keeping its best-scoring unit 2"
    ):
        guarded = guard_empty(masks, SCORES)
    assert guarded["0"].tolist() == [False, False, True, False]
    assert guarded["2"].tolist() == [True, False, False]
