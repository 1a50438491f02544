"""The iterative pruning loop of Bonetta, Ribero & Cancelliere (arXiv 2204.04977), per unit.

Train with relevance guidance ([`bayesguide.fit_relevance`][]) until the validation
loss plateaus, cut the largest number of lowest-norm units that keeps the validation
loss within a tolerance (found by bisection), train the cut network on, repeat. See
[`bayesguide.infer.relevance`][] for the guidance and its Bayesian reading.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from bayesguide.guidance import Relevance
from bayesguide.infer import FitResult, OptimSettings
from bayesguide.infer.relevance import data_loss, relevance_model, relevance_settings, relevance_steps
from bayesguide.infer.result import fit_on
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.model.device import CPU, DeviceLike, resolve_device, to_device
from bayesguide.pruning.candidate import Candidate, build, setup, with_tuning
from bayesguide.pruning.path import removal_order
from bayesguide.pruning.scores import make_score

__all__ = ["bisect_largest", "relevance_pruning", "validation_loss"]


def validation_loss(model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood per example of ``module`` (eval mode) on ``X, y``."""
    was = module.training
    module.eval()
    with torch.no_grad():
        value = float(data_loss(model, module, X, y)) / X.shape[0]
    module.train(was)
    return value


def bisect_largest(n: int, ok: Callable[[int], bool]) -> int:
    """Largest ``k`` in ``[0, n]`` with ``ok(k)``, by bisection, taking ``ok(0)`` as true.

    Exact when ``ok`` is monotone (true up to some ``k*``, false after); otherwise it
    returns some ``k`` with ``ok(k)`` and, if ``k < n``, ``not ok(k + 1)``.

    Examples
    --------
    >>> bisect_largest(10, lambda k: k <= 6)
    6
    """
    lo, hi = 0, n  # invariant: ok(lo); answer in [lo, hi]
    if n > 0 and ok(n):
        return n
    hi = n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _compose(parent: Candidate | None, cand: Candidate) -> Candidate:
    """``cand`` with kept indices and original sizes of the very first network."""
    if parent is None:
        return cand
    kept = {k: tuple(parent.kept[k][i] for i in v) for k, v in cand.kept.items()}
    return dataclasses.replace(
        cand, kept=kept, original_widths=parent.original_widths,
        original_params=parent.original_params, original_flops=parent.original_flops,
    )


def _largest_cut(
    fit: FitResult, Xv: torch.Tensor, yv: torch.Tensor, tolerance: float,
    input_shape: Sequence[int] | None, rnd: int,
) -> tuple[int, Candidate | None]:
    """Bisect the number ``k`` of lowest-norm units removed; the cut candidate if ``k > 0``."""
    structure, positions, _ = setup(fit, None, None, input_shape)
    v0 = validation_loss(fit.model, fit.module, Xv, yv)
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in make_score("norm")(fit).items()}
    order = removal_order(scores, min_width=1)

    def masks_for(k: int) -> dict[str, np.ndarray]:
        masks = {name: np.ones(len(v), dtype=bool) for name, v in scores.items()}
        for layer, j in order[:k]:
            masks[layer][j] = False
        return masks

    def ok(k: int) -> bool:
        cand = build(fit, structure, masks_for(k), "probe", positions)
        return validation_loss(cand.model, cand.module, Xv, yv) <= v0 + tolerance

    k = bisect_largest(len(order), ok)
    if k == 0:
        return 0, None
    layer, j = order[k - 1]
    thr = float(scores[layer][j])
    rule = (f"relevance round {rnd}: {k} units with norm <= {thr:.4g} removed "
            f"(validation loss within {tolerance:g} of {v0:.4g})")
    return k, build(fit, structure, masks_for(k), rule, positions)


def relevance_pruning(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike,
    y_val: ArrayLike,
    *,
    tolerance: float = 0.02,
    relevance: Relevance | None = None,
    max_steps: int = 2000,
    patience: int = 5,
    min_delta: float = 1e-3,
    max_rounds: int = 20,
    lr: float = 1e-3,
    seed: int | None = 0,
    input_shape: Sequence[int] | None = None,
    device: DeviceLike = None,
) -> list[Candidate]:
    """The iterative pruning loop of Bonetta et al. (arXiv 2204.04977), per unit.

    Repeat: train with relevance guidance ([`fit_relevance`][bayesguide.fit_relevance]) until the validation
    loss ``V`` (mean NLL per example) plateaus — no relative improvement above
    ``min_delta`` for ``patience`` estimates, or ``max_steps`` steps; rank the units by
    their norm ``‖θ_j‖₂/√p`` (what the selective decay shrinks) and remove the ``k``
    lowest, with ``k`` the largest for which the cut network's validation loss stays
    within ``V + tolerance`` (nats per example) (found by bisection,
    [`bisect_largest`][bayesguide.pruning.relevance.bisect_largest]; every
    layer keeps at least one unit); continue training the cut network. Stop when
    nothing can be removed, or after ``max_rounds`` rounds.

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: where ``model.net`` is) is
    where the training rounds and their validation losses run: the training and
    validation sets are moved there once (the relevance estimates and the plateau check
    read all of them); the cuts and their bisection run on the CPU, where every round's
    fit comes back.

    Returns
    -------
    list[Candidate]
        Element 0: the first trained network, nothing removed. Element ``i >= 1``: the
        network after the ``i``-th cut, cut from ``fit`` (the network trained before
        it) and trained on (``tuned``, attached with [`with_tuning`][bayesguide.pruning.with_tuning],
        so ``module`` is the trained network; the next element is cut from it).
        ``kept`` and ``original_*`` refer to the very first network. The final network
        is ``[-1].module``.

    Raises
    ------
    ValueError
        For a negative ``tolerance`` and bad settings.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0 (nats per example), got {tolerance!r}")
    for name, v in (("patience", patience), ("max_steps", max_steps), ("max_rounds", max_rounds)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    s = relevance_settings(model, relevance)
    target = resolve_device(device, model.net)
    current = relevance_model(model, s)
    Xt, yt = current.prepare_data(X, y)
    Xv, yv = current.prepare_data(X_val, y_val)
    Xv_on, yv_on = to_device(Xv, target), to_device(yv, target)
    # every round on the same device (later rounds train cut networks, which come back on the CPU)
    optim = OptimSettings(steps=max_steps, lr=lr, seed=seed, progress=False,
                          device=None if target == CPU else str(target))

    def train(m: GuidedModel) -> FitResult:
        best, since = math.inf, 0

        def plateau(fit: FitResult) -> bool:
            nonlocal best, since
            v = validation_loss(m, fit.module, Xv_on, yv_on)
            if v < best - min_delta * abs(best) or math.isinf(best):
                best, since = v, 0
                return False
            since += 1
            return since >= patience

        return fit_on(relevance_steps(m, Xt, yt, s, optim, None, plateau))

    fit = train(current)
    structure, positions, _ = setup(fit, None, None, input_shape)
    first = build(fit, structure, {b.layer.name: np.ones(b.n_units, bool) for b in structure.blocks},
                  "relevance round 0: trained, nothing removed", positions)
    out = [first]
    parent = first
    for rnd in range(1, max_rounds + 1):
        k, cand = _largest_cut(fit, Xv, yv, tolerance, input_shape, rnd)
        if k == 0 or cand is None:
            break
        cand = _compose(parent, cand)
        tuned = train(relevance_model(cand.model, s))
        cand = with_tuning(cand, tuned)
        out.append(cand)
        parent, fit = cand, tuned
    return out
