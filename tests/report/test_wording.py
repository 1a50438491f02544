"""What the report calls things: layers as a reader counts them, the architecture prior
(never "Occam prior"), latency conditions, hints in the user's own terms, a table that fits."""

from __future__ import annotations

import re
from typing import Any

from bayesguide.report import render_html, render_markdown
from bayesguide.report.content import candidates_table, flags, layer_labels, recommendation, setup_groups, summary
from bayesguide.report.figures import unit_norms_figure


def _as_run(results: dict[str, Any]) -> dict[str, Any]:
    """The results as ``bayesguide run`` writes them: the experiment's ``[output]`` table, threads."""
    results["config"]["output"] = {"dir": "runs/x"}
    results["environment"] = {"threads": 4, "versions": {}, "platform": "", "machine": "", "cpu_count": 8}
    return results


def test_layers_are_counted_from_one(results: dict[str, Any]) -> None:
    assert list(results["fit"]["unit_norms"]) == ["0", "2"]  # module indices
    assert layer_labels(results) == {"0": "hidden layer 1", "2": "hidden layer 2"}
    fig = unit_norms_figure(results)
    assert fig is not None
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["hidden layer 1 (32 units)", "hidden layer 2 (16 units)"]


def test_layers_without_norms_are_counted_from_the_candidates(results: dict[str, Any]) -> None:
    del results["fit"]["unit_norms"]
    assert layer_labels(results) == {"0": "hidden layer 1", "2": "hidden layer 2"}


def test_no_occam_prior_anywhere_in_the_report(results: dict[str, Any]) -> None:
    # a flag worded by an older version is reworded too
    results["flags"] = ["the Occam prior overturns the evidence: the evidence prefers w12-8"]
    for page in (render_html(results), render_markdown(results, figures={"decomposition": "d.png"})):
        assert "Occam prior" not in page
        assert "log architecture prior" in page
        assert "architecture prior overturns the evidence" in page
    assert "log architecture prior" in candidates_table(results).columns
    assert "architecture prior: guidance" in summary(results)[1]
    selection = dict(dict(setup_groups(results))["Selection"])
    assert selection["architecture prior (occam)"] == "guidance"
    # the Laplace term keeps its name, and is told apart
    assert "Occam factor" in render_html(results)


def test_latency_states_batch_and_threads(results: dict[str, Any]) -> None:
    items = dict(recommendation(_as_run(results)) or [])
    assert "latency (batch of 256, 4 torch threads)" in items
    del results["environment"]
    items = dict(recommendation(results) or [])
    assert "latency (batch of 256, torch threads not recorded)" in items
    results["recommended"]["latency_batch"] = 32
    results["environment"] = {"threads": 1}
    assert "latency (batch of 32, 1 torch thread)" in dict(recommendation(results) or [])


def test_hints_name_experiment_keys_for_runs(results: dict[str, Any]) -> None:
    del results["config"]["output"]  # as bg.compare's results in a notebook: no experiment file
    tail = "; raise fine_tune"
    results["flags"] = ["fine-tuning did not converge for w12-8 (the objective was still falling)" + tail]
    results["candidates"] = [{k: v for k, v in c.items() if not k.startswith(("elpd", "pareto", "stacking"))}
                             for c in results["candidates"]]
    notebook = render_markdown(results)
    assert "raise fine_tune" in flags(results)[0]
    assert "loo=True" in notebook
    run = _as_run(results)
    assert flags(run)[0].endswith("raise [select] fine_tune in the experiment file")
    for page in (render_markdown(run), render_html(run)):
        assert "loo=True" not in page and "raise fine_tune" not in page
        assert "loo = true" in page and "experiment file" in page


def test_candidate_table_wraps_inside_a_container(complete_page: str) -> None:
    match = re.search(r'<div class="tablewrap"><table>.*?</table></div>', complete_page, re.S)
    assert match is not None
    table = match.group(0)
    assert table.count('<td class="text">') == 6  # the status cell of each of the six candidates
    assert '<span class="nowrap">P(M\u00a0|\u00a0D)</span>' in table
    css = complete_page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert ".tablewrap { overflow-x:auto" in css and "td.text { white-space:normal" in css


def test_an_svi_fits_warm_start_is_shown_beside_its_steps(results: dict[str, Any]) -> None:
    assert "warm start" not in dict(dict(setup_groups(results))["Fit"])  # no [fit] warm_start: no row
    results["config"]["fit"]["warm_start"] = 0
    assert "warm start" not in dict(dict(setup_groups(results))["Fit"])
    results["config"]["fit"]["warm_start"] = 375
    fit = dict(dict(setup_groups(results))["Fit"])
    assert fit["warm start"] == "375 MAP steps before these (bg.fit_svi(warm_start=...))"
    assert list(fit).index("warm start") == list(fit).index("steps") + 1
    assert "375 MAP steps before these" in render_html(results)
