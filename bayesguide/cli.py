"""The ``bayesguide`` command line.

* ``bayesguide demo [--out DIR]`` — the built-in demo end to end: the digits MLP
  64-128-128-10 under evidence-driven fitting (``kind = "l2"``, ``guidance = "marglik"``,
  linear hyperprior), pruning path, Laplace evidence with the guidance Occam prior,
  report.
* ``bayesguide run EXPERIMENT.toml [--out DIR]`` — an experiment file (see
  :mod:`bayesguide.experiment`, which documents every method's keys: guided L1 / L2 /
  group / sparse group lasso, L0 gates, the group horseshoe, partial, relevance and
  evidence-driven guidance); re-running resumes an interrupted run.
* ``bayesguide sweep SWEEP.toml [--executor local|dask|serial] [--workers N] [--scheduler ADDR]``
  — a base experiment at every point of a ``[grid]`` (see :mod:`bayesguide.sweeps.spec`),
  each point a run directory under the sweep directory, with ``sweep.json`` and the
  sweep report; rerunning it does only the points not complete.
* ``bayesguide report RUN_DIR`` — regenerate ``report.html`` / ``report.md`` from the
  saved ``results.json``.

Exit codes:

* 0 — success;
* 1 — the run failed (for ``sweep``: a point failed, or another invocation was running
  it — the others are saved; rerun to retry): training diverged (``bayesguide.NonFiniteLossError``), the run
  directory holds another experiment, other data, a damaged saved fit, or is in use by
  another ``bayesguide run`` (its lock file names the PID), or anything unexpected;
* 2 — bad input: bad command-line arguments, a missing or invalid experiment file
  (``ExperimentError``), a data source that cannot be read or is not usable data, or
  (``report``) a directory without a readable ``results.json``;
* 130 — interrupted (Ctrl-C); finished work is saved, the same command resumes.

Every failure ends in one line on standard error, ``bayesguide: …``, naming the
problem. ``bayesguide --debug COMMAND …`` (or the environment variable
``BAYESGUIDE_DEBUG=1``) re-raises the exception instead, with its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bayesguide.experiment import Experiment, ExperimentError, FitConfig, OutputConfig, PriorConfig, load_experiment
from bayesguide.guidance import ProfileName
from bayesguide.infer import NonFiniteLossError, fitters
from bayesguide.marglik import estimators
from bayesguide.priors import families
from bayesguide.report import write_report
from bayesguide.results import load_results
from bayesguide.runner import DataError, run_experiment
from bayesguide.sweeps import EXECUTORS, load_sweep, run_sweep

__all__ = ["main", "methods_help"]

_EXAMPLES = """examples:
  bayesguide demo                        built-in digits demo, results in ./bayesguide-demo
  bayesguide demo --out runs/demo        choose the output directory
  bayesguide run experiment.toml         run an experiment file ([data], [network], [prior], ...)
  bayesguide run experiment.toml --out runs/x
  bayesguide sweep sweep.toml            every point of the file's [grid], one run directory each
  bayesguide sweep sweep.toml --scheduler local    the same on a Dask LocalCluster
  bayesguide report runs/x               rebuild report.html and report.md from results.json
"""

_EXIT_CODES = """exit codes: 0 success; 1 the run failed; 2 bad input (arguments, experiment file, data);
  130 interrupted (finished work is saved; the same command resumes).
  Errors are one line on stderr; --debug (or BAYESGUIDE_DEBUG=1) shows the traceback.
"""

#: the longest message printed (a library's message can be pages long)
_MOST = 2000


class _InputError(Exception):
    """Bad input that is not an experiment error: e.g. a missing experiment file (exit code 2)."""

def methods_help() -> str:
    """The methods part of ``--help``: every registered prior family, guidance and estimator."""
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


def _run(experiment: Experiment, quiet: bool) -> int:
    # progress bars only on a terminal: redirected output gets the log lines, not every redraw
    run_experiment(experiment, progress=not quiet and sys.stderr.isatty())
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: an integer in 1 … 10⁹ (the ``[fit] steps`` bounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if not 1 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"must be an integer in 1 … 1,000,000,000, got {text!r}")
    return value


def _directory(text: str) -> str:
    """An argparse type: a directory name, not ``""`` (which would be the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a directory, got {text!r}")
    return text


#: the demo's prior: evidence-driven fitting, which on the digits keeps a 5.6× smaller network than the
#: empty experiment's guided group lasso at the same test accuracy (docs/cli.md)
DEMO_PRIOR = PriorConfig(kind="l2", strength=1.0, guidance="marglik")


def _demo(args: argparse.Namespace) -> int:
    exp = Experiment(prior=DEMO_PRIOR, fit=FitConfig(steps=args.steps), output=OutputConfig(dir=args.out))
    return _run(exp, args.quiet)


def _run_file(args: argparse.Namespace) -> int:
    try:
        exp = load_experiment(args.experiment)
    except OSError as err:  # missing, a directory, unreadable: bad input, not a failed run
        raise _InputError(str(err)) from err
    if args.out is not None:
        exp = dataclasses.replace(exp, output=OutputConfig(dir=args.out))
    return _run(exp, args.quiet)


def _sweep(args: argparse.Namespace) -> int:
    settings = {"dir": args.out, "executor": args.executor, "workers": args.workers, "scheduler": args.scheduler,
                "retries": args.retries, "threads": args.threads}
    try:
        spec = load_sweep(args.sweep, **settings)
    except OSError as err:  # missing, a directory, unreadable: bad input
        raise _InputError(str(err)) from err
    result = run_sweep(spec, progress=not args.quiet and sys.stderr.isatty())
    if result.complete:
        return 0
    unfinished = [p for p in result.points if p["status"] != "complete"]
    print(f"bayesguide: {len(unfinished)} of {len(result.points)} points did not complete "
          f"({', '.join(sorted({p['status'] for p in unfinished}))}; see {spec.dir / 'sweep-report.html'}); "
          f"run the same command again to retry them", file=sys.stderr)
    return 1


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer in 0 … 4096."""
    if not text.strip().isdigit() or int(text) > 4096:
        raise argparse.ArgumentTypeError(f"must be an integer in 0 … 4096, got {text!r}")
    return int(text)


def _report(args: argparse.Namespace) -> int:
    try:
        results = load_results(args.run_dir)
    except (OSError, ValueError) as err:  # no run directory, or not a results file: bad input
        raise _InputError(str(err)) from err
    for name in ("report.html", "report.md"):
        path = write_report(results, Path(args.run_dir) / name)
        print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="bayesguide",
        description="Bayesian model selection of neural-network architectures with guided priors.",
        epilog=_EXAMPLES + "\n" + methods_help() + "\n" + _EXIT_CODES, formatter_class=fmt,
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the traceback instead of one line (also: BAYESGUIDE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the built-in digits demo, end to end", epilog=_EXAMPLES, formatter_class=fmt)
    demo.add_argument("--out", type=_directory, default="bayesguide-demo", help="run directory (default: %(default)s)")
    demo.add_argument("--steps", type=_positive_int, default=1500, help="MAP steps (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    run = sub.add_parser("run", help="run an experiment file", epilog=methods_help() + "\n" + _EXAMPLES,
                         formatter_class=fmt)
    run.add_argument("experiment", help="the experiment file (TOML)")
    run.add_argument("--out", type=_directory, default=None, help="run directory (default: the file's [output] dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run_file)
    sweep = sub.add_parser("sweep", help="run every point of a sweep file's grid", formatter_class=fmt,
                           epilog=_EXAMPLES)
    sweep.add_argument("sweep", help="the sweep file (TOML: the experiment tables, [sweep], [grid], [[point]])")
    sweep.add_argument("--out", type=_directory, default=None, help="sweep directory (default: [sweep] dir)")
    sweep.add_argument("--executor", choices=EXECUTORS, default=None, help="where points run (default: [sweep] "
                       "executor, local: a process pool)")
    sweep.add_argument("--workers", type=_non_negative_int, default=None,
                       help="processes of the local pool or workers of --scheduler local (0: one per core)")
    sweep.add_argument("--scheduler", default=None,
                       help='a Dask scheduler address "tcp://HOST:8786", or "local" for a LocalCluster (implies dask)')
    sweep.add_argument("--retries", type=_non_negative_int, default=None, help="runs again of a point whose "
                       "worker died (default: [sweep] retries, 2)")
    sweep.add_argument("--threads", type=_positive_int, default=None, help="torch threads per point (default 1)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_sweep)
    report = sub.add_parser("report", help="rebuild the reports of a run directory", formatter_class=fmt)
    report.add_argument("run_dir", help="a directory written by 'bayesguide run' or 'demo'")
    report.set_defaults(func=_report)
    return parser


def _one_line(err: BaseException) -> str:
    """The exception's message on one line (whitespace collapsed, at most ``_MOST`` characters)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MOST else text[: _MOST - 1] + "…"


def _failure(err: Exception) -> tuple[int, str]:
    """The exit code and the one-line message of an error that ended a command."""
    if isinstance(err, ExperimentError):
        return 2, f"invalid experiment: {_one_line(err)}"
    if isinstance(err, DataError):
        return 2, f"bad data: {_one_line(err)}"
    if isinstance(err, _InputError):
        return 2, f"error: {_one_line(err)}"
    if isinstance(err, NonFiniteLossError):
        return 1, f"the run failed: {_one_line(err)} (try a smaller [fit] lr or a weaker prior)"
    if isinstance(err, (ValueError, TypeError, OSError)):  # the library's own errors name the problem
        return 1, f"error: {_one_line(err)}"
    return 1, f"error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)"


def _debug(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("BAYESGUIDE_DEBUG", "").strip() not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesguide`` command; returns the exit code (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        if _debug(args):
            raise
        print("bayesguide: interrupted; finished candidates are saved — run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as err:
        if _debug(args):
            raise
        code, message = _failure(err)
        print(f"bayesguide: {message}", file=sys.stderr)
        return code
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
