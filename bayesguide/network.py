"""Reading an ``nn.Sequential`` network as layers and unit groups.

bayesguide supports feed-forward chains: ``nn.Sequential`` (nested ones are flattened)
of ``Linear``, ``Conv2d``, ``BatchNorm1d/2d``, ``Flatten``, ``Dropout`` and elementwise
activations, or one bare ``Linear`` / ``Conv2d`` (Bayesian linear or logistic regression),
read as a chain of one layer. Every layer with parameters becomes one Pyro sample *site*
holding an ``(n, p)`` unit matrix:

* ``Linear(in, out)``: ``n = out`` units, row ``j`` = ``[W[j, :], b[j]]``;
* ``Conv2d``: ``n = out_channels``, row ``j`` = ``[W[j].flatten(), b[j]]``;
* ``BatchNorm``: ``n = num_features``, row ``j`` = ``[γ_j, β_j]``.

``Linear`` and ``Conv2d`` layers are *prunable* except the last one (the output layer,
never pruned). Site names are ``"<layer name>.units"``, the layer name being its
dotted position in the ``Sequential`` (``"0"``, ``"3"``, ``"block.1"``). A bare layer
is named ``""`` (its name in ``named_modules()``): its site is ``"units"`` and its
parameters are ``"weight"`` and ``"bias"``.

Each module instance may appear once: a layer used at two positions is applied twice by
the network but listed once by ``named_children()``, so the chain would silently differ
from the network; such networks are refused, as are layers with zero units or inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SUPPORTED_LAYERS", "Layer", "Site", "parse_network", "qualified"]

_PARAM_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
_PASS_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Tanhshrink,
    nn.LogSigmoid,
)
SUPPORTED_LAYERS: tuple[str, ...] = tuple(c.__name__ for c in _PARAM_LAYERS + _PASS_LAYERS)
"""The ``torch.nn`` layer types a network may contain, by class name."""


@dataclass(frozen=True)
class Layer:
    """One leaf of the chain: its dotted ``name``, its ``position`` and the module."""

    name: str
    position: int
    module: nn.Module

    @property
    def has_units(self) -> bool:
        return isinstance(self.module, _PARAM_LAYERS)


@dataclass(frozen=True)
class Site:
    """A sample site: the ``(n, p)`` unit matrix of one parametrised layer.

    ``param_names`` are the module's parameter names (e.g. ``"2.weight"``) packed, in
    order, into the columns of the unit matrix; ``widths`` their column counts.
    """

    name: str
    layer: Layer
    param_names: tuple[str, ...]
    widths: tuple[int, ...]
    shapes: tuple[torch.Size, ...]
    prunable: bool

    @property
    def n_units(self) -> int:
        return self.shapes[0][0]

    @property
    def group_size(self) -> int:
        return sum(self.widths)

    def pack(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The ``(n, p)`` unit matrix from the module's parameter tensors."""
        parts = [p.unsqueeze(-1) if p.dim() == 1 else p for p in self.blocks(params)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def blocks(self, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The column blocks of the unit matrix, no copy: a weight as ``(n, ·)``, a bias as it is, ``(n,)``.

        A tensor already of its block's shape (a ``Linear`` weight, a bias: one column)
        is itself, not a view: a view puts a node into the autograd graph, forward and
        backward, and its gradient cannot be accumulated in place into the tensor's —
        at batch 32 the bias views of the digits MLP cost several per cent of a training
        step. A 1-D block is one column; `pack` makes it ``(n, 1)``.
        """
        n = self.n_units
        return [t if t.dim() in (1, 2) and t.shape[0] == n else t.reshape(n, -1)
                for t in (params[k] for k in self.param_names)]

    def unit_norms(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``‖θ_j‖₂`` of every unit's row of the unit matrix, without building it.

        The blocks' own row norms combined by ``hypot``: the same value to rounding as
        ``vector_norm(pack(params), dim=-1)`` (overflow-safe like it), with no
        concatenated copy of the weights (it runs while training, at every snapshot).
        """
        first, *rest = self.blocks(params)
        norms = first.abs() if first.dim() == 1 else torch.linalg.vector_norm(first, dim=-1)
        for p in rest:  # hypot(a, b) = hypot(a, |b|): a 1-D block (a bias) enters as it is
            norms = torch.hypot(norms, p if p.dim() == 1 else torch.linalg.vector_norm(p, dim=-1))
        return norms

    def unpack(self, value: torch.Tensor) -> dict[str, torch.Tensor]:
        """The module's parameter tensors from a ``(n, p)`` unit matrix (views when possible)."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, width, shape in zip(self.param_names, self.widths, self.shapes):
            out[name] = value[:, start : start + width].reshape(shape)
            start += width
        return out


def qualified(layer: str, name: str) -> str:
    """The dotted name of ``name`` (a parameter or site suffix) inside layer ``layer``.

    Examples
    --------
    >>> qualified("2", "weight"), qualified("", "weight")
    ('2.weight', 'weight')
    """
    return f"{layer}.{name}" if layer else name


def _flatten(net: nn.Module, out: list[tuple[str, nn.Module]], seen: dict[int, tuple[int, str]],
             prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Append the leaves of a (nested) ``Sequential`` to ``out`` in order; refuse a module used twice.

    ``_modules`` is walked rather than ``named_children()``, which lists a repeated
    instance once; ``seen`` maps the ids of the modules met so far to their position in
    the chain and their name.
    """
    for name, child in net._modules.items():
        if child is None:
            continue
        full = f"{prefix}{name}"
        if id(child) in seen:
            first, first_name = seen[id(child)]
            raise ValueError(
                f"the {type(child).__name__} at position {len(out)} (name {full!r}) is the same module "
                f"instance as the one at position {first} (name {first_name!r}): a module used twice is "
                f"applied twice by the network but read once by bayesguide; give each position its own "
                f"instance"
            )
        seen[id(child)] = (len(out), full)
        if isinstance(child, nn.Sequential):
            _flatten(child, out, seen, full + ".")
        else:
            out.append((full, child))
    return out


def _sizes(module: nn.Module) -> tuple[tuple[str, int], ...]:
    """The sizes that must be positive: inputs and units of a parametrised layer."""
    if isinstance(module, nn.Linear):
        return ("inputs (in_features)", module.in_features), ("units (out_features)", module.out_features)
    if isinstance(module, nn.Conv2d):
        return ("input channels", module.in_channels), ("units (out_channels)", module.out_channels)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return (("units (num_features)", module.num_features),)
    return ()


def parse_network(net: nn.Module) -> tuple[list[Layer], list[Site]]:
    """Split ``net`` into supported layers and build its sample sites.

    ``net`` is an ``nn.Sequential`` or a single ``Linear`` / ``Conv2d`` / ``BatchNorm``
    layer (a chain of one layer named ``""``).

    Raises
    ------
    TypeError
        If ``net`` is neither an ``nn.Sequential`` nor a supported layer with
        parameters, or contains an unsupported layer (the message names the layer, its
        position and the supported types).
    ValueError
        If the network has no ``Linear`` / ``Conv2d`` layer, uses one module instance at
        two positions (both named), or has a layer with zero units or inputs.
    """
    if isinstance(net, nn.Sequential):
        flat = _flatten(net, [], {})
    elif isinstance(net, _PARAM_LAYERS):
        flat = [("", net)]
    else:
        raise TypeError(
            f"GuidedModel needs an nn.Sequential chain of layers or a single Linear / Conv2d layer, "
            f"got {type(net).__name__}; networks with branches or residual connections are not supported"
        )
    layers = [Layer(name, i, m) for i, (name, m) in enumerate(flat)]
    for layer in layers:
        if not isinstance(layer.module, _PARAM_LAYERS + _PASS_LAYERS):
            raise TypeError(
                f"unsupported layer {type(layer.module).__name__} at position {layer.position} "
                f"(name {layer.name!r}); supported layers: {', '.join(SUPPORTED_LAYERS)}"
            )
        if isinstance(layer.module, nn.Conv2d) and layer.module.padding_mode != "zeros":
            raise TypeError(
                f"Conv2d at position {layer.position} (name {layer.name!r}) uses "
                f"padding_mode={layer.module.padding_mode!r}; only 'zeros' is supported"
            )
        for what, size in _sizes(layer.module):
            if size < 1:
                raise ValueError(
                    f"{type(layer.module).__name__} at position {layer.position} (name {layer.name!r}) has "
                    f"{size} {what}; every layer needs at least one"
                )
    weighted = [ly for ly in layers if isinstance(ly.module, (nn.Linear, nn.Conv2d))]
    if not weighted:
        raise ValueError("the network has no Linear or Conv2d layer to put a prior on")
    output = weighted[-1]
    sites: list[Site] = []
    for layer in layers:
        if not layer.has_units:
            continue
        own = [(k, p) for k, p in layer.module.named_parameters(recurse=False)]
        if not own:
            continue  # BatchNorm without affine parameters
        n = own[0][1].shape[0]
        sites.append(
            Site(
                name=qualified(layer.name, "units"),
                layer=layer,
                param_names=tuple(qualified(layer.name, k) for k, _ in own),
                widths=tuple(p.numel() // n for _, p in own),
                shapes=tuple(p.shape for _, p in own),
                prunable=isinstance(layer.module, (nn.Linear, nn.Conv2d)) and layer is not output,
            )
        )
    return layers, sites


def functional_forward(
    layers: list[Layer], sites: list[Site], values: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Run the chain on ``x`` with parameters taken from site values (not the modules').

    Buffers (BatchNorm running statistics) and train/eval mode come from the modules.
    """
    by_layer = {s.layer.name: s for s in sites}
    for layer in layers:
        m = layer.module
        site = by_layer.get(layer.name)
        if site is None:
            x = m(x)
            continue
        p = site.unpack(values[site.name])
        w = p[qualified(layer.name, "weight")]
        b = p.get(qualified(layer.name, "bias"))
        if isinstance(m, nn.Linear):
            x = F.linear(x, w.contiguous(), b)  # a strided slice makes F.linear slower
        elif isinstance(m, nn.Conv2d):
            x = m._conv_forward(x, w, b)
        else:
            bn_params = {"weight": w} if b is None else {"weight": w, "bias": b}
            x = torch.func.functional_call(m, bn_params, (x,))
    return x
