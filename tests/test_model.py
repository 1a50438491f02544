"""GuidedModel: network parsing, data checks, and the Pyro log joint against the lean one."""

from __future__ import annotations

import copy
import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from scipy import stats
from torch import nn

import bayesguide as bg
from bayesguide import guidance
from bayesguide.priors import UnitGroupLaplace, UnitLaplace, UnitNormal

F64 = torch.float64


# --------------------------------------------------------------------------- tiny networks


def _mlp(n_in: int = 4, hidden: tuple[int, ...] = (5, 3), n_out: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers).to(F64)


def _cnn(n_out: int = 3) -> nn.Sequential:
    # (B, 2, 5, 5) -> conv3x3 (4, 3, 3) -> BN -> ReLU -> conv2x3 (3, 2, 1) -> Flatten -> Linear(6, n_out)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, (2, 3)),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6, n_out),
    ).to(F64)


def _random_values(model: bg.GuidedModel) -> dict[str, torch.Tensor]:
    return {s.name: 0.7 * torch.randn(s.n_units, s.group_size, dtype=F64) for s in model.sites}


def _load(net: nn.Module, model: bg.GuidedModel, values: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``net`` whose parameters are set, one by one, to the site values."""
    out = copy.deepcopy(net)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for site in model.sites:
            for name, tensor in site.unpack(values[site.name]).items():
                params[name].copy_(tensor)
    return out


# --------------------------------------------------------------------------- structure


def test_mlp_sites_names_and_sizes() -> None:
    net = _mlp(4, (5, 3), 2)
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1))
    assert [s.name for s in model.sites] == ["0.units", "2.units", "4.units"]
    assert [s.n_units for s in model.sites] == [5, 3, 2]
    assert [s.group_size for s in model.sites] == [5, 6, 4]  # in + 1 (bias)
    assert [s.prunable for s in model.sites] == [True, True, False]
    assert [s.name for s in model.prunable_sites] == ["0.units", "2.units"]
    assert model.sites[1].param_names == ("2.weight", "2.bias")
    assert model.sites[1].layer.position == 2
    assert "prunable widths=[5, 3]" in repr(model)


def test_cnn_sites_with_batchnorm_and_flatten() -> None:
    model = bg.GuidedModel(_cnn(3), bg.GuidedGroupLasso(0.1))
    assert [s.name for s in model.sites] == ["0.units", "1.units", "3.units", "6.units"]
    assert [s.n_units for s in model.sites] == [4, 4, 3, 3]
    # Conv2d: C_in * kh * kw + 1; BatchNorm: γ and β; Linear: in + 1
    assert [s.group_size for s in model.sites] == [2 * 3 * 3 + 1, 2, 4 * 2 * 3 + 1, 6 + 1]
    assert [s.prunable for s in model.sites] == [True, False, True, False]
    assert [s.name for s in model.prunable_sites] == ["0.units", "3.units"]
    assert [ly.name for ly in model.layers] == [str(i) for i in range(7)]


def test_nested_sequential_names() -> None:
    net = nn.Sequential(
        nn.Linear(3, 4),
        nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 2), nn.ReLU())),
        nn.Linear(2, 2),
    ).to(F64)
    model = bg.GuidedModel(net, bg.GuidedNormal(0.1))
    assert [s.name for s in model.sites] == ["0.units", "1.0.units", "1.2.0.units", "2.units"]
    assert [s.prunable for s in model.sites] == [True, True, True, False]
    assert model.sites[2].param_names == ("1.2.0.weight", "1.2.0.bias")
    assert [ly.position for ly in model.layers] == [0, 1, 2, 3, 4, 5]
    chain = model.chain(copy.deepcopy(net))
    assert [ly.name for ly in chain] == ["0", "1.0", "1.1", "1.2.0", "1.2.1", "2"]
    assert isinstance(chain[3].module, nn.Linear)
    assert chain[3].module is not net[1][2][0]


def test_batchnorm1d_bias_free_and_non_affine_layers() -> None:
    net = nn.Sequential(
        nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3),
        nn.BatchNorm1d(3, affine=False), nn.Linear(3, 2),
    ).to(F64)
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1))
    assert [s.name for s in model.sites] == ["0.units", "1.units", "3.units", "5.units"]
    assert [s.group_size for s in model.sites] == [3, 2, 5, 4]
    assert model.sites[0].param_names == ("0.weight",)
    assert [s.prunable for s in model.sites] == [True, False, True, False]


def test_site_pack_layout_and_unpack_round_trip() -> None:
    net = _cnn(2)
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1))
    params = dict(net.named_parameters())
    conv = model.sites[0]
    packed = conv.pack(params)
    assert packed.shape == (4, 19)
    w, b = net[0].weight, net[0].bias
    for j in range(4):  # row j = [filter j flattened, bias j]
        expected_row = torch.cat([w[j].reshape(-1), b[j : j + 1]])
        assert torch.equal(packed[j], expected_row)
    lin = model.sites[3]
    packed_lin = lin.pack(params)
    assert torch.equal(packed_lin[:, :6], net[6].weight)
    assert torch.equal(packed_lin[:, 6], net[6].bias)
    for site in model.sites:
        back = site.unpack(site.pack(params))
        assert set(back) == set(site.param_names)
        for name, tensor in back.items():
            assert tensor.shape == params[name].shape
            assert torch.equal(tensor, params[name])
        value = torch.randn(site.n_units, site.group_size, dtype=F64)
        assert torch.equal(site.pack(site.unpack(value)), value)


def test_coefficients_and_site_distributions() -> None:
    spec = {"2": guidance.uniform(), "*": guidance.linear()}
    model = bg.GuidedModel(_mlp(4, (4, 2), 3), bg.GuidedLaplace(0.5, spec))
    torch.testing.assert_close(model.coefficients["0.units"], torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=F64))
    torch.testing.assert_close(model.coefficients["2.units"], torch.ones(2, dtype=F64))
    torch.testing.assert_close(model.coefficients["4.units"], torch.ones(3, dtype=F64))  # plain prior
    d0 = model.site_distribution(model.sites[0])
    assert isinstance(d0, UnitLaplace)
    torch.testing.assert_close(d0.rate, 0.5 * torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=F64))
    out = model.site_distribution(model.sites[2])
    assert isinstance(out, UnitNormal)  # default plain prior: L2 with the same strength, g = 1
    torch.testing.assert_close(out.rate, torch.full((3,), 0.5, dtype=F64))
    assert model.site_distribution(model.sites[0], torch.float32).rate.dtype == torch.float32


def test_custom_plain_prior() -> None:
    model = bg.GuidedModel(_mlp(3, (4,), 2), bg.GuidedNormal(0.5), plain_prior=bg.GuidedGroupLasso(2.0))
    d = model.site_distribution(model.sites[1])
    assert isinstance(d, UnitGroupLaplace)
    # a given plain prior keeps its own guidance (here the default linear(): g = [1/2, 1])
    torch.testing.assert_close(d.rate, 2.0 * math.sqrt(5) * torch.tensor([0.5, 1.0], dtype=F64))
    # the prunable layer still uses the main prior
    assert isinstance(model.site_distribution(model.sites[0]), UnitNormal)


def test_guidance_mapping_without_entry_for_prunable_layer() -> None:
    prior = bg.GuidedLaplace(0.1, {"0": guidance.uniform()})
    with pytest.raises(ValueError, match=r"no entry for prunable layer '2' and no '\*' default"):
        bg.GuidedModel(_mlp(4, (5, 3), 2), prior)


def test_unit_norms_by_hand() -> None:
    net = _mlp(3, (4,), 2)
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1))
    norms = model.unit_norms(net)
    assert list(norms) == ["0"]
    w, b = net[0].weight.detach(), net[0].bias.detach()
    expected = [math.sqrt(sum(float(v) ** 2 for v in w[j]) + float(b[j]) ** 2) for j in range(4)]
    torch.testing.assert_close(norms["0"], torch.tensor(expected, dtype=F64), rtol=1e-12, atol=0)


def test_site_blocks_are_the_parameters_without_copies_and_unit_norms_match_the_packed_matrix() -> None:
    net = _cnn(2).double()
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1))
    params = dict(net.named_parameters())
    for site in model.sites:
        blocks = site.blocks(params)
        columns = [b.unsqueeze(-1) if b.dim() == 1 else b for b in blocks]  # a 1-D block is one column
        assert torch.equal(torch.cat(columns, -1), site.pack(params))
        for name, block in zip(site.param_names, blocks):
            assert block.data_ptr() == params[name].data_ptr()  # views, no copy
            if params[name].dim() <= 2:
                assert block is params[name]  # a Linear weight, a bias: itself (no view node in the graph)
    with torch.no_grad():
        net[0].weight[1] = 0.0
        net[0].bias[1] = 0.0
        net[6].weight.mul_(1e200)  # squares would overflow float64: hypot does not
    for site in model.prunable_sites:
        want = torch.linalg.vector_norm(site.pack(params), dim=-1).detach()
        got = model.unit_norms(net)[site.layer.name]
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
        assert torch.isfinite(got).all()
    assert model.unit_norms(net)[model.sites[0].layer.name][1] == 0


# --------------------------------------------------------------------------- unsupported networks


class _Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [(nn.LSTM(4, 4), "LSTM"), (_Scale(), "_Scale"), (nn.MaxPool2d(2), "MaxPool2d")],
)
def test_unsupported_layer_named_with_position(bad: nn.Module, type_name: str) -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), bad, nn.Linear(4, 2))
    pattern = rf"unsupported layer {type_name} at position 2 \(name '2'\); supported layers: Linear"
    with pytest.raises(TypeError, match=pattern):
        bg.GuidedModel(net, bg.GuidedLaplace(0.1))


def test_unsupported_layer_in_nested_sequential() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.MaxPool1d(1)), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"unsupported layer MaxPool1d at position 2 \(name '1\.1'\)"):
        bg.GuidedModel(net, bg.GuidedLaplace(0.1))


def test_non_sequential_net() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.lin(x)

    pattern = (r"nn\.Sequential chain of layers or a single Linear / Conv2d layer, got Residual; "
               r".*branches or residual")
    with pytest.raises(TypeError, match=pattern):
        bg.GuidedModel(Residual(), bg.GuidedLaplace(0.1))


def test_conv_padding_mode_other_than_zeros() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"Conv2d at position 0 \(name '0'\) uses padding_mode='reflect'"):
        bg.GuidedModel(net, bg.GuidedLaplace(0.1))


def test_network_without_weighted_layer() -> None:
    with pytest.raises(ValueError, match="the network has no Linear or Conv2d layer"):
        bg.GuidedModel(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), bg.GuidedLaplace(0.1))


# --------------------------------------------------------------------------- constructor arguments


def test_noise_with_non_gaussian_likelihood() -> None:
    with pytest.raises(ValueError, match="noise is only used by the gaussian likelihood, not 'categorical'"):
        bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "categorical", noise=0.5)
    with pytest.raises(ValueError, match="noise is only used by the gaussian likelihood, not 'bernoulli'"):
        bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "bernoulli", noise=0.5)


@pytest.mark.parametrize("noise", [0.0, -1.0, math.inf, math.nan, "0.5"])
def test_noise_must_be_positive_finite(noise: object) -> None:
    with pytest.raises(ValueError, match="noise must be a positive finite standard deviation or None"):
        bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "gaussian", noise=noise)  # type: ignore[arg-type]


def test_numpy_float32_noise_is_accepted() -> None:
    model = bg.GuidedModel(_mlp(n_out=1), bg.GuidedLaplace(0.1), "gaussian", noise=np.float32(0.5))
    assert model.noise == 0.5


def test_noise_settings() -> None:
    fixed = bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "gaussian", noise=2)
    assert fixed.noise == 2.0
    assert not fixed.learns_noise
    learned = bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "gaussian")
    assert learned.learns_noise
    assert not bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "categorical").learns_noise
    with pytest.raises(ValueError, match="this model learns the noise σ: pass its current value"):
        learned.noise_tensor(None, F64)


def test_unknown_likelihood_lists_choices() -> None:
    pattern = r"unknown likelihood 'poisson'; choose one of: categorical, gaussian, bernoulli"
    with pytest.raises(ValueError, match=pattern):
        bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), "poisson")


@pytest.mark.parametrize("prior", ["l1", bg.GuidedLaplace, 0.1, guidance.linear()])
def test_prior_of_wrong_type(prior: object) -> None:
    with pytest.raises(TypeError, match=r"prior must be a unit prior such as bg\.GuidedLaplace.*, got "):
        bg.GuidedModel(_mlp(), prior)  # type: ignore[arg-type]


def test_plain_prior_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="plain_prior"):
        bg.GuidedModel(_mlp(), bg.GuidedLaplace(0.1), plain_prior="l2")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- prepare_data


def test_prepare_data_converts_numpy_and_keeps_net_unchanged() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).to(F64)
    state = copy.deepcopy(net.state_dict())
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1), "categorical")
    X, y = model.prepare_data(np.arange(15, dtype=np.float32).reshape(5, 3), np.array([0, 1, 1, 0, 1]))
    assert X.dtype == F64 and X.shape == (5, 3)
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 1, 0, 1]
    assert net.training  # prepare_data probes a copy: mode and running statistics unchanged
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_prepare_data_gaussian_and_bernoulli_shapes() -> None:
    X = torch.randn(4, 4, dtype=F64)
    g = bg.GuidedModel(_mlp(n_out=1), bg.GuidedLaplace(0.1), "gaussian", noise=1.0)
    _, yg = g.prepare_data(X, [0.5, 1.0, -2.0, 3.0])
    assert yg.shape == (4, 1) and yg.dtype == F64
    b = bg.GuidedModel(_mlp(n_out=2), bg.GuidedLaplace(0.1), "bernoulli")
    _, yb = b.prepare_data(X, np.array([[True, False]] * 4))
    assert yb.shape == (4, 2) and yb.dtype == F64
    assert yb.tolist() == [[1.0, 0.0]] * 4


@pytest.mark.parametrize(
    ("likelihood", "X", "y", "exc", "pattern"),
    [
        ("categorical", torch.randn(5, 4), torch.zeros(4, dtype=torch.long), ValueError,
         r"X has 5 rows but y has 4: they must have the same length"),
        ("categorical", torch.tensor([[0.0] * 4, [1.0, math.nan, 0.0, 0.0], [0.0] * 4]),
         torch.zeros(3, dtype=torch.long), ValueError, r"X contains NaN or inf \(first at row 1\)"),
        ("gaussian", torch.randn(3, 4), torch.tensor([0.0, 1.0, math.inf]), ValueError,
         r"y contains NaN or inf \(first at row 2\)"),
        ("categorical", torch.randn(3, 5), torch.zeros(3, dtype=torch.long), ValueError,
         r"X of shape \(3, 5\) does not fit the network's input"),
        ("categorical", torch.randn(3, 4), torch.tensor([0, 3, 1]), ValueError,
         r"categorical labels must lie in \[0, 2\] for a network with 3 outputs; found labels in \[0, 3\]"),
        ("categorical", torch.randn(3, 4), torch.tensor([0.0, 1.0, 0.5]), ValueError,
         r"categorical targets must be integers"),
        ("categorical", torch.randn(4), torch.zeros(4, dtype=torch.long), ValueError,
         r"X must have one row per example \(at least 2-D\), got shape \(4,\)"),
        ("categorical", torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), ValueError,
         r"X and y are empty"),
        ("categorical", np.array([["a"] * 4] * 2), np.zeros(2), TypeError, r"X must be (an array|numeric)"),
        ("bernoulli", torch.randn(2, 4), torch.tensor([[0.0, 1.0, 2.0]] * 2), ValueError,
         r"bernoulli targets must be 0 or 1"),
        ("gaussian", torch.randn(2, 4), torch.zeros(2, 2), ValueError,
         r"gaussian targets of shape \(2, 2\) do not match a network with 3 outputs"),
    ],
)
def test_prepare_data_errors(
    likelihood: str, X: object, y: object, exc: type[Exception], pattern: str
) -> None:
    model = bg.GuidedModel(_mlp(4, (5,), 3), bg.GuidedLaplace(0.1), likelihood)
    with pytest.raises(exc, match=pattern):
        model.prepare_data(X, y)


def test_prepare_data_non_2d_output() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3)).to(F64)
    model = bg.GuidedModel(net, bg.GuidedLaplace(0.1), "gaussian", noise=1.0)
    with pytest.raises(ValueError, match=r"the network's output must be 2-D \(examples × outputs\), got"):
        model.prepare_data(torch.randn(2, 1, 4, 4), torch.zeros(2))


# --------------------------------------------------------------------------- the log joint: Pyro vs lean


def _pyro_trace(
    model: bg.GuidedModel, values: dict[str, torch.Tensor], *args: object, **kwargs: object
) -> Trace:
    return poutine.trace(poutine.condition(model.model, data=values)).get_trace(*args, **kwargs)


def _case(name: str) -> tuple[bg.GuidedModel, nn.Module, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    n = 10
    if name == "cnn":
        net = _cnn(3).eval()
        X = torch.randn(n, 2, 5, 5, dtype=F64)
        with torch.no_grad():  # non-trivial running statistics
            net[1].running_mean.uniform_(-0.5, 0.5)
            net[1].running_var.uniform_(0.5, 2.0)
        model = bg.GuidedModel(net, bg.GuidedGroupLasso(0.3, guidance.linear()), "categorical")
        y = torch.randint(0, 3, (n,))
    else:
        X = torch.randn(n, 4, dtype=F64)
        if name == "categorical":
            net = _mlp(4, (5, 3), 3)
            model = bg.GuidedModel(net, bg.GuidedLaplace(0.4, guidance.geometric(10.0)), "categorical")
            y = torch.randint(0, 3, (n,))
        elif name == "gaussian-fixed":
            net = _mlp(4, (5,), 2)
            model = bg.GuidedModel(net, bg.GuidedNormal(0.4, guidance.linear()), "gaussian", noise=0.6)
            y = torch.randn(n, 2, dtype=F64)
        elif name == "gaussian-learned":
            net = _mlp(4, (5,), 2)
            model = bg.GuidedModel(net, bg.GuidedGroupLasso(0.4, guidance.partial(count=2)), "gaussian")
            y = torch.randn(n, 2, dtype=F64)
        else:
            net = _mlp(4, (5,), 2)
            model = bg.GuidedModel(net, bg.GuidedLaplace(0.4, guidance.uniform()), "bernoulli")
            y = torch.randint(0, 2, (n, 2))
    X, y = model.prepare_data(X, y)
    values = _random_values(model)
    return model, net, X, y, values


CASES = ["categorical", "gaussian-fixed", "gaussian-learned", "bernoulli", "cnn"]


@pytest.mark.parametrize("case", CASES)
def test_pyro_log_joint_equals_lean_log_joint(case: str) -> None:
    model, net, X, y, values = _case(case)
    noise = None
    conditioned = dict(values)
    if model.learns_noise:
        noise = torch.tensor(0.45, dtype=F64)
        conditioned["noise"] = noise
    trace = _pyro_trace(model, conditioned, X, y)
    loglik, logprior = model.log_joint(model.chain(net), values, X, y, noise=noise)
    lean = (loglik + logprior).item()
    assert trace.log_prob_sum().item() == pytest.approx(lean, rel=1e-10)
    # the sites the trace holds: every unit matrix (+ the noise), then the observations
    expected_sites = [s.name for s in model.sites] + (["noise"] if model.learns_noise else []) + ["obs"]
    sample_sites = [k for k, v in trace.nodes.items() if v["type"] == "sample" and k != "data"]
    assert sample_sites == expected_sites
    assert all(trace.nodes[k]["is_observed"] for k in expected_sites)  # conditioned or observed
    for site in model.sites:
        assert torch.equal(trace.nodes[site.name]["value"], values[site.name])
    trace.compute_log_prob()
    assert trace.nodes["obs"]["log_prob_sum"].item() == pytest.approx(loglik.item(), rel=1e-10)
    if model.learns_noise:
        assert trace.nodes["noise"]["log_prob_sum"].item() == 0.0  # ImproperUniform


@pytest.mark.parametrize("case", ["categorical", "gaussian-fixed", "bernoulli"])
def test_lean_log_joint_equals_independent_computation(case: str) -> None:
    """log_joint vs the real nn.Module forward with the site values loaded, and scipy densities."""
    model, net, X, y, values = _case(case)
    loaded = _load(net, model, values)
    with torch.no_grad():
        out = loaded(X).numpy()
    yy = y.numpy()
    if case == "categorical":
        shifted = out - out.max(1, keepdims=True)
        logsm = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        expected_ll = logsm[np.arange(len(yy)), yy].sum()
    elif case == "gaussian-fixed":
        expected_ll = stats.norm.logpdf(yy, loc=out, scale=0.6).sum()
    else:
        expected_ll = stats.bernoulli.logpmf(yy, 1.0 / (1.0 + np.exp(-out))).sum()
    lam = model.prior.strength
    expected_lp = 0.0
    for site in model.sites:
        theta = values[site.name].numpy()
        if not site.prunable:  # plain L2 prior: Normal with precision 2λ per element
            expected_lp += stats.norm.logpdf(theta, scale=1 / math.sqrt(2 * lam)).sum()
            continue
        g = model.prior.guidance(site.n_units).numpy()[:, None]
        if case == "gaussian-fixed":
            expected_lp += stats.norm.logpdf(theta, scale=1 / np.sqrt(2 * lam * g)).sum()
        else:
            expected_lp += stats.laplace.logpdf(theta, scale=1 / (lam * g)).sum()
    loglik, logprior = model.log_joint(model.chain(net), values, X, y)
    assert loglik.item() == pytest.approx(expected_ll, rel=1e-10)
    assert logprior.item() == pytest.approx(expected_lp, rel=1e-10)


@pytest.mark.parametrize("case", ["categorical", "gaussian-learned", "cnn"])
def test_minibatch_likelihood_is_scaled_by_n_over_b(case: str) -> None:
    model, net, X, y, values = _case(case)
    n = X.shape[0]
    idx = torch.tensor([7, 1, 4])
    conditioned = dict(values)
    noise = None
    if model.learns_noise:
        noise = torch.tensor(1.3, dtype=F64)
        conditioned["noise"] = noise
    trace = _pyro_trace(model, conditioned, X, y, subsample=idx)
    trace.compute_log_prob()
    obs = trace.nodes["obs"]
    assert obs["scale"] == pytest.approx(n / 3, rel=1e-15)
    batch_ll, logprior = model.log_joint(model.chain(net), values, X[idx], y[idx], noise=noise)
    assert obs["unscaled_log_prob"].shape == (3,)
    assert obs["unscaled_log_prob"].sum().item() == pytest.approx(batch_ll.item(), rel=1e-10)
    assert obs["log_prob_sum"].item() == pytest.approx(n / 3 * batch_ll.item(), rel=1e-10)
    scaled_ll, _ = model.log_joint(model.chain(net), values, X[idx], y[idx], scale=n / 3, noise=noise)
    assert trace.log_prob_sum().item() == pytest.approx((scaled_ll + logprior).item(), rel=1e-10)
    # the minibatch estimate is not the full-data sum (the test would not see a missing subsample)
    full_ll, _ = model.log_joint(model.chain(net), values, X, y, noise=noise)
    assert abs(full_ll.item() - scaled_ll.item()) > 1e-6


def test_model_output_is_network_forward() -> None:
    model, net, X, y, values = _case("cnn")
    out = poutine.condition(model.model, data=values)(X, y)
    with torch.no_grad():
        expected = _load(net, model, values)(X)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- sampling the targets


@pytest.mark.parametrize(
    ("likelihood", "noise", "n_out", "obs_shape"),
    [("categorical", None, 3, (4, 6)), ("gaussian", 0.5, 2, (4, 6, 2)), ("bernoulli", None, 2, (4, 6, 2))],
)
def test_predictive_samples_targets(
    likelihood: str, noise: float | None, n_out: int, obs_shape: tuple[int, ...]
) -> None:
    model = bg.GuidedModel(_mlp(3, (4,), n_out), bg.GuidedLaplace(2.0), likelihood, noise=noise)
    X = torch.randn(6, 3, dtype=F64)
    samples = pyro.infer.Predictive(model.model, num_samples=4)(X)
    obs = samples["obs"]
    assert obs.shape == obs_shape
    if likelihood == "categorical":
        assert obs.dtype == torch.int64
        assert obs.min() >= 0 and obs.max() < n_out
    elif likelihood == "bernoulli":
        assert ((obs == 0) | (obs == 1)).all()
    else:
        assert torch.isfinite(obs).all()
    # the unit matrices are drawn from the prior, one per draw
    first = samples["0.units"].reshape(4, 4, 4)
    assert not torch.equal(first[0], first[1])


def test_sampled_targets_follow_network_output() -> None:
    """With y=None, obs is drawn from the likelihood at f(X; θ) of the sampled θ."""
    model = bg.GuidedModel(_mlp(3, (4,), 2), bg.GuidedNormal(1.0), "gaussian", noise=1e-6)
    X = torch.randn(5, 3, dtype=F64)
    trace = poutine.trace(model.model).get_trace(X)
    values = {s.name: trace.nodes[s.name]["value"] for s in model.sites}
    with torch.no_grad():
        expected = _load(model.net, model, values)(X)
    assert trace.nodes["obs"]["value"].shape == (5, 2)
    torch.testing.assert_close(trace.nodes["obs"]["value"], expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"], expected, rtol=1e-12, atol=1e-12)


def test_predictive_with_improper_prior_refuses() -> None:
    model = bg.GuidedModel(_mlp(3, (8,), 2), bg.GuidedLaplace(1.0, guidance.partial()), "categorical")
    with pytest.raises(ValueError, match="improper prior: unit 7 has guidance coefficient 0"):
        pyro.infer.Predictive(model.model, num_samples=2)(torch.randn(3, 3, dtype=F64))
