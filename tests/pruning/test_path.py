"""pruning_path: nested candidates, the dead-unit point, fine-tuning, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import bayesguide as bg
from bayesguide.infer import FitResult
from bayesguide.pipeline import Selection, make_path, select_architecture
from bayesguide.pruning import pruning_path
from bayesguide.pruning.path import removal_order


def test_path_is_nested_from_full_to_one_unit_per_layer(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    X, y = data
    path = pruning_path(map_fit, X, y, n_candidates=4)
    assert path[0].widths == (6, 5) and path[-1].widths == (1, 1)
    assert [sum(c.widths) for c in path] == [11, 8, 5, 2]  # 9 removable units, r = 0, 3, 6, 9
    for big, small in itertools.pairwise(path):
        for layer in big.kept:
            assert set(small.kept[layer]) <= set(big.kept[layer])
    torch.testing.assert_close(path[0].predict(X), map_fit.predict(X), atol=1e-5, rtol=0)


def test_threshold_point_is_the_dead_unit_candidate(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    X, y = data
    path = pruning_path(map_fit, X, y, n_candidates=2, threshold=1e-3)
    assert [c.widths for c in path] == [(6, 5), (4, 4), (1, 1)]
    torch.testing.assert_close(path[1].predict(X), map_fit.predict(X), atol=1e-5, rtol=0)


def test_geometric_spacing_resolves_small_networks(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    X, y = data
    path = pruning_path(map_fit, X, y, n_candidates=4, spacing="geometric")
    # 11 units, 9 removable: kept counts 11·(2/11)^(i/3) = 11, 6.2, 3.6, 2 → rounded removals 0, 5, 7, 9
    assert [sum(c.widths) for c in path] == [11, 6, 4, 2]
    for big, small in itertools.pairwise(path):
        for layer in big.kept:
            assert set(small.kept[layer]) <= set(big.kept[layer])


def test_min_width() -> None:
    import numpy as np

    order = removal_order({"0": np.array([1.0, 2.0, 3.0]), "2": np.array([0.5, 0.1])}, min_width=2)
    assert order == [("0", 0)]  # layer "2" is already at 2 units
    assert removal_order({"0": np.array([1.0, 2.0, 3.0]), "2": np.array([0.5, 0.1])}) == [
        ("2", 1),
        ("0", 0),
        ("0", 1),
    ]


def test_fine_tuning_warm_starts_map_on_the_candidate_model(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    X, y = data
    plain = pruning_path(map_fit, X, y, n_candidates=2)
    tuned = pruning_path(map_fit, X, y, n_candidates=2, fine_tune=5, lr=0.01)
    for p, t in zip(plain, tuned):
        assert t.tuned is not None and t.tuned.steps == 5 and t.tuned.model is t.model
        assert t.widths == p.widths and t.module is t.tuned.module
        assert t.tuned.losses[-1] < t.tuned.losses[0]
        assert "fine-tuned 5 MAP steps" in str(t)
    assert p.module is not t.module


def test_path_refuses_other_data(map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="not the data this fit was trained on"):
        pruning_path(map_fit, X[:10], y[:10])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_candidates": 1}, "n_candidates must be an int >= 2"),
        ({"fine_tune": -1}, "fine_tune must be a number of steps >= 0"),
        ({"min_width": 0}, r"min_width must be an int in \[1, 5\]"),
        ({"min_width": 6}, r"min_width must be an int in \[1, 5\]"),
        ({"threshold": float("nan")}, "threshold must be a finite number >= 0"),
        ({"score": "bogus"}, "unknown score 'bogus'; choose one of"),
        ({"spacing": "log"}, "spacing must be 'linear' or 'geometric'"),
    ],
)
def test_bad_arguments(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        pruning_path(map_fit, *data, **kwargs)  # type: ignore[arg-type]


def test_fine_tuning_l0_and_horseshoe_paths_uses_the_uniform_gaussian() -> None:
    from torch import nn

    import bayesguide as bg
    from bayesguide.pruning.tuning import tuning_model

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(48, 3, generator=gen)
    y = torch.tanh(X[:, :1]) + 0.1 * torch.randn(48, 1, generator=gen)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    l0 = bg.fit_l0(bg.GuidedModel(net, bg.HardConcreteGates(2.0), "gaussian", noise=0.3), X, y, steps=20,
                   progress=False)
    hs = bg.fit_svi(bg.GuidedModel(net, bg.GroupHorseshoe(2.0, tau0=0.5), "gaussian", noise=0.3), X, y, steps=20,
                    progress=False)
    for fit in (l0, hs):
        path = pruning_path(fit, X, y, n_candidates=2, fine_tune=5)
        for cand in path:
            assert cand.tuned is not None and cand.tuned.steps == 5
            assert cand.tuned.model is cand.model  # the candidate keeps its own prior (for the evidence)
            used = tuning_model(cand)
            assert isinstance(used.prior, bg.GuidedNormal) and used.prior.strength == 2.0
            assert torch.equal(used.coefficients[used.prunable_sites[0].name],
                               torch.ones(cand.widths[0], dtype=torch.float64))


# --------------------------------------------------------------------------- round_to

def _conv_fit() -> tuple[FitResult, torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """A small CNN (12 and 10 channels, then 7 Linear units) and distinct random unit scores."""
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 12, 3), torch.nn.ReLU(), torch.nn.Conv2d(12, 10, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(40, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3),
    )
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedLaplace(0.1)), X, y, steps=3, progress=False)
    rng = np.random.default_rng(0)
    scores = {"0": rng.permutation(12) + 0.5, "2": rng.permutation(10) + 0.25, "5": rng.permutation(7) + 0.75}
    return fit, X, y, scores


def _top(scores: np.ndarray, k: int) -> set[int]:
    """The ``k`` best-scored units (independent of the path's ranking code)."""
    return {int(j) for j in np.argsort(-scores)[:k]}


@pytest.mark.parametrize("round_to", [4, 8])
def test_round_to_keeps_multiples_of_the_best_scored_units(round_to: int) -> None:
    fit, X, y, scores = _conv_fit()
    widths = {"0": 12, "2": 10, "5": 7}
    removable = sum(widths.values()) - 3
    plain = pruning_path(fit, X, y, score=lambda f: scores, removals=list(range(removable + 1)))
    rounded = pruning_path(fit, X, y, score=lambda f: scores, removals=list(range(removable + 1)),
                           round_to=round_to)
    expected = sorted({tuple(min(n, -(-k // round_to) * round_to) for n, k in zip(widths.values(), c.widths))
                       for c in plain}, key=sum, reverse=True)
    assert [c.widths for c in rounded] == expected  # each point rounded up, duplicates kept once
    assert len({c.name for c in rounded}) == len(rounded)
    for cand in rounded:
        for (layer, n), kept in zip(widths.items(), cand.widths):
            assert kept % round_to == 0 or kept == n  # a multiple, or the whole layer (never wider)
            assert set(cand.kept[layer]) == _top(scores[layer], kept)  # the next-best units were added back
    for big, small in itertools.pairwise(rounded):
        assert all(set(small.kept[k]) <= set(big.kept[k]) for k in big.kept)  # still nested
    with torch.no_grad():  # the cut networks run
        assert rounded[-1].module(X).shape == (16, 3)


def test_round_to_respects_min_width_and_layers_narrower_than_it() -> None:
    fit, X, y, scores = _conv_fit()
    path = pruning_path(fit, X, y, score=lambda f: scores, n_candidates=6, min_width=5, round_to=4)
    assert path[-1].widths == (8, 8, 7)  # min_width 5 rounds up to 8; 7 Linear units < 8: never cut
    assert all(w >= 5 for c in path for w in c.widths)
    whole = pruning_path(fit, X, y, score=lambda f: scores, n_candidates=4, round_to=16)
    assert [c.widths for c in whole] == [(12, 10, 7)]  # every layer narrower than 16 stays whole
    ones = pruning_path(fit, X, y, score=lambda f: scores, n_candidates=4, round_to=1)
    assert [c.widths for c in ones] == [c.widths for c in pruning_path(fit, X, y, score=lambda f: scores,
                                                                        n_candidates=4)]


@pytest.mark.parametrize("bad", [0, -4, True, 2.5, "8"])
def test_round_to_refuses_bad_values(map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor], bad: object) -> None:
    with pytest.raises(ValueError, match=r"round_to must be a positive int \(units per multiple\) or None, got"):
        pruning_path(map_fit, *data, round_to=bad)  # type: ignore[arg-type]


def test_selection_round_to_reaches_the_path_and_bisection_adds_no_duplicate(
    map_fit: FitResult, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    X, y = data
    sel = Selection(round_to=4, n_candidates=4, threshold=None, fine_tune=0, bisect=3, progress=False,
                    hessian="full", optimize_prior=False)
    assert [c.widths for c in make_path(map_fit, X, y, sel)] == [(6, 5), (4, 4)]
    cmp = select_architecture(map_fit, X, y, sel)
    names = list(cmp.table["name"])
    assert len(names) == len(set(names))
    assert {tuple(w) for w in cmp.table["widths"]} <= {(6, 5), (6, 4), (4, 5), (4, 4)}


def test_a_cnn_path_never_holds_two_points_of_the_same_widths() -> None:
    """Zero padding keeps some removed channels (their constant output is not constant at the border), so
    late points of a CNN's path used to cut to equal widths, and compare() refused the duplicate names."""
    torch.manual_seed(0)
    X = torch.rand(120, 1, 6, 6)
    y = torch.randint(0, 3, (120,))
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 36, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedGroupLasso(3.0)), X, y, steps=60, lr=1e-2, progress=False)
    path = pruning_path(fit, X, y, n_candidates=29)
    names = [c.name for c in path]
    assert len(names) == len(set(names))
    totals = [sum(c.widths) for c in path]
    assert totals == sorted(totals, reverse=True) and path[0].widths == (8, 8, 12)
    kept = [{(k, int(j)) for k, v in c.kept.items() for j in v} for c in path]
    assert all(a >= b for a, b in itertools.pairwise(kept))  # still nested
