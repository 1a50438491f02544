"""Candidates worth comparing: paths that start at the collapsed units, exact path points,
bisection near the best candidate, and the convergence check of every re-fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer import FitResult
from bayesguide.pipeline import Selection, bisection_points, select_architecture
from bayesguide.pruning import check_convergence, pruning_path
from bayesguide.pruning.path import removal_order


def test_start_at_threshold_leaves_out_the_collapsed_units(map_fit: FitResult, data) -> None:
    X, y = data
    full = pruning_path(map_fit, X, y, n_candidates=4, threshold=1e-6)
    start = pruning_path(map_fit, X, y, n_candidates=4, threshold=1e-6, start="threshold")
    assert full[0].widths == (6, 5)
    assert start[0].widths == (4, 4)  # the three killed units are gone from every candidate
    assert all(sum(c.widths) <= 8 for c in start) and start[-1].widths == (1, 1)
    assert len(start) == 4  # the points are spread over what is left, not lost
    with pytest.raises(ValueError, match="needs a threshold"):
        pruning_path(map_fit, X, y, start="threshold")
    with pytest.raises(ValueError, match="start must be 'full' or 'threshold', got 'middle'"):
        pruning_path(map_fit, X, y, start="middle")


def test_exact_removals_are_the_prefixes_of_the_ranking(map_fit: FitResult, data) -> None:
    X, y = data
    norms = {k: v.numpy() for k, v in map_fit.model.unit_norms(map_fit.module).items()}
    order = removal_order(norms)
    path = pruning_path(map_fit, X, y, removals=[5, 2])
    assert [sum(c.widths) for c in path] == [11 - 2, 11 - 5]
    gone = {(layer, j) for layer, j in order[:5]}
    kept = {(layer, j) for layer, units in path[1].kept.items() for j in units}
    assert not gone & kept and len(kept) == 6
    with pytest.raises(ValueError, match=r"removals must be ints in \[0, 9\]"):
        pruning_path(map_fit, X, y, removals=[10])


def test_bisection_points_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        removed = sorted(set(rng.integers(0, 40, size=rng.integers(1, 6)).tolist()))
        best = int(rng.integers(len(removed)))
        want = []
        if best > 0 and removed[best] - removed[best - 1] >= 2:
            want.append(math.floor((removed[best] + removed[best - 1]) / 2))
        if best + 1 < len(removed) and removed[best + 1] - removed[best] >= 2:
            want.append(math.floor((removed[best] + removed[best + 1]) / 2))
        got = bisection_points(removed, best)
        assert got == want
        assert all(p not in removed for p in got)  # never a point that is already there


def _teacher() -> tuple[FitResult, torch.Tensor, torch.Tensor]:
    data = bg.datasets.teacher_student(n=300, n_features=4, width=3, noise=0.1, seed=2, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 24), nn.Tanh(), nn.Linear(24, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0), "gaussian", noise=0.1)
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=600, lr=0.01, progress=False)
    return fit, data.X_train, data.y_train


def test_bisection_refines_the_path_near_the_best_and_keeps_it_nested() -> None:
    fit, X, y = _teacher()
    # merge=None: the path's three points only (this fit has a twin, whose merge point the default adds)
    sel = Selection(n_candidates=3, threshold=None, fine_tune=100, progress=False, bisect=0, merge=None)
    coarse = select_architecture(fit, X, y, sel)
    assert [c.widths[0] for c in coarse.candidates] == [24, 12, 1]
    fine = select_architecture(fit, X, y, Selection(n_candidates=3, threshold=None, fine_tune=100, progress=False,
                                                    bisect=3, merge=None))
    widths = [c.widths[0] for c in fine.candidates]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
    assert set(widths) > {24, 12, 1} and len(widths) <= 3 + 6
    # the new points lie between the best and its neighbours of the round before: around the pick
    best = fine.best.widths[0]
    assert any(abs(w - best) < 6 for w in widths if w != best)
    # every added candidate is a nested prefix of the same ranking
    kept = [{(k, j) for k, v in c.kept.items() for j in v} for c in fine.candidates]
    assert all(b <= a for a, b in itertools.pairwise(kept))
    assert abs(fine.table["posterior_prob"].sum() - 1) < 1e-9


def test_every_refit_is_checked_for_convergence_and_reported() -> None:
    fit, X, y = _teacher()
    few = select_architecture(fit, X, y, Selection(n_candidates=3, threshold=None, fine_tune=30, bisect=0, merge=None,
                                                   fine_tune_patience=None, fine_tune_lr=1e-4, progress=False))
    table = few.table
    assert {"converged", "fine_tune_steps", "loss_change", "grad_rms"} <= set(table.columns)
    assert (table["fine_tune_steps"] == 30).all()
    # 30 steps at lr 1e-4 from a cut network: still falling, so marked and flagged (the uncut one was at a mode)
    assert table["converged"].tolist() == [True, False, False]
    assert [f for f in few.flags if "fine-tuning did not converge for w12, w1 (" in f]
    long = select_architecture(fit, X, y, Selection(n_candidates=3, threshold=None, fine_tune=3000, bisect=0,
                                                    merge=None, fine_tune_lr=0.01, fine_tune_schedule="constant",
                                                    fine_tune_patience=100, progress=False))
    # converged means exactly: the objective fell by less than 0.5 nats over the last window
    assert (long.table["converged"] == (long.table["loss_change"] < 0.5)).all()
    assert (long.table["loss_change"] < 1.0).all()  # within 2× the tolerance (0.44–0.73 nats here)
    assert (long.table["fine_tune_steps"] < 3000).any()  # stopped on the plateau
    # the cut candidates are much closer to a mode (the uncut group-lasso fit is not smooth at its shrinking
    # units, where the gradient keeps a magnitude ≈ λ√p: the decision is the objective's, not the gradient's)
    assert (long.table["grad_rms"][1:] < 0.1 * few.table["grad_rms"][1:]).all()


def test_convergence_check_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    y = X[:, :1] - 0.5 * X[:, 1:] + 0.1 * torch.randn(50, 1, generator=gen, dtype=torch.float64)
    model = bg.GuidedModel(nn.Sequential(nn.Linear(2, 1).double()), bg.GuidedNormal(0.5), "gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=40, lr=0.05, progress=False)
    net = fit.module[0]
    c = check_convergence(fit, X, y, window=10)
    losses = np.asarray(fit.losses)
    assert c.loss_change == pytest.approx(losses[-20:-10].mean() - losses[-10:].mean())
    # the gradient of the negative log joint of a linear model, by hand: (Xᵀ(Xw − y)/σ² + 2λ w)
    w = torch.cat([net.weight.detach().reshape(-1), net.bias.detach()])
    Xa = torch.cat([X, torch.ones(50, 1, dtype=torch.float64)], 1)
    g = Xa.T @ (Xa @ w - y[:, 0]) / 0.01 + 2 * 0.5 * w
    assert c.grad_rms == pytest.approx(float(g.pow(2).mean().sqrt()), rel=1e-8)
    with pytest.raises(ValueError, match="tol must be"):
        check_convergence(fit, X, y, tol=0)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        check_convergence(fit, X, y, window=0)
    with pytest.raises(TypeError, match="check_convergence takes a FitResult, got Sequential"):
        check_convergence(fit.module, X, y)  # type: ignore[arg-type]
    assert not check_convergence(fit, X, y, window=30).converged  # too few steps to check
