"""benchmarks/_torch_pruning_peer.py: Torch-Pruning's ranking and cuts, checked against hand computations."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("torch_pruning")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _torch_pruning_peer as peer

from bayesguide.pruning.path import _removal_counts


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))


def _lin(net: nn.Sequential, i: int) -> nn.Linear:
    layer = net[i]
    assert isinstance(layer, nn.Linear)
    return layer


def _hand_importance(net: nn.Sequential) -> list[np.ndarray]:
    """Group L2 importance written out: mean of the unit's squared incoming row norm and squared
    outgoing column norm, divided by the layer's mean (Torch-Pruning's "mean" normaliser)."""
    out = []
    for i, j in ((0, 2), (2, 4)):
        w_in, w_out = _lin(net, i).weight.detach().double(), _lin(net, j).weight.detach().double()
        imp = 0.5 * (w_in.pow(2).sum(1) + w_out.pow(2).sum(0))
        out.append((imp / imp.mean()).numpy())
    return out


def test_importance_is_the_group_norm_by_hand() -> None:
    net = _mlp()
    got = peer.group_importance(net, torch.zeros(1, 5))
    for g, want in zip(got, _hand_importance(net), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5)


@pytest.mark.parametrize(("total", "removable", "n"), [(200, 198, 4), (10, 9, 2), (528, 526, 40), (32, 31, 40)])
def test_removal_counts_match_the_geometric_path(total: int, removable: int, n: int) -> None:
    # the points bg.pruning_path(spacing="geometric") walks, min width 1
    assert peer.removal_counts(total, removable, n) == sorted(_removal_counts(removable, total, n, "geometric"))


def test_each_cut_equals_the_full_net_with_the_removed_units_silenced() -> None:
    net = _mlp(1).eval()
    X = torch.randn(64, 5)
    path = peer.prune_path(net, (5,), n_candidates=5)
    imp = _hand_importance(net)
    total = sum(len(s) for s in imp)
    # the global order by hand: every unit but each layer's best, least important first
    order = sorted((float(s[j]), li, j) for li, s in enumerate(imp) for j in range(len(s)) if j != int(np.argmax(s)))
    assert [total - sum(c.widths) for c in path] == peer.removal_counts(total, len(order), 5)
    for cand in path:
        removed = order[: total - sum(cand.widths)]
        masked = _mlp(1).eval()
        masked.load_state_dict(net.state_dict())
        with torch.no_grad():
            for _, li, j in removed:  # a removed unit's output no longer reaches the next layer
                _lin(masked, 2 * li + 2).weight[:, j] = 0.0
            want = masked(X)
        torch.testing.assert_close(cand.predict(X), want, rtol=1e-5, atol=1e-6)
        w = cand.widths
        assert cand.n_params == sum(p.numel() for p in cand.module.parameters())
        assert cand.flops == 2 * (5 * w[0] + w[0] * w[1] + w[1] * 3)
        assert all(v >= 1 for v in w)


def test_the_regulariser_shrinks_the_group_norms() -> None:
    X, y = torch.randn(128, 5), torch.randint(0, 3, (128,))
    norms = []
    for reg in (0.0, 0.3):
        net = _mlp(2)
        peer.train_group_norm(net, X, y, likelihood="categorical", noise=None, reg=reg, steps=60, lr=1e-2,
                              batch_size=32, seed=0)
        norms.append(float(_lin(net, 0).weight.detach().norm() + _lin(net, 2).weight.detach().norm()))
    assert norms[1] < 0.8 * norms[0]


def test_negative_strength_is_refused() -> None:
    with pytest.raises(ValueError, match="reg must be >= 0"):
        peer.train_group_norm(_mlp(), torch.randn(8, 5), torch.randint(0, 3, (8,)), likelihood="categorical",
                              noise=None, reg=-1.0, steps=1, lr=1e-2, batch_size=None, seed=0)
