"""The hand FLOP count of candidates (`bayesguide.pruning.structure.costs`) against
`torch.utils.flop_counter.FlopCounterMode`, on the full networks and on pruned ones.

Both count a multiply-add as 2 FLOPs and leave out biases, BatchNorm and activations, so
the counts must be equal: ``FlopCounterMode`` is the independent answer, and the hand
count stays because it prices widths that were never built (the budget decisions).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import bayesguide as bg
from bayesguide.pruning.structure import analyse, costs, output_positions


def _torch_flops(module: nn.Module, example_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one example, counted by torch."""
    p = next(module.parameters())
    x = torch.zeros((1, *example_shape), dtype=p.dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(x)
    return int(counter.get_total_flops())


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3))


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 3 * 3, 8), nn.ReLU(),
        nn.Linear(8, 4),
    )


@pytest.mark.parametrize(("make", "shape"), [(_mlp, (5,)), (_cnn, (1, 8, 8))], ids=["linear", "conv2d"])
def test_hand_count_of_the_full_network_equals_flop_counter(make: type[nn.Module], shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = make()
    structure = analyse(net)
    full = {b.layer.name: b.n_units for b in structure.blocks}
    _, flops = costs(structure, full, output_positions(net, structure, shape))
    assert flops == _torch_flops(net, shape) > 0


@pytest.mark.parametrize(("make", "shape", "keep"), [(_mlp, (5,), {"0": 4, "2": 3}),
                                                      (_cnn, (1, 8, 8), {"0": 2, "3": 3, "6": 5})],
                         ids=["linear", "conv2d"])
def test_hand_count_of_a_pruned_candidate_equals_flop_counter(make: type[nn.Module], shape: tuple[int, ...],
                                                              keep: dict[str, int]) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(16, *shape, generator=g)
    y = torch.randint(0, 3 if shape == (5,) else 4, (16,), generator=g)
    model = bg.GuidedModel(make(), bg.GuidedGroupLasso(1.0))
    fit = bg.fit_map(model, X, y, steps=3, lr=1e-2, progress=False)
    cand = bg.prune(fit, keep=keep, X=X, y=y)
    assert list(cand.widths) == list(keep.values())
    assert cand.flops is not None and cand.original_flops is not None
    assert cand.flops == _torch_flops(cand.module, shape)
    assert cand.original_flops == _torch_flops(fit.module, shape)
    assert cand.flops < cand.original_flops
