"""The ``bayesguide`` command line.

* ``bayesguide demo [--out DIR] [--threads N]`` — the built-in demo end to end: the
  digits MLP 64-128-128-10 under evidence-driven fitting (``kind = "l2"``,
  ``guidance = "marglik"``, linear hyperprior), pruning path, Laplace evidence with the
  guidance Occam prior, report.
* ``bayesguide run EXPERIMENT.toml [--out DIR] [--threads N]`` — an experiment file (see
  `bayesguide.experiment`, which documents every method's keys: guided L1 / L2 /
  group / sparse group lasso, L0 gates, the group horseshoe, partial, relevance and
  evidence-driven guidance); re-running resumes an interrupted run. ``bayesguide run
  --help`` lists every table and key with its default and accepted values.
* ``bayesguide sweep SWEEP.toml [--executor local|dask|serial] [--workers N] [--scheduler ADDR]``
  — a base experiment at every point of a ``[grid]`` (see `bayesguide.sweeps.spec`),
  each point a run directory under the sweep directory, with ``sweep.json`` and the
  sweep report; rerunning it does only the points not complete.
* ``bayesguide report RUN_DIR`` — regenerate ``report.html`` / ``report.md`` from the
  saved ``results.json``.
* ``bayesguide --version``.

Threads: ``demo`` and ``run`` use one torch thread (and one in numpy's and scipy's BLAS)
unless ``--threads N`` says otherwise, like every point of a sweep (``[sweep] threads``).
The networks and batches of these commands are small, and torch's default (a thread per
core) collapses when the cores are busy: on a shared 2-core machine the demo took 83 s
with one thread and 412 s with two (README, "Timings"). ``results.json`` records the count (``environment``).

Start-up: this module imports only the standard library and the (lazy) ``bayesguide``
package, so ``bayesguide --help`` and ``--version`` answer at once; the torch stack is
imported with `bayesguide.cli.commands` when a command runs or ``bayesguide run
--help`` lists the registries' choices. ``sweep`` first starts the fork server its
workers come from, which imports the same stack meanwhile (`_sweep_workers`).

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
``BAYESGUIDE_DEBUG=1``; ``0``, ``false``, ``no``, ``off`` or empty mean off) re-raises the
exception instead, with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from bayesguide import __version__
from bayesguide._options import env_flag
from bayesguide.process import freeze_at_exit, worker_context

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEMO_STEPS", "EXECUTORS", "console", "main", "methods_help"]

DEMO_STEPS = 1500
"""The demo's MAP steps; an experiment file's default (evidence-driven) fit runs 6,000. On the digits the longer
fit collapses more units than the data need and the pick loses a point of test accuracy (docs/cli.md)."""

EXECUTORS = ("local", "dask", "serial")
"""
The sweep executors (`bayesguide.sweeps.EXECUTORS`, written here so that parsing needs no torch; tests/test_cli.py
checks that the two agree).
"""

_EXAMPLES = """examples:
  bayesguide demo                        built-in digits demo, results in ./bayesguide-demo
  bayesguide demo --out runs/demo        choose the output directory
  bayesguide run experiment.toml         run an experiment file ([data], [network], [prior], ...)
  bayesguide run experiment.toml --out runs/x --threads 2
  bayesguide sweep sweep.toml            every point of the file's [grid], one run directory each
  bayesguide sweep sweep.toml --scheduler local    the same on a Dask LocalCluster
  bayesguide report runs/x               rebuild report.html and report.md from results.json
"""

_EXIT_CODES = """exit codes: 0 success; 1 the run failed; 2 bad input (arguments, experiment file, data);
  130 interrupted (finished work is saved; the same command resumes).
  Errors are one line on stderr; --debug (or BAYESGUIDE_DEBUG=1) shows the traceback.
"""

_METHODS_POINTER = """methods (prior kinds, guidance, fits, evidence) and every experiment-file key with its
default and accepted values: bayesguide run --help
"""

_THREADS_HELP = "torch threads (default: %(default)s; more pay off only for large networks or batches)"


def _commands() -> ModuleType:
    """`bayesguide.cli.commands`, imported now: the torch stack comes with it."""
    return importlib.import_module("bayesguide.cli.commands")


def methods_help() -> str:
    """The methods part of ``bayesguide run --help`` (see `bayesguide.cli.commands.methods_help`).

    Returns
    -------
    str
        Every registered prior family, guidance and evidence estimator.
    """
    text: str = _commands().methods_help()
    return text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog may be computed when the help is shown.

    ``lazy_epilog`` (a function returning text) is called by `format_help` only, so a
    help text that needs the registries costs nothing unless that help is asked for.
    """

    def __init__(self, *args: Any, lazy_epilog: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_epilog = lazy_epilog

    def format_help(self) -> str:
        if self._lazy_epilog is not None:
            self.epilog = self._lazy_epilog() + "\n" + (self.epilog or "")
            self._lazy_epilog = None
        return super().format_help()


def _positive_int(text: str) -> int:
    """An argparse type: an integer in 1 … 10⁹ (the ``[fit] steps`` bounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if not 1 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"must be an integer in 1 … 1,000,000,000, got {text!r}")
    return value


def _threads(text: str) -> int:
    """An argparse type: a thread count in 1 … 4096 (the ``[sweep] threads`` bounds)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 4096:
        raise argparse.ArgumentTypeError(f"must be an integer in 1 … 4096, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer in 0 … 4096."""
    if not text.strip().isdigit() or int(text) > 4096:
        raise argparse.ArgumentTypeError(f"must be an integer in 0 … 4096, got {text!r}")
    return int(text)


def _directory(text: str) -> str:
    """An argparse type: a directory name, not ``""`` (which would be the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a directory, got {text!r}")
    return text


def _run_help() -> str:
    text: str = _commands().run_help()
    return text


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="bayesguide",
        description="Bayesian model selection of neural-network architectures with guided priors.",
        epilog=_EXAMPLES + "\n" + _METHODS_POINTER + "\n" + _EXIT_CODES, formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"bayesguide {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the traceback instead of one line (also: BAYESGUIDE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the built-in digits demo, end to end", epilog=_EXAMPLES, formatter_class=fmt)
    demo.add_argument("--out", type=_directory, default="bayesguide-demo", help="run directory (default: %(default)s)")
    demo.add_argument("--steps", type=_positive_int, default=DEMO_STEPS, help="MAP steps (default: %(default)s)")
    demo.add_argument("--threads", type=_threads, default=1, metavar="N", help=_THREADS_HELP)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(command_name="demo")
    run = sub.add_parser("run", help="run an experiment file (--help lists every key)", epilog=_EXAMPLES,
                         formatter_class=fmt, lazy_epilog=_run_help)
    run.add_argument("experiment", help="the experiment file (TOML; a relative [data] source is read from its "
                     "folder)")
    run.add_argument("--out", type=_directory, default=None, help="run directory (default: the file's [output] dir)")
    run.add_argument("--threads", type=_threads, default=1, metavar="N", help=_THREADS_HELP)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(command_name="run")
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
    sweep.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="torch threads per point (default 1)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(command_name="sweep")
    report = sub.add_parser("report", help="rebuild the reports of a run directory", formatter_class=fmt)
    report.add_argument("run_dir", help="a directory written by 'bayesguide run' or 'demo'")
    report.set_defaults(command_name="report")
    return parser


def _sweep_workers(args: argparse.Namespace) -> tuple[str, ...] | None:
    """What a ``sweep`` command's fork server imports besides the workers' modules, or ``None`` if it starts none.

    ``sweep`` starts its workers' fork server ([`worker_context`][bayesguide.process.worker_context]) before it
    imports the torch stack, so that both imports run at once: the local pool and a
    LocalCluster (which adds ``distributed``) start workers, ``serial`` and a remote
    scheduler do not. The flags and the file's ``[sweep]`` table are read here only for
    that head start; an unreadable file starts nothing, and the sweep reports it
    (``tests/test_cli.py`` tries each combination).
    """
    try:
        with open(args.sweep, "rb") as f:
            table = tomllib.load(f).get("sweep", {})
    except (OSError, ValueError):  # tomllib.TOMLDecodeError is a ValueError
        return None
    if not isinstance(table, dict):
        return None
    scheduler = args.scheduler or table.get("scheduler") or ""
    executor = args.executor or table.get("executor") or "local"
    if scheduler == "local" or (executor == "dask" and not scheduler):
        return ("distributed",)
    return () if executor == "local" and not scheduler else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesguide`` command.

    Parameters
    ----------
    argv
        The arguments after the program name (``None``: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (see the module docstring).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = bool(args.debug) or env_flag("BAYESGUIDE_DEBUG")
    if args.command == "sweep" and (extra := _sweep_workers(args)) is not None:
        worker_context(extra)  # the workers' imports run beside this process's own (below)
    commands = _commands()
    try:
        code: int = getattr(commands, args.command_name)(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("bayesguide: interrupted; finished candidates are saved — run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        code, message = commands.failure(err)
        print(f"bayesguide: {message}", file=sys.stderr)
        return code
    return code


def console() -> int:
    """The ``bayesguide`` executable: [`main`][bayesguide.cli.main] in a process of its own.

    The process skips the garbage collector's last pass over torch at exit
    ([`freeze_at_exit`][bayesguide.process.freeze_at_exit]): 1.5–2.1 s fewer at the
    end of every command that ran a fit. ``main`` called from Python leaves the caller's
    process alone.
    """
    freeze_at_exit()
    return main()
