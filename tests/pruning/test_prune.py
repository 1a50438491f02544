"""bg.prune and the Candidate: end to end on small fits, posterior slicing, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import bayesguide as bg
from bayesguide.infer import FitResult
from bayesguide.pruning import Candidate, PruningWarning, prune


def test_threshold_removes_the_dead_units_exactly(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    cand = prune(map_fit, threshold=1e-3)
    assert isinstance(cand, Candidate)
    assert cand.kept == {"0": (0, 2, 3, 5), "2": (0, 1, 2, 4)}
    assert cand.widths == (4, 4) and cand.original_widths == (6, 5)
    assert cand.module[0].out_features == 4 and cand.module[4].in_features == 4
    assert cand.n_params == sum(p.numel() for p in cand.module.parameters())
    assert cand.original_params == sum(p.numel() for p in map_fit.module.parameters())
    assert cand.flops == 2 * (4 * 4 + 4 * 4 + 4 * 3) and cand.original_flops == 2 * (4 * 6 + 6 * 5 + 5 * 3)
    X, _ = data
    torch.testing.assert_close(cand.predict(X), map_fit.predict(X), atol=1e-5, rtol=0)
    assert map_fit.module[0].out_features == 6  # the fit is untouched
    assert cand.fit is map_fit and "threshold" in cand.rule


def test_candidate_is_frozen_and_prints(map_fit: FitResult) -> None:
    cand = prune(map_fit, threshold=1e-3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cand.widths = (1, 1)  # type: ignore[misc]
    text = str(cand)
    assert (
        "Candidate w4-4: widths [4, 4] of [6, 5]" in text
        and "hidden layer 1 (module 0): kept 4 units [0, 2, 3, 5]" in text
    )


def test_pruned_model_keeps_prior_family_strength_and_sliced_guidance(map_fit: FitResult) -> None:
    cand = prune(map_fit, threshold=1e-3)
    model = cand.model
    assert type(model.prior) is bg.GuidedLaplace and model.prior.strength == map_fit.model.prior.strength
    torch.testing.assert_close(
        model.coefficients["0.units"], map_fit.model.coefficients["0.units"][[0, 2, 3, 5]]
    )
    torch.testing.assert_close(model.coefficients["4.units"], map_fit.model.coefficients["4.units"])
    assert model.likelihood is map_fit.model.likelihood


def test_each_rule_by_keyword(map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert prune(map_fit, keep=2).widths == (2, 2)
    assert prune(map_fit, rule="prefix", keep={"0": 3, "2": 1}).kept == {"0": (0, 1, 2), "2": (0,)}
    assert prune(map_fit, fraction=0.0).widths == (4, 4)
    assert prune(map_fit, score="guidance", keep=1).kept == {"0": (0,), "2": (0,)}
    X, y = data
    small = prune(map_fit, budget=50, X=X, y=y)
    assert small.n_params <= 50 < prune(map_fit, threshold=1e-3).n_params
    assert prune(map_fit, budget=100, budget_unit="flops").flops <= 100


def test_nothing_dead_gives_the_same_size(
    svi_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    cand = prune(svi_fit, threshold=0.0, X=data[0], y=data[1])
    assert cand.widths == (6, 5) and cand.n_params == cand.original_params
    torch.testing.assert_close(cand.predict(data[0]), svi_fit.predict(data[0]), atol=0, rtol=0)


@pytest.mark.parametrize("svi_fit", ["normal", "lowrank"], indirect=True)
def test_svi_guide_is_marginalised_onto_the_kept_weights(svi_fit: FitResult) -> None:
    cand = prune(svi_fit, keep={"0": 4, "2": 3}, score="snr")
    means = cand.guide.mean_values()
    params = dict(cand.module.named_parameters())
    for site in cand.model.sites:  # the guide's mean is the pruned network
        torch.testing.assert_close(means[site.name], site.pack(params), atol=1e-6, rtol=0)
    kept0 = torch.tensor(cand.kept["0"])
    old_var, new_var = _variances(svi_fit), _variances_of(cand)
    torch.testing.assert_close(new_var["0.units"], old_var["0.units"][kept0])
    kept2 = torch.tensor(cand.kept["2"])
    cols = torch.cat([kept0, torch.tensor([6])])
    torch.testing.assert_close(new_var["2.units"], old_var["2.units"][kept2][:, cols])


def _variances(fit: FitResult) -> dict[str, torch.Tensor]:
    from bayesguide.pruning.scores import marginal_variances

    return marginal_variances(fit)


def _variances_of(cand: Candidate) -> dict[str, torch.Tensor]:
    fake = dataclasses.replace(cand.fit, model=cand.model, guide=cand.guide)
    return _variances(fake)


@pytest.mark.parametrize("svi_fit", ["lowrank"], indirect=True)
def test_low_rank_marginal_covariance_is_the_sub_block(svi_fit: FitResult) -> None:
    cand = prune(svi_fit, keep=2)
    old = svi_fit.guide.distribution().covariance_matrix.detach()
    new = cand.guide.distribution().covariance_matrix.detach()
    kept0 = list(cand.kept["0"])
    idx = [j * 5 + c for j in kept0 for c in range(5)]  # site 0.units: rows of 5 (4 weights + bias)
    torch.testing.assert_close(new[:10, :10], old[idx][:, idx])


def test_inclusion_score_on_svi(svi_fit: FitResult) -> None:
    cand = prune(svi_fit, threshold=0.5, score="inclusion", samples=32)
    assert all(w >= 1 for w in cand.widths)


def test_rule_that_empties_a_layer_warns(map_fit: FitResult) -> None:
    with pytest.warns(PruningWarning, match="removes every unit of layer"):
        cand = prune(map_fit, threshold=1e6)
    assert cand.widths == (1, 1)


def test_data_mismatch_is_refused(map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="not the data this fit was trained on"):
        prune(map_fit, threshold=1e-3, X=X + 1.0, y=y)
    with pytest.raises(ValueError, match="pass both X and y"):
        prune(map_fit, threshold=1e-3, X=X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": -1.0}, "threshold must be a finite number >= 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number >= 0"),
        ({"keep": 7}, r"keep-k for layer '0' must be an int in \[1, 6\]"),
        ({"keep": 0}, r"keep-k for layer '0' must be an int in \[1, 6\]"),
        ({}, "give exactly one of threshold, fraction, keep or budget"),
        ({"threshold": 1.0, "keep": 2}, "give exactly one of"),
        (
            {"rule": "lasso", "threshold": 1.0},
            "unknown rule 'lasso'; choose one of: threshold, relative, keep_k, prefix, budget",
        ),
        ({"rule": "keep_k", "threshold": 1.0}, "rule 'keep_k' needs keep="),
        ({"score": "magnitude", "threshold": 1.0}, "unknown score 'magnitude'; choose one of"),
        ({"budget": 1e9, "budget_unit": "bytes"}, "unknown budget unit 'bytes'"),
    ],
)
def test_bad_arguments(map_fit: FitResult, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prune(map_fit, **kwargs)  # type: ignore[arg-type]


def test_not_a_fit() -> None:
    with pytest.raises(TypeError, match="expected a FitResult"):
        prune("fit", threshold=1.0)  # type: ignore[arg-type]


def test_custom_score_and_rule_plug_in(map_fit: FitResult) -> None:
    def first_two(fit: FitResult) -> dict[str, np.ndarray]:
        return {"0": np.array([6.0, 5, 4, 3, 2, 1]), "2": np.array([1.0, 2, 3, 4, 5])}

    def top(scores: dict[str, np.ndarray], context: object) -> dict[str, np.ndarray]:
        return {k: v >= np.sort(v)[-2] for k, v in scores.items()}

    cand = prune(map_fit, score=first_two, rule=top)
    assert cand.kept["0"] == (0, 1)
    assert set(cand.kept["2"]) >= {3, 4}  # unit 3 is dead in the fit but the rule keeps it


def test_bad_custom_scores_are_refused(map_fit: FitResult) -> None:
    with pytest.raises(
        ValueError, match=r"scores name layers \['0'\], expected the prunable layers \['0', '2'\]"
    ):
        prune(map_fit, score=lambda fit: {"0": np.ones(6)}, threshold=0.1)
    with pytest.raises(ValueError, match="scores of layer '2' must be 5 finite numbers"):
        prune(map_fit, score=lambda fit: {"0": np.ones(6), "2": np.full(5, np.nan)}, threshold=0.1)


def test_cnn_candidate_counts_match_the_module() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.BatchNorm1d(3 * 9),
        torch.nn.Linear(27, 2),
    )  # fmt: skip
    X, y = torch.randn(16, 1, 5, 5), torch.randint(0, 2, (16,))
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0)), X, y, steps=2, progress=False)
    assert prune(fit, keep=2).flops is None  # no input shape: FLOPs unknown
    cand = prune(fit, keep=2, X=X, y=y)
    assert cand.widths == (2, 2)
    assert cand.n_params == sum(p.numel() for p in cand.module.parameters())
    # 2·(out·in·k² per position): conv 2·(2·1·9)·25 + conv 2·(2·2·9)·9 + linear 2·(2·18)
    assert cand.flops == 2 * 18 * 25 + 2 * 36 * 9 + 2 * 36
    assert cand.module[6].num_features == 18 and cand.module[7].in_features == 18
