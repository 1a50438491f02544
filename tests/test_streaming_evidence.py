"""The variational (``elbo``, ``iwae``) and conditional (``clml``) evidence from a data loader.

References: the same estimate on the tensors — each draw's log-likelihood is a sum over
the examples, so a loader of any batch size gives it up to the order of the sums; the
CLML's split, Laplace fit and predictive are sums too (with ``steps=0``).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg

N = 120


def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, :1]) + 0.1 * torch.randn(N, 1, generator=g, dtype=torch.float64)
    return X, y


def loader(X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle)


def model() -> bg.GuidedModel:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    return bg.GuidedModel(net, bg.GuidedNormal(1.0), "gaussian", noise=0.1)


@pytest.mark.parametrize("method", ["elbo", "iwae"])
@pytest.mark.parametrize("batch_size", [N, 25])
def test_variational_evidence_from_a_loader_equals_tensors(method: str, batch_size: int) -> None:
    X, y = regression()
    post = bg.fit_svi(model(), X, y, steps=100, lr=0.02, progress=False)
    ref = bg.evidence(post, X, y, method=method, particles=60)
    got = bg.evidence(post, loader(X, y, batch_size), method=method, particles=60)
    assert got.log_evidence == pytest.approx(ref.log_evidence, rel=1e-12)
    assert (got.elbo, got.ess, got.std_error) == pytest.approx((ref.elbo, ref.ess, ref.std_error), rel=1e-10)
    post_l = bg.fit_svi(model(), loader(X, y, N), steps=100, lr=0.02, progress=False)  # a loader fit, by fingerprint
    assert bg.evidence(post_l, loader(X, y, N), method=method, particles=60).log_evidence == pytest.approx(
        ref.log_evidence, rel=1e-10)
    with pytest.raises(ValueError, match="does not yield the data SVI fit was trained on"):
        bg.evidence(post, loader(X, y, batch_size, shuffle=True), method=method, particles=10)


def test_clml_from_a_loader_equals_tensors() -> None:
    X, y = regression()
    fit = bg.fit_map(model(), X, y, steps=100, lr=0.02, progress=False)
    options = {"method": "clml", "draws": 100, "hessian": "full"}
    ref = bg.evidence(fit, X, y, steps=0, **options)
    for batch_size in (N, 25):  # the split by position in a pass; curvature and predictive summed over batches
        got = bg.evidence(fit, loader(X, y, batch_size), steps=0, **options)
        assert got.log_evidence == pytest.approx(ref.log_evidence, rel=1e-8)
        assert got.prior_scale == pytest.approx(ref.prior_scale, rel=1e-6)
    # with a re-fit, a loader of one batch sees the conditioned examples in the loader's order: equal up to rounding
    ref = bg.evidence(fit, X, y, steps=20, **options)
    got = bg.evidence(fit, loader(X, y, N), steps=20, **options)
    assert got.log_evidence == pytest.approx(ref.log_evidence, rel=1e-7)
    multi = bg.evidence(fit, loader(X, y, 25), steps=20, **options)  # minibatch re-fit: close, not equal
    assert multi.log_evidence == pytest.approx(ref.log_evidence, rel=0.05)
