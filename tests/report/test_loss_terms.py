"""The loss history's two terms: recorded by the MAP fitters, kept on disk, drawn apart.

The reference is a hand computation on a tiny network: the data term by
``torch.nn.functional.cross_entropy`` and the penalty and the prior's constant by a
naive loop over units and weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bayesguide as bg
from bayesguide.infer import loop as loop_module
from bayesguide.report import render_html, render_markdown
from bayesguide.report.content import loss_caption, setup_groups
from bayesguide.report.convert import fit_record
from bayesguide.report.figures import loss_figure
from bayesguide.results import FitRecord

STRENGTH = 0.3


def _net() -> torch.nn.Sequential:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Tanh(),
                               torch.nn.Linear(3, 2)).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g, dtype=torch.float64), torch.randint(0, 2, (24,), generator=g)


def _by_hand(net: torch.nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """``(nll, penalty, −log normaliser)`` of guided L1 with linear guidance, by a naive loop.

    Unit ``j`` (1-based) of a hidden layer of ``n`` units has ``g = j / n``, and each of
    its weights (incoming row and bias) a Laplace prior of rate ``λ g``: density
    ``λ g / 2 · exp(−λ g |w|)``. The output layer is not prunable: its weights have the
    Gaussian ``√(λ / π) · exp(−λ w²)`` (guided L2 with ``g = 1``).
    """
    with torch.no_grad():
        nll = float(F.cross_entropy(net(X), y, reduction="sum"))
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    penalty, neg_log_norm = 0.0, 0.0
    for i, layer in enumerate(linears):
        n = layer.out_features
        for j in range(n):
            weights = [*layer.weight[j].tolist(), layer.bias[j].item()]
            for w in weights:
                if i == len(linears) - 1:
                    penalty += STRENGTH * w * w
                    neg_log_norm -= 0.5 * math.log(STRENGTH / math.pi)
                else:
                    rate = STRENGTH * (j + 1) / n
                    penalty += rate * abs(w)
                    neg_log_norm -= math.log(rate / 2)
    return nll, penalty, neg_log_norm


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_terms_match_a_hand_computation(engine: str) -> None:
    X, y = _data()
    net = _net()
    nll, penalty, const = _by_hand(net, X, y)
    model = bg.GuidedModel(net, bg.GuidedLaplace(strength=STRENGTH, guidance=bg.guidance.linear()))
    fit = bg.fit_map(model, X, y, steps=6, lr=1e-2, progress=False, engine=engine)
    terms = fit.loss_terms
    assert set(terms) == {"nll", "penalty"}
    assert terms["nll"].shape == terms["penalty"].shape == fit.losses.shape == (6,)
    # step 0 is evaluated at the initial weights (the network is copied, never changed)
    assert terms["nll"][0] == pytest.approx(nll, rel=1e-9)
    assert terms["penalty"][0] == pytest.approx(penalty, rel=1e-9)
    # the sum is the objective up to the prior's constant, the same at every step
    assert np.allclose(fit.losses - terms["nll"] - terms["penalty"], const, rtol=1e-9, atol=1e-9)
    assert (np.diff(terms["nll"]) < 0).any()  # the data term moves: training is visible in it


def test_minibatch_data_term_is_scaled_to_the_full_data() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedLaplace(strength=STRENGTH))
    fit = bg.fit_map(model, X, y, steps=4, lr=1e-2, batch_size=8, progress=False)
    const = fit.losses - fit.loss_terms["nll"] - fit.loss_terms["penalty"]
    assert np.allclose(const, const[0], rtol=1e-9)


def test_resume_save_and_load_keep_the_terms(tmp_path: Path) -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedLaplace(strength=STRENGTH))
    first = bg.fit_map(model, X, y, steps=5, lr=1e-2, progress=False)
    more = bg.fit_map(model, X, y, steps=3, lr=1e-2, progress=False, init=first)
    assert more.loss_terms["nll"].shape == (8,)
    assert np.array_equal(more.loss_terms["nll"][:5], first.loss_terms["nll"])
    more.save(tmp_path / "fit")
    back = bg.FitResult.load(tmp_path / "fit", model)
    for key in ("nll", "penalty"):
        assert np.array_equal(back.loss_terms[key], more.loss_terms[key])
    # a fit saved before the terms existed loads with none, and a resume leaves its steps NaN
    record = json.loads((tmp_path / "fit" / "fit.json").read_text())
    del record["loss_terms"]
    (tmp_path / "fit" / "fit.json").write_text(json.dumps(record))
    old = bg.FitResult.load(tmp_path / "fit", model)
    assert old.loss_terms == {}
    resumed = bg.fit_map(model, X, y, steps=2, lr=1e-2, progress=False, init=old)
    assert np.isnan(resumed.loss_terms["nll"][:8]).all() and np.isfinite(resumed.loss_terms["nll"][8:]).all()
    assert "NLL" in str(more) and "penalty" in str(more)


def test_other_fitters_record_no_terms() -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedNormal(strength=STRENGTH))
    post = bg.fit_svi(model, X, y, steps=3, progress=False)
    assert post.loss_terms == {}
    assert fit_record(post).loss_terms is None


def test_progress_bar_shows_the_data_term(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[dict[str, Any]] = []

    class Bar:
        disable = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def set_postfix(self, values: dict[str, Any], refresh: bool = True) -> None:
            shown.append(dict(values))

        def update(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(loop_module, "tqdm", Bar)
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedLaplace(strength=STRENGTH))
    fit = bg.fit_map(model, X, y, steps=3, lr=1e-2, progress=True)
    assert shown and set(shown[0]) == {"nll", "penalty"}
    assert float(shown[0]["nll"]) == pytest.approx(fit.loss_terms["nll"][0], rel=1e-3)


def test_the_run_record_and_the_figure_keep_the_terms_apart(results: dict[str, Any]) -> None:
    X, y = _data()
    model = bg.GuidedModel(_net(), bg.GuidedLaplace(strength=STRENGTH))
    fit = bg.fit_map(model, X, y, steps=7, lr=1e-2, progress=False)
    record = fit_record(fit)
    assert record.loss_terms is not None
    assert record.loss_terms["nll"] == pytest.approx(list(fit.loss_terms["nll"]))
    assert FitRecord.from_json(record.to_json()) == record
    results["fit"] = record.to_json()
    fig = loss_figure(results)
    assert fig is not None
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 and titles[0].startswith("Data term") and titles[1].startswith("Penalty")
    fit_items = dict(dict(setup_groups(results))["Fit"])
    assert float(fit_items["final data term (NLL)"].replace(",", "")) == pytest.approx(
        fit.loss_terms["nll"][-1], rel=1e-4)
    assert "data term" in loss_caption(results)
    assert "data term" in render_markdown(results, figures={"loss": "loss.png"})


def test_old_results_without_terms_fall_back_to_the_objective(results: dict[str, Any]) -> None:
    assert "loss_terms" not in results["fit"]
    fig = loss_figure(results)
    assert fig is not None and len(fig.axes) == 1
    assert "do not record" in loss_caption(results)
    assert "final data term (NLL)" not in dict(dict(setup_groups(results))["Fit"])
    results["fit"]["loss_terms"] = {"nll": [None] * 3, "penalty": "garbage"}  # unreadable: the same fallback
    assert len(loss_figure(results).axes) == 1  # type: ignore[union-attr]
    assert "do not record" in render_html(results)
