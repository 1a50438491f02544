"""Surgery: exact equivalence with zeroed incoming weights, folding, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bayesguide.pruning import UnsupportedStructureError, shrink

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _randomise_bn(net: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)


def _zeroed(net: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """The reference: ``net`` with the removed units' incoming weights (not bias) set to 0."""
    ref = copy.deepcopy(net).eval()
    with torch.no_grad():
        for name, mask in keep.items():
            ref.get_submodule(name).weight[~mask] = 0.0
    return ref


class _Residual(nn.Module):
    """Not a chain: ``x + f(x)``."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def _mlp(widths: list[int], act: str, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = 5
    for w in widths:
        layers += [nn.Linear(d, w)] + ([nn.BatchNorm1d(w)] if bn else []) + [ACTS[act]()]
        d = w
    return nn.Sequential(*layers, nn.Linear(d, 3))


def _cnn(c1: int, c2: int, act: str, pad2: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        ACTS[act](),
        nn.Conv2d(c1, c2, 3, padding=pad2),
        nn.BatchNorm2d(c2),
        ACTS[act](),
        nn.Flatten(),
        nn.Linear(c2 * (6 - 2 + 2 * pad2) ** 2, 4),
        ACTS[act](),
        nn.Linear(4, 2),
    )


@pytest.mark.parametrize("act", sorted(ACTS))
def test_mlp_dead_units_are_removed_and_their_constant_folded(act: str) -> None:
    net = _mlp([6, 5], act, bn=False).eval()
    keep = {
        "0": torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool),
        "2": torch.tensor([0, 1, 1, 0, 1], dtype=torch.bool),
    }
    ref = _zeroed(net, keep)
    small, _ = shrink(ref, keep)
    assert [small[0].out_features, small[2].in_features, small[2].out_features, small[4].in_features] == [
        4,
        4,
        3,
        3,
    ]
    x = torch.randn(16, 5)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)
    # the fold moved the constants into the next bias: the removed units mattered
    assert not torch.allclose(small[4].bias, net[4].bias)


def test_fold_formula_by_hand() -> None:
    """next_bias += W_next[:, j] · act(b_j) for a sigmoid unit with zero weights."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight[1] = 0.0
        net[0].bias.copy_(torch.tensor([0.3, 0.7]))
        net[2].weight.copy_(torch.tensor([[2.0, -3.0]]))
        net[2].bias.fill_(0.5)
    small, _ = shrink(net, {"0": torch.tensor([True, False])})
    expected = 0.5 + (-3.0) * torch.sigmoid(torch.tensor(0.7))
    torch.testing.assert_close(small[2].bias, expected.reshape(1))


def test_input_is_never_mutated() -> None:
    net = _mlp([4], "tanh", bn=True).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    shrink(net, {"0": torch.tensor([True, False, True, False])})
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net[0].out_features == 4


def test_nothing_dead_gives_an_equal_network_of_the_same_size() -> None:
    net = _cnn(3, 4, "relu", 1).eval()
    _randomise_bn(net, torch.Generator().manual_seed(1))
    keep = {
        "0": torch.ones(3, dtype=torch.bool),
        "3": torch.ones(4, dtype=torch.bool),
        "7": torch.ones(4, dtype=torch.bool),
    }
    small, plan = shrink(net, keep)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in net.parameters())
    x = torch.randn(3, 2, 6, 6)
    torch.testing.assert_close(small(x), net(x), atol=0, rtol=0)
    assert plan.kept == {"0": (0, 1, 2), "3": (0, 1, 2, 3), "7": (0, 1, 2, 3)}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_cnn_with_batchnorm_through_unpadded_conv_and_flatten(act: str) -> None:
    net = _cnn(5, 4, act, 0).eval()
    _randomise_bn(net, torch.Generator().manual_seed(2))
    keep = {
        "0": torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool),
        "3": torch.tensor([0, 1, 1, 0], dtype=torch.bool),
        "7": torch.tensor([1, 1, 0, 1], dtype=torch.bool),
    }
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    assert plan.retained == {"0": (), "3": (), "7": ()}
    assert small[3].in_channels == 3 and small[7].in_features == 2 * 16 and small[6 - 2].num_features == 2
    x = torch.randn(4, 2, 6, 6)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)


def test_zero_padded_next_conv_retains_units_with_a_nonzero_constant() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Sigmoid(),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.Flatten(),
        nn.Linear(2 * 25, 2),
    ).eval()
    keep = {"0": torch.tensor([True, False, False]), "2": torch.ones(2, dtype=torch.bool)}
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    assert plan.retained["0"] == (1, 2) and small[0].out_channels == 3
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(small(x), ref(x), atol=1e-6, rtol=0)


def test_zero_padded_next_conv_removes_units_whose_constant_is_zero() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.Flatten(),
        nn.Linear(2 * 25, 2),
    ).eval()
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([0.2, -0.5, 0.0]))
    keep = {"0": torch.tensor([True, False, False]), "2": torch.ones(2, dtype=torch.bool)}
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    assert plan.retained["0"] == () and small[0].out_channels == 1
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(small(x), ref(x), atol=1e-6, rtol=0)


def test_bias_free_next_layer_folds_into_the_following_batchnorm() -> None:
    net = nn.Sequential(
        nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)
    ).eval()
    _randomise_bn(net, torch.Generator().manual_seed(3))
    keep = {"0": torch.tensor([True, False, True, False]), "2": torch.ones(3, dtype=torch.bool)}
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    assert "3" in plan.mean_shift and small[0].out_features == 2
    x = torch.randn(5, 3)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)


def test_batchnorm1d_after_flatten_is_sliced_by_channel_blocks() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Flatten(), nn.BatchNorm1d(3 * 4), nn.Sigmoid(), nn.Linear(12, 2)
    ).eval()
    _randomise_bn(net, torch.Generator().manual_seed(4))
    keep = {"0": torch.tensor([False, True, False])}
    ref = _zeroed(net, keep)
    small, _ = shrink(ref, keep)
    assert small[3].num_features == 4 and small[5].in_features == 4
    x = torch.randn(3, 1, 3, 3)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    act=st.sampled_from(sorted(ACTS)),
    bn=st.booleans(),
    data=st.data(),
)
def test_property_mlp_equivalence(widths: list[int], act: str, bn: bool, data: st.DataObject) -> None:
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    net = _mlp(widths, act, bn).eval()
    if bn:
        _randomise_bn(net, torch.Generator().manual_seed(0))
    names = [n for n, m in net.named_children() if isinstance(m, nn.Linear)][:-1]
    keep = {}
    for name, w in zip(names, widths):
        mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=w, max_size=w)))
        mask[data.draw(st.integers(0, w - 1))] = True
        keep[name] = mask
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    assert [len(plan.kept[n]) for n in names] == [int(keep[n].sum()) for n in names]
    x = torch.randn(8, 5)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    c1=st.integers(1, 4),
    c2=st.integers(1, 4),
    act=st.sampled_from(sorted(ACTS)),
    pad2=st.sampled_from([0, 1]),
    data=st.data(),
)
def test_property_cnn_equivalence(c1: int, c2: int, act: str, pad2: int, data: st.DataObject) -> None:
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    net = _cnn(c1, c2, act, pad2).eval()
    _randomise_bn(net, torch.Generator().manual_seed(1))
    keep = {}
    for name, n in (("0", c1), ("3", c2), ("7", 4)):
        mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        mask[0] = True
        keep[name] = mask
    ref = _zeroed(net, keep)
    small, plan = shrink(ref, keep)
    if pad2 == 0:  # everything folds: the widths are what was asked
        assert plan.retained["0"] == ()
    assert set(plan.kept["0"]) >= set(keep["0"].nonzero().flatten().tolist())
    x = torch.randn(3, 2, 6, 6)
    torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)), "groups=2"),
        (
            nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)),
            "track_running_stats=False",
        ),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(2), nn.Linear(4, 2)), "only Flatten"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(3, 2)), "without a Flatten"),
        (nn.Sequential(nn.Linear(3, 4), nn.Conv2d(4, 2, 1)), "fed the 2-D output"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 2)), "unsupported layer Softmax"),
        (_Residual(), "branches or residual"),
    ],
)
def test_unsupported_structures_are_named(net: nn.Module, match: str) -> None:
    with pytest.raises(UnsupportedStructureError, match=match):
        shrink(net, {})


def test_mask_of_wrong_length_is_refused() -> None:
    net = _mlp([3], "relu", bn=False)
    with pytest.raises(ValueError, match=r"keep mask of layer '0' has shape \(2,\), expected \(3,\)"):
        shrink(net, {"0": torch.tensor([True, False])})
