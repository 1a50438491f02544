"""The chain seen by surgery: each prunable layer, what follows it, and what it costs.

A prunable layer ``l`` (a hidden ``Linear`` or ``Conv2d``) is followed by a *segment*
of layers without units of their own (``BatchNorm``, activations, ``Dropout``,
``Flatten``) and then by the *next* weighted layer, which reads unit ``j``'s output
through a block of its input columns:

* ``Linear → … → Linear``: column ``j`` (block size 1);
* ``Conv2d → … → Conv2d``: input channel ``j`` (block size 1);
* ``Conv2d → … → Flatten → … → Linear``: columns ``j·HW … (j+1)·HW − 1``, with
  ``HW = in_features / n_l`` the spatial size of the feature map.

Anything else (a ``Linear`` fed a 4-D map without ``Flatten``, grouped convolutions,
``BatchNorm`` without running statistics) is refused with
[`UnsupportedStructureError`][bayesguide.pruning.structure.UnsupportedStructureError] naming the layer.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bayesguide.network import Layer, parse_network

__all__ = ["Block", "Structure", "UnsupportedStructureError", "analyse", "costs", "output_positions"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def weight(m: nn.Module) -> torch.Tensor:
    """The weight of a ``Linear`` / ``Conv2d`` (typed)."""
    assert isinstance(m, (nn.Linear, nn.Conv2d))
    return m.weight


class UnsupportedStructureError(TypeError):
    """The network has a structure that surgery cannot shrink (the message names it)."""


@dataclass(frozen=True)
class Block:
    """A prunable layer, the segment after it and the next weighted layer.

    ``flatten_at`` is the index in ``segment`` of the ``Flatten`` that turns the
    layer's feature map into columns (``None`` if there is none); ``block`` is the
    number of next-layer input columns one unit feeds.
    """

    layer: Layer
    segment: tuple[Layer, ...]
    next: Layer
    flatten_at: int | None
    block: int

    @property
    def n_units(self) -> int:
        return weight(self.layer.module).shape[0]

    def expands(self, position: int) -> bool:
        """Whether segment layer ``position`` sees one column per unit *and* spatial site."""
        return self.flatten_at is not None and position > self.flatten_at


@dataclass(frozen=True)
class Structure:
    """The analysed chain: all layers, the weighted ones and one `Block` per prunable layer."""

    layers: tuple[Layer, ...]
    weighted: tuple[Layer, ...]
    blocks: tuple[Block, ...]

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.layer.name == name:
                return b
        raise KeyError(f"no prunable layer named {name!r}; prunable layers: {self.names}")

    @property
    def names(self) -> list[str]:
        """Names of the prunable layers, in order."""
        return [b.layer.name for b in self.blocks]

    def feeding(self, name: str) -> Block | None:
        """The block whose next weighted layer is ``name`` (``None`` for the first one)."""
        for b in self.blocks:
            if b.next.name == name:
                return b
        return None

    def following_bn(self, name: str) -> Layer | None:
        """The ``BatchNorm`` directly after layer ``name``, if any."""
        for i, ly in enumerate(self.layers[:-1]):
            if ly.name == name and isinstance(self.layers[i + 1].module, _BN):
                return self.layers[i + 1]
        return None


def _where(layer: Layer) -> str:
    return f"{type(layer.module).__name__} at position {layer.position} (name {layer.name!r})"


def analyse(net: nn.Module) -> Structure:
    """Analyse ``net`` (an ``nn.Sequential`` as accepted by ``GuidedModel``) for surgery.

    Raises
    ------
    UnsupportedStructureError
        For grouped convolutions, ``BatchNorm`` without running statistics, a
        ``Flatten`` other than ``Flatten(1, -1)``, or a weighted layer fed a tensor of
        the wrong rank.
    """
    try:
        layers, _ = parse_network(net)
    except TypeError as err:
        raise UnsupportedStructureError(f"cannot prune this network: {err}") from None
    for ly in layers:
        m = ly.module
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise UnsupportedStructureError(
                f"{_where(ly)} has groups={m.groups}: grouped or depthwise convolutions are not "
                f"supported by surgery (their channels are tied across layers)"
            )
        if isinstance(m, _BN) and not m.track_running_stats:
            raise UnsupportedStructureError(
                f"{_where(ly)} has track_running_stats=False: surgery needs running statistics "
                f"to fold a removed channel's constant"
            )
        if isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
            raise UnsupportedStructureError(
                f"{_where(ly)} flattens dims {m.start_dim}..{m.end_dim}; only Flatten(1, -1) is supported"
            )
    weighted = [ly for ly in layers if isinstance(ly.module, (nn.Linear, nn.Conv2d))]
    blocks: list[Block] = []
    for here, nxt in itertools.pairwise(weighted):
        segment = tuple(layers[here.position + 1 : nxt.position])
        spatial = isinstance(here.module, nn.Conv2d)
        flatten_at: int | None = None
        for i, ly in enumerate(segment):
            if isinstance(ly.module, nn.Flatten) and spatial:
                flatten_at, spatial = i, False
        if isinstance(nxt.module, nn.Linear) and spatial:
            raise UnsupportedStructureError(
                f"{_where(nxt)} is fed the 4-D feature map of {_where(here)} without a Flatten"
            )
        if isinstance(nxt.module, nn.Conv2d) and isinstance(here.module, nn.Linear):
            raise UnsupportedStructureError(f"{_where(nxt)} is fed the 2-D output of {_where(here)}")
        n, width = weight(here.module).shape[0], weight(nxt.module).shape[1]
        if width % n:
            raise UnsupportedStructureError(
                f"{_where(nxt)} has {width} inputs, not a multiple of the {n} units of {_where(here)}"
            )
        blocks.append(Block(here, segment, nxt, flatten_at, width // n))
    return Structure(tuple(layers), tuple(weighted), tuple(blocks))


def output_positions(
    net: nn.Module, structure: Structure, input_shape: Sequence[int] | None
) -> dict[str, int]:
    """Spatial positions (``H_out · W_out``, 1 for ``Linear``) of every weighted layer's output.

    Found by one forward pass of a zero example of ``input_shape`` (the shape of one
    example, without the batch dimension); for networks without ``Conv2d`` no shape is
    needed.
    """
    if not any(isinstance(ly.module, nn.Conv2d) for ly in structure.weighted):
        return {ly.name: 1 for ly in structure.weighted}
    if input_shape is None:
        raise ValueError("counting the FLOPs of a convolutional network needs input_shape (or X)")
    probe = copy.deepcopy(net).eval()
    named = dict(probe.named_modules())
    sizes: dict[str, int] = {}
    handles = []
    for ly in structure.weighted:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = ly.name) -> None:
            sizes[name] = int(out[0, 0].numel())
        handles.append(named[ly.name].register_forward_hook(hook))
    p = next(probe.parameters())
    with torch.no_grad():
        probe(torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device))
    for h in handles:
        h.remove()
    return sizes


def costs(
    structure: Structure, widths: Mapping[str, int], positions: Mapping[str, int] | None
) -> tuple[int, int]:
    """``(parameters, FLOPs)`` of the chain with prunable layer widths ``widths``.

    FLOPs count ``2 · in · out`` per output position of every ``Linear`` / ``Conv2d``
    (multiply and add; ``in`` includes the kernel size) for one example; BatchNorm and
    activations are not counted. ``positions`` is [`output_positions`][bayesguide.pruning.structure.output_positions]
    (FLOPs are
    ``-1`` when it is ``None``).
    """
    params, flops = 0, 0
    owner = {ly.name: (b, i) for b in structure.blocks for i, ly in enumerate(b.segment)}
    for ly in structure.layers:
        m = ly.module
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            out = widths.get(ly.name, m.weight.shape[0])
            feeder = structure.feeding(ly.name)
            fan_in = m.weight[0].numel()
            if feeder is not None:
                fan_in = fan_in // feeder.n_units * widths.get(feeder.layer.name, feeder.n_units)
            params += out * fan_in + (out if m.bias is not None else 0)
            flops += 2 * out * fan_in * (positions[ly.name] if positions is not None else 0)
        elif isinstance(m, _BN) and m.affine:
            n = m.num_features
            if ly.name in owner:
                b, i = owner[ly.name]
                n = widths.get(b.layer.name, b.n_units) * (b.block if b.expands(i) else 1)
            params += 2 * n
    return params, (flops if positions is not None else -1)
