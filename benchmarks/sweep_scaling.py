"""How much does running a sweep's points in parallel buy, and what does Dask cost?

The same 8-point sweep (digits MLP, a 2 × 2 × 2 grid over prior strength, width and
seed) runs with three executors, alternated inside one process (serial, local, dask,
serial, local, dask, …) so machine load hits all of them alike, each into a fresh
directory:

* ``serial`` — every point in this process, one torch thread;
* ``local``  — a spawned process pool of ``--workers`` processes, one thread each;
* ``dask``   — a ``distributed.LocalCluster`` of ``--workers`` single-threaded worker
  processes on loopback, started by the sweep (``scheduler = "local"``).

Wall times include starting the pool or the cluster (importing torch and bayesguide in
every worker) — what a user waits for. It prints the median of each, the speed-up of
``local`` and ``dask`` over ``serial`` (target ≥ 1.7 on 2 cores) and Dask's overhead
against the local pool (target ≤ 10 %), checks that the three give the same numbers,
and measures the Dask scheduler's cost per task (empty tasks through a running
cluster), the figure docs/scaling.md extrapolates from.

``--cli`` runs every sweep as the command line does instead: ``bayesguide sweep FILE``
in a fresh process per sweep, timed from its start to its exit. Then every executor pays
the imports (torch, bayesguide, ``torch._dynamo`` at the first optimiser step) once, as a
user at a shell does; in one process the serial executor pays them only in the first
round, while the pool's workers pay them in every sweep (a second sweep in a notebook).

Usage::

    python benchmarks/sweep_scaling.py                 # 2 rounds, ~6 minutes on 2 cores
    python benchmarks/sweep_scaling.py --cli           # each sweep a `bayesguide sweep` process
    python benchmarks/sweep_scaling.py --smoke         # tiny points, one round (CI-sized)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import distributed

import bayesguide as bg
from bayesguide.atomic import write_json_atomic


def _noop(i: int) -> int:
    return i


def per_task_overhead(workers: int, tasks: int = 400) -> float:
    """Seconds the Dask scheduler adds per task: empty tasks through a running LocalCluster."""
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        client.gather(client.map(_noop, range(20), pure=False))  # warm
        start = time.perf_counter()
        futures = [client.submit(_noop, i, pure=False) for i in range(tasks)]
        for _ in distributed.as_completed(futures):
            pass
        return (time.perf_counter() - start) / tasks


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # numbers, strings and lists of them are the same in JSON and TOML


def sweep_file(base: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    """The sweep as a file for ``bayesguide sweep``: the base experiment's tables and ``[grid]``."""
    lines: list[str] = []
    for table, keys in base.items():
        lines += [f"[{table}]", *(f"{key} = {_toml_value(v)}" for key, v in keys.items()), ""]
    lines += ["[grid]", *(f'"{key}" = {_toml_value(v)}' for key, v in grid.items())]
    return "\n".join(lines) + "\n"


def run_cli(file: Path, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``bayesguide sweep file`` in a fresh process with ``options`` as flags; the sweep's ``sweep.json``."""
    flags = ["--executor", options["executor"]] if "executor" in options else ["--scheduler", options["scheduler"]]
    if "workers" in options:
        flags += ["--workers", str(options["workers"])]
    subprocess.run([sys.executable, "-m", "bayesguide.cli", "sweep", str(file), "--out", str(out), "--quiet", *flags],
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "sweep.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400, help="MAP steps per point")
    parser.add_argument("--smoke", action="store_true", help="tiny points, one round")
    parser.add_argument("--cli", action="store_true",
                        help="run each sweep as `bayesguide sweep FILE` in a fresh process (timed to its exit)")
    parser.add_argument("--out", default=None,
                        help="where the summary goes (default: benchmarks/results/sweep_scaling.json, "
                             "sweep_scaling_cli.json with --cli)")
    args = parser.parse_args()
    out = args.out or f"benchmarks/results/sweep_scaling{'_cli' if args.cli else ''}.json"
    steps, rounds = (30, 1) if args.smoke else (args.steps, args.rounds)
    base: dict[str, Any] = {
        "data": {"source": "digits"}, "network": {"hidden": [32]},
        "fit": {"steps": steps, "lr": 0.01},
        "select": {"n_candidates": 4, "bisect": 0, "fine_tune": 0 if args.smoke else 100},
    }
    grid = {"prior.strength": [0.5, 2.0], "network.hidden": [[32], [64]], "fit.seed": [0, 1]}
    executors: dict[str, dict[str, Any]] = {
        "serial": {"executor": "serial"},
        "local": {"executor": "local", "workers": args.workers},
        "dask": {"scheduler": "local", "workers": args.workers},
    }
    times: dict[str, list[float]] = {name: [] for name in executors}
    numbers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "sweep.toml"
        file.write_text(sweep_file(base, grid))
        for r in range(rounds):
            for name, options in executors.items():
                start = time.perf_counter()
                if args.cli:
                    points = run_cli(file, Path(tmp) / f"{name}-{r}", options)["points"]
                else:
                    res = bg.sweep(base, grid=grid, dir=Path(tmp) / f"{name}-{r}", progress=False, **options)
                    points = res.points
                times[name].append(time.perf_counter() - start)
                assert all(p["status"] == "complete" for p in points), [(p["name"], p["error"]) for p in points]
                numbers[name] = {p["name"]: (p["best"], p["log_evidence"], p["test_metric"]) for p in points}
                print(f"round {r + 1}: {name:6s} {times[name][-1]:7.1f} s", flush=True)
    same = numbers["serial"] == numbers["local"] == numbers["dask"]
    med = {name: statistics.median(t) for name, t in times.items()}
    overhead = per_task_overhead(args.workers)
    summary = {
        "points": 8, "workers": args.workers, "steps": steps, "rounds": rounds, "cli": args.cli, "median_s": med,
        "speedup_local": med["serial"] / med["local"], "speedup_dask": med["serial"] / med["dask"],
        "dask_overhead_vs_local": med["dask"] / med["local"] - 1.0, "same_numbers": same,
        "dask_per_task_s": overhead, "times_s": times,
    }
    print(f"\nmedian wall time: serial {med['serial']:.1f} s, local {med['local']:.1f} s, dask {med['dask']:.1f} s")
    print(f"speed-up over serial: local {summary['speedup_local']:.2f}x, dask {summary['speedup_dask']:.2f}x "
          f"(target >= 1.7 on 2 cores)")
    print(f"dask overhead against the local pool: {100 * summary['dask_overhead_vs_local']:+.1f} % (target <= 10 %)")
    print(f"same numbers in the three executors: {same}")
    print(f"dask scheduler cost per task: {1000 * overhead:.2f} ms")
    if not args.smoke:
        write_json_atomic(out, summary)
        print(f"wrote {out}")
    else:
        print(json.dumps({k: v for k, v in summary.items() if k != "times_s"}, default=str))


if __name__ == "__main__":
    main()
