"""Saving and loading networks without pickled code.

A network is stored as ``architecture.json`` (a list of layer descriptions) and
``weights.pt`` (its ``state_dict``, read back with ``torch.load(weights_only=True)``), so
loading a run directory never executes code from a file. Loading also checks the
description against the saved tensors *before* building anything, so a crafted
``architecture.json`` cannot make it allocate a layer the weights do not back, and a file
that is not a weights file is refused with a message naming it. A single supported layer
(a bare ``nn.Linear``) is saved and loaded as itself.

Examples
--------
>>> import torch, tempfile
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> with tempfile.TemporaryDirectory() as d:
...     save_module(net, d)
...     same = load_module(d)
>>> bool(torch.equal(same(torch.ones(1, 3)), net(torch.ones(1, 3))))
True
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayesguide.atomic import write_atomic

__all__ = ["build", "describe", "load_module", "save_module"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus,
                nn.Identity, nn.Flatten, nn.Mish, nn.SELU, nn.Softsign, nn.Hardtanh)
}
_MAX_DEPTH = 32
"""How deeply ``nn.Sequential`` s may nest in a description."""


def _layer(m: nn.Module) -> dict[str, Any]:
    """The description of one (non-``Sequential``) layer."""
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None}
    if isinstance(m, nn.Conv2d):
        return {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
                "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return {"type": type(m).__name__, "num_features": m.num_features, "eps": m.eps,
                "momentum": m.momentum, "affine": m.affine, "track_running_stats": m.track_running_stats}
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
        return {"type": type(m).__name__, "p": m.p}
    if isinstance(m, nn.Flatten):
        return {"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim}
    if type(m).__name__ in _ACTIVATIONS and not any(True for _ in m.parameters()):
        return {"type": type(m).__name__}
    raise TypeError(f"cannot describe layer {type(m).__name__}")


def describe(net: nn.Module) -> list[dict[str, Any]]:
    """A JSON-able description of a (possibly nested) ``nn.Sequential`` chain.

    A single layer is described as a one-element list (see [`save_module`][bayesguide.architecture.save_module]).
    """
    if not isinstance(net, nn.Sequential):
        return [_layer(net)]
    return [{"type": "Sequential", "layers": describe(m)} if isinstance(m, nn.Sequential) else _layer(m)
            for m in net]


def _n_params(description: list[dict[str, Any]], depth: int = 0) -> int:
    """The number of parameter and buffer elements a description asks for (no allocation)."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"the architecture description nests Sequential layers deeper than {_MAX_DEPTH}")
    total = 0
    for d in description:
        if not isinstance(d, dict):
            raise ValueError(f"an architecture description lists layers as objects, got {d!r}")
        kind = d.get("type")
        try:
            if kind == "Sequential":
                total += _n_params(d["layers"], depth + 1)
            elif kind == "Linear":
                total += int(d["in_features"]) * int(d["out_features"]) + int(d["out_features"])
            elif kind == "Conv2d":
                kh, kw = (int(k) for k in d["kernel_size"])
                total += (int(d["out_channels"]) * int(d["in_channels"]) // max(int(d["groups"]), 1) * kh * kw
                          + int(d["out_channels"]))
            elif kind in ("BatchNorm1d", "BatchNorm2d"):
                total += 4 * int(d["num_features"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the architecture description of a {kind} layer is malformed: {err}") from None
    return total


def build(description: list[dict[str, Any]], depth: int = 0) -> nn.Sequential:
    """The ``nn.Sequential`` a [`describe`][bayesguide.architecture.describe] output stands for (fresh weights)."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"the architecture description nests Sequential layers deeper than {_MAX_DEPTH}")
    layers: list[nn.Module] = []
    for d in description:
        kind = d.get("type")
        args = {k: v for k, v in d.items() if k != "type"}
        if kind == "Sequential":
            layers.append(build(args["layers"], depth + 1))
        elif kind == "Linear":
            layers.append(nn.Linear(**args))
        elif kind == "Conv2d":
            conv = dict(args)
            for key in ("kernel_size", "stride", "dilation"):
                conv[key] = tuple(conv[key])
            if isinstance(conv["padding"], list):
                conv["padding"] = tuple(conv["padding"])
            layers.append(nn.Conv2d(**conv))
        elif kind in ("BatchNorm1d", "BatchNorm2d", "Dropout", "Dropout1d", "Dropout2d"):
            layers.append(getattr(nn, kind)(**args))
        elif kind in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[kind](**args))
        else:
            raise ValueError(f"unknown layer type {kind!r} in architecture description")
    return nn.Sequential(*layers)


def save_module(net: nn.Module, directory: str | Path) -> None:
    """Write ``architecture.json`` and ``weights.pt`` for ``net`` into ``directory`` (atomically).

    ``net`` is an ``nn.Sequential`` chain or a single supported layer (saved as itself).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    desc = {"format": 1, "dtype": str(next(net.parameters()).dtype).removeprefix("torch."),
            "container": "sequential" if isinstance(net, nn.Sequential) else "layer", "layers": describe(net)}

    write_atomic(directory / "weights.pt", lambda tmp: torch.save(net.state_dict(), tmp))
    write_atomic(directory / "architecture.json", json.dumps(desc, indent=1))


def load_module(directory: str | Path) -> nn.Module:
    """Rebuild a network saved by `save_module` (``weights_only=True``: no code is unpickled).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If ``weights.pt`` is not a tensor file, if ``architecture.json`` is malformed, or if
        the two do not match (checked before the network is built).
    """
    directory = Path(directory)
    arch, weights = directory / "architecture.json", directory / "weights.pt"
    for f in (arch, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(weights, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        # torch's own message suggests weights_only=False, which would run the file's code: not repeated
        raise ValueError(f"{weights} is not a weights file saved by bayesguide (refused to load it: "
                         f"{type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} does not hold a state dict of tensors")
    try:
        desc = json.loads(arch.read_text())
        layers = desc["layers"]
    except (json.JSONDecodeError, RecursionError, KeyError, TypeError) as err:
        raise ValueError(f"{arch} is not a valid architecture description ({type(err).__name__})") from None
    saved = sum(v.numel() for v in state.values())
    asked = _n_params(layers)
    if asked > saved:
        raise ValueError(
            f"{arch} describes {asked:,} parameter and buffer elements but {weights} holds {saved:,}: the files "
            f"do not belong together"
        )
    dtype = str(desc.get("dtype", "float32"))
    if dtype not in ("float32", "float64"):
        raise ValueError(f"{arch} asks for dtype {dtype!r}; saved networks are float32 or float64")
    net = build(layers).to(getattr(torch, dtype))
    module: nn.Module = net[0] if desc.get("container") == "layer" and len(net) == 1 else net
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{weights} does not fit {arch}: {str(err).splitlines()[0]}") from None
    return module.eval()
