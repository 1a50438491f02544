"""Saving and loading networks without pickled code.

A network is stored as ``architecture.json`` (a list of layer descriptions) and
``weights.pt`` (its ``state_dict``, read back with ``torch.load(weights_only=True)``), so
loading a run directory never executes code from a file.

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


def describe(net: nn.Module) -> list[dict[str, Any]]:
    """A JSON-able description of a (possibly nested) ``nn.Sequential`` chain."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"only nn.Sequential networks can be described, got {type(net).__name__}")
    out: list[dict[str, Any]] = []
    for m in net:
        if isinstance(m, nn.Sequential):
            out.append({"type": "Sequential", "layers": describe(m)})
        elif isinstance(m, nn.Linear):
            out.append({"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                        "bias": m.bias is not None})
        elif isinstance(m, nn.Conv2d):
            out.append({"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                        "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                        "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
                        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None})
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append({"type": type(m).__name__, "num_features": m.num_features, "eps": m.eps,
                        "momentum": m.momentum, "affine": m.affine,
                        "track_running_stats": m.track_running_stats})
        elif isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
            out.append({"type": type(m).__name__, "p": m.p})
        elif isinstance(m, nn.Flatten):
            out.append({"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim})
        elif type(m).__name__ in _ACTIVATIONS and not any(True for _ in m.parameters()):
            out.append({"type": type(m).__name__})
        else:
            raise TypeError(f"cannot describe layer {type(m).__name__}")
    return out


def build(description: list[dict[str, Any]]) -> nn.Sequential:
    """The ``nn.Sequential`` a :func:`describe` output stands for (fresh weights)."""
    layers: list[nn.Module] = []
    for d in description:
        kind = d.get("type")
        args = {k: v for k, v in d.items() if k != "type"}
        if kind == "Sequential":
            layers.append(build(args["layers"]))
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
    """Write ``architecture.json`` and ``weights.pt`` for ``net`` into ``directory`` (atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    desc = {"format": 1, "dtype": str(next(net.parameters()).dtype).removeprefix("torch."),
            "layers": describe(net)}

    write_atomic(directory / "weights.pt", lambda tmp: torch.save(net.state_dict(), tmp))
    write_atomic(directory / "architecture.json", json.dumps(desc, indent=1))


def load_module(directory: str | Path) -> nn.Sequential:
    """Rebuild a network saved by :func:`save_module` (``weights_only=True``: no code is unpickled)."""
    directory = Path(directory)
    arch, weights = directory / "architecture.json", directory / "weights.pt"
    for f in (arch, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist")
    desc = json.loads(arch.read_text())
    net = build(desc["layers"]).to(getattr(torch, desc.get("dtype", "float32")))
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()
