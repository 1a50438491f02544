"""The Occam prior's strength: ``kappa="auto"``, evidence-only probabilities, the κ interval
of the pick and the flags — against brute-force grids and hand-built cases (issue 13, item 3)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

import bayesguide as bg
from bayesguide.comparison import assemble, score_candidate
from bayesguide.comparison.occam import AUTO_RANGE, guidance_cost, occam_log_prior, resolve_kappa
from bayesguide.comparison.sensitivity import DEFAULT_RANGE, kappa_interval, picks_over, prior_flags, probabilities
from bayesguide.experiment import ExperimentError, load_experiment


def _grid_picks(a: np.ndarray, c: np.ndarray, kappas: np.ndarray) -> np.ndarray:
    """The naive reference: the argmax of ``a − κ c`` at every κ of a grid."""
    return np.array([int(np.argmax(a - k * c)) for k in kappas])


@pytest.mark.parametrize("seed", range(8))
def test_picks_and_intervals_match_a_brute_force_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 5, 7)
    c = rng.permutation(np.arange(7.0)) + rng.uniform(0, 0.5, 7)
    kappas = np.linspace(0, 20, 40_001)
    grid = _grid_picks(a, c, kappas)
    picks = picks_over(a, c, 20.0)
    starts = [start for start, _ in picks]
    assert starts == sorted(starts) and starts[0] == 0.0
    for (start, pick), end in zip(picks, [*starts[1:], 20.0]):
        inside = grid[(kappas > start + 1e-3) & (kappas < end - 1e-3)]
        assert (inside == pick).all()
        lo, hi = kappa_interval(a, c, pick)
        assert lo == pytest.approx(start, abs=1e-12)
        assert hi == pytest.approx(end, abs=1e-12) or (end == 20.0 and hi >= 20.0)
    assert sorted({int(p) for p in grid}) == sorted({p for _, p in picks})


def test_probabilities_are_the_normalised_posterior_and_skip_invalid_candidates() -> None:
    a = np.array([-3.0, -1.0, np.nan, -2.0])
    c = np.array([3.0, 2.0, 1.0, 0.0])
    p = probabilities(a, c, 0.5, ok=np.array([True, True, True, False]))
    expected = softmax(np.array([-3.0 - 1.5, -1.0 - 1.0]))
    np.testing.assert_allclose(p[:2], expected, rtol=1e-12)
    assert np.isnan(p[2:]).all()


def test_auto_kappa_makes_the_prior_span_one_nat() -> None:
    costs = np.array([12.0, 7.5, 3.0, 0.5])
    kappa, rule = resolve_kappa("auto", costs)
    assert kappa == pytest.approx(AUTO_RANGE / 11.5)
    assert rule.startswith("auto")
    assert resolve_kappa("auto", np.zeros(3))[0] == 0.0  # every candidate costs the same: no prior at all
    with pytest.raises(ValueError, match="kappa must be 'auto' or a finite number >= 0, got 'big'"):
        resolve_kappa("big", costs)
    for bad in (-1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="kappa must be 'auto' or a finite number >= 0"):
            resolve_kappa(bad, costs)  # type: ignore[arg-type]


def _two_candidates() -> tuple[list[bg.Candidate], list[dict[str, object]]]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, 0]) + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()), "gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=50, lr=0.02, progress=False)
    Xt, yt = fit.prepare(X, y)
    cands = [bg.prune(fit, keep=6), bg.prune(fit, keep=3), bg.prune(fit, keep=1)]
    return cands, [score_candidate(c, Xt, yt) for c in cands]


def _with_evidence(rows: list[dict[str, object]], values: list[float]) -> list[dict[str, object]]:
    return [{**r, "log_evidence": v} for r, v in zip(rows, values)]


def test_the_default_prior_only_breaks_ties_and_reports_the_evidence_alone() -> None:
    cands, rows = _two_candidates()
    costs = np.array([guidance_cost(c) for c in cands])
    # at κ_auto the prior moves the first two candidates apart by r ≤ 1 nat
    r = (costs[0] - costs[1]) / (costs[0] - costs[2])
    evidence = [-100.0, -100.0 - 2 * r, -200.0]  # the full network ahead by 2r: more than r, less than 3r
    cmp = assemble(_with_evidence(rows, evidence), cands)
    t = cmp.table
    assert t["log_prior"].max() - t["log_prior"].min() == pytest.approx(1.0, abs=1e-12)
    assert cmp.settings["kappa"] == pytest.approx(1.0 / (costs[0] - costs[2]))
    np.testing.assert_allclose(t["evidence_prob"], softmax(evidence), rtol=1e-12)
    np.testing.assert_allclose(t["occam_cost"], costs, rtol=1e-12)
    assert cmp.best is cands[0] and cmp.settings["evidence_best"] == cands[0].name
    lo, hi = cmp.settings["kappa_interval"]
    assert lo == 0.0 and hi == pytest.approx(2.0 / (costs[0] - costs[2]))
    # the pick stands at κ_auto but not across the default range (3 κ_auto): flagged
    assert len(cmp.flags) == 1 and cmp.flags[0].startswith("the pick depends on the prior's strength")
    # ahead by 4r: the pick holds over the whole default range, no flag
    assert assemble(_with_evidence(rows, [-100.0, -100.0 - 4 * r, -200.0]), cands).flags == ()
    # ahead by 0.3r, a near tie: the prior breaks it toward the smaller network, and says so
    tie = assemble(_with_evidence(rows, [-100.0, -100.0 - 0.3 * r, -200.0]), cands)
    assert tie.best is cands[1]
    assert tie.flags[0].startswith(f"the architecture prior overturns the evidence: the evidence prefers "
                                   f"{cands[0].name} by {0.3 * r:.2f} nats")


def test_a_strong_given_kappa_is_flagged_when_it_overrules_the_evidence() -> None:
    cands, rows = _two_candidates()
    cmp = assemble(_with_evidence(rows, [-100.0, -104.0, -110.0]), cands, kappa=10.0)
    assert cmp.best is cands[2]  # κ = 10 per unit of guidance: the smallest network at any evidence
    assert cmp.table["posterior_prob"].iloc[2] > 0.99 and cmp.table["evidence_prob"].iloc[2] < 1e-4
    assert any(f.startswith("the architecture prior overturns the evidence") for f in cmp.flags)
    np.testing.assert_allclose(cmp.table["log_prior"], occam_log_prior(cands, kappa=10.0), rtol=1e-12)


def test_flags_name_every_pick_within_the_default_range() -> None:
    names = ["big", "mid", "small"]
    a = np.array([0.0, -0.5, -2.5])
    c = np.array([2.0, 1.0, 0.0])
    # κ_auto = 0.5: the default range reaches κ = 1.5; mid from κ = 0.5, small from κ = 2
    flags = prior_flags(names, a, c, kappa=0.1, kappa_auto=0.5)
    assert flags == [f"the pick depends on the prior's strength within 0 ≤ κ ≤ {DEFAULT_RANGE * 0.5:.3g} "
                     "(a prior spanning up to 3 nats): big from κ = 0, mid from κ = 0.5; "
                     "the evidence alone prefers big"]
    assert prior_flags(names, a, c, kappa=0.1, kappa_auto=0.1) == []  # κ ≤ 0.3: big throughout


def test_compare_defaults_to_auto_and_records_it() -> None:
    cands, _ = _two_candidates()
    fit = cands[0].fit
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, 0]) + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    cmp = bg.compare(cands, X, y, progress=False)
    assert cmp.settings["kappa_rule"] == "auto: the architecture prior spans 1 nat over the candidates"
    assert cmp.table["log_prior"].max() - cmp.table["log_prior"].min() == pytest.approx(1.0, abs=1e-12)
    post = cmp.table["log_evidence"].to_numpy() + cmp.table["log_prior"].to_numpy()
    np.testing.assert_allclose(cmp.table["posterior_prob"], np.exp(post - logsumexp(post)), rtol=1e-10)
    assert fit is cands[0].fit
    with pytest.raises(ValueError, match="kappa must be 'auto' or a finite number >= 0"):
        bg.compare(cands, X, y, kappa="strong", progress=False)


@pytest.mark.parametrize(("text", "value"), [("", "auto"), ('kappa = "auto"', "auto"), ("kappa = 0.25", 0.25),
                                             ("kappa = 2", 2.0)])
def test_experiment_kappa_is_auto_or_a_number(tmp_path: Path, text: str, value: object) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(f"[select]\n{text}\n")
    assert load_experiment(path).select.kappa == value


@pytest.mark.parametrize(("text", "message"), [
    ('kappa = "strong"', '[select] kappa must be "auto" or a number, got \'strong\''),
    ("kappa = -1", "[select] kappa must be >= 0, got -1.0"),
    ("kappa = nan", "[select] kappa must be a finite number, got nan"),
])
def test_experiment_kappa_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(f"[select]\n{text}\n")
    with pytest.raises(ExperimentError, match=f"^{re.escape(message)}$"):
        load_experiment(path)
