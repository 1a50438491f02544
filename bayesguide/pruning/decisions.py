"""Pruning decisions: which units to keep, given their scores.

Contract: a *decision* is a callable ``rule(scores, context) -> dict[str, np.ndarray]``
taking the unit scores (``{layer: (n,) float64}``, larger = more important, see
[`bayesguide.pruning.scores`][]) and a [`Context`][bayesguide.pruning.decisions.Context] (the guided order of every
layer and a cost function of the widths) and returning a boolean keep-mask per layer.

Built in (``rule=`` names, [`RuleName`][bayesguide.pruning.decisions.RuleName]):

* ``"threshold"`` — keep ``s_j > t`` (absolute threshold ``t ≥ 0``);
* ``"relative"`` — keep ``s_j > f · max_k s_k`` per layer (``0 ≤ f ≤ 1``);
* ``"keep_k"`` — keep the ``k`` best-scoring units of each layer (ties: lower index);
* ``"prefix"`` — keep the first ``k`` units of the guided order (small guidance
  coefficient first); with ``k=None`` and a ``threshold``, the shortest prefix of the
  guided order holding every unit with ``s_j > t`` — nested architectures;
* ``"budget"`` — remove units globally, lowest score first, until the network's
  parameter count (or FLOPs) is at most the budget.

No rule removes every unit of a layer: when one would, [`guard_empty`][bayesguide.pruning.decisions.guard_empty] keeps
the
layer's best-scoring unit and emits a [`PruningWarning`][bayesguide.pruning.decisions.PruningWarning] (a network with an
empty
layer computes a constant).

Examples
--------
>>> import numpy as np
>>> scores = {"0": np.array([0.5, 0.0, 2.0])}
>>> Threshold(0.1)(scores, Context.trivial(scores))["0"]
array([ True, False,  True])
>>> KeepK(1)(scores, Context.trivial(scores))["0"]
array([False, False,  True])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bayesguide._options import Option

__all__ = [
    "Budget",
    "BudgetUnit",
    "Context",
    "Decision",
    "KeepK",
    "Prefix",
    "PruningWarning",
    "Relative",
    "RuleName",
    "Threshold",
    "guard_empty",
    "ranking",
]

Masks = dict[str, np.ndarray]


class PruningWarning(UserWarning):
    """A pruning rule asked for something surgery would not do as asked."""


class RuleName(Option):
    """Built-in pruning decisions."""

    THRESHOLD = "threshold", "s_j > t"
    """Keep units whose score exceeds an absolute threshold."""
    RELATIVE = "relative", "s_j > f · max s"
    """Keep units whose score exceeds a fraction of their layer's best score."""
    KEEP_K = "keep_k", "k best units per layer"
    """Keep the k best-scoring units of each layer."""
    PREFIX = "prefix", "first k units of the guided order"
    """Keep a prefix of the guided order."""
    BUDGET = "budget", "global ranking within a parameter / FLOP budget"
    """Keep the best units globally within a parameter or FLOP budget."""


class BudgetUnit(Option):
    """What a [`Budget`][bayesguide.pruning.decisions.Budget] counts."""

    PARAMS = "params", "parameter count"
    """Number of parameters."""
    FLOPS = "flops", "FLOPs per example"
    """Floating-point operations per example (2 per multiply-add)."""


@dataclass(frozen=True)
class Context:
    """What a decision may use besides the scores.

    ``order[layer]`` lists the layer's units in guided order (smallest guidance
    coefficient first); ``cost(widths)`` returns ``(parameters, FLOPs)`` of the network
    with those prunable widths (FLOPs ``-1`` when unknown).
    """

    order: dict[str, np.ndarray]
    cost: Callable[[Mapping[str, int]], tuple[int, int]] = field(repr=False)

    @classmethod
    def trivial(cls, scores: Mapping[str, np.ndarray]) -> Context:
        """Index order and a cost equal to the total width (for examples and tests)."""
        return cls({k: np.arange(len(v)) for k, v in scores.items()},
                   lambda w: (sum(w.values()), sum(w.values())))


Decision = Callable[[Mapping[str, np.ndarray], Context], Masks]
"""``(scores, context) -> {layer: keep mask}``."""


def ranking(s: np.ndarray) -> np.ndarray:
    """Unit indices from most to least important (ties: lower index first)."""
    return np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")


def _check_threshold(t: float, what: str) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) or not math.isfinite(t) or t < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {t!r}")
    return float(t)


def _k_for(keep: int | Mapping[str, int], layer: str, n: int) -> int:
    if isinstance(keep, Mapping):
        if layer not in keep:
            raise ValueError(f"keep has no entry for prunable layer {layer!r}; keys given: {sorted(keep)}")
        k = keep[layer]
    else:
        k = keep
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"keep-k for layer {layer!r} must be an int in [1, {n}], got {k!r}")
    return int(k)


@dataclass(frozen=True)
class Threshold:
    """Keep ``s_j > threshold``."""

    threshold: float

    def __post_init__(self) -> None:
        _check_threshold(self.threshold, "threshold")

    def __call__(self, scores: Mapping[str, np.ndarray], context: Context) -> Masks:
        return {k: np.asarray(v) > self.threshold for k, v in scores.items()}


@dataclass(frozen=True)
class Relative:
    """Keep ``s_j > fraction · max_k s_k`` in each layer."""

    fraction: float

    def __post_init__(self) -> None:
        if _check_threshold(self.fraction, "relative fraction") > 1:
            raise ValueError(f"relative fraction must lie in [0, 1], got {self.fraction!r}")

    def __call__(self, scores: Mapping[str, np.ndarray], context: Context) -> Masks:
        return {k: np.asarray(v) > self.fraction * np.max(v) for k, v in scores.items()}


@dataclass(frozen=True)
class KeepK:
    """Keep the ``keep`` best-scoring units of each layer (an int, or one per layer)."""

    keep: int | Mapping[str, int]

    def __call__(self, scores: Mapping[str, np.ndarray], context: Context) -> Masks:
        out: Masks = {}
        for layer, s in scores.items():
            mask = np.zeros(len(s), dtype=bool)
            mask[ranking(s)[: _k_for(self.keep, layer, len(s))]] = True
            out[layer] = mask
        return out


@dataclass(frozen=True)
class Prefix:
    """Keep the first ``keep`` units of the guided order, or the shortest prefix
    holding every unit with score above ``threshold`` (when ``keep`` is ``None``)."""

    keep: int | Mapping[str, int] | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if (self.keep is None) == (self.threshold is None):
            raise ValueError("the prefix rule takes keep (k units) or threshold, exactly one")
        if self.threshold is not None:
            _check_threshold(self.threshold, "threshold")

    def __call__(self, scores: Mapping[str, np.ndarray], context: Context) -> Masks:
        out: Masks = {}
        for layer, s in scores.items():
            order = context.order[layer]
            if self.keep is not None:
                k = _k_for(self.keep, layer, len(s))
            else:
                alive = np.asarray(s)[order] > self.threshold
                k = int(np.nonzero(alive)[0].max()) + 1 if alive.any() else 0
            mask = np.zeros(len(s), dtype=bool)
            mask[order[:k]] = True
            out[layer] = mask
        return out


@dataclass(frozen=True)
class Budget:
    """Remove units globally, lowest score first, until the cost is at most ``limit``.

    Scores are compared across layers, so they should be on one scale (the
    size-normalised ``"norm"`` score is). Every layer keeps at least one unit.
    """

    limit: float
    unit: BudgetUnit = BudgetUnit.PARAMS

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", BudgetUnit.resolve(self.unit, "budget unit"))
        if _check_threshold(self.limit, "budget") <= 0:
            raise ValueError(f"budget must be positive, got {self.limit!r}")

    def __call__(self, scores: Mapping[str, np.ndarray], context: Context) -> Masks:
        which = 0 if self.unit is BudgetUnit.PARAMS else 1
        masks = {k: np.ones(len(v), dtype=bool) for k, v in scores.items()}
        widths = {k: len(v) for k, v in scores.items()}
        if context.cost(widths)[which] < 0:
            raise ValueError(
                "a FLOP budget needs the input shape of a convolutional network (pass X or input_shape)"
            )
        layers = list(scores)
        entries = [(float(s), -j, li) for li, k in enumerate(layers) for j, s in enumerate(scores[k])]
        for _, neg_j, li in sorted(entries):
            if context.cost(widths)[which] <= self.limit:
                break
            layer = layers[li]
            if widths[layer] > 1:
                masks[layer][-neg_j] = False
                widths[layer] -= 1
        smallest = context.cost(widths)[which]
        if smallest > self.limit:
            raise ValueError(
                f"budget {self.limit:g} {self.unit.value} is below the smallest network this rule "
                f"can build (one unit per layer: {smallest} {self.unit.value})"
            )
        return masks


def guard_empty(masks: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray]) -> Masks:
    """Keep the best-scoring unit of any layer a rule would empty, with a `PruningWarning`."""
    out: Masks = {}
    for layer, mask in masks.items():
        mask = np.asarray(mask, dtype=bool).copy()
        if mask.shape != np.shape(scores[layer]):
            raise ValueError(
                f"the rule returned a mask of shape {mask.shape} for layer {layer!r}, "
                f"expected {np.shape(scores[layer])}"
            )
        if not mask.any():
            best = int(ranking(scores[layer])[0])
            warnings.warn(
                f"the rule removes every unit of layer {layer!r}; keeping its best-scoring unit {best}",
                PruningWarning,
                stacklevel=3,
            )
            mask[best] = True
        out[layer] = mask
    return out
