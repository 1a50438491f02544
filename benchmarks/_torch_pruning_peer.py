"""Torch-Pruning (DepGraph, Fang et al., CVPR 2023) as a peer in ``benchmarks/compression.py``.

The peer trains the task's network with Torch-Pruning's group-norm sparse training — a
[`GroupNormPruner`](https://github.com/VainF/Torch-Pruning) whose ``regularize(model)``
adds ``reg · γ · w`` to the gradient of every weight of every prunable group after
``loss.backward()`` (``γ`` from 1 for the group with the largest norm to 2⁴ for the
smallest) — on the same batches, learning rate, cosine schedule, steps and seeds as
bayesguide's fits (the same Adam and the same minibatch orders as
``bayesguide.infer.loop``). The data term is the mean negative log likelihood (the
usual deep-learning loss; Adam makes its scale immaterial next to ``reg``).

Its pruning path then ranks every hidden unit by Torch-Pruning's own group importance
(``GroupMagnitudeImportance``: the L2 norm over the whole dependency group — the unit's
incoming weights and the next layer's weights that read it — normalised by the group's
mean, which is how its global pruning compares layers) computed once on the trained
network, and removes the lowest-ranked units with ``DependencyGraph.get_pruning_group(
…).prune()``: Torch-Pruning cuts a physically smaller network. The path's points remove
the same numbers of units as ``bg.pruning_path(spacing="geometric")`` does for the same
network, keeping at least one unit per layer. Parameters and FLOPs are counted on the
cut network by bayesguide's own counter (``bayesguide.pruning.structure.costs``), so
the numbers compare with bayesguide's candidates.

There is no Bayesian model, so there is no evidence pick for this peer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bayesguide.infer.loop import lr_factor, make_adam
from bayesguide.infer.settings import Schedule
from bayesguide.likelihoods import Likelihood
from bayesguide.pruning.structure import analyse, costs, output_positions

try:
    import torch_pruning as tp  # type: ignore[import-untyped]
except ImportError:  # the `peers` extra is not installed: the peer is skipped
    tp = None


def available() -> bool:
    """Whether ``torch_pruning`` can be imported (the ``peers`` extra)."""
    return tp is not None


@dataclass(frozen=True)
class Peer:
    """A method from another library, shown beside bayesguide's in the tables.

    It has the attributes the report reads from a bayesguide method (``title``,
    ``grid``, ``group``, ``lr``, ``fitter``); ``grid`` is its own strength (here
    Torch-Pruning's ``reg``), multiplied by the task's ``strength_scale`` like the
    others'.
    """

    name: str
    title: str
    grid: tuple[float, ...]
    group: str = "peers"
    lr: float | None = None
    fitter: str = "torch_pruning.GroupNormPruner"
    peer: bool = True


@dataclass(frozen=True)
class PrunedNet:
    """One point of the peer's path: a network Torch-Pruning cut, with its costs."""

    name: str
    module: nn.Module
    widths: tuple[int, ...]
    n_params: int
    flops: int | None

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """The network's outputs on ``X`` (evaluation mode, no gradients)."""
        with torch.no_grad():
            return self.module.eval()(X)


def _prunable(net: nn.Module) -> list[nn.Module]:
    """The hidden ``Linear`` / ``Conv2d`` layers (every weighted layer but the output one)."""
    weighted: list[nn.Module] = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return weighted[:-1]


def train_group_norm(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, likelihood: str, noise: float | None, reg: float,
    steps: int, lr: float, batch_size: int | None, seed: int, schedule: str = "cosine",
) -> nn.Module:
    """Train ``net`` in place with Torch-Pruning's group-norm regulariser; returns it.

    The minibatch orders and the learning-rate schedule are those of
    ``bayesguide.infer.loop`` for the same ``seed`` and ``batch_size`` (a permutation
    from a generator seeded with ``seed``, redrawn when a pass ends), and the optimiser
    is the same Adam.
    """
    if tp is None:
        raise ImportError("the Torch-Pruning peer needs the 'torch-pruning' package (the 'peers' extra)")
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg!r}")
    lik = Likelihood.resolve(likelihood, "likelihood")
    out_layer = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    pruner = tp.pruner.GroupNormPruner(
        net, example_inputs=X[:1], importance=tp.importance.GroupMagnitudeImportance(p=2), reg=reg,
        global_pruning=True, ignored_layers=[out_layer],
    )
    # the groups are found once: nothing is pruned during training, so update_regularizer()
    # at every step would find the same groups again
    pruner.update_regularizer()
    with torch.no_grad():
        out_dim = int(net(X[:1]).shape[-1])
    targets = lik.prepare_targets(y, out_dim, X.dtype)
    noise_t = None if noise is None else torch.tensor(float(noise), dtype=X.dtype)
    optimizer = make_adam(list(net.parameters()), lr)
    sched = Schedule.resolve(schedule, "schedule")
    n = X.shape[0]
    batch = batch_size if batch_size is not None and batch_size < n else None
    generator = torch.Generator()
    generator.manual_seed(seed)
    perm, cursor = (torch.randperm(n, generator=generator) if batch else None), 0
    net.train()
    for step in range(steps):
        if batch is not None:
            assert perm is not None
            if cursor + batch > n:
                perm, cursor = torch.randperm(n, generator=generator), 0
            idx: Any = perm[cursor: cursor + batch]
            cursor += batch
        else:
            idx = slice(None)
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(sched, step, steps)
        optimizer.zero_grad(set_to_none=True)
        xb, yb = X[idx], targets[idx]
        loss = -lik.log_prob_sum(net(xb), yb, noise_t) / xb.shape[0]
        loss.backward()
        pruner.regularize(net)
        optimizer.step()
    return net.eval()


def group_importance(net: nn.Module, example: torch.Tensor) -> list[np.ndarray]:
    """Torch-Pruning's group-norm importance of every unit of every hidden layer, in layer order.

    ``GroupMagnitudeImportance(p=2)`` (mean over the group's layers, normalised by the
    group's mean), computed by the library on the dependency groups ``DependencyGraph``
    finds for each layer's output channels.
    """
    if tp is None:
        raise ImportError("the Torch-Pruning peer needs the 'torch-pruning' package (the 'peers' extra)")
    dg = tp.DependencyGraph().build_dependency(net, example_inputs=example)
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    scores = []
    for layer in _prunable(net):
        fn = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
        n_units = _n_out(layer)
        group = dg.get_pruning_group(layer, fn, idxs=list(range(n_units)))
        with torch.no_grad():
            scores.append(importance(group).detach().cpu().numpy().astype(np.float64))
    return scores


def removal_counts(total: int, removable: int, n_candidates: int) -> list[int]:
    """Units removed by each point, geometric in the units kept: as ``bg.pruning_path(spacing="geometric")``."""
    kept = np.geomspace(total, total - removable, n_candidates)
    return sorted({int(v) for v in np.clip(np.round(total - kept), 0, removable)} | {0, removable})


def _n_out(layer: nn.Module) -> int:
    """Output units (channels) of a ``Linear`` / ``Conv2d`` layer."""
    assert isinstance(layer, (nn.Linear, nn.Conv2d))
    return int(layer.weight.shape[0])


def _global_order(scores: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """``(layer, unit)`` pairs, least important first; every layer's best unit is never listed."""
    pairs = []
    for li, s in enumerate(scores):
        best = int(np.argmax(s))
        pairs += [(float(s[j]), li, j) for j in range(len(s)) if j != best]
    pairs.sort()
    return [(li, j) for _, li, j in pairs]


def measure(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int | None]:
    """``(parameters, FLOPs)`` of ``module`` by bayesguide's counter (the candidates' numbers)."""
    structure = analyse(module)
    positions = output_positions(module, structure, tuple(input_shape))
    params, flops = costs(structure, {}, positions)
    return params, (None if flops < 0 else flops)


def prune_path(net: nn.Module, input_shape: Sequence[int], n_candidates: int) -> list[PrunedNet]:
    """Torch-Pruning's global group-norm pruning of ``net`` at the path's unit counts, largest first."""
    if tp is None:
        raise ImportError("the Torch-Pruning peer needs the 'torch-pruning' package (the 'peers' extra)")
    example = torch.zeros(1, *input_shape)
    scores = group_importance(net, example)
    order = _global_order(scores)
    total = sum(len(s) for s in scores)
    names = {id(m): n for n, m in net.named_modules()}
    layer_names = [names[id(m)] for m in _prunable(net)]
    path = []
    for r in removal_counts(total, len(order), n_candidates):
        cut = copy.deepcopy(net).eval()
        modules = dict(cut.named_modules())
        drop: dict[int, list[int]] = {}
        for li, j in order[:r]:
            drop.setdefault(li, []).append(j)
        if drop:
            dg = tp.DependencyGraph().build_dependency(cut, example_inputs=example)
            for li, idxs in sorted(drop.items()):
                layer = modules[layer_names[li]]
                fn = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
                dg.get_pruning_group(layer, fn, idxs=sorted(idxs)).prune()
        widths = tuple(_n_out(modules[n]) for n in layer_names)
        params, flops = measure(cut, input_shape)
        path.append(PrunedNet(f"torch-pruning: {r} lowest group-norm units removed", cut, widths, params, flops))
    return path


def fit_and_path(
    build: Callable[[], nn.Module], X: torch.Tensor, y: torch.Tensor, *, likelihood: str, noise: float | None,
    reg: float, steps: int, lr: float, batch_size: int | None, seed: int, n_candidates: int,
) -> list[PrunedNet]:
    """Seeded initialisation (``torch.manual_seed(seed)`` then ``build()``), training, pruning path."""
    torch.manual_seed(seed)
    net = build()
    train_group_norm(net, X, y, likelihood=likelihood, noise=noise, reg=reg, steps=steps, lr=lr,
                     batch_size=batch_size, seed=seed)
    return prune_path(net, tuple(X.shape[1:]), n_candidates)
