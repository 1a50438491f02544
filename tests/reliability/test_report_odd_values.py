"""Issue 14, item 11: the report never raises on odd numbers — all-zero unit norms (a
zero-initialised network), a negative ``elpd_se``, values beyond the float range or the
plottable one, out-of-range stacking weights. Warnings are errors in this suite, so
"renders" also means "renders without a warning"."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.report import render_figures
from bayesguide.report.content import loo_table
from bayesguide.report.figures import (
    FIGURE_TITLES,
    decomposition_figure,
    elpd_figure,
    loss_figure,
    metric_figure,
    to_png,
    unit_norms_figure,
)
from bayesguide.report.html import render_html
from bayesguide.report.markdown import render_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def _load_make_results() -> Any:
    """``make_results`` of the report tests' fixtures (tests/ is not a package, so loaded by path)."""
    spec = importlib.util.spec_from_file_location("_report_fixtures", Path(__file__).parents[1] / "report" /
                                                  "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_results


make_results = _load_make_results()


@pytest.fixture
def results() -> dict[str, Any]:
    return make_results()


def _colorbar_label(fig: Any) -> str:
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(labels) == 1
    return str(labels[0])


@pytest.mark.parametrize("value", [0.0, -1.0, 1.5460005317472502e-298])  # the last: found by the fuzz test
def test_unit_norms_that_are_all_zero_draw_on_a_linear_scale(results: dict[str, Any], value: float) -> None:
    norms = results["fit"]["unit_norms"]
    for layer in norms:
        norms[layer] = [[value] * len(r) for r in norms[layer]]
    fig = unit_norms_figure(results)
    assert fig is not None
    assert _colorbar_label(fig) == "‖θ unit‖₂ (all zero)"
    assert to_png(fig).startswith(PNG)


def test_unit_norms_keep_the_log_scale_when_some_are_positive(results: dict[str, Any]) -> None:
    norms = results["fit"]["unit_norms"]
    norms["0"] = [[0.0] * len(r) for r in norms["0"]]
    fig = unit_norms_figure(results)
    assert fig is not None and _colorbar_label(fig) == "‖θ unit‖₂ (log scale)"
    assert to_png(fig).startswith(PNG)


def test_unit_norms_given_as_a_string_are_skipped(results: dict[str, Any]) -> None:
    results["fit"]["unit_norms"]["0"] = "x"
    fig = unit_norms_figure(results)
    assert fig is not None
    assert [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()] == [
        "hidden layer 2 (16 units)"  # counted as a reader counts them, the skipped one included
    ]


def test_a_negative_elpd_se_draws_no_error_bar_and_shows_a_dash(results: dict[str, Any]) -> None:
    results["candidates"][1]["elpd_se"] = -3.0
    fig = elpd_figure(results)
    assert fig is not None and to_png(fig).startswith(PNG)
    table = loo_table(results)
    assert table is not None
    assert [row[2] for row in table.rows] == ["9.50", "—", "7.50", "6.50", "5.50", "4.50"]


def test_stacking_weights_outside_zero_one_are_not_annotated(results: dict[str, Any]) -> None:
    for cand, w in zip(results["candidates"], [1e308, -0.5, 0.2, 0.7, 1.5, 0.0]):
        cand["stacking_weight"] = w
    fig = elpd_figure(results)
    assert fig is not None and to_png(fig).startswith(PNG)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["w = 0.00", "w = 0.20", "w = 0.70"]


ODD_VALUES = [-1.0, 0.0, 1e308, -1e308, 10**400, "x"]
#: candidate fields by the figure that draws them
CANDIDATE_FIELDS = {
    "metric": ["n_params", "widths", "name", "metrics"],
    "decomposition": ["log_evidence", "log_prior", "log_posterior", "posterior_prob", "log_bayes_factor",
                      "prior_scale"],
    "elpd": ["elpd_loo", "elpd_se", "pareto_k_max", "stacking_weight"],
}
BUILDERS = {"metric": metric_figure, "decomposition": decomposition_figure, "elpd": elpd_figure}


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
@pytest.mark.parametrize("figure", list(CANDIDATE_FIELDS))
def test_odd_candidate_values_render(results: dict[str, Any], figure: str, value: object) -> None:
    for cand in results["candidates"]:
        for key in CANDIDATE_FIELDS[figure]:
            cand[key] = {"train": value, "test": value} if key == "metrics" else value
    before = copy.deepcopy(results)
    assert render_markdown(results).startswith("# bayesguide model comparison")
    fig = BUILDERS[figure](results)
    if fig is not None:
        assert to_png(fig).startswith(PNG)
    assert results == before  # rendering never changes the results


@pytest.mark.parametrize("value", [1e308, -1e308, 10**400, -1.0, 0.0])
def test_odd_fit_histories_render(results: dict[str, Any], value: object) -> None:
    fit = results["fit"]
    for key in ("losses", "loss_steps", "norm_steps"):
        fit[key] = [value] * len(fit[key])
    for layer in fit["unit_norms"]:
        fit["unit_norms"][layer] = [[value] * len(r) for r in fit["unit_norms"][layer]]
    figures = render_figures(results)
    assert {"metric", "decomposition", "elpd"} <= set(figures)
    assert all(png.startswith(PNG) for png in figures.values())


def test_a_huge_integer_is_shown_as_missing_not_an_overflow(results: dict[str, Any]) -> None:
    results["candidates"][0]["n_params"] = 10**400
    results["candidates"][0]["log_evidence"] = -(10**400)
    page = render_html(results)
    assert page.startswith("<!DOCTYPE html>")
    assert set(render_figures(results)) == set(FIGURE_TITLES)


def test_a_very_long_candidate_name_is_shortened_in_figures(results: dict[str, Any]) -> None:
    results["candidates"][0]["name"] = "w" * 500
    fig = elpd_figure(results)
    assert fig is not None
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "w" * 39 + "…" in labels and max(len(s) for s in labels) == 40
    assert to_png(fig).startswith(PNG)


def test_a_zero_initialised_relu_network_gets_a_report(tmp_path: Path) -> None:
    X = torch.randn(40, 3, dtype=torch.float64)
    y = (X[:, 0] > 0).long()
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    for p in net.parameters():
        nn.init.zeros_(p)
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0)), X, y, steps=20, progress=False)
    assert float(fit.module[0].weight.detach().abs().max()) == 0.0  # the hidden layer never moves: all norms 0
    cmp = bg.compare(bg.pruning_path(fit, X, y, n_candidates=2), X, y, progress=False)
    page = bg.write_report(cmp, tmp_path / "report.html").read_text()
    assert "Unit norms over training" in page and page.count("data:image/png;base64,") >= 3


def test_a_loss_history_from_huge_to_subnormal_draws_on_a_log_scale(results: dict[str, Any]) -> None:
    """Found by the fuzz test: the ratio of 1050 and 5.8e-306 overflowed (a warning, an error under -W error)."""
    results["fit"]["losses"] = [1050.0, 5.839478517830691e-306]
    results["fit"]["loss_steps"] = [0, 1]
    results["fit"].pop("loss_terms", None)
    fig = loss_figure(results)
    assert fig is not None and fig.axes[0].get_yscale() == "log"
    assert to_png(fig).startswith(PNG)
