"""``fit_l0`` and ``fit_relevance`` from a data loader, batch by batch.

References: the same fit on the tensors (a loader of one batch gives the same weights,
gates and guidance), the relevance sensitivity (a gradient of a sum over the examples)
summed over batches against the tensor gradient, and the ``N / B`` scaling written by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg
from bayesguide.infer.relevance import insensitivity
from bayesguide.model.batches import Batches, BatchStream

N = 120


def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, :1]) + 0.1 * torch.randn(N, 1, generator=g, dtype=torch.float64)
    return X, y


def loader(X: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(X, y), batch_size=batch_size)


def net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()


def l0_model() -> bg.GuidedModel:
    return bg.GuidedModel(net(), bg.HardConcreteGates(1.0), "gaussian", noise=0.1)


def relevance_model() -> bg.GuidedModel:
    prior = bg.GuidedNormal(strength=1.0, guidance=bg.guidance.relevance(every=5))
    return bg.GuidedModel(net(), prior, "gaussian", noise=0.1)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=1e-10, atol=1e-12, msg=name)


def test_fit_l0_on_a_one_batch_loader_equals_the_tensor_fit() -> None:
    X, y = regression()
    model = l0_model()
    a = bg.fit_l0(model, X, y, steps=40, lr=0.01, progress=False)
    b = bg.fit_l0(model, loader(X, y, N), steps=40, lr=0.01, progress=False)
    assert (b.settings["data"], b.n_data, b.steps) == ("loader", N, 40)
    assert_same_weights(a.module, b.module)
    assert b.losses == pytest.approx(a.losses, rel=1e-10)
    for layer, alpha in bg.l0_gates(a).log_alpha.items():
        assert bg.l0_gates(b).log_alpha[layer] == pytest.approx(alpha, rel=1e-10)
    resumed = bg.resume_fit(b, loader(X, y, N), None, 10)
    assert resumed.steps == 50 and resumed.settings["data"] == "loader"
    with pytest.raises(ValueError, match="fitted on other data"):
        bg.resume_fit(b, Batches(loader(X, y, N), key="other"), None, 5)


def test_fit_l0_minibatch_likelihood_is_scaled_by_n_over_b() -> None:
    X, y = regression()
    model = l0_model()
    prior = model.prior
    assert isinstance(prior, bg.HardConcreteGates) and prior.weight_decay == 0
    # the same seeded gate draw and the same 40 rows: as the whole data (N = 40), and as a batch of N = 120
    small = bg.fit_l0(model, X[:40], y[:40], steps=1, lr=1e-3, progress=False, seed=3)
    big = bg.fit_l0(model, Batches([(X[:40], y[:40])] * 3, n=N), steps=1, lr=1e-3, progress=False, seed=3)
    # the first loss is the expected-L0 penalty at the initial log α minus the (scaled) log-likelihood
    log_alpha = torch.full((6,), prior.init_log_alpha, dtype=torch.float64)
    open_prob = torch.sigmoid(log_alpha - prior.temperature * math.log(-prior.stretch[0] / prior.stretch[1]))
    penalty = float(prior.strength * (model.coefficients["0.units"] * open_prob).sum())
    assert big.losses[0] - penalty == pytest.approx((N / 40) * (small.losses[0] - penalty), rel=1e-12)


@pytest.mark.parametrize("batch_size", [N, 25])
def test_relevance_sensitivity_sums_the_batches(batch_size: int) -> None:
    X, y = regression()
    model = relevance_model()
    settings = model.prior.guidance
    ref = insensitivity(model, model.net, X, y, settings)
    stream = BatchStream(Batches(loader(X, y, batch_size)), model.net, model.likelihood, model.dtype)
    got = insensitivity(model, model.net, stream, None, settings)
    for name, g in ref.items():
        assert not torch.all(g == 1.0)  # the gradients differ between units: a real test
        torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-12)


def test_fit_relevance_on_a_one_batch_loader_equals_the_tensor_fit() -> None:
    X, y = regression()
    model = relevance_model()
    a = bg.fit_relevance(model, X, y, steps=23, lr=0.01)
    b = bg.fit_relevance(model, loader(X, y, N), steps=23, lr=0.01)
    assert (b.fitter, b.settings["data"], b.steps) == ("relevance", "loader", 23)
    assert_same_weights(a.module, b.module)
    for name, g in a.model.coefficients.items():
        torch.testing.assert_close(b.model.coefficients[name], g, rtol=1e-10, atol=1e-12)
    ra, rb = bg.resume_fit(a, X, y, 10), bg.resume_fit(b, loader(X, y, N), None, 10)
    assert rb.steps == ra.steps == 33 and rb.losses[:23].tolist() == b.losses.tolist()
    assert_same_weights(ra.module, rb.module)
    multi = bg.fit_relevance(model, loader(X, y, 30), steps=23, lr=0.01)
    assert multi.n_data == N and multi.steps == 23 and bool(torch.isfinite(torch.as_tensor(multi.losses)).all())
