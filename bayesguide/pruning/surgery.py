"""Surgery: a new, physically smaller network with the chosen units removed.

Removing unit ``j`` of layer ``l`` is defined as replacing it by what it emits when
its incoming weights are zero: the constant ``c_j = a(BN(b_j))`` (its bias through the
segment after it; ``b_j = 0`` without a bias). Surgery deletes row ``j`` of layer
``l`` (and of the ``BatchNorm`` after it) and column block ``j`` of the next layer, and
folds the constant into the next layer exactly:

$$
b'_{l+1} = b_{l+1} + \\sum_{j \\text{ removed}} W_{l+1}[:, \\text{cols}(j)]\\, c_j,
$$

for a next ``Linear`` (through ``Flatten``, ``cols(j)`` is the block of ``H·W`` columns
of channel ``j``) or a next ``Conv2d`` without padding (``c_j`` times the sum of the
kernel ``W_{l+1}[:, j]``). If the next layer has no bias but a ``BatchNorm`` follows
it, the fold goes into that BatchNorm's running mean, ``μ' = μ - δ`` (exact in eval
mode). A unit whose constant is non-zero and cannot be folded exactly — next layer a
zero-padded ``Conv2d`` (its borders see the padding, not the constant) or nowhere to
fold — is *retained* (kept unchanged) and reported. Constants that are exactly 0
(ReLU of a negative bias, no bias and no BatchNorm) need no fold.

A removed unit ``m`` *merged* into a kept unit ``r`` (its output ``c`` times ``r``'s,
[`bayesguide.pruning.merge`][]) is folded into ``r``'s columns instead:
``W_{l+1}[:, cols(r)] += c · W_{l+1}[:, cols(m)]``, exact for any next layer (zero
padding included: the two feature maps are proportional everywhere).

The pruned network computes, in eval mode, exactly the original network with the
removed units' incoming weights set to zero (to float rounding). The input network is
never changed. The output layer is never pruned.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from bayesguide.pruning.surgery import shrink
>>> net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
>>> with torch.no_grad():
...     net[0].weight[2:] = 0.0            # units 2 and 3 are dead
>>> small, plan = shrink(net, {"0": torch.tensor([True, True, False, False])})
>>> small[0], plan.kept
(Linear(in_features=3, out_features=2, bias=True), {'0': (0, 1)})
>>> x = torch.randn(5, 3)
>>> bool(torch.allclose(small(x), net(x), atol=1e-6))
True
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bayesguide.pruning.merge import Merges
from bayesguide.pruning.structure import Block, Structure, analyse

__all__ = ["SurgeryPlan", "apply_plan", "plan_surgery", "shrink"]


@dataclass(frozen=True)
class SurgeryPlan:
    """What surgery removes and folds, by layer name.

    Attributes
    ----------
    rows
        Kept output rows of every sliced parametrised layer (prunable layers and the
        BatchNorms after them).
    cols
        Kept input features of every weighted layer fed by a pruned layer (``Linear``:
        columns, ``Conv2d``: input channels).
    bias_delta
        Per weighted layer, the folded constant added to its full-length bias.
    mean_shift
        Per BatchNorm, the folded constant subtracted from its running mean.
    kept
        Per prunable layer, the original indices of the units kept, ascending.
    retained
        Per prunable layer, units the decision removed but surgery kept because their
        constant could not be folded exactly.
    merged
        Per prunable layer, the removed units folded into a kept one: ``(unit, kept
        unit, factor)``.
    """

    rows: dict[str, torch.Tensor]
    cols: dict[str, torch.Tensor]
    bias_delta: dict[str, torch.Tensor]
    mean_shift: dict[str, torch.Tensor]
    kept: dict[str, tuple[int, ...]]
    retained: dict[str, tuple[int, ...]]
    merged: dict[str, tuple[tuple[int, int, float], ...]] = dataclasses.field(default_factory=dict)


def _constants(b: Block) -> torch.Tensor:
    """``(n, block)``: what each unit of ``b.layer`` feeds the next layer when its weights are 0."""
    m = b.layer.module
    assert isinstance(m, (nn.Linear, nn.Conv2d))
    n = b.n_units
    w = m.weight
    z = m.bias.detach() if m.bias is not None else torch.zeros(n, dtype=w.dtype, device=w.device)
    x = z.reshape(1, n, 1, 1) if isinstance(m, nn.Conv2d) else z.reshape(1, n)
    with torch.no_grad():
        for i, ly in enumerate(b.segment):
            if i == b.flatten_at:
                x = x.reshape(1, n, 1).expand(1, n, b.block).reshape(1, n * b.block)
            else:
                x = copy.deepcopy(ly.module).eval()(x)
    return x.reshape(n, -1).expand(n, b.block).to(torch.float64)


def _zero_padded(conv: nn.Conv2d) -> bool:
    pad = conv.padding
    if isinstance(pad, str):
        return pad != "valid"
    return any(int(p) != 0 for p in pad)


def _expand(idx: torch.Tensor, block: int) -> torch.Tensor:
    return (idx[:, None] * block + torch.arange(block)[None, :]).reshape(-1)


def plan_surgery(structure: Structure, keep: Mapping[str, torch.Tensor],
                 merges: Merges | None = None) -> SurgeryPlan:
    """Plan the removal of the units not in ``keep`` (a boolean mask per prunable layer).

    ``merges`` ([`merge_groups`][bayesguide.pruning.merge.merge_groups]): a removed unit
    whose representative is kept is folded into it.
    """
    rows: dict[str, torch.Tensor] = {}
    cols: dict[str, torch.Tensor] = {}
    bias_delta: dict[str, torch.Tensor] = {}
    mean_shift: dict[str, torch.Tensor] = {}
    kept: dict[str, tuple[int, ...]] = {}
    retained: dict[str, tuple[int, ...]] = {}
    merged: dict[str, tuple[tuple[int, int, float], ...]] = {}
    for b in structure.blocks:
        name = b.layer.name
        mask = torch.as_tensor(keep[name], dtype=torch.bool).clone() if name in keep else None
        if mask is None:
            mask = torch.ones(b.n_units, dtype=torch.bool)
        if mask.shape != (b.n_units,):
            raise ValueError(
                f"keep mask of layer {name!r} has shape {tuple(mask.shape)}, expected ({b.n_units},)"
            )
        const = _constants(b)
        nxt = b.next.module
        assert isinstance(nxt, (nn.Linear, nn.Conv2d))
        bn = structure.following_bn(b.next.name)
        can_fold = (nxt.bias is not None or bn is not None) and not (
            isinstance(nxt, nn.Conv2d) and _zero_padded(nxt)
        )
        removed = (~mask).nonzero().flatten().tolist()
        into = {j: rc for j, rc in (merges or {}).get(name, {}).items() if not mask[j] and mask[rc[0]]}
        folded: list[int] = []
        held: list[int] = []
        for j in removed:
            if j in into or bool((const[j] == 0).all()):
                continue
            (folded if can_fold else held).append(j)
        mask[held] = True
        if into:
            merged[name] = tuple((j, r, c) for j, (r, c) in sorted(into.items()))
        idx = mask.nonzero().flatten()
        kept[name] = tuple(idx.tolist())
        retained[name] = tuple(held)
        rows[name] = idx
        for i, ly in enumerate(b.segment):
            if isinstance(ly.module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                rows[ly.name] = _expand(idx, b.block) if b.expands(i) else idx
        cols[b.next.name] = _expand(idx, b.block) if isinstance(nxt, nn.Linear) else idx
        if folded:
            W = nxt.weight.detach().to(torch.float64)
            f = torch.tensor(folded)
            if isinstance(nxt, nn.Linear):
                delta = W[:, _expand(f, b.block)] @ const[f].reshape(-1)
            else:
                delta = W[:, f].sum(dim=(2, 3)) @ const[f, 0]
            if nxt.bias is not None:
                bias_delta[b.next.name] = delta
            else:
                assert bn is not None
                mean_shift[bn.name] = delta
    return SurgeryPlan(rows, cols, bias_delta, mean_shift, kept, retained, merged)


def _merge_columns(w: torch.Tensor, folds: tuple[tuple[int, int, float], ...], block: int) -> torch.Tensor:
    """``w`` with each merged unit's input columns added, times its factor, to its representative's."""
    if not folds:
        return w
    out = w.detach().to(torch.float64).clone()
    for j, r, c in folds:
        out[:, r * block : (r + 1) * block] += c * out[:, j * block : (j + 1) * block]
    return out.to(w.dtype)


def _param(t: torch.Tensor, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().to(like.dtype), requires_grad=like.requires_grad)


def apply_plan(net: nn.Module, structure: Structure, plan: SurgeryPlan) -> nn.Module:
    """A new network: a deep copy of ``net`` with ``plan`` applied (``net`` is unchanged)."""
    new = copy.deepcopy(net)
    named = dict(new.named_modules())
    with torch.no_grad():
        for ly in structure.layers:
            m = named[ly.name]
            rows = plan.rows.get(ly.name)
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w, b = m.weight, m.bias
                cols = plan.cols.get(ly.name)
                feeder = structure.feeding(ly.name)
                folds = plan.merged.get(feeder.layer.name, ()) if feeder is not None else ()
                wt = _merge_columns(w, folds, feeder.block if feeder is not None else 1)
                wt = wt if cols is None else wt.index_select(1, cols)
                bt = None
                if b is not None:
                    delta = plan.bias_delta.get(ly.name)
                    bt = b if delta is None else (b.to(torch.float64) + delta).to(b.dtype)
                if rows is not None:
                    wt = wt.index_select(0, rows)
                    bt = None if bt is None else bt.index_select(0, rows)
                m.weight = _param(wt, w)
                if b is not None and bt is not None:
                    m.bias = _param(bt, b)
                if isinstance(m, nn.Linear):
                    m.in_features, m.out_features = wt.shape[1], wt.shape[0]
                else:
                    m.in_channels, m.out_channels = wt.shape[1], wt.shape[0]
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert m.running_mean is not None and m.running_var is not None
                shift = plan.mean_shift.get(ly.name)
                if shift is not None:
                    m.running_mean = (m.running_mean.to(torch.float64) - shift).to(m.running_mean.dtype)
                if rows is not None:
                    m.running_mean = m.running_mean.index_select(0, rows).clone()
                    m.running_var = m.running_var.index_select(0, rows).clone()
                    if m.affine:
                        m.weight = _param(m.weight.index_select(0, rows), m.weight)
                        m.bias = _param(m.bias.index_select(0, rows), m.bias)
                    m.num_features = int(rows.numel())
    return new


def shrink(net: nn.Module, keep: Mapping[str, torch.Tensor],
           merges: Merges | None = None) -> tuple[nn.Module, SurgeryPlan]:
    """Remove the units not in ``keep`` from ``net``; return the new network and the plan.

    Parameters
    ----------
    net
        An ``nn.Sequential`` chain as accepted by [`GuidedModel`][bayesguide.GuidedModel].
    keep
        Per prunable layer name, a boolean mask over its units (``True`` = keep);
        layers not named keep every unit.
    merges
        Removed units to fold into a kept one (see `plan_surgery`).
    """
    structure = analyse(net)
    plan = plan_surgery(structure, keep, merges)
    return apply_plan(net, structure, plan), plan
