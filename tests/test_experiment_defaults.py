"""The defaults an experiment file gets: evidence-driven fitting unless the file names another method."""

from __future__ import annotations

import pytest

from bayesguide.experiment import Experiment, ExperimentError
from bayesguide.experiment.tables import DEFAULT_STEPS, STEPS


def test_an_empty_file_fits_evidence_driven_for_the_longer_budget() -> None:
    exp = Experiment.from_dict({})
    assert (exp.prior.kind, exp.prior.guidance, exp.fit.steps) == ("l2", "marglik", STEPS["marglik"])
    assert exp.fitter().name == "marglik"
    assert exp.optim(progress=False).steps == 6000
    # "auto" does not outlive construction: the run's identity holds what ran
    assert exp.to_dict()["prior"]["guidance"] == "marglik" and exp.to_dict()["fit"]["steps"] == 6000
    assert Experiment() == exp


@pytest.mark.parametrize(
    ("raw", "guidance", "steps"),
    [
        ({"prior": {"kind": "group"}}, "linear", DEFAULT_STEPS),
        ({"prior": {"kind": "l1", "guidance": "geometric"}}, "geometric", DEFAULT_STEPS),
        ({"prior": {"kind": "l2", "guidance": "linear"}}, "linear", DEFAULT_STEPS),  # guided L2, named
        ({"fit": {"method": "svi"}}, "linear", DEFAULT_STEPS),  # evidence-driven fitting is MAP only
        ({"prior": {"guidance": "auto"}, "fit": {"steps": 300}}, "marglik", 300),
        ({"fit": {"steps": "auto"}, "prior": {"kind": "sparse_group"}}, "linear", DEFAULT_STEPS),
    ],
)
def test_auto_resolves_by_kind_and_method(raw: dict, guidance: str, steps: int) -> None:
    exp = Experiment.from_dict(raw)
    assert (exp.prior.guidance, exp.fit.steps) == (guidance, steps)


def test_a_resolved_experiment_reads_back_as_itself() -> None:
    for raw in ({}, {"prior": {"kind": "group"}}, {"fit": {"method": "svi"}}):
        exp = Experiment.from_dict(raw)
        assert Experiment.from_dict(exp.to_dict()) == exp


@pytest.mark.parametrize(("value", "message"), [("many", r'\[fit\] steps must be "auto" or an integer'),
                                                 (2.5, r"\[fit\] steps must be an integer"),
                                                 (0, r"\[fit\] steps must be > 0")])
def test_bad_steps_are_refused_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        Experiment.from_dict({"fit": {"steps": value}})


def test_round_to_reaches_the_selection_and_leaves_the_identity_alone_at_its_default() -> None:
    assert Experiment.from_dict({"select": {"round_to": 8}}).selection(progress=False).round_to == 8
    plain = Experiment.from_dict({})
    assert plain.selection(progress=False).round_to is None
    assert "round_to" not in plain.to_dict()["select"]
    assert Experiment.from_dict({"select": {"round_to": 8}}).to_dict()["select"]["round_to"] == 8
