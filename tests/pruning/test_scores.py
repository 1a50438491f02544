"""Unit scores against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bayesguide.infer import FitResult
from bayesguide.pruning import GroupNorm, InclusionProbability, SignalToNoise, make_score


def test_incoming_norm_is_row_norm_over_root_group_size(map_fit: FitResult) -> None:
    s = GroupNorm()(map_fit)
    w, b = map_fit.module[0].weight.detach(), map_fit.module[0].bias.detach()
    j = 2
    by_hand = math.sqrt(sum(float(v) ** 2 for v in w[j]) + float(b[j]) ** 2) / math.sqrt(5)
    assert s["0"][j] == pytest.approx(by_hand, rel=1e-6)
    assert s["0"][1] == 0.0 and s["2"][3] == 0.0
    assert list(s) == ["0", "2"]


def test_outgoing_and_both(map_fit: FitResult) -> None:
    out = make_score("norm", direction="outgoing")(map_fit)
    w_next = map_fit.module[2].weight.detach()
    assert out["0"][3] == pytest.approx(float(w_next[:, 3].norm()) / math.sqrt(5), rel=1e-6)
    both = make_score("norm", direction="both")(map_fit)
    inc = make_score("norm")(map_fit)
    np.testing.assert_allclose(both["2"], np.sqrt(inc["2"] * out["2"]))


def test_guidance_order_is_minus_the_coefficients(map_fit: FitResult) -> None:
    s = make_score("guidance")(map_fit)
    np.testing.assert_allclose(s["0"], -(np.arange(1, 7) / 6))


def test_inclusion_probability_is_zero_or_one_for_sharp_posteriors(svi_fit: FitResult) -> None:
    guide = svi_fit.guide
    with torch.no_grad():
        guide.locs["0__units"][2] = 0.0
        guide.scales_unconstrained["0__units"].fill_(-30.0)  # softplus ≈ 1e-13
    p = InclusionProbability(eps=1e-3, samples=16)(svi_fit)
    assert p["0"][2] == 0.0
    assert np.all(np.delete(p["0"], 2) == 1.0)


def test_inclusion_probability_matches_a_chi_square_tail(svi_fit: FitResult) -> None:
    """Zero mean, equal scales σ: ‖θ‖² / σ² ~ χ²_p, so P(‖θ‖/√p > ε) = P(χ²_p > p ε² / σ²)."""
    from scipy.stats import chi2

    guide = svi_fit.guide
    sigma, eps = 0.1, 0.1
    with torch.no_grad():
        guide.locs["0__units"].zero_()
        guide.scales_unconstrained["0__units"].fill_(sigma + math.log(-math.expm1(-sigma)))
    p = InclusionProbability(eps=eps, samples=2000)(svi_fit)
    expected = chi2.sf(5 * eps**2 / sigma**2, df=5)
    np.testing.assert_allclose(p["0"], expected, atol=0.04)


def test_inclusion_leaves_the_global_rng_alone(svi_fit: FitResult) -> None:
    state = torch.random.get_rng_state()
    InclusionProbability(samples=3)(svi_fit)
    assert torch.equal(state, torch.random.get_rng_state())


def test_snr_mean_field(svi_fit: FitResult) -> None:
    s = SignalToNoise()(svi_fit)
    loc = svi_fit.guide.locs["2__units"].detach().double()
    sd = F.softplus(svi_fit.guide.scales_unconstrained["2__units"].detach().double())
    np.testing.assert_allclose(s["2"], (loc.norm(dim=1) / sd.pow(2).sum(1).sqrt()).numpy(), rtol=1e-6)


@pytest.mark.parametrize("svi_fit", ["lowrank"], indirect=True)
def test_snr_low_rank_uses_the_full_marginal_variance(svi_fit: FitResult) -> None:
    q = svi_fit.guide.distribution()
    var = q.covariance_matrix.diagonal().detach().double()[: 6 * 5].reshape(6, 5)
    loc = q.loc.detach().double()[: 6 * 5].reshape(6, 5)
    np.testing.assert_allclose(
        SignalToNoise()(svi_fit)["0"], (loc.norm(dim=1) / var.sum(1).sqrt()).numpy(), rtol=1e-5
    )


@pytest.mark.parametrize("name", ["inclusion", "snr"])
def test_posterior_scores_refuse_map_fits(map_fit: FitResult, name: str) -> None:
    with pytest.raises(ValueError, match=f"score '{name}' needs an SVI fit"):
        make_score(name)(map_fit)


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown score 'l2'; choose one of: norm, inclusion, snr, guidance"):
        make_score("l2")
    with pytest.raises(ValueError, match="unknown direction 'in'; choose one of: incoming, outgoing, both"):
        make_score("norm", direction="in")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -1.0}, "eps must be"),
        ({"eps": float("nan")}, "eps must be"),
        ({"samples": 0}, "samples must be"),
    ],
)
def test_inclusion_options_are_checked(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InclusionProbability(**kwargs)  # type: ignore[arg-type]
