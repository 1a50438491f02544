"""Networks with BatchNorm are scored folded (issue 13, item 6): each BatchNorm, in eval mode,
folded into the Linear / Conv2d before it — the same function, checked against the
network — and the evidence equals that of the folded network built by hand; BatchNorm that
cannot be folded is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.model import fold_batchnorm


def _stats(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.3)
        bn.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
        if bn.affine:
            bn.weight.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.2)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_folding_keeps_the_function_of_a_mlp_and_a_cnn(bias: bool, affine: bool) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6, bias=bias), nn.BatchNorm1d(6, affine=affine), nn.ReLU(),
                        nn.Linear(6, 3)).double()
    cnn = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=bias), nn.BatchNorm2d(3, affine=affine), nn.Tanh(),
                        nn.Flatten(), nn.Linear(48, 3)).double()
    for net, x in ((mlp, torch.randn(7, 4, dtype=torch.float64)), (cnn, torch.randn(5, 2, 4, 4, dtype=torch.float64))):
        _stats(net[1], 3)
        net.eval()
        model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()))
        folded_model, folded, n = fold_batchnorm(model, net)
        assert n == 1 and isinstance(folded[1], nn.Identity) and folded[0].bias is not None
        torch.testing.assert_close(folded(x), net(x), rtol=1e-12, atol=1e-12)
        assert [s.name for s in folded_model.sites] == [s.name for s in model.sites if s.name != "1.units"]
        torch.testing.assert_close(folded_model.coefficients["0.units"], model.coefficients["0.units"])
        assert isinstance(net[1], (nn.BatchNorm1d, nn.BatchNorm2d))  # the input is not changed


def test_the_evidence_of_a_batchnorm_network_is_that_of_its_folded_network() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1)).double()
    g = torch.Generator().manual_seed(2)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.sin(X[:, 0]) + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()), "gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=200, lr=0.01, progress=False)  # trains the running statistics too
    ev = bg.evidence(fit, X, y, hessian="full", optimize_prior=True)
    assert ev.batchnorm_folded == 1 and "1 BatchNorm folded" in str(ev)
    # by hand: the same network with the BatchNorm's eval-mode affine map in the first layer's weights
    bn, first = fit.module[1], fit.module[0]
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    hand = nn.Sequential(nn.Linear(3, 5), nn.Identity(), nn.Tanh(), nn.Linear(5, 1)).double()
    with torch.no_grad():
        hand[0].weight.copy_(first.weight * s[:, None])
        hand[0].bias.copy_((first.bias - bn.running_mean) * s + bn.bias)
        hand[3].load_state_dict(fit.module[3].state_dict())
    hand_model = bg.GuidedModel(hand, bg.GuidedNormal(1.0, bg.guidance.linear()), "gaussian", noise=0.1)
    Xp, yp = hand_model.prepare_data(X, y)
    expected = bg.marglik.laplace_evidence(hand_model, hand, Xp, yp, hessian="full", optimize_prior=True)
    assert ev.log_evidence == pytest.approx(expected.log_evidence, rel=1e-10)
    assert ev.n_params == expected.n_params == 5 * 4 + 6  # the BatchNorm's own parameters are gone
    # Laplace draws (leave-one-out) are of the same folded network
    idata = fit.to_inference_data(X, y, draws=5, hessian="full")
    assert list(idata.posterior.data_vars) == ["0_units", "3_units"]


def test_batchnorm_that_cannot_be_folded_is_refused_by_name() -> None:
    X, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    first = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    after = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    stats = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU(),
                          nn.Linear(4, 2)).double()
    for net, message in (
        (first, r"BatchNorm layer '0' does not directly follow a Linear or Conv2d layer"),
        (after, r"BatchNorm layer '2' does not directly follow a Linear or Conv2d layer"),
        (stats, r"BatchNorm layer '1' keeps no running statistics \(track_running_stats=False\)"),
    ):
        fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0)), X, y, steps=2, progress=False)
        with pytest.raises(ValueError, match=message):
            bg.evidence(fit, X, y, hessian="full")
