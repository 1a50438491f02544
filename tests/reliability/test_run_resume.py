"""Issue 14, items 1, 6 and 7 (run level): a run's identity includes its training data,
``timings.total_s`` adds up every invocation, and a run that failed before any result
is replaced by a corrected one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import bayesguide.pipeline as pipeline
import bayesguide.runner as runner
from bayesguide.cli import main
from bayesguide.datasets import load as load_data
from bayesguide.experiment import load_experiment
from bayesguide.model import GuidedModel, data_fingerprint
from bayesguide.results import RunResults, load_results

EXPERIMENT = """
[data]
source = "{data}"
task = "regression"
[network]
hidden = [6]
activation = "tanh"
[prior]
kind = "group"
[fit]
steps = 40
lr = {lr}
[select]
n_candidates = 4
threshold = 0.0
fine_tune = 5
[output]
dir = "{out}"
"""


def _data(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, 3))
    np.savez(path, X=X, y=np.tanh(X @ np.array([1.0, -1.0, 0.5])) + 0.1 * rng.standard_normal(60))
    return path


def _experiment(tmp_path: Path, lr: str = "0.02") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(data=_data(tmp_path / "d.npz"), out=tmp_path / "run", lr=lr))
    return path


def _interrupt_at_candidate(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    real = pipeline.score_candidate
    calls = {"n": 0}

    def interrupt(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "score_candidate", interrupt)


def _interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run stopped (Ctrl-C) after its fit and two candidates; the experiment file's path."""
    path = _experiment(tmp_path)
    with monkeypatch.context() as m:
        _interrupt_at_candidate(m, 3)
        with pytest.raises(KeyboardInterrupt):
            runner.run_experiment(load_experiment(path), progress=False, log=lambda s: None)
    assert len(load_results(tmp_path / "run")["candidates"]) == 2
    return path


def test_results_record_the_training_data_fingerprint(tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    exp = load_experiment(path)
    document = runner.run_experiment(exp, progress=False, log=lambda s: None)
    fit = json.loads((tmp_path / "run" / "fit" / "fit.json").read_text())
    assert document["data_fingerprint"] == fit["data_fingerprint"]  # the prepared training tensors' hash
    assert RunResults.load(tmp_path / "run").data_fingerprint == document["data_fingerprint"]
    data = load_data(str(tmp_path / "d.npz"), "regression", test_fraction=0.25, seed=0)
    model = GuidedModel(exp.network.build(3, 1, 0), exp.prior.build(), likelihood="gaussian")
    assert document["data_fingerprint"] == data_fingerprint(*model.prepare_data(data.X_train, data.y_train))


def test_resuming_on_changed_data_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _interrupted_run(tmp_path, monkeypatch)
    before = (tmp_path / "run" / "results.json").read_text()
    _data(tmp_path / "d.npz", seed=1)  # the same file name, other numbers
    capsys.readouterr()
    assert main(["run", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"bayesguide: error: the data of [data] source = '{tmp_path / 'd.npz'}' changed since "
                          f"the run in {tmp_path / 'run'} started")
    assert "resuming would mix two data sets" in err
    assert (tmp_path / "run" / "results.json").read_text() == before  # nothing was scored on the new data
    assert not (tmp_path / "run" / runner.LOCK_FILE).exists()

    _data(tmp_path / "d.npz", seed=0)  # the original data back: the run resumes
    assert main(["run", str(path), "--quiet"]) == 0
    assert load_results(tmp_path / "run")["status"] == "complete"


def test_an_older_results_file_without_the_fingerprint_is_read_and_checked_against_the_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _interrupted_run(tmp_path, monkeypatch)
    results = tmp_path / "run" / "results.json"
    document = json.loads(results.read_text())
    fingerprint = document.pop("data_fingerprint")
    results.write_text(json.dumps(document))  # as an older bayesguide wrote it
    old = RunResults.load(tmp_path / "run")
    assert old.data_fingerprint is None
    assert "data_fingerprint" not in old.to_json()
    assert load_results(tmp_path / "run") == document

    _data(tmp_path / "d.npz", seed=1)  # the saved fit's fingerprint still tells the data changed
    with pytest.raises(runner.RunDirectoryError, match=r"d\.npz' changed since the run"):
        runner.run_experiment(load_experiment(path), progress=False, log=lambda s: None)
    _data(tmp_path / "d.npz", seed=0)
    resumed = runner.run_experiment(load_experiment(path), progress=False, log=lambda s: None)
    assert resumed["status"] == "complete"
    assert resumed["data_fingerprint"] == fingerprint  # recorded from now on


def test_timings_add_up_every_invocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _experiment(tmp_path)
    exp = load_experiment(path)

    def slow_interrupted_fit(*args: object, **kwargs: object) -> None:
        time.sleep(0.3)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # interrupted during the fit: nothing but the time is saved
        m.setattr(runner, "fit_model", slow_interrupted_fit)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            runner.run_experiment(exp, progress=False, log=lambda s: None)
        first_call = time.perf_counter() - t0
    first = load_results(tmp_path / "run")
    assert first["fit"] is None
    assert 0.3 <= first["timings"]["total_s"] <= first_call

    with monkeypatch.context() as m:  # interrupted again, after two candidates
        _interrupt_at_candidate(m, 3)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            runner.run_experiment(exp, progress=False, log=lambda s: None)
        second_call = time.perf_counter() - t0
    second = load_results(tmp_path / "run")["timings"]["total_s"]
    assert len(load_results(tmp_path / "run")["candidates"]) == 2
    assert first["timings"]["total_s"] + 0.5 * second_call < second <= first["timings"]["total_s"] + second_call

    t0 = time.perf_counter()
    final = runner.run_experiment(exp, progress=False, log=lambda s: None)
    third_call = time.perf_counter() - t0
    assert final["status"] == "complete"
    assert second < final["timings"]["total_s"] <= second + third_call


def test_a_run_that_failed_before_any_result_is_replaced_by_a_corrected_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _experiment(tmp_path, lr="1e30")  # the loss becomes NaN at once
    assert main(["run", str(path), "--quiet"]) == 1
    failed = load_results(tmp_path / "run")
    assert failed["fit"] is None and failed["candidates"] == []
    (tmp_path / "run" / "notes.txt").write_text("mine")  # not bayesguide's: kept
    (tmp_path / "run" / "fit").mkdir()
    (tmp_path / "run" / "fit" / "weights.pt").write_text("half-written")

    path.write_text(path.read_text().replace("lr = 1e30", "lr = 0.02"))  # another config hash
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    assert f"replacing the run in {tmp_path / 'run'}: it failed before any result" in capsys.readouterr().out
    results = load_results(tmp_path / "run")
    assert results["status"] == "complete"
    assert results["config"]["fit"]["lr"] == 0.02
    assert results["config_hash"] == runner.config_hash(load_experiment(path)) != failed["config_hash"]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert len(json.loads((tmp_path / "run" / "fit" / "fit.json").read_text())["losses"]) == 40  # fitted anew


def test_a_run_with_results_is_still_not_replaced_by_another_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _interrupted_run(tmp_path, monkeypatch)
    before = (tmp_path / "run" / "results.json").read_text()
    path.write_text(path.read_text().replace("lr = 0.02", "lr = 0.01"))
    assert main(["run", str(path), "--quiet"]) == 1
    assert "holds the results of a different experiment" in capsys.readouterr().err
    assert (tmp_path / "run" / "results.json").read_text() == before
