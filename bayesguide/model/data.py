"""Training data against a model: validation, conversion to tensors, and fingerprints.

[`prepare_data`][bayesguide.model.data.prepare_data] is what
[`bayesguide.GuidedModel.prepare_data`][bayesguide.model.guided.GuidedModel.prepare_data] runs: every
check a fit needs before its first step — real numbers, matching lengths, at least one
row and one feature, no NaN or inf, no value that overflows the network's dtype, an
input the network accepts and the targets its likelihood needs — each failure a named
error. [`data_fingerprint`][bayesguide.model.data.data_fingerprint] identifies prepared data, so later stages (evidence,
pruning, continuing a fit, resuming a run) can refuse other data.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from bayesguide.likelihoods import Likelihood

__all__ = ["ArrayLike", "as_tensor", "check_dtype", "data_fingerprint", "prepare_data"]

ArrayLike = Any
"""What data arguments accept: a ``torch.Tensor``, a NumPy array or a (nested) sequence."""


def data_fingerprint(X: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of (prepared) training data, so later stages can refuse other data."""
    h = hashlib.sha1()
    for t in (X, y):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


DTYPES = (torch.float32, torch.float64)
"""The parameter dtypes a network may have."""


def check_dtype(net: nn.Module) -> None:
    """Refuse parameters that are not all float32 or all float64 (the dtype and the fix named)."""
    found: dict[torch.dtype, str] = {}  # each dtype and the first parameter that has it
    for name, param in net.named_parameters():
        found.setdefault(param.dtype, name)
    bad = {d: name for d, name in found.items() if d not in DTYPES}
    if bad:
        dtype, name = next(iter(bad.items()))
        raise TypeError(
            f"the network's parameters must be float32 or float64, but {name!r} is "
            f"{str(dtype).replace('torch.', '')}; convert the network with net.float() or net.double()"
        )
    if len(found) > 1:
        raise TypeError(
            f"the network's parameters mix float32 and float64 ({found[torch.float32]!r} is float32, "
            f"{found[torch.float64]!r} is float64); convert the network with net.float() or net.double()"
        )


def check_range(t: torch.Tensor, name: str, dtype: torch.dtype) -> None:
    """Refuse values of ``t`` that would overflow to inf when cast to ``dtype`` (the first one named)."""
    if not t.is_floating_point() or torch.finfo(t.dtype).max <= torch.finfo(dtype).max or t.numel() == 0:
        return
    big = torch.finfo(dtype).max
    over = t.reshape(t.shape[0], -1).abs() > big
    if over.any():
        row = int(over.any(1).nonzero()[0])
        col = int(over[row].nonzero()[0])
        value = float(t.reshape(t.shape[0], -1)[row, col])
        raise ValueError(
            f"{name} value {value:.6g} (row {row}, column {col}) overflows {str(dtype).replace('torch.', '')}, "
            f"the network's dtype (largest finite {big:.3g}); rescale {name} or use a float64 network "
            f"(net.double())"
        )


def as_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    """``a`` as a real numeric tensor (bools as integers), or a ``TypeError`` naming ``name``."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
    elif (hasattr(a, "__iter__") and not hasattr(a, "__len__")) or type(a).__name__ in ("DataLoader", "Batches"):
        raise TypeError(
            f"{name} is a data loader ({type(a).__name__}); this function needs the data in memory as arrays or "
            f"tensors — data loaders are read by the fitters, bg.evidence, bg.compare and "
            f"bg.select_architecture "
            f"(see docs/scaling.md, 'Data that does not fit in memory')"
        )
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be an array or tensor: {err}") from None
    if t.is_complex():
        raise TypeError(
            f"{name} is complex-valued (dtype {t.dtype}); bayesguide needs real numbers — pass "
            f"{name}.real if the imaginary part is meant to be dropped"
        )
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    integer = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
    if not (t.is_floating_point() or t.dtype in integer):
        raise TypeError(f"{name} must be numeric, got dtype {t.dtype}")
    return t


def prepare_data(net: nn.Module, likelihood: Likelihood, dtype: torch.dtype, X: ArrayLike,
                 y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``X`` and ``y`` against a network and likelihood; return them as tensors of ``dtype``.

    Checks, before any training: real (not complex) numbers, equal lengths, at least
    one row and one feature, no NaN or inf, no value that overflows the network's
    dtype (checked before the cast), that ``X`` fits the network's input, and the
    targets the likelihood needs (integer labels in range for ``categorical``, 0/1
    for ``bernoulli``, matching shape for ``gaussian``).

    The number of classes present is *not* checked: a test set or a validation
    subset may legitimately hold a single class. Training data files are checked for
    that by [`bayesguide.datasets.load_file`][].
    """
    Xt = as_tensor(X, "X")
    yt = as_tensor(y, "y")
    if Xt.ndim < 2:
        raise ValueError(
            f"X must have one row per example (at least 2-D), got shape {tuple(Xt.shape)}"
        )
    n_y = yt.shape[0] if yt.ndim else 0
    if Xt.shape[0] != n_y:
        raise ValueError(f"X has {Xt.shape[0]} rows but y has {n_y}: they must have the same length")
    if Xt.shape[0] == 0:
        raise ValueError("X and y are empty")
    if Xt[0].numel() == 0:
        raise ValueError(f"X has no features: shape {tuple(Xt.shape)}")
    for name, t in (("X", Xt), ("y", yt)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            row = int((~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero()[0])
            raise ValueError(f"{name} contains NaN or inf (first at row {row})")
    check_range(Xt, "X", dtype)
    if likelihood is not Likelihood.CATEGORICAL:  # class labels are checked as labels
        check_range(yt, "y", dtype)
    Xt = Xt.to(dtype)
    probe = copy.deepcopy(net).to(Xt.device).eval()  # no copy of the data: the probe goes to them
    try:
        with torch.no_grad():
            out = probe(Xt[:2])
    except RuntimeError as err:
        raise ValueError(
            f"X of shape {tuple(Xt.shape)} does not fit the network's input: {err}"
        ) from None
    if out.ndim != 2:
        raise ValueError(
            f"the network's output must be 2-D (examples × outputs), got shape {tuple(out.shape)}"
        )
    return Xt, likelihood.prepare_targets(yt, out.shape[1], dtype)
