"""pruning_path: nested candidates, the dead-unit point, fine-tuning, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from bayesguide.infer import FitResult
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
