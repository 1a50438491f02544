"""BatchNorm folded into the layer before it: the network the Laplace evidence scores.

A ``BatchNorm`` layer in eval mode is a fixed per-channel affine map,
``x ↦ s ⊙ x + t`` with ``s = γ / √(running_var + ε)`` and ``t = β − s ⊙ running_mean``.
Folded into the ``Linear`` or ``Conv2d`` right before it (``W' = diag(s) W``,
``b' = s ⊙ b + t``) it leaves an ordinary network that computes exactly the same
function in eval mode.

Why the evidence needs this: in training mode a normalised layer's output does not
depend on the scale of the weights before it, so the curvature along that scale is zero
and the Laplace evidence of such a network depends on an arbitrary choice of prior
there (Antorán, Janz, Allingham, Daxberger, Barbano, Nalisnick & Hernández-Lobato,
"Adapting the linearised Laplace model evidence for modern deep learning", ICML 2022).
With the running statistics fixed (eval mode) and folded away, the network has no
normalisation left, and its Laplace evidence is that of an ordinary network under the
same guided prior; the ``BatchNorm`` affine parameters are no longer parameters of
their own. A ``BatchNorm`` that does not follow a ``Linear`` / ``Conv2d`` directly, or
that keeps no running statistics (``track_running_stats=False``: it normalises with the
batch's own statistics even in eval mode), cannot be folded and is refused, naming it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bayesguide.model.guided import GuidedModel

__all__ = ["fold_batchnorm", "has_batchnorm"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def has_batchnorm(model: GuidedModel, module: nn.Module) -> bool:
    """Whether ``module``'s chain holds a ``BatchNorm`` layer."""
    return any(isinstance(layer.module, _BN) for layer in model.chain(module))


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def fold_batchnorm(model: GuidedModel, module: nn.Module) -> tuple[GuidedModel, nn.Module, int]:
    """``(model, module)`` with every ``BatchNorm`` folded into the layer before it, and how many.

    The returned network is a copy in eval mode, each folded ``BatchNorm`` replaced by an
    ``nn.Identity`` (so every other layer keeps its name, and every site its guidance
    coefficients); ``module`` and ``model`` are not changed. Without ``BatchNorm`` the
    inputs come back as they are, with 0.

    Raises
    ------
    ValueError
        For a ``BatchNorm`` that does not directly follow a ``Linear`` / ``Conv2d``, or
        keeps no running statistics.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
    ...                           torch.nn.Linear(4, 2)).eval()
    >>> model = bg.GuidedModel(net, bg.GuidedNormal(1.0))
    >>> folded_model, folded, n = fold_batchnorm(model, net)
    >>> n, type(folded[1]).__name__, [s.name for s in folded_model.sites]
    (1, 'Identity', ['0.units', '3.units'])
    >>> x = torch.randn(5, 3)
    >>> bool(torch.allclose(folded(x), net(x), atol=1e-6))
    True
    """
    chain = model.chain(module)
    if not any(isinstance(layer.module, _BN) for layer in chain):
        return model, module, 0
    folded = copy.deepcopy(module).eval()
    count = 0
    for i, layer in enumerate(chain):
        bn = layer.module
        if not isinstance(bn, _BN):
            continue
        before = chain[i - 1].module if i > 0 else None
        if not isinstance(before, (nn.Linear, nn.Conv2d)):
            raise ValueError(
                f"BatchNorm layer {layer.name!r} does not directly follow a Linear or Conv2d layer: the "
                f"Laplace evidence folds each BatchNorm into the layer before it (a network with "
                f"normalisation layers has no well-defined Laplace evidence otherwise; Antorán et al. 2022); "
                f"move it right after a Linear / Conv2d, or remove it"
            )
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                f"BatchNorm layer {layer.name!r} keeps no running statistics (track_running_stats=False): it "
                f"normalises with each batch's own statistics, which cannot be folded into the layer before "
                f"it for the Laplace evidence; use track_running_stats=True"
            )
        _replace(folded, chain[i - 1].name, _fold(before, bn))
        _replace(folded, layer.name, nn.Identity())
        count += 1
    new = GuidedModel(folded, model.prior, model.likelihood, noise=model.noise, plain_prior=model.plain_prior)
    kept = {s.name for s in new.sites}
    new = new.with_coefficients({k: v for k, v in model.coefficients.items() if k in kept})
    return new, new.net, count


def _fold(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """A copy of ``layer`` computing ``bn(layer(x))`` in eval mode (with a bias, always)."""
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        dtype = layer.weight.dtype
        scale = (bn.running_var.to(dtype) + bn.eps).rsqrt()
        shift = -bn.running_mean.to(dtype) * scale
        if bn.affine:
            scale, shift = bn.weight.to(dtype) * scale, bn.weight.to(dtype) * shift + bn.bias.to(dtype)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0], dtype=dtype,
                                                                     device=layer.weight.device)
        new = copy.deepcopy(layer)
        if new.bias is None:
            new.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=dtype, device=layer.weight.device))
        new.weight.copy_(layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1))))
        new.bias.copy_(bias * scale + shift)
    return new
