"""Does a MAP warm start help an SVI fit? ``fit_svi(warm_start=k)`` against ``warm_start=0``.

The numbers behind ``[fit] warm_start = "auto"`` (``bayesguide.experiment.tables.resolve_warm_start``)
and the horseshoe section of docs/methods.md. Each case is fitted twice with the same
budget, seed, batches and learning rate as ``benchmarks/compression.py``'s task: from
the random initialisation (all steps SVI), and with ``--share`` of the steps as MAP steps
first. It prints the posterior mean's test accuracy (the network without pruning) and the
first points of its geometric pruning path.

Cases:

* ``horseshoe`` — the group horseshoe, τ₀ = 1, on the MNIST-1D MLP (40-256-256-10);
* ``group`` — the uniform group lasso at the benchmark's weakest strength (λ′ = 1e-4), a
  density prior with a MAP of its own, on the MNIST-1D MLP and the digits MLP.

Usage::

    python benchmarks/svi_warm_start.py                    # every case, ~4 minutes on 2 cores
    python benchmarks/svi_warm_start.py --cases horseshoe --seed 1
    python benchmarks/svi_warm_start.py --smoke            # tiny, seconds (CI)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

import bayesguide as bg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compression as C  # the compression benchmark's tasks, splits and priors

CASES: dict[str, tuple[tuple[str, str, float], ...]] = {
    # name: (task, method of compression.METHODS, grid value)
    "horseshoe": (("mnist1d-mlp", "horseshoe", 1.0),),
    "group": (("mnist1d-mlp", "uniform-group", 1e-4), ("digits-mlp", "uniform-group", 1e-4)),
}


def run_case(task_name: str, method_name: str, value: float, seed: int, warm: int, smoke: bool) -> dict[str, Any]:
    """One SVI fit of the case, ``warm`` MAP steps first; its test accuracy and first path points."""
    task = C.TASKS[task_name]
    split = C.load_split(task_name, 160 if smoke else None)
    n = split.X.shape[0]
    torch.manual_seed(seed)
    prior = C.build_prior(C.METHODS[method_name], value, n, task.strength_scale)
    model = bg.GuidedModel(C.build_net(task_name), prior, task.likelihood)
    steps = 8 if smoke else task.steps
    start = time.perf_counter()
    fit = bg.fit_svi(model, split.X, split.y, steps=steps, lr=task.lr, batch_size=task.batch_size, seed=seed,
                     schedule=task.schedule, warm_start=warm, progress=False)
    seconds = time.perf_counter() - start
    path = bg.pruning_path(fit, split.X, split.y, n_candidates=5 if smoke else 40, spacing="geometric",
                           score=bg.priors.get_family(prior).score)
    metric = [C.metric(c.predict(split.X_test), split.y_test, task.likelihood) for c in path]
    return {"steps": steps, "warm": warm, "seconds": seconds,
            "test": C.metric(fit.module(split.X_test), split.y_test, task.likelihood),
            "path": [(c.name, m) for c, m in zip(path, metric)][: 12 : 3]}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=0.25, help="the share of the steps that are MAP steps")
    parser.add_argument("--smoke", action="store_true", help="tiny data and 8 steps: checks the script runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for case in args.cases:
        for task_name, method_name, value in CASES[case]:
            steps = 8 if args.smoke else C.TASKS[task_name].steps
            for warm in (0, int(steps * args.share)):
                row = run_case(task_name, method_name, value, args.seed, warm, args.smoke)
                rows.append({"case": case, "task": task_name, **row})
                path = ", ".join(f"{name} {m:.3f}" for name, m in row["path"])
                print(f"{case:9s} {task_name:12s} {warm:>5d} of {steps} steps MAP: posterior mean test "
                      f"{row['test']:.3f} ({row['seconds']:.0f} s); path {path}", flush=True)
    return rows


if __name__ == "__main__":
    main()
