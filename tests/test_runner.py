"""Experiment files, the run directory and the CLI: validation before work, incremental
atomic results, resuming after an interruption, refusing to overwrite another run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import bayesguide as bg
import bayesguide.pipeline as pipeline
import bayesguide.pruning.tuning as tuning
import bayesguide.runner as runner
from bayesguide.architecture import load_module
from bayesguide.cli import main
from bayesguide.experiment import Experiment, ExperimentError, load_experiment
from bayesguide.results import load_results

SMALL = """
[data]
source = "{source}"
task = "{task}"
[network]
hidden = [8]
activation = "tanh"
[prior]
kind = "group"
strength = 1.0
[fit]
steps = 60
lr = 0.01
[select]
n_candidates = 3
fine_tune = 10
[output]
dir = "{out}"
"""


def _npz(tmp_path: Path, task: str = "regression") -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = np.tanh(X @ np.array([1.0, -1.0, 0.5])) + 0.1 * rng.standard_normal(120)
    if task == "classification":
        y = (y > 0).astype(np.int64)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    return path


def _experiment(tmp_path: Path, task: str = "regression") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(SMALL.format(source=_npz(tmp_path, task), task=task, out=tmp_path / "run"))
    return path


def test_run_writes_a_complete_run_directory(tmp_path: Path) -> None:
    assert main(["run", str(_experiment(tmp_path)), "--quiet"]) == 0
    run = tmp_path / "run"
    results = load_results(run)
    assert results["status"] == "complete"
    assert results["metric"] == "rmse"
    names = [c["name"] for c in results["candidates"]]
    assert len(names) >= 3
    probs = [c["posterior_prob"] for c in results["candidates"] if c["posterior_prob"] is not None]
    assert sum(probs) == pytest.approx(1.0)
    assert results["best"] in names
    assert results["recommended"]["name"] == results["best"]
    assert results["recommended"]["latency_batch"] == runner.LATENCY_BATCH  # what the report's latency line names
    for name in names:  # every candidate saved and loadable without pickled code
        module = load_module(run / "candidates" / name)
        widths = [m.out_features for m in module if isinstance(m, torch.nn.Linear)][:-1]
        assert widths == next(c["widths"] for c in results["candidates"] if c["name"] == name)
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    assert len(results["fit"]["losses"]) == 60


def test_interrupted_run_keeps_finished_candidates_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(_experiment(tmp_path))
    real = pipeline.score_candidate
    calls = {"n": 0}

    def interrupt_third(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "score_candidate", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(exp, progress=False, log=lambda s: None)
    saved = load_results(tmp_path / "run")
    assert saved["status"] == "running"
    assert len(saved["candidates"]) == 2
    first_two = {c["name"]: c["log_evidence"] for c in saved["candidates"]}

    monkeypatch.setattr(pipeline, "score_candidate", real)
    messages: list[str] = []
    fits = {"n": 0}
    real_fit = tuning.fit_map

    def counting_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        fits["n"] += 1
        return real_fit(*args, **kwargs)

    def no_refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network's fit was redone instead of loaded")

    monkeypatch.setattr(runner, "fit_model", no_refit)  # the network's fit
    monkeypatch.setattr(tuning, "fit_map", counting_fit)  # the candidates' fine-tuning
    results = runner.run_experiment(exp, progress=False, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert results["status"] == "complete"
    n = len(results["candidates"])
    # no refit of the network, only the fine-tuning of the candidates not yet done
    assert fits["n"] == n - 2
    # (bisection may add candidates between the path's points: match by name)
    restored = {c["name"]: c["log_evidence"] for c in results["candidates"] if c["name"] in first_two}
    assert restored == pytest.approx(first_two)


def test_another_experiment_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    assert main(["run", str(path), "--quiet"]) == 0
    before = (tmp_path / "run" / "results.json").read_text()
    path.write_text(path.read_text().replace("strength = 1.0", "strength = 2.0"))
    assert main(["run", str(path), "--quiet"]) == 1
    assert (tmp_path / "run" / "results.json").read_text() == before


def test_report_command_rebuilds_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_experiment(tmp_path, "classification")), "--quiet"]) == 0
    (tmp_path / "run" / "report.html").unlink()
    assert main(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report.html").is_file()
    assert main(["report", str(tmp_path / "nowhere")]) == 2  # bad input
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[model]\nx = 1\n", r"unknown table \[model\]; tables: \[data\]"),
        ("[prior]\nkind = \"l3\"\n", r"\[prior\] kind = 'l3' is not accepted; choose one of: l1, l2, group"),
        ("[prior]\nstrength = 0\n", r"\[prior\] strength must be > 0"),
        ("[prior]\nstrength = \"big\"\n", r"\[prior\] strength must be a number"),
        ("[fit]\nsteps = 1.5\n", r"\[fit\] steps must be an integer"),
        ("[fit]\nmethod = \"mcmc\"\n", r"choose one of: map, svi"),
        ("[network]\nhidden = []\n", r"\[network\] hidden must be a non-empty list of positive integers"),
        ("[network]\nwidth = 3\n", r"\[network\] has no key 'width'; keys: hidden, activation"),
        ("[data]\ntest_fraction = 1.0\n", r"test_fraction must lie in \(0, 1\)"),
        ("[select]\nn_candidates = 1\n", r"n_candidates must be at least 2"),
        ("data = 3\n", r"\[data\] must be a table"),
        ("[prior\n", r"not valid TOML"),
    ],
)
def test_invalid_experiment_names_table_key_and_choices(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=pattern):
        load_experiment(path)


def test_invalid_experiment_exits_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[output]\ndir = \"{tmp_path / 'run'}\"\n[fit]\nlr = -1.0\n")
    assert main(["run", str(path)]) == 2
    assert "[fit] lr must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_empty_file_is_the_default_experiment(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    exp = load_experiment(path)
    assert exp == Experiment()
    assert exp.to_dict()["network"]["hidden"] == [128, 128]
    json.dumps(exp.to_dict())


def test_bad_data_files(tmp_path: Path) -> None:
    from bayesguide.datasets import load

    np.savez(tmp_path / "a.npz", X=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"missing arrays \['y'\]"):
        load(str(tmp_path / "a.npz"))
    rows = "".join(f"{i},{2 * i},{i % 2}\n" for i in range(8))  # labels 0, 1, 0, 1, ...
    (tmp_path / "b.csv").write_text("x1,x2,label\n" + rows)
    with pytest.raises(ValueError, match="no column 'target'; columns: \\['x1', 'x2', 'label'\\]"):
        load(str(tmp_path / "b.csv"), target="target")
    with pytest.raises(ValueError, match="needs the name of its target column"):
        load(str(tmp_path / "b.csv"))
    data = load(str(tmp_path / "b.csv"), target="label", test_fraction=0.5)
    assert data.X_train.shape == (4, 2) and data.X_test.shape == (4, 2)
    assert set(data.y_train.tolist()) == {0, 1} and data.n_outputs == 2
    # every row is kept, with its label: x2 = 2 x1 and label = x1 mod 2
    X = torch.cat([data.X_train, data.X_test])
    assert sorted(X[:, 0].tolist()) == list(range(8))
    assert torch.equal(X[:, 1], 2 * X[:, 0])
    assert torch.cat([data.y_train, data.y_test]).tolist() == (X[:, 0].long() % 2).tolist()
    with pytest.raises(ValueError, match="unknown data source 'iris'"):
        load("iris")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "c.npz", X=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="X has 3 rows but y has 4"):
        load(str(tmp_path / "c.npz"))


def test_svi_run_writes_the_best_candidates_posterior(tmp_path: Path) -> None:
    path = _experiment(tmp_path, "classification")
    path.write_text(path.read_text().replace("[fit]\n", "[fit]\nmethod = \"svi\"\n").replace(
        "fine_tune = 10", "fine_tune = 0"))
    assert main(["run", str(path), "--quiet"]) == 0
    results = load_results(tmp_path / "run")
    assert results["posterior_file"] == "posterior.nc"
    from bayesguide._arviz import arviz

    idata = arviz().from_netcdf(str(tmp_path / "run" / "posterior.nc"))
    assert idata.log_likelihood["obs"].shape == (1, 200, results["data"]["n_train"])


def test_a_failing_candidate_does_not_stop_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(_experiment(tmp_path))
    real_fit = tuning.fit_map
    calls = {"n": 0}

    failed: list[int] = []

    def second_fine_tune_fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the second candidate's fine-tuning
            failed.append(args[0].net[0].out_features)  # its width
            raise bg.NonFiniteLossError("the loss became nan at step 4: site '0.units'")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tuning, "fit_map", second_fine_tune_fails)  # the candidates' fine-tuning
    runner.run_experiment(exp, progress=False, log=lambda s: None)
    results = load_results(tmp_path / "run")
    statuses = {c["widths"][0]: c["status"] for c in results["candidates"]}
    bad = next(c for c in results["candidates"] if c["widths"][0] == failed[0])
    assert bad["status"].startswith("failed: fine-tuning: the loss became nan")
    assert bad["posterior_prob"] is None  # NaN is written as null
    assert all(s == "ok" for w, s in statuses.items() if w != failed[0])
    assert results["best"] != bad["name"]
    assert any("excluded" in f for f in results["flags"])


@pytest.mark.parametrize("method", ["map", "svi"])
def test_every_file_of_a_run_directory_gets_the_umasks_permissions(tmp_path: Path, method: str) -> None:
    import os
    import stat

    path = _experiment(tmp_path)
    text = path.read_text().replace("[fit]\n", f'[fit]\nmethod = "{method}"\n')
    if method == "svi":  # candidates keep their sliced guide (no MAP fine-tuning): posterior.nc is written
        text = text.replace("fine_tune = 10", "fine_tune = 0")
    path.write_text(text)
    before = os.umask(0o027)
    try:
        assert main(["run", str(path), "--quiet"]) == 0
        reference = tmp_path / "plain"
        reference.write_text("")  # an ordinary file under the same umask
    finally:
        os.umask(before)
    out = tmp_path / "run"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"results.json", "report.html", "report.md", "weights.pt"} <= {p.name for p in files}
    assert (method == "svi") == (out / "posterior.nc").is_file()
    assert {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files} == {
        p.relative_to(out).as_posix(): stat.S_IMODE(reference.stat().st_mode) for p in files}
    assert stat.S_IMODE(reference.stat().st_mode) == 0o640
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_dir()} <= {0o750}


def test_torch_threads_sets_and_restores_and_refuses_bad_counts() -> None:
    before = torch.get_num_threads()
    blas = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    with runner.torch_threads(1):
        assert torch.get_num_threads() == 1
        # numpy's and scipy's BLAS (and every OpenMP pool) too: scipy's BLAS runs the full-GGN evidence
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
    assert torch.get_num_threads() == before
    assert {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()} == blas
    with runner.torch_threads(None):
        assert torch.get_num_threads() == before
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"threads must be a positive integer or None, got"), \
                runner.torch_threads(bad):  # type: ignore[arg-type]
            pass


def test_a_run_draws_its_figures_once_and_serialises_its_fit_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bayesguide.report.writer as writer
    from bayesguide.results import FitRecord, RunResults

    figures: list[int] = []
    fit_json: list[int] = []
    saves: list[str] = []
    draw, to_json, dumps = writer.render_figures, FitRecord.to_json, RunResults.dumps

    def counted_draw(results: dict[str, object]) -> dict[str, bytes]:
        figures.append(1)
        return draw(results)

    def counted_to_json(self: FitRecord) -> dict[str, object]:
        fit_json.append(1)
        return to_json(self)

    def recorded(self: RunResults, memo: dict[int, tuple[object, str]] | None = None) -> str:
        saves.append(text := dumps(self, memo))
        return text

    monkeypatch.setattr(writer, "render_figures", counted_draw)
    monkeypatch.setattr(FitRecord, "to_json", counted_to_json)
    monkeypatch.setattr(RunResults, "dumps", recorded)
    assert main(["run", str(_experiment(tmp_path)), "--quiet"]) == 0
    run = tmp_path / "run"
    assert figures == [1]  # report.html and report.md share one drawing
    assert (run / "figures" / "report_loss.png").is_file() and "base64" in (run / "report.html").read_text()
    assert len(saves) >= 5  # rewritten after every step ...
    assert len(fit_json) == 2  # ... but the fit serialised once for the file (and once for the returned document)
    text = (run / "results.json").read_text()
    assert text == saves[-1]
    document = json.loads(text)
    assert len(text.splitlines()) == len(document) + len(document["candidates"])  # a line per key and candidate
    assert load_results(run) == document and RunResults.load(run).to_json() == document
