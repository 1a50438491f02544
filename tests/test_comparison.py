"""bg.compare and the Occam priors: teacher–student selection, normalisation, the
exclusion of failed candidates, and every error path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

import bayesguide as bg
from bayesguide.comparison import assemble, score_candidate
from bayesguide.comparison.occam import guidance_cost, occam_log_prior
from bayesguide.datasets import digits, teacher_student
from bayesguide.marglik import EvidenceEstimator, get_estimator, register_estimator, unregister_estimator

Data = tuple[bg.FitResult, torch.Tensor, torch.Tensor]


def _small_fit(seed: int = 0, guidance: bg.guidance.Profile | None = None) -> Data:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(80, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    y = torch.tanh(X @ w) + 0.1 * torch.randn(80, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    prior = bg.GuidedNormal(1.0, guidance if guidance is not None else bg.guidance.linear())
    model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=0.1)
    return bg.fit_map(model, X, y, steps=300, lr=0.02, progress=False), X, y


@pytest.mark.slow
def test_teacher_student_selects_the_teacher_width() -> None:
    data = teacher_student(n=600, width=4, noise=0.1, seed=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    prior = bg.GuidedGroupLasso(1.0, bg.guidance.linear())
    model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=0.1)
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=3000, lr=1e-2, schedule="cosine",
                     progress=False)
    path = bg.pruning_path(fit, data.X_train, data.y_train, n_candidates=16, fine_tune=500, lr=1e-2)
    cmp = bg.compare(path, data.X_train, data.y_train, X_test=data.X_test, y_test=data.y_test, progress=False)
    assert [c.widths[0] for c in cmp.candidates] == list(range(16, 0, -1))
    assert cmp.best is not None
    assert 3 <= cmp.best.widths[0] <= 5
    assert cmp.table["posterior_prob"].sum() == pytest.approx(1.0, abs=1e-12)
    assert cmp.table["log_bayes_factor"].max() == 0.0
    assert "test_metric" in cmp.table


def test_digits_path_probabilities_sum_to_one() -> None:
    data = digits()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 10))
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0, bg.guidance.linear()))
    fit = bg.fit_map(model, data.X_train, data.y_train, steps=400, lr=3e-3, progress=False)
    path = bg.pruning_path(fit, data.X_train, data.y_train, n_candidates=3)
    cmp = bg.compare(path, data.X_train, data.y_train, progress=False)
    probs = cmp.table["posterior_prob"].to_numpy()
    assert np.isfinite(probs).all()
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert cmp.settings["hessian"] == "full"
    assert (cmp.table["train_metric"].between(0, 1)).all()


def test_posterior_is_evidence_times_prior_normalised() -> None:
    fit, X, y = _small_fit()
    path = bg.pruning_path(fit, X, y, n_candidates=3)
    cmp = bg.compare(path, X, y, occam="params", kappa=0.01, progress=False)
    t = cmp.table
    lp = -0.01 * t["n_params"].to_numpy(dtype=float)
    lp = lp - logsumexp(lp)
    np.testing.assert_allclose(t["log_prior"], lp, rtol=1e-12)
    post = t["log_evidence"].to_numpy() + lp
    np.testing.assert_allclose(t["posterior_prob"], np.exp(post - logsumexp(post)), rtol=1e-10)
    np.testing.assert_allclose(t["log_bayes_factor"], t["log_evidence"] - t["log_evidence"].max(), rtol=1e-12)
    assert cmp.best is cmp.candidates[int(np.argmax(post))]
    assert "best:" in str(cmp)


def test_equal_scores_get_equal_probability_and_identical_candidates_are_refused() -> None:
    fit, X, y = _small_fit()
    a, b = bg.prune(fit, keep=3), bg.prune(fit, keep=2)
    Xt, yt = fit.prepare(X, y)
    rows = [score_candidate(c, Xt, yt) for c in (a, b)]
    rows[1]["log_evidence"] = rows[0]["log_evidence"]  # equal evidence, equal (uniform) prior
    cmp = assemble(rows, [a, b], occam="uniform")
    np.testing.assert_allclose(cmp.table["posterior_prob"], [0.5, 0.5], rtol=1e-12)
    with pytest.raises(ValueError, match=r"same candidate \(w3\)"):  # the same architecture twice: no silent 50/50
        bg.compare([a, a], X, y, occam="uniform", progress=False)


def test_guidance_occam_prior_matches_hand_sum() -> None:
    fit, X, y = _small_fit()
    path = bg.pruning_path(fit, X, y, n_candidates=4)
    g = fit.model.coefficients["0.units"].numpy()
    costs = np.array([g[list(c.kept["0"])].sum() for c in path])
    np.testing.assert_allclose([guidance_cost(c) for c in path], costs, rtol=1e-12)
    expected = -2.0 * costs - logsumexp(-2.0 * costs)
    np.testing.assert_allclose(occam_log_prior(path, "guidance", kappa=2.0), expected, rtol=1e-12)
    np.testing.assert_allclose(occam_log_prior(path, "uniform"), np.full(4, -math.log(4)), rtol=1e-12)
    custom = occam_log_prior(path, lambda c: -float(c.widths[0]))
    widths = np.array([c.widths[0] for c in path], dtype=float)
    np.testing.assert_allclose(custom, -widths - logsumexp(-widths), rtol=1e-12)


def test_compare_passes_its_progress_setting_to_the_estimator() -> None:
    """``progress=False`` silences the estimator's own bars too (the curvature's "GGN (full)")."""
    fit, X, y = _small_fit()
    path = bg.pruning_path(fit, X, y, n_candidates=2)
    real = get_estimator("laplace").estimate
    seen: list[bool] = []

    def recording(cand, X, y, *, hessian="full", optimize_prior=False, progress=True):  # type: ignore[no-untyped-def]
        seen.append(progress)
        return real(cand, X, y, hessian=hessian, optimize_prior=optimize_prior, progress=progress)

    register_estimator(EvidenceEstimator("recording", recording, "records its progress option"))
    try:
        bg.compare(path, X, y, evidence="recording", progress=False)
        assert seen and not any(seen)
        seen.clear()
        bg.compare(path, X, y, evidence="recording", progress=False, evidence_options={"progress": True})
        assert seen and all(seen)  # an explicit option wins
        seen.clear()
        bg.select_architecture(fit, X, y, bg.Selection(n_candidates=2, bisect=0, fine_tune=0, evidence="recording",
                                                       progress=False))
        assert seen and not any(seen)  # the pipeline (bayesguide run --quiet, sweeps) too
    finally:
        unregister_estimator("recording")


def test_failed_candidate_is_marked_and_excluded() -> None:
    fit, X, y = _small_fit()
    path = bg.pruning_path(fit, X, y, n_candidates=3)

    real = get_estimator("laplace").estimate

    def broken_for_first(cand, X, y, *, hessian="full", optimize_prior=False):  # type: ignore[no-untyped-def]
        if cand is path[0]:
            return bg.Evidence(log_evidence=math.nan, method="broken", n_params=cand.n_params)
        return real(cand, X, y, hessian=hessian, optimize_prior=optimize_prior)

    register_estimator(EvidenceEstimator("broken", broken_for_first, "NaN for the first candidate"))
    try:
        cmp = bg.compare(path, X, y, evidence="broken", progress=False)
    finally:
        unregister_estimator("broken")
    assert math.isnan(cmp.table["posterior_prob"][0])
    assert cmp.table["status"][0] == "non-finite evidence"
    assert cmp.table["posterior_prob"][1:].sum() == pytest.approx(1.0)
    assert cmp.best is not path[0]
    assert any("excluded" in f for f in cmp.flags)


def test_improper_prior_candidates_are_scored_under_a_uniform_gaussian() -> None:
    # partial guidance gives protected units an improper flat prior; the evidence uses
    # GuidedNormal(λ, uniform) instead (tests/marglik/test_evidence_priors.py checks the value)
    fit, X, y = _small_fit(guidance=bg.guidance.partial(count=1, position="first"))
    cands = [bg.prune(fit, keep=6), bg.prune(fit, keep=2)]
    cmp = bg.compare(cands, X, y, progress=False)
    assert cmp.best is not None and len(cmp.table) == 2
    assert (cmp.table["status"] == "ok").all()
    assert (cmp.table["prior_used"] == "uniform").all()


def test_errors() -> None:
    fit, X, y = _small_fit()
    path = bg.pruning_path(fit, X, y, n_candidates=2)
    with pytest.raises(ValueError, match="at least one candidate"):
        bg.compare([], X, y)
    with pytest.raises(TypeError, match="not a Candidate"):
        bg.compare([fit], X, y)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not the data the candidates were fitted to"):
        bg.compare(path, X + 1, y)
    other, _, _ = _small_fit(seed=1)
    with pytest.raises(ValueError, match="fitted to different data"):
        bg.compare([path[0], bg.prune(other, keep=2)], X, y)
    choices = "unknown architecture prior 'simple'; choose one of: guidance, params, flops, uniform"
    with pytest.raises(ValueError, match=choices):
        bg.compare(path, X, y, occam="simple")
    with pytest.raises(ValueError, match="kappa must be"):
        bg.compare(path, X, y, kappa=-1.0)
    with pytest.raises(ValueError, match="both X_test and y_test"):
        bg.compare(path, X, y, X_test=X)
    with pytest.raises(ValueError, match="unknown evidence method 'bic'"):
        bg.compare(path, X, y, evidence="bic")
    with pytest.raises(ValueError, match="unknown hessian structure"):
        bg.compare(path, X, y, hessian="exact")
    with pytest.raises(ValueError, match="non-finite"):
        occam_log_prior(path, lambda c: math.inf)


def test_loo_columns_stacking_weights_and_flags() -> None:
    fit, X, y = _small_fit()
    post = bg.fit_svi(fit.model, X, y, steps=300, lr=0.02, init=fit, progress=False)
    path = bg.pruning_path(post, X, y, n_candidates=3)
    cmp = bg.compare(path, X, y, loo=True, loo_draws=100, progress=False)
    t = cmp.table
    for col in ("elpd_loo", "elpd_se", "pareto_k_max", "stacking_weight"):
        assert col in t and np.isfinite(t[col]).all(), col
    assert t["stacking_weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (t["elpd_se"] > 0).all()
    loo_best = t["name"][int(np.argmax(t["elpd_loo"]))]
    disagree = [f for f in cmp.flags if f.startswith("PSIS-LOO")]
    # a flag only where LOO's best is another candidate (whether the gap counts: tests/test_loo_flag.py)
    assert not disagree or (cmp.best is not None and loo_best != cmp.best.name)
    high_k = [f for f in cmp.flags if "Pareto k >" in f]
    assert bool(high_k) == bool((t["pareto_k_max"] > 0.7).any())
