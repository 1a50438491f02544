"""What each ``bayesguide`` command does, and the help texts read from the registries.

`bayesguide.cli` parses the command line without importing torch; it imports this
module (and with it the whole stack) only when a command runs or a help text needs the
registries (``bayesguide run --help``). One function per command, taking the parsed
arguments and returning the exit code; `failure` turns an exception into the exit code
and the one-line message.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bayesguide.experiment import (
    Experiment,
    ExperimentError,
    FitConfig,
    OutputConfig,
    keys_help,
    load_experiment,
)
from bayesguide.guidance import ProfileName
from bayesguide.infer import NonFiniteLossError, fitters
from bayesguide.marglik import estimators
from bayesguide.priors import families
from bayesguide.report import write_reports
from bayesguide.results import load_results
from bayesguide.runner import DataError, run_experiment
from bayesguide.sweeps import load_sweep, run_sweep

__all__ = ["InputError", "demo", "failure", "methods_help", "report", "run", "run_help", "sweep"]

_MOST = 2000
"""The longest message printed (a library's message can be pages long)."""


class InputError(Exception):
    """Bad input that is not an experiment error: e.g. a missing experiment file (exit code 2)."""


def methods_help() -> str:
    """The methods part of ``bayesguide run --help``: every registered prior family, guidance and estimator.

    Returns
    -------
    str
        One or two lines per family (its fits and its own keys), the guidance profiles,
        the adaptive fitters and the evidence estimators.
    """
    lines = ["methods ([prior] kind and guidance; see docs/cli.md and the examples/ folder):"]
    for family in families():
        fits = ", ".join(f'method = "{m}" (bg.fit_{f})' for m, f in family.fitters.items())
        keys = "".join(f"; {o.key} = {o.default:g} ({o.summary})" for o in family.options)
        lines.append(f'  kind = "{family.kind}": {family.summary}')
        lines.append(f"      fit: {fits}{keys}")
    lines.append(f"  guidance = {' | '.join(repr(g) for g in ProfileName.choices())}".replace("'", '"'))
    for fitter in fitters():
        if fitter.kinds is not None:
            lines.append(f"  bg.fit_{fitter.name}: {fitter.summary}; prior kind {', '.join(fitter.kinds)}"
                         + ("; a classification task" if fitter.fixed_noise else ""))
    lines.append(f"  [select] evidence = {' | '.join(repr(e.name) for e in estimators())}".replace("'", '"'))
    lines.append("  Invalid combinations, and a family's own key set for another kind, are")
    lines.append("  refused before any work (exit code 2).")
    return "\n".join(lines) + "\n"


def run_help() -> str:
    """The epilog of ``bayesguide run --help``: every experiment key, then the methods.

    Returns
    -------
    str
        `bayesguide.experiment.keys_help` followed by `methods_help`.
    """
    return keys_help() + "\n" + methods_help()


def _run(experiment: Experiment, args: argparse.Namespace) -> int:
    # progress bars only on a terminal: redirected output gets the log lines, not every redraw
    run_experiment(experiment, progress=not args.quiet and sys.stderr.isatty(), threads=args.threads)
    return 0


def demo(args: argparse.Namespace) -> int:
    """``bayesguide demo``: the built-in default experiment, ``--steps`` MAP steps (`bayesguide.cli.DEMO_STEPS`)."""
    exp = Experiment(fit=FitConfig(steps=args.steps), output=OutputConfig(dir=args.out))
    return _run(exp, args)


def run(args: argparse.Namespace) -> int:
    """``bayesguide run FILE``: an experiment file, ``--out`` overriding its ``[output] dir``."""
    try:
        exp = load_experiment(args.experiment)
    except OSError as err:  # missing, a directory, unreadable: bad input, not a failed run
        raise InputError(str(err)) from err
    if args.out is not None:
        exp = dataclasses.replace(exp, output=OutputConfig(dir=args.out))
    return _run(exp, args)


def sweep(args: argparse.Namespace) -> int:
    """``bayesguide sweep FILE``: every point of the grid; exit code 1 if a point did not complete."""
    settings = {"dir": args.out, "executor": args.executor, "workers": args.workers, "scheduler": args.scheduler,
                "retries": args.retries, "threads": args.threads}
    try:
        spec = load_sweep(args.sweep, **settings)
    except OSError as err:  # missing, a directory, unreadable: bad input
        raise InputError(str(err)) from err
    result = run_sweep(spec, progress=not args.quiet and sys.stderr.isatty())
    if result.complete:
        return 0
    unfinished = [p for p in result.points if p["status"] != "complete"]
    print(f"bayesguide: {len(unfinished)} of {len(result.points)} points did not complete "
          f"({', '.join(sorted({p['status'] for p in unfinished}))}; see {spec.dir / 'sweep-report.html'}); "
          f"run the same command again to retry them", file=sys.stderr)
    return 1


def report(args: argparse.Namespace) -> int:
    """``bayesguide report RUN_DIR``: rebuild the reports from ``results.json``."""
    try:
        results = load_results(args.run_dir)
    except (OSError, ValueError) as err:  # no run directory, or not a results file: bad input
        raise InputError(str(err)) from err
    for path in write_reports(results, [Path(args.run_dir) / name for name in ("report.html", "report.md")]):
        print(f"wrote {path}")
    return 0


def _one_line(err: BaseException) -> str:
    """The exception's message on one line (whitespace collapsed, at most ``_MOST`` characters)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MOST else text[: _MOST - 1] + "…"


def failure(err: Exception) -> tuple[int, str]:
    """The exit code and the one-line message of an error that ended a command.

    Parameters
    ----------
    err
        The exception.

    Returns
    -------
    tuple
        The exit code (2: bad input; 1: the run failed) and the message, without the
        ``bayesguide:`` prefix.
    """
    if isinstance(err, ExperimentError):
        return 2, f"invalid experiment: {_one_line(err)}"
    if isinstance(err, DataError):
        return 2, f"bad data: {_one_line(err)}"
    if isinstance(err, InputError):
        return 2, f"error: {_one_line(err)}"
    if isinstance(err, NonFiniteLossError):
        return 1, f"the run failed: {_one_line(err)} (try a smaller [fit] lr or a weaker prior)"
    if isinstance(err, (ValueError, TypeError, OSError)):  # the library's own errors name the problem
        return 1, f"error: {_one_line(err)}"
    return 1, f"error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)"
