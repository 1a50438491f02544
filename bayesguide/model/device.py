"""Where the work runs: resolving ``device=`` and moving networks and data there.

Every function of bayesguide that runs a network (the fitters, fine-tuning, the evidence
estimators, ``bg.compare``, the pipeline) takes ``device=`` — ``"cpu"``, ``"cuda"``,
``"cuda:1"``, a `torch.device`, or ``None`` for the device of the network's
parameters — and follows one set of rules:

* **the network** (a copy of it) is moved to the device: the caller's network is never
  moved;
* **the data stay where they are.** A computation that reads the whole data set at every
  step (full-batch training) moves it once, [`place_data`][bayesguide.model.device.place_data]: it fits, since every
  step
  holds it anyway. Minibatch training moves each minibatch as it is drawn
  ([`take_batch`][bayesguide.model.device.take_batch]), and chunked computations (curvature, log-likelihoods of
  posterior
  draws) move each chunk, so a data set larger than the device's memory is never copied
  whole;
* **results come back on the CPU**: losses and metrics as Python floats, fitted networks,
  guides and optimiser states as CPU tensors, so that saving, pruning, reports and the
  runner never see a device tensor.

On the CPU with data on the CPU nothing is copied (``Tensor.to`` returns the tensor
itself), so ``device="cpu"`` gives bit for bit what the default gives.

[`resolve_device`][bayesguide.model.device.resolve_device] checks a ``device`` before any work: a string that is no
torch
device, or a device that is not available here (``"cuda"`` without CUDA, ``"cuda:3"`` on
a machine with two GPUs), is a ``ValueError`` naming it and listing the available ones.

Examples
--------
>>> import torch
>>> net = torch.nn.Linear(3, 2)
>>> resolve_device(None, net)
device(type='cpu')
>>> resolve_device("gpu", net)
Traceback (most recent call last):
...
ValueError: device='gpu' is not a torch device; use "cpu", "cuda" or "cuda:N" (available here: cpu)
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

__all__ = [
    "CPU", "DeviceLike", "available_devices", "check_device", "module_device", "module_on", "place_data",
    "resolve_device", "take_batch", "to_device",
]

DeviceLike = str | torch.device | None
"""What ``device=`` accepts: a string such as ``"cuda:1"``, a ``torch.device``, or ``None``."""

M = TypeVar("M", bound=nn.Module)

CPU = torch.device("cpu")


def available_devices() -> list[str]:
    """The devices this process can use: ``"cpu"``, then ``"cuda:0"``, ``"cuda:1"``, … and ``"mps"``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def check_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a `torch.device`, after checking that it names one that is available here.

    ``what`` names the setting in the message (e.g. ``"[fit] device"``).

    Raises
    ------
    ValueError
        For a string that is no torch device, a kind of device bayesguide does not run on,
        or a device that is not available (the message lists the available ones).
    """
    here = ", ".join(available_devices())
    shown = repr(str(device))  # "device='cuda:1'" for a string and a torch.device alike
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device.strip())
        except RuntimeError:
            raise ValueError(f'{what}={shown} is not a torch device; use "cpu", "cuda" or "cuda:N" '
                             f"(available here: {here})") from None
    else:
        raise TypeError(f"{what} must be a string such as 'cuda', a torch.device or None, got {type(device).__name__}")
    if dev.type == "cpu":
        return CPU
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={shown}: no CUDA device is available here (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda or 'no'}); available: {here}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{what}={shown}: this machine has {count} CUDA device(s); available: {here}")
        return dev
    if dev.type == "mps" and "mps" in available_devices():
        return dev
    raise ValueError(f"{what}={shown} is not a device bayesguide can run on here; available: {here}")


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU when it has none."""
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return CPU


def resolve_device(device: DeviceLike, module: nn.Module) -> torch.device:
    """The device to run ``module`` on: ``device`` checked (`check_device`), or ``module``'s own for ``None``.

    Examples
    --------
    >>> resolve_device("cpu", torch.nn.Linear(2, 2))
    device(type='cpu')
    """
    if device is None:
        return module_device(module)
    return check_device(device)


def module_on(module: M, device: torch.device) -> M:
    """``module`` itself when it is on ``device``; otherwise a copy moved there (``module`` is never moved)."""
    if module_device(module) == device:
        return module
    return copy.deepcopy(module).to(device)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` (``t`` itself when it is there already)."""
    return t.to(device, non_blocking=True)


def place_data(X: torch.Tensor, y: torch.Tensor, device: torch.device,
               full_batch: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a training loop reads its data: moved to ``device`` once for full-batch training, else left in place.

    Full-batch training reads every example at every step, so the data must fit on the
    device anyway and are moved once; minibatch training leaves them where they are and
    moves each minibatch ([`take_batch`][bayesguide.model.device.take_batch]).
    """
    if not full_batch:
        return X, y
    return to_device(X, device), to_device(y, device)


def take_batch(X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (mini)batch ``idx`` of ``X, y`` on ``device``: the rows are gathered where the data are, then moved.

    ``idx=None`` is the full batch, placed by [`place_data`][bayesguide.model.device.place_data] (already on
    ``device``).
    Every fitter draws each step's batch through this function.
    """
    if idx is None:
        return X, y
    xb, yb = X[idx], y[idx]
    if xb.device == device:  # already there: no call into .to per step
        return xb, yb
    return xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
