"""Issue 14, items 2 (a module used twice), 11 (layers with zero units or inputs) and 12 (a
bare layer as a chain of one): what :func:`bayesguide.network.parse_network` reads must be
what the network computes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bayesguide.network import functional_forward, parse_network, qualified

F64 = torch.float64


def test_a_layer_used_twice_is_refused_naming_both_positions() -> None:
    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(8, 1))
    pattern = (r"the Linear at position 4 \(name '4'\) is the same module instance as the one at "
               r"position 2 \(name '2'\): a module used twice is applied twice by the network but read "
               r"once by bayesguide; give each position its own instance")
    with pytest.raises(ValueError, match=pattern):
        parse_network(net)


def test_a_shared_activation_is_refused_too() -> None:
    # named_children() lists the Tanh once, so the chain would skip its second use
    act = nn.Tanh()
    net = nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 1))
    with pytest.raises(ValueError, match=r"the Tanh at position 3 \(name '3'\) is the same module instance "
                                         r"as the one at position 1 \(name '1'\)"):
        parse_network(net)


def test_a_layer_shared_across_nested_sequentials_is_refused() -> None:
    shared = nn.Linear(6, 6)
    net = nn.Sequential(nn.Linear(3, 6), nn.Sequential(shared, nn.ReLU()), nn.Sequential(nn.ReLU(), shared),
                        nn.Linear(6, 2))
    with pytest.raises(ValueError, match=r"at position 4 \(name '2\.1'\) is the same module instance as the "
                                         r"one at position 1 \(name '1\.0'\)"):
        parse_network(net)


def test_a_shared_nested_sequential_is_refused() -> None:
    block = nn.Sequential(nn.Linear(5, 5), nn.ReLU())
    net = nn.Sequential(nn.Linear(3, 5), block, block, nn.Linear(5, 1))
    with pytest.raises(ValueError, match=r"the Sequential at position 3 \(name '2'\) is the same module "
                                         r"instance as the one at position 1 \(name '1'\)"):
        parse_network(net)


def test_distinct_instances_parse_into_the_network_they_came_from() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                        nn.Linear(8, 1)).to(F64)
    layers, sites = parse_network(net)
    assert [ly.name for ly in layers] == [str(i) for i in range(7)]
    params = dict(net.named_parameters())
    values = {s.name: s.pack(params) for s in sites}
    x = torch.randn(5, 4, dtype=F64)
    torch.testing.assert_close(functional_forward(layers, sites, values, x), net(x), rtol=0, atol=0)


def _zero_sized(make: type[nn.Module], *args: int) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns when initialising an empty tensor
        return make(*args)


@pytest.mark.parametrize(
    ("net", "pattern"),
    [
        (lambda: nn.Sequential(_zero_sized(nn.Linear, 4, 0), nn.ReLU(), _zero_sized(nn.Linear, 0, 1)),
         r"Linear at position 0 \(name '0'\) has 0 units \(out_features\); every layer needs at least one"),
        (lambda: nn.Sequential(_zero_sized(nn.Linear, 0, 3), nn.ReLU(), nn.Linear(3, 1)),
         r"Linear at position 0 \(name '0'\) has 0 inputs \(in_features\)"),
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), _zero_sized(nn.Linear, 3, 0)),
         r"Linear at position 2 \(name '2'\) has 0 units \(out_features\)"),
        (lambda: nn.Sequential(_zero_sized(nn.Conv2d, 1, 0, 3), nn.Flatten(), nn.Linear(1, 1)),
         r"Conv2d at position 0 \(name '0'\) has 0 units \(out_channels\)"),
        (lambda: _zero_sized(nn.Linear, 4, 0), r"Linear at position 0 \(name ''\) has 0 units"),
    ],
)
def test_a_layer_with_zero_units_or_inputs_is_refused(net: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse_network(net())  # type: ignore[operator]


def test_a_bare_linear_is_a_chain_of_one_layer() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(3, 2).to(F64)
    layers, sites = parse_network(lin)
    assert [(ly.name, ly.position, ly.module) for ly in layers] == [("", 0, lin)]
    assert [(s.name, s.param_names, s.n_units, s.group_size, s.prunable) for s in sites] == [
        ("units", ("weight", "bias"), 2, 4, False)
    ]
    # the names are those of the module's own parameters and of named_modules()
    assert set(sites[0].param_names) == {k for k, _ in lin.named_parameters()}
    assert dict(lin.named_modules())[layers[0].name] is lin
    params = dict(lin.named_parameters())
    x = torch.randn(6, 3, dtype=F64)
    out = functional_forward(layers, sites, {"units": sites[0].pack(params)}, x)
    torch.testing.assert_close(out, lin(x), rtol=0, atol=0)


def test_a_bare_conv2d_and_a_bias_free_linear_are_accepted() -> None:
    _, sites = parse_network(nn.Conv2d(2, 3, 3))
    assert [(s.name, s.param_names, s.group_size) for s in sites] == [("units", ("weight", "bias"), 19)]
    _, sites = parse_network(nn.Linear(5, 1, bias=False))
    assert [(s.name, s.param_names, s.group_size) for s in sites] == [("units", ("weight",), 5)]


@pytest.mark.parametrize(
    ("net", "exc", "pattern"),
    [
        (nn.ReLU(), TypeError, r"needs an nn\.Sequential chain of layers or a single Linear / Conv2d layer, "
                               r"got ReLU"),
        (nn.LSTM(3, 3), TypeError, r"got LSTM"),
        (nn.BatchNorm1d(3), ValueError, r"the network has no Linear or Conv2d layer"),
    ],
)
def test_a_bare_layer_without_weights_is_refused(net: nn.Module, exc: type[Exception], pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        parse_network(net)


def test_qualified_names() -> None:
    assert qualified("block.1", "weight") == "block.1.weight"
    assert qualified("", "units") == "units"
