"""Running an experiment into a run directory, incrementally and resumably.

``run_experiment(exp)`` builds the data, the network and the prior from the experiment
([`bayesguide.experiment`][]), runs the pipeline ([`bayesguide.pipeline`][]: fit →
path → fine-tune → score → assemble) and *only persists*: the fit is saved
(``FitResult.save``) as soon as it is done, every candidate as soon as it is scored,
and ``results.json`` ([`RunResults`][bayesguide.results.RunResults]) is rewritten atomically
after every step (compact; the fit's histories and each finished candidate are
serialised once, not at every rewrite). A crash or Ctrl-C keeps every finished candidate; running the same
experiment into the same directory again resumes where it stopped — the fit and the
finished candidates are loaded, not recomputed; a complete run is returned as it is —
and a different experiment in that directory is refused, so nothing is overwritten by
mistake. At the end: the
recommended architecture with its measured latency ([`bayesguide.latency`][]), the
best candidate's posterior for ArviZ (SVI fits) and the reports.

A run's identity is its configuration ([`config_hash`][bayesguide.runner.config_hash]) *and* its training data
([`bayesguide.model.data_fingerprint`][] of the prepared tensors, saved as
``data_fingerprint``): resuming after the data file changed is refused, naming the file,
instead of scoring the remaining candidates on other data. A run that failed before any
result (no fit, no candidate) holds nothing to resume and is replaced by the next run
into its directory, whatever that run's experiment. ``timings.total_s`` adds up the time
of every invocation, including the one that was interrupted.

While it runs, a process holds the lock file ``.bayesguide.lock`` (its PID) in the run
directory; a second ``bayesguide run`` into the same directory is refused naming that
PID, and a lock left by a process that no longer exists is taken over.

``threads=`` sets torch's intra-op threads for the run (restored after); whatever ran
it, ``results.json`` records the thread count, the versions and the machine
(``environment``: `bayesguide.results.EnvironmentRecord`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pickle
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from bayesguide.architecture import save_module
from bayesguide.atomic import write_atomic
from bayesguide.comparison import metric, plan_hessian
from bayesguide.datasets import Dataset, NonIntegerLabelsError
from bayesguide.datasets import load as load_data
from bayesguide.experiment import Experiment, ExperimentError, check_task
from bayesguide.infer import FitResult
from bayesguide.latency import latency_ms
from bayesguide.model import GuidedModel, data_fingerprint
from bayesguide.pipeline import Hooks, fit_model, select_architecture
from bayesguide.pruning import Candidate, tuning_model, with_tuning
from bayesguide.report import write_reports
from bayesguide.report.convert import candidate_records, fit_record, recommendation
from bayesguide.results import CandidateRecord, DataRecord, EnvironmentRecord, RunResults
from bayesguide.rundir import (
    LOCK_FILE,
    RunDirectoryError,
    RunLock,
    RunLockedError,
    clear_run,
    is_empty,
    previous_results,
    restored_fit,
)

__all__ = ["LATENCY_BATCH", "LOCK_FILE", "DataError", "RunDirectoryError", "RunLockedError", "config_hash",
           "run_experiment", "torch_threads"]

LATENCY_BATCH = 256
"""Examples per timed forward pass of the recommended and the full network."""

_DATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, OSError, EOFError, zipfile.BadZipFile, zlib.error,
                pickle.UnpicklingError)
"""How reading a data source can fail on bad data (the message names the source)."""


class DataError(ValueError):
    """The ``[data]`` source cannot be read or is not usable data; the message names the source."""


def config_hash(exp: Experiment) -> str:
    """The identity of an experiment's results: a hash of every key but ``[output]``."""
    cfg = exp.to_dict()
    cfg.pop("output")
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _load_data(exp: Experiment) -> Dataset:
    """The ``[data]`` source; a file that cannot be read is a [`DataError`][bayesguide.runner.DataError] naming it."""
    source = exp.data.source
    custom = source.endswith((".npz", ".csv"))
    try:
        return load_data(source, exp.data.task if custom else None, exp.data.target or None,
                         exp.data.test_fraction, exp.data.seed)
    except _DATA_ERRORS as err:
        message = " ".join(str(err).split()) or type(err).__name__
        if source not in message:
            message = f"{source}: {type(err).__name__}: {message}"
        if isinstance(err, NonIntegerLabelsError):  # real-valued targets under the default task
            message += (f'; [data] task = "{exp.data.task}": for real-valued targets set '
                        f'task = "regression" in the [data] table')
        raise DataError(message) from err


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads, and the BLAS and OpenMP pools of numpy and scipy, set to ``n`` for the duration.

    The full-GGN evidence calls scipy's BLAS and LAPACK, whose pools start with a thread
    per core whatever torch's setting: two sweep workers with one torch thread each then
    ran four BLAS threads on two cores. The other pools are limited with
    ``threadpoolctl``; all are restored after.

    Parameters
    ----------
    n
        The thread count (at least 1); ``None`` leaves every setting alone.
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


class _Run:
    """The run directory and the results document being written into it."""

    def __init__(self, out: Path, results: RunResults, start: float) -> None:
        self.out, self.results, self.start = out, results, start
        self.previous_s = float(results.timings.get("total_s", 0.0))
        self.memo: dict[int, tuple[Any, str]] = {}  # the fit and finished candidates, serialised once

    def update(self, **changes: Any) -> None:
        """Change the document and write it (atomically), with the time spent so far."""
        total = self.previous_s + time.perf_counter() - self.start
        self.results = dataclasses.replace(self.results, **changes, timings={"total_s": total})
        self.results.save(self.out, self.memo)

    def restore(self, cand: Candidate) -> tuple[Candidate, dict[str, Any]] | None:
        """A candidate finished by an earlier invocation, its fine-tuned weights loaded."""
        done = {c.name: c for c in self.results.candidates}.get(cand.name)
        if done is None:
            return None
        cdir = self.out / "candidates" / cand.name
        if (cdir / "fit.json").is_file():
            tuned = restored_fit(cdir, self.out, lambda: FitResult.load(cdir, tuning_model(cand)))
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


def run_experiment(exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print,
                   threads: int | None = None) -> dict[str, Any]:
    """Run ``exp`` into ``exp.output.dir`` and return the results document (see [`bayesguide.results`][]).

    Parameters
    ----------
    exp
        The validated experiment.
    progress
        Progress bars for the fit and the candidates.
    log
        Where the one-line progress messages go.
    threads
        torch's intra-op threads for the run (restored after); ``None`` leaves torch's
        setting. ``results.json`` records the count used either way.

    Returns
    -------
    dict
        The ``results.json`` document.

    Raises
    ------
    RunDirectoryError
        If the directory holds another experiment's results, results on other training
        data, or saved fits that cannot be loaded.
    RunLockedError
        If another live process is running into the same directory.
    DataError
        If the ``[data]`` source cannot be read or is not usable data.
    ValueError
        If ``threads`` is not a positive integer or ``None``.
    """
    with torch_threads(threads):
        return _run(exp, progress, log)


def _run(exp: Experiment, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """[`run_experiment`][bayesguide.runner.run_experiment] under its thread count."""
    start = time.perf_counter()
    out = Path(exp.output.dir)
    chash = config_hash(exp)
    # another experiment's directory: refused before the data are read
    previous_results(out, chash, exp.data.source, None)

    data = _load_data(exp)
    log(f"data   {data}")
    check_task(exp, data.task)
    likelihood = "categorical" if data.task == "classification" else "gaussian"
    net = exp.network.build(data.n_features, data.n_outputs, exp.fit.seed)
    model = GuidedModel(net, exp.prior.build(), likelihood=likelihood)
    try:
        X, y = model.prepare_data(data.X_train, data.y_train)
        test = model.prepare_data(data.X_test, data.y_test)
    except (ValueError, TypeError) as err:
        raise DataError(f"{exp.data.source}: {err}") from err
    fingerprint = data_fingerprint(X, y)
    environment = EnvironmentRecord.current(torch.get_num_threads())

    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        # again, now that no other process writes here
        previous = previous_results(out, chash, exp.data.source, fingerprint)
        if previous is not None and is_empty(previous) and (
                previous.config_hash, previous.data_fingerprint) != (chash, fingerprint):
            log(f"replacing the run in {out}: it failed before any result")
            clear_run(out)
            previous = None
        elif previous is not None and previous.status == "complete":
            # nothing to do: the same experiment on the same data, finished (a sweep's rerun relies on it)
            log(f"the run in {out} is complete; nothing to do (bayesguide report {out} rebuilds its reports)")
            document = previous.to_json()
            write_reports(document, [out / name for name in ("report.html", "report.md") if not (out / name).is_file()])
            return document
        elif previous is not None:
            log(f"resuming the run in {out} ({previous.status})")
            previous = dataclasses.replace(previous, data_fingerprint=fingerprint, environment=environment)
        run = _Run(out, previous or RunResults(
            status="running", config=exp.to_dict(), config_hash=chash, metric=model.likelihood.metric_name,
            fit=None, data_fingerprint=fingerprint, environment=environment,
            data=DataRecord(name=data.name, task=data.task, n_train=int(X.shape[0]), n_test=int(test[0].shape[0]),
                            n_features=data.n_features, n_outputs=data.n_outputs),
        ), start)
        try:
            run.update()  # the directory is a run from now on, even if the fit fails
            return _complete(exp, run, model, X, y, test, progress, log)
        except BaseException:
            with contextlib.suppress(Exception):  # the time spent counts when the run is resumed
                run.update()
            raise


def _complete(exp: Experiment, run: _Run, model: GuidedModel, X: torch.Tensor, y: torch.Tensor,
              test: tuple[torch.Tensor, torch.Tensor], progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Fit (or load the fit), score the candidates not yet scored, and write the results and reports."""
    out = run.out
    # the curvature the candidates will be scored with, chosen (and checked) before any fitting
    with torch.no_grad():
        n_outputs = int(model.net.eval()(X[:1]).shape[-1])
    try:
        _, why = plan_hessian(exp.select.hessian, sum(p.numel() for p in model.net.parameters()), int(X.shape[0]),
                              n_outputs)
    except ValueError as err:
        raise ExperimentError(f"[select] hessian: {err}") from None
    log(f"hessian {why}")
    if run.results.fit is None:
        log(f"model  {model}")
        fit = fit_model(model, X, y, exp.optim(progress), method=exp.fit.method, **exp.fitter_options())
        fit.save(out / "fit")
        run.update(fit=fit_record(fit, metric(fit, X, y), metric(fit, *test)))
        log(f"fit    fit_{fit.fitter}: {fit.steps} steps in {fit.wall_time:.1f} s; "
            f"test {run.results.metric} {metric(fit, *test):.4f}")
    else:
        fit = restored_fit(out / "fit", out, lambda: FitResult.load(out / "fit", model))

    def announce(cand: Candidate) -> tuple[Candidate, dict[str, Any]] | None:
        restored = run.restore(cand)
        if restored is None:
            log(f"candidate {cand.name} ({cand.n_params:,} parameters)")
        return restored

    cmp = select_architecture(fit, X, y, exp.selection(progress), X_test=test[0], y_test=test[1],
                              hooks=Hooks(restore=announce, scored=run.scored))
    best = cmp.best
    changes: dict[str, Any] = {"candidates": candidate_records(cmp), "flags": tuple(cmp.flags),
                               "best": None if best is None else best.name, "selection": dict(cmp.settings)}
    if best is not None:
        x = torch.randn(LATENCY_BATCH, *X.shape[1:], generator=torch.Generator().manual_seed(0))
        ms = latency_ms({"best": best.module, "full": fit.module}, x)
        changes["recommended"] = recommendation(best, ms["best"], ms["full"], LATENCY_BATCH)
        row = cmp.table.loc[cmp.table["name"] == best.name].iloc[0]
        log(f"best   {best.name}: {best.n_params:,} of {best.original_params:,} parameters, "
            f"posterior probability {row['posterior_prob']:.3f} (evidence alone {row['evidence_prob']:.3f})")
        if best.variational:  # the best candidate's approximate posterior (the sliced SVI guide) for ArviZ
            idata = best.to_inference_data(X, y, posterior="guide", draws=200, seed=exp.fit.seed)
            write_atomic(out / "posterior.nc", lambda tmp: idata.to_netcdf(tmp))
            changes["posterior_file"] = "posterior.nc"
    run.update(status="complete", **changes)
    document = run.results.to_json()
    write_reports(document, [out / "report.html", out / "report.md"])  # the figures drawn once for both
    log(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return document
