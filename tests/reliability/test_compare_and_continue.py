"""Issue 14, items 1 (continuing a fit on other data), 5 (duplicate candidates) and 8 (what
``hessian="auto"`` chooses, and why)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.comparison import plan_hessian


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    return X, torch.tanh(X[:, :1]) + 0.1 * torch.randn(40, 1, generator=gen, dtype=torch.float64)


def _model(prior: bg.UnitPrior | None = None) -> bg.GuidedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    return bg.GuidedModel(net, prior or bg.GuidedGroupLasso(1.0), "gaussian", noise=0.1)


@pytest.mark.parametrize("fitter", ["map", "svi", "l0", "relevance"])
def test_continuing_a_fit_on_other_data_is_refused(fitter: str) -> None:
    X, y = _data(0)
    X2, y2 = _data(1)
    priors = {"map": bg.GuidedGroupLasso(1.0), "svi": bg.GuidedNormal(1.0), "l0": bg.HardConcreteGates(1.0),
              "relevance": bg.GuidedNormal(1.0, bg.guidance.relevance(every=2))}
    fit_fn = {"map": bg.fit_map, "svi": bg.fit_svi, "l0": bg.fit_l0, "relevance": bg.fit_relevance}[fitter]
    model = _model(priors[fitter])
    fit = fit_fn(model, X, y, steps=4, progress=False)
    with pytest.raises(ValueError, match="init was fitted on other data"):
        bg.resume_fit(fit, X2, y2, 2)
    assert bg.resume_fit(fit, X, y, 2).steps == 6  # its own data: fine


def test_a_warm_start_from_another_fitter_on_other_data_warns() -> None:
    X, y = _data(0)
    X2, y2 = _data(1)
    model = _model(bg.GuidedNormal(1.0))
    fit = bg.fit_map(model, X, y, steps=4, progress=False)
    with pytest.warns(UserWarning, match="fitted on other data: its weights are only a starting point"):
        post = bg.fit_svi(model, X2, y2, steps=3, init=fit, progress=False)
    assert post.steps == 3


def test_compare_refuses_the_same_candidate_twice_and_clashing_names() -> None:
    X, y = _data(0)
    fit = bg.fit_map(_model(), X, y, steps=30, lr=0.02, progress=False)
    c = bg.prune(fit, keep=4)
    with pytest.raises(ValueError, match=r"candidates 0 and 1 are the same candidate \(w4\): pass each one once"):
        bg.compare([c, c], X, y, progress=False)
    other = bg.prune(fit, rule="prefix", keep=4)  # the first 4 of the guided order: other units
    assert other.name == c.name and other.kept != c.kept
    with pytest.raises(ValueError, match=r"candidates 0 and 1 are both w4 \(the same widths\) but keep different"):
        bg.compare([c, other], X, y, progress=False)
    assert len(bg.compare([c, bg.prune(fit, keep=2)], X, y, progress=False).table) == 2


def test_hessian_auto_says_what_it_chose_and_why() -> None:
    small = plan_hessian("auto", 5_000, 1_000, 10)
    assert small[0] == "full" and small[1].startswith("auto chose full: 5,000 parameters")
    memory = plan_hessian("auto", 15_000, 1_000, 10)  # 32 · 15,000² bytes = 6.7 GiB > 4 GiB
    assert memory == ("kron", "auto chose kron: the full GGN of 15,000 parameters needs ~6.7 GiB (budget 4 GiB)")
    time = plan_hessian("auto", 8_000, 200_000, 10)  # N C P² = 1.3e14 multiply-adds
    assert time[0] == "kron" and "multiply-adds on 200,000 examples" in time[1]
    assert plan_hessian("auto", 30_000, 100, 1)[1].endswith("exceeds 20,000 parameters")
    assert plan_hessian("diag", 30_000, 100, 1) == ("diag", "diag as asked")
    with pytest.raises(ValueError, match=r"hessian='full' needs a 30,000×30,000 matrix"):
        plan_hessian("full", 30_000, 100, 1)
    X, y = _data(0)
    fit = bg.fit_map(_model(), X, y, steps=10, progress=False)
    cmp = bg.compare(bg.pruning_path(fit, X, y, n_candidates=2), X, y, progress=False)
    assert cmp.settings["hessian"] == "full" and cmp.settings["hessian_reason"].startswith("auto chose full")
