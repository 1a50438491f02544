"""``PriorTerms``, the MAP step's prior from the network's own tensors, against ``log_prior`` of the packed matrices."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.priors import UnitGroupDistribution, UnitNormal

F64 = torch.float64

PRIORS = {
    "group": bg.GuidedGroupLasso(0.7, bg.guidance.linear()),
    "l1": bg.GuidedLaplace(0.4, bg.guidance.linear()),
    "l2": bg.GuidedNormal(0.3, bg.guidance.linear()),
    "sparse group": bg.GuidedSparseGroupLasso(0.5, bg.guidance.linear(), alpha=0.3),
}


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(F64)


def _cnn() -> nn.Sequential:
    """Conv filters enter as views ``(n, c·k·k)``; BatchNorm's weight and bias are 1-D blocks."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 3)).to(F64)


def _packed_neg_log_prior(model: bg.GuidedModel, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``−log p(θ)`` the slow way: every site's unit matrix packed (a copy), then ``log_prob``."""
    return -model.log_prior({s.name: s.pack(params) for s in model.sites})


@pytest.mark.parametrize("kind", list(PRIORS))
@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_value_and_gradients_equal_the_packed_log_prior(kind: str, make) -> None:  # type: ignore[no-untyped-def]
    net = make()
    with torch.no_grad():
        net[0].weight[1].zero_()  # a unit whose weights are 0 and whose bias is not
    model = bg.GuidedModel(net, PRIORS[kind])
    params = dict(net.named_parameters())
    terms = model.prior_terms_function(params)
    penalty, log_norm = terms()
    got = penalty - log_norm
    want = _packed_neg_log_prior(model, params)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    got_grads = torch.autograd.grad(got, list(params.values()))
    want_grads = torch.autograd.grad(want, list(params.values()))
    for name, a, e in zip(params, got_grads, want_grads):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14, msg=name)
    assert not log_norm.requires_grad  # a constant: nothing of it in the step's graph


def test_each_call_reads_the_parameters_stepped_in_place() -> None:
    net = _cnn()
    model = bg.GuidedModel(net, PRIORS["group"])
    params = dict(net.named_parameters())
    terms = model.prior_terms_function(params)
    before = terms()[0].detach().clone()
    with torch.no_grad():  # an optimiser step: in place, on the conv filter (a view) and a Linear weight
        for p in params.values():
            p.mul_(0.5)
    after = terms()[0].detach()
    assert not torch.equal(before, after)
    torch.testing.assert_close(after - terms.log_normaliser(), _packed_neg_log_prior(model, params).detach(),
                               rtol=1e-13, atol=0)


def test_rates_updated_in_place_change_the_penalty_and_the_normaliser() -> None:
    net = _mlp()
    model = bg.GuidedModel(net, PRIORS["l2"])
    params = dict(net.named_parameters())
    terms = model.prior_terms_function(params)
    penalty0, log_norm0 = (t.detach().clone() for t in terms())
    site = model.prunable_sites[0]
    model.set_site_rate(site, torch.full((site.n_units,), 2.0, dtype=F64))
    penalty1, log_norm1 = (t.detach() for t in terms())
    # by hand: the first hidden layer's prior is now Normal with rate 2 per unit
    w, b = net[0].weight.detach(), net[0].bias.detach()
    old = model.site_distribution(site)  # the same (updated) distribution object
    p = site.group_size
    want_norm = site.n_units * 0.5 * p * math.log(2.0 / math.pi)
    assert float(old.log_normaliser) == pytest.approx(want_norm, rel=1e-12)
    others = sum(float(model.site_distribution(s).log_normaliser) for s in model.sites if s is not site)
    assert float(log_norm1) == pytest.approx(want_norm + others, rel=1e-12)
    assert float(log_norm1) != pytest.approx(float(log_norm0))
    g = model.coefficients[site.name].to(F64)
    old_site = float((PRIORS["l2"].strength * g * ((w * w).sum(1) + b * b)).sum())
    new_site = float(2.0 * ((w * w).sum() + (b * b).sum()))
    assert float(penalty1) == pytest.approx(float(penalty0) - old_site + new_site, rel=1e-12)


class _ColumnsOnly(UnitNormal):
    """A prior of a user's that implements ``block_statistic`` for ``(n, k)`` blocks only."""

    vector_blocks = False
    shapes: ClassVar[list[tuple[int, ...]]] = []

    def block_statistic(self, parts: list[torch.Tensor]) -> torch.Tensor:
        _ColumnsOnly.shapes += [tuple(p.shape) for p in parts]
        return sum((p * p).sum(-1) for p in parts)  # type: ignore[return-value]


def test_a_prior_without_vector_blocks_gets_every_block_as_columns() -> None:
    rate = torch.full((6,), 0.3, dtype=F64)
    net = _mlp()
    w, b = net[0].weight.detach(), net[0].bias.detach()
    _ColumnsOnly.shapes = []
    got = _ColumnsOnly(rate, 5).penalty_parts([w, b])
    assert _ColumnsOnly.shapes == [(6, 4), (6, 1)]
    torch.testing.assert_close(got, UnitNormal(rate, 5).penalty_parts([w, b]), rtol=1e-14, atol=0)
    assert UnitGroupDistribution.vector_blocks is False and UnitNormal.vector_blocks is True
