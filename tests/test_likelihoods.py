"""Observation models: lean torch sums vs Pyro distributions vs scipy / hand-written formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesguide.likelihoods import Likelihood

F64 = torch.float64


def _log_softmax_by_hand(logits: np.ndarray) -> np.ndarray:
    out = np.empty_like(logits)
    for i, row in enumerate(logits):
        m = max(row)
        out[i] = row - (m + math.log(sum(math.exp(v - m) for v in row)))
    return out


# --------------------------------------------------------------------------- log-likelihood sums


@pytest.mark.parametrize("lik", list(Likelihood))
def test_nll_sum_is_the_negated_log_prob_sum_of_the_pyro_distribution(lik: Likelihood) -> None:
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(6, 3, generator=gen, dtype=F64)
    noise = torch.tensor(0.7, dtype=F64) if lik is Likelihood.GAUSSIAN else None
    y = {Likelihood.CATEGORICAL: torch.tensor([0, 2, 1, 1, 0, 2]),
         Likelihood.GAUSSIAN: torch.randn(6, 3, generator=gen, dtype=F64),
         Likelihood.BERNOULLI: (torch.rand(6, 3, generator=gen) < 0.5).to(F64)}[lik]
    expected = -float(lik.distribution(out, noise).log_prob(y).sum())
    assert float(lik.nll_sum(out, y, noise)) == pytest.approx(expected, rel=1e-12)
    assert float(lik.log_prob_sum(out, y, noise)) == -float(lik.nll_sum(out, y, noise))


def test_categorical_log_prob_sum() -> None:
    out = torch.randn(7, 4, dtype=F64) * 3
    y = torch.tensor([0, 3, 1, 1, 2, 0, 3])
    lik = Likelihood.CATEGORICAL
    lean = lik.log_prob_sum(out, y, None)
    lsm = _log_softmax_by_hand(out.numpy())
    expected = sum(lsm[i, int(y[i])] for i in range(7))
    assert lean.item() == pytest.approx(expected, rel=1e-12)
    pyro_d = lik.distribution(out, None)
    assert pyro_d.batch_shape == (7,)
    assert pyro_d.log_prob(y).sum().item() == pytest.approx(expected, rel=1e-12)
    pointwise = torch.tensor(lsm[np.arange(7), y.numpy()])
    torch.testing.assert_close(lik.pointwise_log_prob(out, y, None), pointwise, rtol=1e-12, atol=0)


@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_gaussian_log_prob_sum(sigma: float) -> None:
    out = torch.randn(6, 2, dtype=F64)
    y = torch.randn(6, 2, dtype=F64)
    noise = torch.tensor(sigma, dtype=F64)
    lik = Likelihood.GAUSSIAN
    expected = stats.norm.logpdf(y.numpy(), loc=out.numpy(), scale=sigma).sum()
    assert lik.log_prob_sum(out, y, noise).item() == pytest.approx(expected, rel=1e-12)
    pyro_d = lik.distribution(out, noise)
    assert pyro_d.batch_shape == (6,)
    assert pyro_d.event_shape == (2,)
    assert pyro_d.log_prob(y).sum().item() == pytest.approx(expected, rel=1e-12)
    pointwise = torch.tensor(stats.norm.logpdf(y.numpy(), loc=out.numpy(), scale=sigma).sum(1))
    torch.testing.assert_close(lik.pointwise_log_prob(out, y, noise), pointwise, rtol=1e-12, atol=0)


def test_bernoulli_log_prob_sum() -> None:
    out = torch.randn(8, 3, dtype=F64) * 2
    y = torch.randint(0, 2, (8, 3)).to(F64)
    lik = Likelihood.BERNOULLI
    prob = 1.0 / (1.0 + np.exp(-out.numpy()))
    yy = y.numpy()
    expected = float(np.sum(yy * np.log(prob) + (1 - yy) * np.log1p(-prob)))
    assert lik.log_prob_sum(out, y, None).item() == pytest.approx(expected, rel=1e-10)
    pyro_d = lik.distribution(out, None)
    assert pyro_d.batch_shape == (8,)
    assert pyro_d.event_shape == (3,)
    assert pyro_d.log_prob(y).sum().item() == pytest.approx(expected, rel=1e-10)
    scipy_sum = stats.bernoulli.logpmf(yy, prob).sum()
    assert lik.log_prob_sum(out, y, None).item() == pytest.approx(scipy_sum, rel=1e-10)


def test_likelihoods_stable_for_large_logits() -> None:
    out = torch.tensor([[200.0, -200.0]], dtype=F64)
    cat = Likelihood.CATEGORICAL.log_prob_sum(out, torch.tensor([1]), None)
    assert cat.item() == pytest.approx(-400.0, rel=1e-12)
    ber = Likelihood.BERNOULLI.log_prob_sum(out, torch.tensor([[0.0, 1.0]], dtype=F64), None)
    assert ber.item() == pytest.approx(-400.0, rel=1e-12)


# --------------------------------------------------------------------------- prepare_targets


def test_prepare_categorical_targets() -> None:
    y = Likelihood.CATEGORICAL.prepare_targets(torch.tensor([0.0, 2.0, 1.0]), 3, F64)
    assert y.dtype == torch.int64
    assert y.tolist() == [0, 2, 1]
    y32 = Likelihood.CATEGORICAL.prepare_targets(torch.tensor([1, 0], dtype=torch.int32), 2, F64)
    assert y32.dtype == torch.int64


def test_prepare_gaussian_and_bernoulli_targets() -> None:
    y = Likelihood.GAUSSIAN.prepare_targets(torch.tensor([0.5, -1.0]), 1, F64)
    assert y.shape == (2, 1)
    assert y.dtype == F64
    y2 = Likelihood.GAUSSIAN.prepare_targets(torch.zeros(3, 2, dtype=torch.float32), 2, F64)
    assert y2.shape == (3, 2)
    assert y2.dtype == F64
    b = Likelihood.BERNOULLI.prepare_targets(torch.tensor([[1, 0], [0, 0]]), 2, torch.float32)
    assert b.dtype == torch.float32
    assert b.tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("lik", "y", "out_dim", "exc", "pattern"),
    [
        (Likelihood.CATEGORICAL, torch.tensor([0.0, 1.5]), 3, ValueError,
         r"categorical targets must be integers \(class indices\)"),
        (Likelihood.CATEGORICAL, torch.tensor([0, 3, 1]), 3, ValueError,
         r"categorical labels must lie in \[0, 2\] for a network with 3 outputs; found labels in \[0, 3\]"),
        (Likelihood.CATEGORICAL, torch.tensor([-1, 1]), 3, ValueError,
         r"must lie in \[0, 2\] .* found labels in \[-1, 1\]"),
        (Likelihood.CATEGORICAL, torch.zeros(4, 3, dtype=torch.int64), 3, ValueError,
         r"categorical targets must be 1-D class indices, got shape \(4, 3\)"),
        (Likelihood.CATEGORICAL, torch.tensor([True, False]), 2, ValueError,
         r"categorical targets must be integer class indices, got bool"),
        (Likelihood.CATEGORICAL, torch.tensor([0, 0]), 1, ValueError,
         r"a categorical likelihood needs a network with one output per class \(at least 2\), got 1"),
        (Likelihood.BERNOULLI, torch.tensor([0.0, 0.5]), 1, ValueError,
         r"bernoulli targets must be 0 or 1"),
        (Likelihood.BERNOULLI, torch.tensor([[0, 2]]), 2, ValueError,
         r"bernoulli targets must be 0 or 1"),
        (Likelihood.GAUSSIAN, torch.zeros(5, 3), 2, ValueError,
         r"gaussian targets of shape \(5, 3\) do not match a network with 2 outputs"),
        (Likelihood.GAUSSIAN, torch.zeros(5, 2, 1), 2, ValueError,
         r"gaussian targets of shape \(5, 2, 1\) do not match"),
        (Likelihood.BERNOULLI, torch.zeros(4), 2, ValueError,
         r"bernoulli targets of shape \(4,\) do not match a network with 2 outputs; expected \(4, 2\)"),
    ],
)
def test_prepare_targets_errors(
    lik: Likelihood, y: torch.Tensor, out_dim: int, exc: type[Exception], pattern: str
) -> None:
    with pytest.raises(exc, match=pattern):
        lik.prepare_targets(y, out_dim, F64)


def test_shape_mismatch_message_offers_only_valid_shapes() -> None:
    with pytest.raises(ValueError, match="do not match a network with 2 outputs") as info:
        Likelihood.GAUSSIAN.prepare_targets(torch.zeros(4), 2, F64)
    assert "(4,) or" not in str(info.value)


def test_scalar_gaussian_target_is_value_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        Likelihood.GAUSSIAN.prepare_targets(torch.tensor(1.0), 1, F64)


def test_empty_categorical_targets_is_value_error() -> None:
    with pytest.raises(ValueError):
        Likelihood.CATEGORICAL.prepare_targets(torch.zeros(0, dtype=torch.long), 3, F64)


# --------------------------------------------------------------------------- names


def test_resolve_by_name() -> None:
    assert Likelihood.resolve("categorical", "likelihood") is Likelihood.CATEGORICAL
    assert Likelihood.resolve(" Gaussian ", "likelihood") is Likelihood.GAUSSIAN
    assert Likelihood.resolve(Likelihood.BERNOULLI, "likelihood") is Likelihood.BERNOULLI
    assert Likelihood.choices() == ["categorical", "gaussian", "bernoulli"]
    assert str(Likelihood.GAUSSIAN) == "gaussian"
    assert "σ" in Likelihood.GAUSSIAN.description


@pytest.mark.parametrize("name", ["poisson", 3])
def test_unknown_likelihood_lists_choices(name: object) -> None:
    pattern = r"unknown likelihood .*; choose one of: categorical, gaussian, bernoulli"
    with pytest.raises(ValueError, match=pattern):
        Likelihood.resolve(name, "likelihood")  # type: ignore[arg-type]


def test_metric_from_sums_refuses_an_empty_count() -> None:
    with pytest.raises(ValueError, match=r"no predictions to score \(count 0\)"):
        Likelihood.GAUSSIAN.metric_from_sums(0.0, 0)
