"""The evidence-vs-LOO flag means something (issue 13, item 4): PSIS-LOO from the Laplace
posterior through the GLM predictive, at each candidate's type-II prior scale, agrees with
the evidence on well-specified teacher–student data — no flag — and the flag fires when the
selection is forced away from what the data support."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bayesguide as bg
from bayesguide.comparison.loo import DISAGREE_SE
from bayesguide.datasets import teacher_student

pytestmark = pytest.mark.slow  # the shared path (a fit and eight fine-tuned candidates): ~20 s


@pytest.fixture(scope="module")
def path() -> tuple[list[bg.Candidate], torch.Tensor, torch.Tensor]:
    data = teacher_student(n=300, width=3, noise=0.1, seed=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(data.X_train.shape[1], 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0, bg.guidance.linear()), likelihood="gaussian")
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=2000, lr=1e-2, schedule="cosine", progress=False)
    cands = bg.pruning_path(fit, data.X_train, data.y_train, n_candidates=8, fine_tune=300, lr=1e-2)
    return cands, data.X_train, data.y_train


def test_loo_agrees_with_the_evidence_on_well_specified_data(
    path: tuple[list[bg.Candidate], torch.Tensor, torch.Tensor],
) -> None:
    cands, X, y = path
    cmp = bg.compare(cands, X, y, loo=True, progress=False)
    t = cmp.table
    assert cmp.best is not None
    assert not any("PSIS-LOO disagrees" in f for f in cmp.flags)
    # the draws are the candidates' Laplace posteriors through the GLM predictive: finite, and for
    # the networks that fit, near the in-sample fit (not the −10⁴ of draws through the network)
    assert np.isfinite(t["elpd_loo"]).all()
    assert t.loc[t["name"] == cmp.best.name, "elpd_loo"].iloc[0] > 0
    assert set(t["loo_corrected"]) <= {True, False} and "pareto_k_q" in t
    assert t["stacking_weight"].sum() == pytest.approx(1.0, abs=1e-6)


def test_the_flag_fires_when_the_selection_is_forced_away_from_the_data(
    path: tuple[list[bg.Candidate], torch.Tensor, torch.Tensor],
) -> None:
    cands, X, y = path
    cmp = bg.compare(cands, X, y, loo=True, kappa=200.0, progress=False)  # an Occam prior that overrules
    assert cmp.best is not None and cmp.best.widths[0] <= 2
    flag = [f for f in cmp.flags if f.startswith("PSIS-LOO disagrees with the selection")]
    assert len(flag) == 1 and f"to {cmp.best.name} by" in flag[0]
    # the gap it reports is the difference of the elpd columns, beyond DISAGREE_SE paired standard errors
    t = cmp.table.set_index("name")
    top = t["elpd_loo"].idxmax()
    assert flag[0].startswith(f"PSIS-LOO disagrees with the selection: it prefers {top} to {cmp.best.name}")
    gap = float(flag[0].split(" by ")[1].split(" ± ")[0])
    assert gap == pytest.approx(t.loc[top, "elpd_loo"] - t.loc[cmp.best.name, "elpd_loo"], abs=0.05)
    assert gap > DISAGREE_SE * float(flag[0].split(" ± ")[1].split(" nats")[0])
    assert t.loc[cmp.best.name, "stacking_weight"] < 0.01  # stacking gives the pick no weight either
    assert any(f.startswith("the architecture prior overturns the evidence") for f in cmp.flags)
