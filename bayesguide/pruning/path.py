"""``pruning_path``: nested architectures from the full network down to one unit per layer.

All units of all prunable layers are ranked once, globally, by their score (lowest
first; ties: the later index first). Candidate ``i`` removes the first ``r_i`` units
of that ranking (never the last ``min_width`` of a layer), with ``r_i`` evenly spaced
from 0 to all removable units, plus the point where every unit with score
``≤ threshold`` is gone when ``threshold`` is given. The kept sets are therefore
nested: every candidate's units are a subset of the previous one's (also with
``round_to``, which rounds each layer's kept count up by adding back the units the path
would remove last). With ordered
(guided) priors the ranking follows the guidance and the path walks the prefixes of
each layer: the path through model space of guided regularization (Rafid & Sandu,
arXiv 2305.18448; the *Structured pruning* page of the documentation).

With ``merge``, units whose incoming weights are (nearly) a multiple of a unit the path
keeps longer are removed first and folded into it ([`bayesguide.pruning.merge`][]),
and the path gains the point where all of them are gone.

Each candidate can be fine-tuned with a few MAP steps under the same prior, warm
started from its pruned weights (``fine_tune=k``), through
[`bayesguide.fit_map`][] on the candidate's own [`GuidedModel`][bayesguide.GuidedModel]
(for L0 gates and the group horseshoe, which have no MAP fit, under the uniform
Gaussian their evidence uses: [`bayesguide.pruning.tuning.tuning_model`][]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from bayesguide.infer import FitResult
from bayesguide.model import ArrayLike
from bayesguide.model.batches import Batches, BatchStream, open_stream
from bayesguide.model.device import DeviceLike, check_device
from bayesguide.pruning.candidate import Candidate, build, check_mergeable, check_scores, setup, with_tuning
from bayesguide.pruning.merge import Merges, merge_groups
from bayesguide.pruning.scores import UnitScore, make_score
from bayesguide.pruning.structure import Structure
from bayesguide.pruning.tuning import fine_tune_fit

__all__ = ["pruning_path", "removal_order"]


def removal_order(scores: dict[str, np.ndarray], min_width: int = 1) -> list[tuple[str, int]]:
    """``(layer, unit)`` pairs in the order the path removes them.

    Examples
    --------
    >>> removal_order({"0": np.array([3.0, 1.0, 2.0]), "2": np.array([0.5, 4.0])})
    [('2', 0), ('0', 1), ('0', 2)]
    """
    layers = list(scores)
    entries = sorted((float(s), -j, li) for li, k in enumerate(layers) for j, s in enumerate(scores[k]))
    left = {k: len(v) for k, v in scores.items()}
    order: list[tuple[str, int]] = []
    for _, neg_j, li in entries:
        layer = layers[li]
        if left[layer] > min_width:
            order.append((layer, -neg_j))
            left[layer] -= 1
    return order


def _merged_first(structure: Structure, order: list[tuple[str, int]], collapsed: int,
                  scores: dict[str, np.ndarray], tolerance: float) -> tuple[Merges, list[tuple[str, int]]]:
    """The twins of `merge_groups` and the removal order with them first (after the collapsed units).

    A group's representative is the unit the path keeps longest; units the path never
    removes come first, and the collapsed units (the first ``collapsed`` of ``order``)
    are left out.
    """
    gone = set(order[:collapsed])
    rank = {u: i for i, u in enumerate(order)}
    never = len(order)  # the rank of a unit the path never removes: kept longest
    keep_order: dict[str, list[int]] = {}
    for layer, s in scores.items():
        units = [j for j in range(len(s)) if (layer, j) not in gone]
        keep_order[layer] = sorted(units, key=lambda j: -rank.get((layer, j), never))
    merges = merge_groups(structure, tolerance, keep_order)
    twins = [u for u in order[collapsed:] if u[1] in merges.get(u[0], {})]
    rest = [u for u in order[collapsed:] if u[1] not in merges.get(u[0], {})]
    return merges, order[:collapsed] + twins + rest


def _preference(order: list[tuple[str, int]], scores: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Each layer's units, the one the path removes last first (the never-removed ones lead).

    Examples
    --------
    >>> _preference([("0", 1), ("0", 2)], {"0": np.array([3.0, 1.0, 2.0])})
    {'0': [0, 2, 1]}
    """
    removed: dict[str, list[int]] = {k: [] for k in scores}
    for layer, j in order:
        removed[layer].append(j)
    out = {}
    for layer, seq in removed.items():
        gone = set(seq)
        out[layer] = [j for j in range(len(scores[layer])) if j not in gone] + seq[::-1]
    return out


def _round_kept(masks: dict[str, np.ndarray], preference: dict[str, list[int]],
                round_to: int) -> dict[str, np.ndarray]:
    """Keep-masks whose kept counts are rounded up to multiples of ``round_to`` (at most the layer width).

    The units added back are the next ones in ``preference`` (a layer's units, best
    first), so masks that were nested stay nested.

    Examples
    --------
    >>> _round_kept({"0": np.array([True, False, False, True, False])}, {"0": [3, 0, 2, 1, 4]}, 4)
    {'0': array([ True,  True,  True,  True, False])}
    """
    out = {}
    for layer, mask in masks.items():
        n = len(mask)
        target = min(n, -(-int(mask.sum()) // round_to) * round_to)
        rounded = np.zeros(n, dtype=bool)
        rounded[preference[layer][:target]] = True
        out[layer] = rounded | mask
    return out


def _removal_counts(removable: int, total: int, n_candidates: int, spacing: str) -> set[int]:
    """How many units each path point removes (0 and ``removable`` always included).

    Examples
    --------
    >>> sorted(_removal_counts(98, 100, 4, "geometric"))
    [0, 73, 93, 98]
    """
    if spacing == "linear":
        return set(np.round(np.linspace(0, removable, n_candidates)).astype(int).tolist())
    if spacing == "geometric":
        kept = np.geomspace(total, total - removable, n_candidates)
        return {int(v) for v in np.clip(np.round(total - kept), 0, removable)} | {0, removable}
    raise ValueError(f"spacing must be 'linear' or 'geometric', got {spacing!r}")


def pruning_path(
    fit: FitResult,
    X: ArrayLike | Batches | BatchStream | DataLoader[Any],
    y: ArrayLike | None = None,
    *,
    score: str | UnitScore = "norm",
    direction: str = "incoming",
    n_candidates: int = 8,
    threshold: float | None = None,
    min_width: int = 1,
    spacing: str = "linear",
    start: str = "full",
    removals: Sequence[int] | None = None,
    fine_tune: int = 0,
    lr: float = 1e-3,
    seed: int | None = 0,
    round_to: int | None = None,
    merge: float | None = None,
    input_shape: Sequence[int] | None = None,
    device: DeviceLike = None,
) -> list[Candidate]:
    """Nested candidates from the full width down to ``min_width`` units per layer.

    Parameters
    ----------
    fit
        A MAP or SVI fit; ``X, y`` must be its training data (checked).
    X
        The fit's training inputs; or a data loader of its training data (a
        ``DataLoader``, [`Batches`][bayesguide.model.batches.Batches] or a
        [`BatchStream`][bayesguide.model.batches.BatchStream]), checked once
        ([`Fitted.training_data`][bayesguide.posterior.Fitted.training_data]) and read batch
        by batch by the fine-tuning ([`bayesguide.fit_map`][] on a loader: each step one
        batch, its log-likelihood scaled by ``n / B``).
    y
        The fit's training targets; omitted for a loader.
    score
        The unit score ranking the units (see [`bayesguide.pruning.prune`][]).
    direction
        The weights the ``"norm"`` score reads: ``"incoming"``, ``"outgoing"`` or
        ``"both"`` (see [`bayesguide.pruning.prune`][]).
    n_candidates
        Number of evenly spaced points of the path (at least 2: full and smallest).
    threshold
        If given, add the candidate that removes exactly the units scoring ``≤ threshold``.
    min_width
        Units every prunable layer keeps, at least 1.
    spacing
        How the ``n_candidates`` points are spread between the full and the smallest
        network: ``"linear"`` (evenly in the number of units removed) or
        ``"geometric"`` (evenly in the logarithm of the number of units kept, so small
        networks, where the choice is made, are resolved finely).
    start
        ``"full"``: the path starts at the full network; ``"threshold"``: at the
        threshold point (the units with score ``≤ threshold`` are gone from every
        candidate — for fits in which the evidence itself collapsed units, such as
        [`bayesguide.fit_marglik`][], whose larger candidates only add dead units and
        tie with it). Needs ``threshold``.
    removals
        Exact points instead of ``n_candidates`` / ``spacing`` / ``start``: the numbers of
        units each candidate removes, in the ranking's order (each an int in ``[0,
        removable]``); used to refine a path between two of its points
        ([`bayesguide.pipeline.select_architecture`][] bisects near the best).
    fine_tune
        MAP steps re-fitting each candidate (0: none).
    lr
        The learning rate of those steps.
    seed
        The seed of those steps.
    round_to
        Keep a multiple of ``round_to`` units in every prunable layer (``Conv2d`` channels
        and ``Linear`` units, as Torch-Pruning's ``round_to``): each candidate's kept
        count is rounded *up*, adding back the layer's next-best units by the path's
        score, and never beyond the layer's width (a layer narrower than ``round_to``
        stays whole). CPU convolution kernels are inefficient at odd channel counts: a
        CNN cut from 32-64-64 to 6-13-13 channels ran 10.6–12.6× faster, the same cut
        rounded to 8 (8-16-16, 53 % more FLOPs) 11.1–12.2× (speed-up ÷ FLOP ratio 0.47–0.56
        against 0.75–0.83; ``benchmarks/prune_speedup.py --round-to``). The trade-off
        is a coarser path:
        points that round to the same network are kept once, so there may be fewer than
        ``n_candidates``, and bisection finds fewer new points. ``None`` or 1: no
        rounding.
    merge
        Merge units that compute another unit's feature up to a factor: a unit whose
        incoming weights lie within this relative distance of a multiple of those of a
        unit the path keeps longer (for ReLU networks: ``sin`` of the angle between them
        ``≤ merge``; any factor for ReLU-like activations, ``±1`` for odd ones such as
        ``tanh``, ``1`` otherwise; not across a ``BatchNorm``) is removed before every
        other unit, and its output is added to the other unit's through the next layer
        (exact for exact twins; [`bayesguide.pruning.merge`][]). The path gains the
        point where all of them are gone. A wide network trained on data from a narrow
        one splits true units over several twins: on the teacher–student benchmark a
        24-unit ReLU student of an 8-unit teacher kept 14 units in 8 directions, and
        without merging no 8-unit candidate re-fitted to the teacher's fit. Needs a
        point-estimate (MAP) fit. ``None``: no merging.
    device
        Where the fine-tuning steps run (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default:
        where the fit's network is). Cutting the candidates runs where the fit's network
        is (the CPU for bayesguide's own fits), and fine-tuned candidates come back on the
        CPU.

    Returns
    -------
    list[Candidate]
        Largest first, each with the kept units of the next as a superset, no two with
        the same widths: a point whose cut network has an earlier point's widths is left
        out. That happens at the end of a CNN's path, where a convolution channel that
        cannot be removed exactly (its constant output made position-dependent by zero
        padding) stays, so several points cut to the same network shape.

    Raises
    ------
    ValueError
        For a network without a hidden ``Linear`` / ``Conv2d`` layer (nothing to prune),
        or invalid settings.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> from bayesguide.pruning import pruning_path
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedLaplace(0.1)), X, y, steps=5, progress=False)
    >>> [c.widths for c in pruning_path(fit, X, y, n_candidates=3)]
    [(8,), (4,), (1,)]
    """
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 2:
        raise ValueError(f"n_candidates must be an int >= 2, got {n_candidates!r}")
    if isinstance(fine_tune, bool) or not isinstance(fine_tune, int) or fine_tune < 0:
        raise ValueError(f"fine_tune must be a number of steps >= 0, got {fine_tune!r}")
    if spacing not in ("linear", "geometric"):
        raise ValueError(f"spacing must be 'linear' or 'geometric', got {spacing!r}")
    if start not in ("full", "threshold"):
        raise ValueError(f"start must be 'full' or 'threshold', got {start!r}")
    if start == "threshold" and threshold is None:
        raise ValueError("start='threshold' needs a threshold (the score below which units are gone)")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be a positive int (units per multiple) or None, got {round_to!r}")
    if merge is not None:
        if isinstance(merge, bool) or not isinstance(merge, (int, float)) or not 0.0 < merge < 1.0:
            raise ValueError(f"merge must be a tolerance in (0, 1) (e.g. 0.1) or None, got {merge!r}")
        check_mergeable(fit)
    if device is not None:
        check_device(device)
    stream = open_stream(X, y, fit.model.net, fit.model.likelihood, fit.model.dtype)
    if stream is not None:
        X = stream  # checked once (setup), then read by each fine-tuning
    structure, positions, _ = setup(fit, X, y, input_shape)
    if not structure.blocks:
        raise ValueError(
            "nothing to prune: the network has no hidden Linear or Conv2d layer (only the output layer, "
            "which is never pruned), so the path would hold the full network alone"
        )
    smallest = min(b.n_units for b in structure.blocks)
    if isinstance(min_width, bool) or not isinstance(min_width, int) or not 1 <= min_width <= smallest:
        raise ValueError(
            f"min_width must be an int in [1, {smallest}] (the narrowest layer), got {min_width!r}"
        )
    scorer = make_score(score, direction=direction)
    scores = check_scores(scorer(fit), structure)
    order = removal_order(scores, min_width)
    total = sum(len(v) for v in scores.values())
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    collapsed = 0 if threshold is None else sum(1 for layer, j in order if scores[layer][j] <= threshold)
    first = collapsed if start == "threshold" else 0
    merges: Merges = {}
    if merge is not None:
        merges, order = _merged_first(structure, order, collapsed, scores, float(merge))
    if removals is not None:
        counts = set()
        for r in removals:
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r <= len(order):
                raise ValueError(f"removals must be ints in [0, {len(order)}] (the removable units), got {r!r}")
            counts.add(int(r))
    else:
        counts = {first + r for r in _removal_counts(len(order) - first, total - first, n_candidates, spacing)}
        counts.add(collapsed)
        if merges:  # every twin gone (a twin the path never removes, kept by min_width, stays)
            counts.add(collapsed + sum(1 for layer, j in order[collapsed:] if j in merges.get(layer, {})))
    name = score if isinstance(score, str) else getattr(score, "__name__", type(score).__name__)
    preference = _preference(order, scores) if round_to is not None and round_to > 1 else None
    path: list[Candidate] = []
    done: set[int] = set()
    widths: set[tuple[int, ...]] = set()
    for r in sorted(counts):
        masks = {k: np.ones(len(v), dtype=bool) for k, v in scores.items()}
        for layer, j in order[:r]:
            masks[layer][j] = False
        if preference is not None and round_to is not None:
            masks = _round_kept(masks, preference, round_to)
        removed = total - sum(int(m.sum()) for m in masks.values())  # r, unless rounding kept more
        if removed in done:  # nested: the same count is the same network
            continue
        done.add(removed)
        folded = sum(1 for layer, j in order[:r] if j in merges.get(layer, {}) and masks[layer][merges[layer][j][0]])
        rule = f"path: {removed} lowest-{name!s} units removed" + (f", {folded} merged into twins" if folded else "")
        cand = build(fit, structure, masks, rule, positions, merges)
        if cand.widths in widths:
            # a unit that cannot be removed exactly stays (a convolution channel whose constant output
            # zero padding makes position-dependent): the cut equals an earlier point's widths, whose name
            # identifies it in a comparison, so the point adds nothing but a duplicate row
            continue
        widths.add(cand.widths)
        if fine_tune:
            tuned = fine_tune_fit(cand, X, y, steps=fine_tune, lr=lr, seed=seed, device=device)
            cand = with_tuning(cand, tuned, stream)
        path.append(cand)
    return path
