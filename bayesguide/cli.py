"""The ``bayesguide`` command line.

* ``bayesguide demo [--out DIR]`` — the built-in default end to end: the digits MLP
  64-128-128-10 under a guided group-lasso prior (linear profile), MAP fit, pruning
  path, Laplace evidence with the guidance Occam prior, report.
* ``bayesguide run EXPERIMENT.toml [--out DIR]`` — an experiment file (see
  :mod:`bayesguide.experiment`, which documents every method's keys: guided L1 / L2 /
  group / sparse group lasso, L0 gates, the group horseshoe, partial and relevance
  guidance); re-running resumes an interrupted run.
* ``bayesguide report RUN_DIR`` — regenerate ``report.html`` / ``report.md`` from the
  saved ``results.json``.

Exit codes: 0 success, 1 the run failed (the message says why), 2 bad command-line
arguments or an invalid experiment file, 130 interrupted (finished work is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from bayesguide.experiment import Experiment, ExperimentError, FitConfig, OutputConfig, load_experiment
from bayesguide.guidance import ProfileName
from bayesguide.infer import fitters
from bayesguide.marglik import estimators
from bayesguide.priors import families
from bayesguide.report import write_report
from bayesguide.results import load_results
from bayesguide.runner import run_experiment

__all__ = ["main", "methods_help"]

_EXAMPLES = """examples:
  bayesguide demo                        built-in digits demo, results in ./bayesguide-demo
  bayesguide demo --out runs/demo        choose the output directory
  bayesguide run experiment.toml         run an experiment file ([data], [network], [prior], ...)
  bayesguide run experiment.toml --out runs/x
  bayesguide report runs/x               rebuild report.html and report.md from results.json
"""

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


def _demo(args: argparse.Namespace) -> int:
    exp = Experiment(fit=FitConfig(steps=args.steps), output=OutputConfig(dir=args.out))
    return _run(exp, args.quiet)


def _run_file(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment)
    if args.out is not None:
        exp = dataclasses.replace(exp, output=OutputConfig(dir=args.out))
    return _run(exp, args.quiet)


def _report(args: argparse.Namespace) -> int:
    results = load_results(args.run_dir)
    for name in ("report.html", "report.md"):
        path = write_report(results, Path(args.run_dir) / name)
        print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="bayesguide",
        description="Bayesian model selection of neural-network architectures with guided priors.",
        epilog=_EXAMPLES + "\n" + methods_help(), formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the built-in digits demo, end to end", epilog=_EXAMPLES, formatter_class=fmt)
    demo.add_argument("--out", default="bayesguide-demo", help="run directory (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=1500, help="MAP steps (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    run = sub.add_parser("run", help="run an experiment file", epilog=methods_help() + "\n" + _EXAMPLES,
                         formatter_class=fmt)
    run.add_argument("experiment", help="the experiment file (TOML)")
    run.add_argument("--out", default=None, help="run directory (default: the file's [output] dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run_file)
    report = sub.add_parser("report", help="rebuild the reports of a run directory", formatter_class=fmt)
    report.add_argument("run_dir", help="a directory written by 'bayesguide run' or 'demo'")
    report.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesguide`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except ExperimentError as err:
        print(f"bayesguide: invalid experiment: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesguide: interrupted; finished candidates are saved — run the same command again to resume",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"bayesguide: error: {err}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
