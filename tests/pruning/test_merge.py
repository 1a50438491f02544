"""Merging twin units: the groups against hand-built twins, and surgery exact against the original network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.experiment import Experiment
from bayesguide.experiment.tables import ExperimentError
from bayesguide.pruning.merge import activation_kind, merge_groups
from bayesguide.pruning.structure import analyse
from bayesguide.pruning.surgery import shrink


def _planted(act: nn.Module, factors: dict[int, tuple[int, float]], width: int = 5, d: int = 3) -> nn.Sequential:
    """A ``d-width-2`` MLP whose unit ``m`` has ``factor ×`` the incoming weights of unit ``r``."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(d, width), act, nn.Linear(width, 2)).double()
    with torch.no_grad():
        for m, (r, c) in factors.items():
            net[0].weight[m] = c * net[0].weight[r]
            net[0].bias[m] = c * net[0].bias[r]
    return net


def _keep_all_but(width: int, gone: list[int]) -> dict[str, torch.Tensor]:
    mask = torch.ones(width, dtype=torch.bool)
    mask[gone] = False
    return {"0": mask}


def test_relu_twins_at_any_positive_factor_are_found_with_that_factor() -> None:
    net = _planted(nn.ReLU(), {3: (0, 0.4), 4: (0, 2.5)})
    groups = merge_groups(analyse(net), 0.05, {"0": [0, 1, 2, 3, 4]})
    assert set(groups) == {"0"} and set(groups["0"]) == {3, 4}
    assert groups["0"][3][0] == 0 and groups["0"][3][1] == pytest.approx(0.4, rel=1e-12)
    assert groups["0"][4][0] == 0 and groups["0"][4][1] == pytest.approx(2.5, rel=1e-12)


def test_the_representative_is_the_unit_kept_longest() -> None:
    net = _planted(nn.ReLU(), {3: (0, 0.4)})
    assert merge_groups(analyse(net), 0.05, {"0": [3, 1, 2, 0, 4]}) == {"0": {0: (3, pytest.approx(2.5))}}


def test_a_negative_factor_is_no_twin_for_relu_but_is_for_tanh() -> None:
    relu = _planted(nn.ReLU(), {3: (0, -1.0)})
    assert merge_groups(analyse(relu), 0.05, {"0": list(range(5))}) == {}
    tanh = _planted(nn.Tanh(), {3: (0, -1.0)})
    assert merge_groups(analyse(tanh), 0.05, {"0": list(range(5))}) == {"0": {3: (0, -1.0)}}
    scaled = _planted(nn.Tanh(), {3: (0, 0.5)})  # tanh(z / 2) is no multiple of tanh(z)
    assert merge_groups(analyse(scaled), 0.05, {"0": list(range(5))}) == {}


def test_other_activations_merge_exact_duplicates_only() -> None:
    assert merge_groups(analyse(_planted(nn.Sigmoid(), {3: (0, 1.0)})), 0.05, {"0": list(range(5))}) == {
        "0": {3: (0, 1.0)}}
    assert merge_groups(analyse(_planted(nn.Sigmoid(), {3: (0, -1.0)})), 0.05, {"0": list(range(5))}) == {}


def test_the_tolerance_is_the_sine_of_the_angle_for_relu() -> None:
    net = _planted(nn.ReLU(), {})
    with torch.no_grad():  # unit 1 = unit 0 turned by an angle whose sine is 0.08 in its own plane
        theta0 = torch.cat([net[0].weight[0], net[0].bias[:1]])
        other = torch.randn(4, dtype=torch.float64)
        other -= (other @ theta0) / (theta0 @ theta0) * theta0
        turned = theta0 + 0.08 / (1 - 0.08**2) ** 0.5 * theta0.norm() * other / other.norm()
        net[0].weight[1], net[0].bias[1] = turned[:3], turned[3]
    order = {"0": [0, 1, 2, 3, 4]}
    assert 1 in merge_groups(analyse(net), 0.081, order).get("0", {})
    assert 1 not in merge_groups(analyse(net), 0.079, order).get("0", {})


def test_a_batchnorm_in_between_blocks_merging() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).eval()
    with torch.no_grad():
        net[0].weight[1] = 2 * net[0].weight[0]
        net[0].bias[1] = 2 * net[0].bias[0]
    assert activation_kind(analyse(net).blocks[0]) is None
    assert merge_groups(analyse(net), 0.1, {"0": [0, 1, 2, 3]}) == {}


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 2.0])
def test_the_tolerance_must_be_in_the_open_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="tolerance must be in"):
        merge_groups(analyse(_planted(nn.ReLU(), {})), bad, {"0": [0, 1]})


@pytest.mark.parametrize("act, factors", [(nn.ReLU(), {3: (0, 0.4), 4: (1, 3.0)}),
                                          (nn.LeakyReLU(0.1), {4: (2, 1.7)}),
                                          (nn.Tanh(), {3: (0, -1.0), 4: (1, 1.0)})])
def test_surgery_with_merges_computes_the_original_network(act: nn.Module,
                                                           factors: dict[int, tuple[int, float]]) -> None:
    net = _planted(act, factors)
    merges = merge_groups(analyse(net), 0.01, {"0": [0, 1, 2, 3, 4]})
    assert {m: r for m, (r, _) in merges["0"].items()} == {m: r for m, (r, _) in factors.items()}
    small, plan = shrink(net, _keep_all_but(5, list(factors)), merges)
    assert small[0].out_features == 5 - len(factors)
    assert sorted(plan.merged["0"]) == [(m, r, pytest.approx(c)) for m, (r, c) in sorted(factors.items())]
    x = torch.randn(50, 3, dtype=torch.float64)
    torch.testing.assert_close(small(x), net(x), rtol=1e-12, atol=1e-12)
    plain, _ = shrink(net, _keep_all_but(5, list(factors)))  # removal alone loses the twins' outputs
    assert not torch.allclose(plain(x), net(x), atol=1e-3)


def test_surgery_merges_convolution_channels_exactly_through_padding_and_flatten() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 5 * 5, 2)).double()
    with torch.no_grad():
        net[0].weight[2], net[0].bias[2] = 0.3 * net[0].weight[1], 0.3 * net[0].bias[1]
        net[2].weight[0], net[2].bias[0] = 2.0 * net[2].weight[2], 2.0 * net[2].bias[2]
    merges = merge_groups(analyse(net), 0.01, {"0": [1, 0, 3, 2], "2": [2, 1, 0]})
    assert merges == {"0": {2: (1, pytest.approx(0.3))}, "2": {0: (2, pytest.approx(2.0))}}
    small, _ = shrink(net, {"0": torch.tensor([True, True, False, True]), "2": torch.tensor([False, True, True])},
                      merges)
    x = torch.randn(6, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(small(x), net(x), rtol=1e-12, atol=1e-12)


def _fit_with_twins(prior: bg.priors.UnitPrior, method: str = "map") -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    net = _planted(nn.ReLU(), {3: (0, 0.5), 4: (1, 2.0)}, width=6).float()
    model = bg.GuidedModel(net, prior, "categorical")
    fit = bg.fit_map(model, X, y, steps=1, lr=1e-9, progress=False) if method == "map" else \
        bg.fit_svi(model, X, y, steps=1, lr=1e-9, progress=False)
    return fit, X, y


def test_a_merging_path_removes_the_twins_first_and_keeps_the_function() -> None:
    fit, X, y = _fit_with_twins(bg.GuidedNormal(1e-3))
    path = bg.pruning_path(fit, X, y, n_candidates=2, threshold=None, merge=0.05)
    widths = [c.widths for c in path]
    assert widths == [(6,), (4,), (1,)]  # the point where both twins are gone, between full and smallest
    merged = path[1]
    # by norm the path keeps unit 0 longer than its half, unit 4 longer than its half (unit 1)
    assert set(merged.kept["0"]) == {0, 2, 4, 5} and "2 merged into twins" in merged.rule
    torch.testing.assert_close(merged.module(X), path[0].module(X), rtol=1e-5, atol=1e-5)
    plain = bg.pruning_path(fit, X, y, removals=[2], threshold=None)[0]
    assert not torch.allclose(plain.module(X), path[0].module(X), atol=1e-3)


def test_merging_needs_a_point_estimate_and_a_valid_tolerance() -> None:
    fit, X, y = _fit_with_twins(bg.GuidedNormal(1e-3), method="svi")
    with pytest.raises(ValueError, match="merge needs a point-estimate fit"):
        bg.pruning_path(fit, X, y, merge=0.1)
    map_fit, _, _ = _fit_with_twins(bg.GuidedNormal(1e-3))
    for bad in (0.0, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="merge must be a tolerance"):
            bg.pruning_path(map_fit, X, y, merge=bad)  # type: ignore[arg-type]


def test_the_experiment_key_reaches_the_selection_and_is_validated() -> None:
    assert Experiment.from_dict({}).selection(progress=False).merge == 0.1
    off = Experiment.from_dict({"select": {"merge": 0.0}})
    assert off.selection(progress=False).merge is None and "merge" not in off.to_dict()["select"]
    with pytest.raises(ExperimentError, match=r"\[select\] merge must be a tolerance"):
        Experiment.from_dict({"select": {"merge": 1.5}})


def test_a_twin_that_min_width_keeps_is_not_removed() -> None:
    fit, X, y = _fit_with_twins(bg.GuidedNormal(1e-3))
    path = bg.pruning_path(fit, X, y, n_candidates=2, threshold=None, merge=0.05, min_width=5)
    assert [c.widths for c in path] == [(6,), (5,)]  # one unit removable: the half of unit 0, a twin, merged
    torch.testing.assert_close(path[1].module(X), path[0].module(X), rtol=1e-5, atol=1e-5)
