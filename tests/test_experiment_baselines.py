"""Every method from an experiment file: the example files load, invalid method
combinations are refused at load time naming the keys, and the runner fits, scores
and resumes L0, horseshoe, relevance, sparse-group and partial runs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import bayesguide.runner as runner
from bayesguide.cli import main
from bayesguide.experiment import Experiment, ExperimentError, load_experiment
from bayesguide.results import load_results

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_examples_cover_every_method_and_load() -> None:
    assert {p.stem for p in EXAMPLES} >= {"l1", "l2", "group", "sparse_group", "l0", "horseshoe",
                                          "relevance", "partial", "marglik"}
    for path in EXAMPLES:
        exp = load_experiment(path)
        assert exp.output.dir == f"runs/{path.stem}"
        assert exp.fit.steps <= 5000  # examples run in well under a minute (docs/cli.md lists their times)


def _load(tmp_path: Path, text: str) -> Experiment:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return load_experiment(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('[prior]\nkind = "l0"\n[fit]\nmethod = "svi"\n',
         r'kind = "l0" has no SVI fit: it is trained by bg.fit_l0.*method = "map"'),
        ('[prior]\nkind = "l0"\n[fit]\nschedule = "cosine"\n', r'schedule = "constant"'),
        ('[prior]\nkind = "horseshoe"\n',
         r'kind = "horseshoe" has no MAP fit: it is trained by bg.fit_svi.*method = "svi"'),
        ('[prior]\nkind = "horseshoe"\nguidance = "partial"\n[fit]\nmethod = "svi"\n',
         r"positive guidance coefficients.*not guidance = 'partial'"),
        ('[prior]\nkind = "group"\nguidance = "relevance"\n',
         r'guidance = "relevance".*set kind = "l2", not \'group\''),
        ('[prior]\nkind = "l2"\nguidance = "relevance"\n[fit]\nmethod = "svi"\n', r'method = "map"'),
        ('[prior]\nkind = "l2"\nguidance = "relevance"\n[fit]\nbatch_size = 32\n', r"batch_size = 0"),
        ('[prior]\nkind = "l2"\nguidance = "relevance"\n[fit]\nschedule = "cosine"\n', r'schedule = "constant"'),
        ('[data]\nsource = "teacher"\n[prior]\nkind = "l2"\nguidance = "relevance"\n', r"classification task"),
        ('[prior]\nkind = "l1"\nalpha = 0.3\n', r"\[prior\] alpha = 0.3 is only used by kind = 'sparse_group'"),
        ('[prior]\ntau0 = 0.5\n', r"tau0 = 0.5 is only used by kind = 'horseshoe', not 'l2'"),
        ('[prior]\nkind = "horseshoe"\nl0_weight_decay = 1\n[fit]\nmethod = "svi"\n',
         r"l0_weight_decay = 1 is only used by kind = 'l0'"),
        ('[prior]\nkind = "sparse_group"\nalpha = 1.5\n', r"alpha must lie in \[0, 1\]"),
        ('[prior]\nkind = "horseshoe"\ntau0 = 0\n[fit]\nmethod = "svi"\n', r"tau0 must be > 0"),
        ('[prior]\nkind = "l5"\n', r"choose one of: l1, l2, group, sparse_group, l0, horseshoe"),
        ('[prior]\nguidance = "magic"\n', r"choose one of: auto, linear, geometric, uniform, partial, relevance"),
        ('[prior]\nkind = "l0"\n[select]\nevidence = "elbo"\n',
         r'evidence = "elbo" needs a variational posterior, but \[fit\] method = "map"'),
        ('[select]\nevidence = "iwae"\n', r'evidence = "iwae" needs a variational posterior.*evidence = "laplace"'),
    ],
)
def test_invalid_method_combinations_are_refused_at_load_time(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ExperimentError, match=pattern):
        _load(tmp_path, text)


def test_method_keys_at_their_defaults_are_accepted_for_any_kind(tmp_path: Path) -> None:
    exp = _load(tmp_path, '[prior]\nkind = "l1"\nalpha = 0.5\ntau0 = 0.1\nl0_weight_decay = 0.0\n')
    assert exp.prior.kind == "l1"


def test_invalid_method_exits_2_naming_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(f'[prior]\nkind = "l0"\n[fit]\nmethod = "svi"\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "invalid experiment" in err and '[fit] method = "map"' in err
    assert not (tmp_path / "run").exists()


TINY = """
[data]
source = "{source}"
task = "classification"
[network]
hidden = [{hidden}]
activation = "tanh"
[prior]
{prior}
[fit]
{fit}
steps = 12
lr = 0.02
[select]
n_candidates = 2
threshold = 0.0
fine_tune = 3
[output]
dir = "{out}"
"""


def _npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    return path


METHODS = {
    "l0": ('kind = "l0"\nstrength = 2.0\nl0_weight_decay = 0.01', 'method = "map"', "HardConcreteGates", "uniform"),
    "horseshoe": ('kind = "horseshoe"\nguidance = "uniform"\ntau0 = 0.1', 'method = "svi"', "GroupHorseshoe",
                  "uniform"),
    "relevance": ('kind = "l2"\nguidance = "relevance"', 'method = "map"', "GuidedNormal", None),
    "sparse_group": ('kind = "sparse_group"\nalpha = 0.3', 'method = "map"', "GuidedSparseGroupLasso",
                     "counterpart"),
    "partial": ('kind = "group"\nguidance = "partial"', 'method = "map"', "GuidedGroupLasso", "uniform"),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_end_to_end_and_resumes(
    tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prior, fit, prior_name, used = METHODS[method]
    out = tmp_path / "run"
    path = tmp_path / "exp.toml"
    hidden = 8 if method == "partial" else 4  # partial protects ⌊n/8⌋ units: at least one
    path.write_text(TINY.format(source=_npz(tmp_path), hidden=hidden, prior=prior, fit=fit, out=out))
    exp = load_experiment(path)
    results = runner.run_experiment(exp, progress=False, log=lambda s: None)
    assert results["status"] == "complete"
    assert prior_name in results["fit"]["prior"]
    cands = results["candidates"]
    assert all(c["status"] == "ok" for c in cands), [c["status"] for c in cands]
    assert all(math.isfinite(c["log_evidence"]) for c in cands)
    assert sum(c["posterior_prob"] for c in cands) == pytest.approx(1.0)
    if used is not None:
        assert {c["prior_used"] for c in cands} == {used}
    if method == "relevance":  # the last estimate of the guidance is saved for resuming
        assert any(0.0 in g for g in results["fit"]["coefficients"].values())

    # resume with the last candidate missing: the fit is restored from the run directory, not redone
    saved = json.loads((out / "results.json").read_text())
    first = saved["candidates"][0]["log_evidence"]
    saved["status"], saved["candidates"] = "running", saved["candidates"][:1]
    (out / "results.json").write_text(json.dumps(saved))

    def no_refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fit was redone instead of restored")

    monkeypatch.setattr(runner, "fit_model", no_refit)
    resumed = runner.run_experiment(exp, progress=False, log=lambda s: None)
    assert resumed["status"] == "complete"
    assert [c["name"] for c in resumed["candidates"]] == [c["name"] for c in cands]
    assert resumed["candidates"][0]["log_evidence"] == pytest.approx(first)
    assert resumed["candidates"][-1]["log_evidence"] == pytest.approx(cands[-1]["log_evidence"], rel=1e-6)
    assert load_results(out)["status"] == "complete"
