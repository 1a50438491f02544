"""Issue 14 through the Python API: items 4 (degenerate data), 8 (network dtypes), 9 (values
that overflow float32, NaN weights at evidence time), 11 (seeds, nothing to prune) and 12 (a
bare ``nn.Linear``: Bayesian linear and logistic regression)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

import bayesguide as bg
from bayesguide.marglik import laplace_evidence

F64 = torch.float64


def _mlp(dtype: torch.dtype = F64, n_out: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, n_out)).to(dtype)


# --------------------------------------------------------------------------- item 8: dtypes


@pytest.mark.parametrize(("dtype", "shown"), [(torch.bfloat16, "bfloat16"), (torch.float16, "float16")])
def test_a_half_precision_network_is_refused_at_construction(dtype: torch.dtype, shown: str) -> None:
    pattern = (rf"the network's parameters must be float32 or float64, but '0\.weight' is {shown}; "
               rf"convert the network with net\.float\(\) or net\.double\(\)")
    with pytest.raises(TypeError, match=pattern):
        bg.GuidedModel(_mlp(dtype), bg.GuidedNormal(1.0), "gaussian", noise=0.1)


def test_a_network_mixing_float32_and_float64_is_refused() -> None:
    net = _mlp(torch.float32)
    net[2].double()
    pattern = (r"the network's parameters mix float32 and float64 \('0\.weight' is float32, '2\.weight' is "
               r"float64\); convert the network with net\.float\(\) or net\.double\(\)")
    with pytest.raises(TypeError, match=pattern):
        bg.GuidedModel(net, bg.GuidedNormal(1.0), "gaussian", noise=0.1)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_float32_and_float64_networks_are_accepted(dtype: torch.dtype) -> None:
    assert bg.GuidedModel(_mlp(dtype), bg.GuidedNormal(1.0), "gaussian", noise=0.1).dtype == dtype


# --------------------------------------------------------------------------- items 4, 9: prepare_data


def _gaussian(dtype: torch.dtype = F64) -> bg.GuidedModel:
    return bg.GuidedModel(_mlp(dtype), bg.GuidedNormal(1.0), "gaussian", noise=0.1)


@pytest.mark.parametrize(
    ("X", "y", "pattern"),
    [
        (torch.randn(5, 4, dtype=torch.complex64), torch.randn(5),
         r"X is complex-valued \(dtype torch\.complex64\); bayesguide needs real numbers — pass X\.real"),
        (np.ones((5, 4)) + 0j, np.zeros(5), r"X is complex-valued \(dtype torch\.complex128\)"),
        (np.ones((5, 4)), np.zeros(5) + 1j, r"y is complex-valued \(dtype torch\.complex128\)"),
    ],
)
def test_complex_data_is_refused(X: object, y: object, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        _gaussian().prepare_data(X, y)


def test_data_without_features_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^X has no features: shape \(5, 0\)$"):
        _gaussian().prepare_data(torch.zeros(5, 0, dtype=F64), torch.zeros(5, dtype=F64))


def test_a_float64_value_that_overflows_float32_is_named_before_the_cast() -> None:
    X = np.zeros((6, 4))
    X[3, 2] = 1e300
    pattern = (r"^X value 1e\+300 \(row 3, column 2\) overflows float32, the network's dtype \(largest finite "
               r"3\.4e\+38\); rescale X or use a float64 network \(net\.double\(\)\)$")
    with pytest.raises(ValueError, match=pattern):
        _gaussian(torch.float32).prepare_data(X, np.zeros(6))
    y = np.zeros(6)
    y[4] = -1e39
    with pytest.raises(ValueError, match=r"^y value -1e\+39 \(row 4, column 0\) overflows float32"):
        _gaussian(torch.float32).prepare_data(np.zeros((6, 4)), y)
    # a float64 network holds the value: no error, no inf
    Xt, _ = _gaussian(F64).prepare_data(X, np.zeros(6))
    assert Xt[3, 2].item() == 1e300


def test_nan_is_still_reported_as_nan_with_its_row() -> None:
    X = np.zeros((4, 4))
    X[2, 0] = math.nan
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at row 2\)"):
        _gaussian(torch.float32).prepare_data(X, np.zeros(4))


def test_a_categorical_network_with_one_output_is_refused() -> None:
    model = bg.GuidedModel(_mlp(n_out=1), bg.GuidedNormal(1.0), "categorical")
    pattern = (r"a categorical likelihood needs a network with one output per class \(at least 2\), got 1: "
               r"the softmax of one output is always 1; for a 0/1 target use likelihood='bernoulli'")
    with pytest.raises(ValueError, match=pattern):
        model.prepare_data(torch.randn(4, 4, dtype=F64), torch.zeros(4, dtype=torch.long))


def test_a_single_class_subset_is_accepted_for_evaluation() -> None:
    # prepare_data also checks test and validation sets, which may hold one class: not refused
    model = bg.GuidedModel(_mlp(n_out=3), bg.GuidedNormal(1.0), "categorical")
    _, y = model.prepare_data(torch.randn(3, 4, dtype=F64), np.array([2, 2, 2]))
    assert y.tolist() == [2, 2, 2]


# --------------------------------------------------------------------------- item 11: settings, pruning


@pytest.mark.parametrize("seed", [1.5, "abc", True, 2.0])
def test_a_seed_that_is_not_an_int_is_refused(seed: object) -> None:
    with pytest.raises(ValueError, match=rf"^seed must be an int or None \(the global RNG\), got {seed!r}$"):
        bg.OptimSettings(seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_out_of_range_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\) or None"):
        bg.OptimSettings(seed=seed)


def test_integer_seeds_are_accepted() -> None:
    assert bg.OptimSettings(seed=np.int64(7)).seed == 7
    assert type(bg.OptimSettings(seed=np.int64(7)).seed) is int
    assert bg.OptimSettings(seed=None).seed is None


def test_fit_map_refuses_a_float_seed() -> None:
    with pytest.raises(ValueError, match=r"seed must be an int or None \(the global RNG\), got 1\.5"):
        bg.fit_map(_gaussian(), torch.randn(8, 4, dtype=F64), torch.randn(8, dtype=F64), steps=3, seed=1.5,
                   progress=False)


def _regression(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 4, generator=g, dtype=F64)
    return X, X @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=F64) + 0.5 + 0.3 * torch.randn(n, generator=g,
                                                                                             dtype=F64)


@pytest.mark.parametrize("net", [lambda: nn.Linear(4, 1), lambda: nn.Sequential(nn.Linear(4, 1))])
def test_pruning_path_without_hidden_layer_says_nothing_to_prune(net: object) -> None:
    X, y = _regression(20)
    model = bg.GuidedModel(net().double(), bg.GuidedNormal(1.0), "gaussian", noise=0.3)  # type: ignore[operator]
    fit = bg.fit_map(model, X, y, steps=3, progress=False)
    pattern = (r"^nothing to prune: the network has no hidden Linear or Conv2d layer \(only the output layer, "
               r"which is never pruned\), so the path would hold the full network alone$")
    with pytest.raises(ValueError, match=pattern):
        bg.pruning_path(fit, X, y)


# --------------------------------------------------------------------------- item 9: NaN weights


@pytest.mark.parametrize(("layer", "site", "unit"), [(0, "0.units", 1), (2, "2.units", 0)])
def test_laplace_evidence_names_the_site_of_a_nan_weight(layer: int, site: str, unit: int) -> None:
    X, y = _regression(20)
    model = _gaussian()
    module = copy.deepcopy(model.net)
    with torch.no_grad():
        module[layer].weight[unit, 0] = math.nan if layer == 0 else math.inf
    Xp, yp = model.prepare_data(X, y)
    pattern = (rf"^the weights of site '{site}' are not finite \(NaN or inf, first in unit {unit}\): the "
               rf"Laplace evidence needs finite weights; if they come from a fit, it diverged: refit with a "
               rf"smaller lr or a stronger prior$")
    for hessian in ("full", "diag", "kron"):
        with pytest.raises(ValueError, match=pattern):
            laplace_evidence(model, module, Xp, yp, hessian=hessian)


# --------------------------------------------------------------------------- item 12: a bare nn.Linear


def test_bare_linear_model_names_its_site_units() -> None:
    model = bg.GuidedModel(nn.Linear(4, 1).double(), bg.GuidedNormal(0.7), "gaussian", noise=0.3)
    assert [(s.name, s.param_names, s.prunable) for s in model.sites] == [("units", ("weight", "bias"), False)]
    assert model.prunable_sites == []
    assert [ly.name for ly in model.chain(copy.deepcopy(model.net))] == [""]
    assert "prunable widths=[]" in repr(model)


def test_bayesian_linear_regression_on_a_bare_linear_matches_closed_form() -> None:
    X, y = _regression()
    strength, sigma = 0.7, 0.3
    net = nn.Linear(4, 1).double()
    before = copy.deepcopy(net.state_dict())
    model = bg.GuidedModel(net, bg.GuidedNormal(strength), "gaussian", noise=sigma)
    fit = bg.fit_map(model, X, y, steps=3000, lr=0.02, schedule="cosine", progress=False)
    assert isinstance(fit.module, nn.Linear) and fit.module is not net
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the template is untouched
    # closed form: y ~ N(0, σ² I + Φ Φᵀ / α), Φ = [X, 1] (the bias has the same prior), α = 2λ
    Phi, t = torch.cat([X, torch.ones(len(X), 1, dtype=F64)], 1).numpy(), y.numpy()
    alpha = 2 * strength
    expected = scipy.stats.multivariate_normal(np.zeros(len(t)), sigma**2 * np.eye(len(t)) + Phi @ Phi.T / alpha
                                               ).logpdf(t)
    mean = np.linalg.solve(Phi.T @ Phi / sigma**2 + alpha * np.eye(5), Phi.T @ t / sigma**2)
    got = np.concatenate([fit.module.weight.detach().numpy().ravel(), fit.module.bias.detach().numpy()])
    np.testing.assert_allclose(got, mean, rtol=1e-6, atol=1e-8)
    for hessian in ("full", "kron"):
        ev = bg.evidence(fit, X, y, hessian=hessian)
        assert ev.log_evidence == pytest.approx(expected, rel=1e-6)
        assert ev.n_params == 5 and not ev.substituted


def test_bayesian_logistic_regression_on_a_bare_linear() -> None:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(60, 2, generator=g, dtype=F64)
    y = (X[:, 0] - X[:, 1] + 0.5 * torch.randn(60, generator=g, dtype=F64) > 0).to(F64)
    model = bg.GuidedModel(nn.Linear(2, 1).double(), bg.GuidedNormal(0.5), "bernoulli")
    fit = bg.fit_map(model, X, y, steps=1500, lr=0.05, progress=False)
    # at the MAP the gradient of log-lik + log-prior vanishes: Φᵀ(y − p) = α θ, α = 2λ
    Phi = torch.cat([X, torch.ones(60, 1, dtype=F64)], 1)
    theta = torch.cat([fit.module.weight.detach().ravel(), fit.module.bias.detach()])
    p = torch.sigmoid(Phi @ theta)
    torch.testing.assert_close(Phi.T @ (y - p), 1.0 * theta, rtol=0, atol=1e-6)
    # Laplace evidence by hand: log p(y | θ*) + log N(θ*; 0, I/α) + (P/2) log 2π − ½ log det H
    H = Phi.T @ (Phi * (p * (1 - p))[:, None]) + torch.eye(3, dtype=F64)
    loglik = float((y * torch.log(p) + (1 - y) * torch.log1p(-p)).sum())
    log_prior = float(scipy.stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(theta.numpy()))
    expected = loglik + log_prior + 1.5 * math.log(2 * math.pi) - 0.5 * float(torch.logdet(H))
    assert bg.evidence(fit, X, y).log_evidence == pytest.approx(expected, rel=1e-9)


def test_svi_on_a_bare_linear_gives_inference_data_over_its_units() -> None:
    X, y = _regression(30)
    model = bg.GuidedModel(nn.Linear(4, 1).double(), bg.GuidedNormal(0.7), "gaussian", noise=0.3)
    post = bg.fit_svi(model, X, y, steps=20, progress=False)
    assert isinstance(post.module, nn.Linear)
    idata = post.to_inference_data(X, y)
    assert list(idata.posterior.data_vars) == ["units"]
    assert idata.posterior["units"].shape[-2:] == (1, 5)
