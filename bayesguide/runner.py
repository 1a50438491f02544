"""Running an experiment into a run directory, incrementally and resumably.

``run_experiment(exp)`` builds the data, the network and the prior from the experiment
(:mod:`bayesguide.experiment`), runs the pipeline (:mod:`bayesguide.pipeline`: fit →
path → fine-tune → score → assemble) and *only persists*: the fit is saved
(``FitResult.save``) as soon as it is done, every candidate as soon as it is scored,
and ``results.json`` (:class:`~bayesguide.results.RunResults`) is rewritten atomically
after every step. A crash or Ctrl-C keeps every finished candidate; running the same
experiment into the same directory again resumes where it stopped — the fit and the
finished candidates are loaded, not recomputed — and a different experiment in that
directory is refused, so nothing is overwritten by mistake. At the end: the
recommended architecture with its measured latency (:mod:`bayesguide.latency`), the
best candidate's posterior for ArviZ (SVI fits) and the reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bayesguide.architecture import save_module
from bayesguide.comparison import metric
from bayesguide.datasets import load as load_data
from bayesguide.experiment import Experiment, check_task
from bayesguide.infer import FitResult
from bayesguide.latency import latency_ms
from bayesguide.model import GuidedModel
from bayesguide.pipeline import Hooks, fit_model, select_architecture
from bayesguide.pruning import Candidate, tuning_model, with_tuning
from bayesguide.report import write_report
from bayesguide.report.convert import candidate_records, fit_record, recommendation
from bayesguide.results import CandidateRecord, DataRecord, RunResults

__all__ = ["RunDirectoryError", "config_hash", "run_experiment"]


class RunDirectoryError(ValueError):
    """The output directory holds another experiment's results."""


def config_hash(exp: Experiment) -> str:
    """The identity of an experiment's results: a hash of every key but ``[output]``."""
    cfg = exp.to_dict()
    cfg.pop("output")
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


class _Run:
    """The run directory and the results document being written into it."""

    def __init__(self, out: Path, results: RunResults, start: float) -> None:
        self.out, self.results, self.start = out, results, start
        self.previous_s = float(results.timings.get("total_s", 0.0))

    def update(self, **changes: Any) -> None:
        """Change the document and write it (atomically), with the time spent so far."""
        total = self.previous_s + time.perf_counter() - self.start
        self.results = dataclasses.replace(self.results, **changes, timings={"total_s": total})
        self.results.save(self.out)

    def restore(self, cand: Candidate) -> tuple[Candidate, dict[str, Any]] | None:
        """A candidate finished by an earlier invocation, its fine-tuned weights loaded."""
        done = {c.name: c for c in self.results.candidates}.get(cand.name)
        if done is None:
            return None
        cdir = self.out / "candidates" / cand.name
        if (cdir / "fit.json").is_file():
            tuned = FitResult.load(cdir, tuning_model(cand))
            cand = with_tuning(cand, dataclasses.replace(tuned, model=cand.model))
        return cand, done.row()

    def scored(self, cand: Candidate, row: dict[str, Any]) -> None:
        """Save a scored candidate (its fine-tuning fit, or its weights) and its row."""
        cdir = self.out / "candidates" / cand.name
        if cand.tuned is not None:
            dataclasses.replace(cand.tuned, model=tuning_model(cand)).save(cdir)
        else:
            save_module(cand.module, cdir)
        record = CandidateRecord.from_row(row, {str(k): list(v) for k, v in cand.kept.items()})
        self.update(candidates=(*self.results.candidates, record))


def run_experiment(exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``exp`` into ``exp.output.dir`` and return the results document (see :mod:`bayesguide.results`)."""
    start = time.perf_counter()
    out = Path(exp.output.dir)
    chash = config_hash(exp)
    previous: RunResults | None = None
    if (out / "results.json").exists():
        previous = RunResults.load(out)
        if previous.config_hash != chash:
            raise RunDirectoryError(
                f"{out} holds the results of a different experiment; choose another [output] dir or remove it"
            )
        log(f"resuming the run in {out} ({previous.status})")
    out.mkdir(parents=True, exist_ok=True)

    custom = exp.data.source.endswith((".npz", ".csv"))
    data = load_data(exp.data.source, exp.data.task if custom else None, exp.data.target or None,
                     exp.data.test_fraction, exp.data.seed)
    log(f"data   {data}")
    check_task(exp, data.task)
    likelihood = "categorical" if data.task == "classification" else "gaussian"
    net = exp.network.build(data.n_features, data.n_outputs, exp.fit.seed)
    model = GuidedModel(net, exp.prior.build(), likelihood=likelihood)
    X, y = model.prepare_data(data.X_train, data.y_train)
    test = model.prepare_data(data.X_test, data.y_test)
    run = _Run(out, previous or RunResults(
        status="running", config=exp.to_dict(), config_hash=chash, metric=model.likelihood.metric_name, fit=None,
        data=DataRecord(name=data.name, task=data.task, n_train=int(X.shape[0]), n_test=int(test[0].shape[0]),
                        n_features=data.n_features, n_outputs=data.n_outputs),
    ), start)

    if run.results.fit is None:
        log(f"model  {model}")
        fit = fit_model(model, X, y, exp.optim(progress), method=exp.fit.method, **exp.fitter_options())
        fit.save(out / "fit")
        run.update(fit=fit_record(fit, metric(fit, X, y), metric(fit, *test)))
        log(f"fit    fit_{fit.fitter}: {fit.steps} steps in {fit.wall_time:.1f} s; "
            f"test {run.results.metric} {metric(fit, *test):.4f}")
    else:
        fit = FitResult.load(out / "fit", model)

    def announce(cand: Candidate) -> tuple[Candidate, dict[str, Any]] | None:
        restored = run.restore(cand)
        if restored is None:
            log(f"candidate {cand.name} ({cand.n_params:,} parameters)")
        return restored

    cmp = select_architecture(fit, X, y, exp.selection(progress), X_test=test[0], y_test=test[1],
                              hooks=Hooks(restore=announce, scored=run.scored))
    best = cmp.best
    changes: dict[str, Any] = {"candidates": candidate_records(cmp), "flags": tuple(cmp.flags),
                               "best": None if best is None else best.name}
    if best is not None:
        x = torch.randn(256, *X.shape[1:], generator=torch.Generator().manual_seed(0))
        ms = latency_ms({"best": best.module, "full": fit.module}, x)
        changes["recommended"] = recommendation(best, ms["best"], ms["full"])
        prob = float(cmp.table.loc[cmp.table["name"] == best.name, "posterior_prob"].iloc[0])
        log(f"best   {best.name}: {best.n_params:,} of {best.original_params:,} parameters, "
            f"posterior probability {prob:.3f}")
        if best.variational:  # the best candidate's approximate posterior (the sliced SVI guide) for ArviZ
            idata = best.to_inference_data(X, y, posterior="guide", draws=200, seed=exp.fit.seed)
            idata.to_netcdf(str(out / "posterior.nc"))
            changes["posterior_file"] = "posterior.nc"
    run.update(status="complete", **changes)
    document = run.results.to_json()
    for name in ("report.html", "report.md"):
        write_report(document, out / name)
    log(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return document
