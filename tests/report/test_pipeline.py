"""A real (tiny) pipeline: fit_map → pruning_path → compare → write_report."""

from __future__ import annotations

from pathlib import Path

import torch

import bayesguide as bg
from bayesguide.report import render_markdown, results_from_comparison, write_report
from bayesguide.report._format import fmt_prob
from bayesguide.results import load_results


def test_report_of_a_real_comparison(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))
    y = y + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()), likelihood="gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=150, lr=0.02, progress=False)
    cmp = bg.compare(bg.pruning_path(fit, X, y, n_candidates=3), X, y, progress=False)

    page = write_report(cmp, tmp_path / "r.html").read_text(encoding="utf-8")
    assert cmp.best is not None
    assert f"Recommended: {cmp.best.name}" in page
    for row in cmp.table.itertuples():
        assert f">{row.name}<" in page
        assert f">{fmt_prob(row.posterior_prob)}<" in page
    assert "GuidedNormal" in page and "linear()" in page

    md = render_markdown(results_from_comparison(cmp))  # tables only: no second figure render
    assert all(fmt_prob(p) in md for p in cmp.table["posterior_prob"])

    write_report(cmp, tmp_path / "results.json")
    loaded = load_results(tmp_path)
    assert loaded == results_from_comparison(cmp)
    assert [c["name"] for c in loaded["candidates"]] == [c.name for c in cmp.candidates]
    assert loaded["fit"]["steps"] == 150 and len(loaded["fit"]["losses"]) == 150
    assert loaded["recommended"]["n_params_full"] == cmp.best.original_params
