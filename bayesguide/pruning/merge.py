"""Merging: units that compute the same feature, up to a factor, folded into one.

A wide network trained on data made by a narrow one often splits one true unit over
several: on the teacher–student benchmark a 24-unit ReLU student of an 8-unit teacher
kept 14 units alive whose incoming weights lay within 4.4° of only 8 directions
(cosines 0.997–1.000), one teacher unit spread over four. Removing such a unit leaves a
hole that its twins could fill, and the path by unit norm removed both twins of one
teacher unit before the spare copies of another, so no re-fit of the 8-unit candidate
recovered (train RMSE 6.8–9.8σ) and the evidence picked 12.

With ``θ_j = [W_j, b_j]`` (a ``Conv2d`` channel: its filter and bias) a unit's output is
``a(θ_j · x̃)``. When ``θ_m = c θ_r`` the output of ``m`` is ``c`` times that of ``r``
whenever the activation allows the factor:

* positively homogeneous activations (``ReLU``, ``LeakyReLU``, ``PReLU``, none):
  ``a(cz) = c a(z)`` for every ``c > 0``;
* odd activations (``Tanh``, ``Softsign``): ``c = ±1``;
* any other activation: ``c = 1`` (exact duplicates).

The next layer reads ``m`` through its columns ``cols(m)``, so ``m`` is removed exactly
by ``W[:, cols(r)] += c · W[:, cols(m)]`` (surgery does it,
[`plan_surgery`][bayesguide.pruning.surgery.plan_surgery]'s ``merges``). A segment with
a ``BatchNorm`` between the layer and the next one breaks the factor; its units are
not merged.

`merge_groups` groups the units whose incoming weights lie within a relative
``tolerance`` of such a multiple of another's: ``‖θ_m − c θ_r‖ ≤ tolerance · ‖θ_m‖``
(for homogeneous activations ``c`` is the least-squares factor and the test is
``sin ∠(θ_m, θ_r) ≤ tolerance``). Near-twins are merged approximately, which is why a
candidate is re-fitted before it is scored. Each group's representative is the unit
the path keeps longest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bayesguide.pruning.structure import Block, Structure

__all__ = ["Merges", "activation_kind", "merge_groups"]

Merges = dict[str, dict[int, tuple[int, float]]]
"""Per prunable layer: merged unit → (its representative, the factor ``c``)."""

_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Identity)
_ODD = (nn.Tanh, nn.Softsign)
_TRANSPARENT = (nn.Dropout, nn.Flatten, nn.Identity)  # no effect on a factor (Dropout: in eval mode)


def activation_kind(block: Block) -> str | None:
    """``"homogeneous"``, ``"odd"`` or ``"other"`` for the segment after ``block``'s layer.

    ``None`` when the segment cannot carry a factor at all (a ``BatchNorm``, or more than
    one non-linearity).
    """
    acts = [ly.module for ly in block.segment if not isinstance(ly.module, _TRANSPARENT)]
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in acts) or len(acts) > 1:
        return None
    if not acts or isinstance(acts[0], _HOMOGENEOUS):
        return "homogeneous"
    return "odd" if isinstance(acts[0], _ODD) else "other"


def _incoming(block: Block) -> torch.Tensor:
    """``(n, p)`` float64: every unit's incoming weights and bias."""
    m = block.layer.module
    assert isinstance(m, (nn.Linear, nn.Conv2d))
    w = m.weight.detach().to(torch.float64).reshape(m.weight.shape[0], -1)
    if m.bias is None:
        return w
    return torch.cat([w, m.bias.detach().to(torch.float64)[:, None]], dim=1)


def merge_groups(structure: Structure, tolerance: float,
                 keep_order: Mapping[str, Sequence[int]]) -> Merges:
    """The merges of every prunable layer: member → (representative, factor).

    Parameters
    ----------
    structure
        The analysed network ([`analyse`][bayesguide.pruning.structure.analyse]).
    tolerance
        The relative distance ``‖θ_m − c θ_r‖ / ‖θ_m‖`` under which ``m`` is merged into
        ``r`` (in ``(0, 1)``).
    keep_order
        Per prunable layer, the units in the order they become representatives (the one
        the path keeps longest first); units not listed are not merged (e.g. units
        already collapsed to zero).

    Examples
    --------
    >>> from bayesguide.pruning.structure import analyse
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> with torch.no_grad():
    ...     net[0].weight[:] = torch.tensor([[1.0, 2.0], [0.5, 1.0], [0.0, 1.0]])
    ...     net[0].bias[:] = torch.tensor([1.0, 0.5, 0.0])
    >>> merge_groups(analyse(net), 0.1, {"0": [0, 1, 2]})
    {'0': {1: (0, 0.5)}}
    """
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"the merge tolerance must be in (0, 1), got {tolerance!r}")
    out: Merges = {}
    for block in structure.blocks:
        kind = activation_kind(block)
        order = list(keep_order.get(block.layer.name, ()))
        if kind is None or len(order) < 2:
            continue
        theta = _incoming(block)[order]
        cross = theta @ theta.T  # <θ_m, θ_r>
        sq = cross.diagonal()
        if kind == "homogeneous":  # c = <θ_m, θ_r> / |θ_r|², positive
            factor = cross / sq[None, :].clamp(min=1e-300)
            dist2 = torch.where(cross > 0, sq[:, None] - cross * factor, sq[:, None])
        elif kind == "odd":  # c = ±1
            dist2 = sq[:, None] - 2 * cross.abs() + sq[None, :]
            factor = torch.sign(cross)
        else:  # c = 1
            dist2 = sq[:, None] - 2 * cross + sq[None, :]
            factor = torch.ones_like(cross)
        close = (dist2 <= tolerance**2 * sq[:, None]) & (sq[:, None] > 0)
        members: dict[int, tuple[int, float]] = {}
        taken = [False] * len(order)
        for i in range(len(order)):  # i: a representative, the path's longest-kept unit first
            if taken[i]:
                continue
            taken[i] = True
            for k in range(i + 1, len(order)):
                if not taken[k] and bool(close[k, i]):
                    taken[k] = True
                    members[order[k]] = (order[i], float(factor[k, i]))
        if members:
            out[block.layer.name] = members
    return out
