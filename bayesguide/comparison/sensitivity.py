"""How much the architecture prior decides: evidence-only probabilities, the κ range of the pick, flags.

With log evidence ``a_k`` and architecture-prior cost ``c_k`` per candidate, the posterior at
strength κ is ``p_κ(M_k | D) ∝ exp(a_k − κ c_k)``; at κ = 0 it is the evidence alone.
The pick ``argmax_k (a_k − κ c_k)`` is piecewise constant in κ: candidate ``b`` stays
the pick exactly for

$$
\\max\\Big(0, \\max_{c_k > c_b} \\frac{a_k - a_b}{c_k - c_b}\\Big) \\le κ
\\le \\min_{c_k < c_b} \\frac{a_b - a_k}{c_b - c_k},
$$

so the κ interval of the pick, and every pick over a range of κ, are exact (no grid).

Flags ([`prior_flags`][bayesguide.comparison.sensitivity.prior_flags]): the prior *overturns* the evidence when the pick
at the κ
used is not the evidence's own pick; and the pick is *sensitive* when it changes for
some κ in the documented default range ``0 ≤ κ ≤ DEFAULT_RANGE · κ_auto`` — a prior
spanning up to 3 nats over the candidates ("positive" evidence on Kass & Raftery's
scale), three times what ``kappa="auto"`` uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

__all__ = ["DEFAULT_RANGE", "kappa_interval", "picks_over", "prior_flags", "probabilities"]

DEFAULT_RANGE = 3.0
"""The default range of κ checked for a change of pick, in multiples of ``kappa="auto"``'s κ."""


def _valid(log_evidence: np.ndarray, ok: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(log_evidence)
    return valid if ok is None else valid & np.asarray(ok, dtype=bool)


def probabilities(log_evidence: np.ndarray, costs: np.ndarray, kappa: float,
                  ok: np.ndarray | None = None) -> np.ndarray:
    """``p_κ(M_k | D)`` over the valid candidates (finite evidence, ``ok``); NaN elsewhere.

    Examples
    --------
    >>> probabilities(np.array([0.0, np.log(3.0)]), np.array([0.0, 1.0]), 0.0).round(3).tolist()
    [0.25, 0.75]
    """
    a, c = np.asarray(log_evidence, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    valid = _valid(a, ok)
    out = np.full(a.shape, np.nan)
    if valid.any():
        log_post = a[valid] - kappa * c[valid]
        out[valid] = np.exp(log_post - logsumexp(log_post))
    return out


def kappa_interval(log_evidence: np.ndarray, costs: np.ndarray, pick: int,
                   ok: np.ndarray | None = None) -> tuple[float, float]:
    """The closed interval of κ ≥ 0 over which candidate ``pick`` is the pick (``hi`` may be inf).

    Examples
    --------
    >>> a, c = np.array([-10.0, -11.0, -20.0]), np.array([4.0, 2.0, 0.0])
    >>> kappa_interval(a, c, 0), kappa_interval(a, c, 1), kappa_interval(a, c, 2)
    ((0.0, 0.5), (0.5, 4.5), (4.5, inf))
    """
    a, c = np.asarray(log_evidence, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    valid = _valid(a, ok)
    lo, hi = 0.0, math.inf
    for k in np.flatnonzero(valid):
        if c[k] > c[pick]:
            lo = max(lo, (a[k] - a[pick]) / (c[k] - c[pick]))
        elif c[k] < c[pick]:
            hi = min(hi, (a[pick] - a[k]) / (c[pick] - c[k]))
    return float(lo), float(hi)


def picks_over(log_evidence: np.ndarray, costs: np.ndarray, kappa_max: float,
               ok: np.ndarray | None = None) -> list[tuple[float, int]]:
    """Every pick for ``0 ≤ κ ≤ kappa_max``, as ``(κ from which it is the pick, index)``.

    Ties at a breakpoint go to the cheaper candidate (the pick just above it).

    Examples
    --------
    >>> picks_over(np.array([-10.0, -11.0, -20.0]), np.array([4.0, 2.0, 0.0]), 10.0)
    [(0.0, 0), (0.5, 1), (4.5, 2)]
    """
    a, c = np.asarray(log_evidence, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    valid = np.flatnonzero(_valid(a, ok))
    if valid.size == 0:
        return []
    best = a[valid].max()
    pick = int(min((k for k in valid if a[k] == best), key=lambda k: c[k]))
    out = [(0.0, pick)]
    while True:
        cheaper = [k for k in valid if c[k] < c[pick]]
        if not cheaper:
            return out
        crossings = {int(k): (a[pick] - a[k]) / (c[pick] - c[k]) for k in cheaper}
        at = min(crossings.values())
        if at > kappa_max:
            return out
        pick = min((k for k, v in crossings.items() if v == at), key=lambda k: c[k])
        out.append((float(max(at, 0.0)), pick))


def prior_flags(names: Sequence[str], log_evidence: np.ndarray, costs: np.ndarray, kappa: float,
                kappa_auto: float, ok: np.ndarray | None = None) -> list[str]:
    """Flags when the architecture prior decides what the evidence does not (see the module docstring)."""
    a, c = np.asarray(log_evidence, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    valid = _valid(a, ok)
    if valid.sum() < 2:
        return []
    post = probabilities(a, c, kappa, valid)
    pick = int(np.nanargmax(post))
    evidence_pick = picks_over(a, c, 0.0, valid)[0][1]
    lo, hi = kappa_interval(a, c, pick, valid)
    if pick != evidence_pick:
        return [f"the architecture prior overturns the evidence: the evidence prefers {names[evidence_pick]} by "
                f"{a[evidence_pick] - a[pick]:.2f} nats (log Bayes factor) over {names[pick]}, which the prior "
                f"at κ = {kappa:.3g} picks; {names[pick]} is the pick only for κ in [{lo:.3g}, {hi:.3g}]"]
    kappa_max = max(kappa, DEFAULT_RANGE * kappa_auto)
    picks = picks_over(a, c, kappa_max, valid)
    if len(picks) < 2:
        return []
    steps = ", ".join(f"{names[k]} from κ = {start:.3g}" for start, k in picks)
    return [f"the pick depends on the prior's strength within 0 ≤ κ ≤ {kappa_max:.3g} (a prior spanning up to "
            f"{DEFAULT_RANGE:g} nats): {steps}; the evidence alone prefers {names[evidence_pick]}"]
