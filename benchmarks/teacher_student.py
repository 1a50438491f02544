"""Does selection find the teacher's width? A grid of teacher–student regressions, run as a user would.

Each case draws a one-hidden-layer teacher (``tanh`` or ``relu``, ``width`` units, input
dimension ``d``; weights standard normal, output weights of magnitude 0.5–1.5 and random
sign, as :func:`bayesguide.datasets.teacher_student`), ``N`` training points and a test
set of 500, Gaussian noise ``σ``. The student is ``3 ×`` wider than the teacher, with the
teacher's activation. Each method is an experiment file that sets only what a user must
(the data file, the network, the prior kind and guidance — and ``n_candidates = 7`` for
the 6-unit students, which cannot hold the default 8); everything else is the
default of ``bayesguide run``. Reported: the selected width against the truth (exact,
within ±1), the posterior and evidence-only probability of the pick, and the test RMSE
of the pick over the noise.

Methods:

* ``default`` — ``bayesguide run``'s defaults, what a new user gets: evidence-driven
  fitting (``kind = "l2"``, ``guidance = "auto"``, i.e. ``"marglik"``,
  :func:`bayesguide.fit_marglik`, ``[fit] steps = "auto"``, i.e. 6,000).
* ``group`` — the guided group lasso (``kind = "group"``, linear guidance,
  ``strength = 1``, 1,500 steps): the default before evidence-driven fitting.

Usage::

    python benchmarks/teacher_student.py                  # the full grid (36 cases × 2 methods, ~40 min idle)
    python benchmarks/teacher_student.py --quick          # 4 cases, a smoke run
    python benchmarks/teacher_student.py --methods default --out benchmarks/results/teacher_student_default.json
    python benchmarks/teacher_student.py --methods group --set fit.steps=6000 \
        --out benchmarks/results/teacher_student_group_6000.json   # the group lasso at a 4× budget

Each finished case is appended to the JSON output (written atomically), so an
interrupted run keeps what it did and ``--resume`` skips it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from bayesguide.atomic import write_json_atomic
from bayesguide.experiment import Experiment
from bayesguide.runner import run_experiment

METHODS: dict[str, dict[str, Any]] = {
    "default": {},
    "group": {"kind": "group"},
}

ACTIVATIONS = ("tanh", "relu")
WIDTHS = (2, 5, 8)
SETTINGS = ({"d": 4, "n": 300, "noise": 0.2}, {"d": 10, "n": 2000, "noise": 0.05})
SEEDS = (0, 1, 2)


def teacher_data(activation: str, width: int, d: int, n: int, noise: float, seed: int,
                 n_test: int = 500) -> dict[str, np.ndarray]:
    """Training and test arrays of one teacher (float64)."""
    rng = np.random.default_rng(1000 * seed + 17 * width + d)
    w1 = rng.standard_normal((width, d))
    b1 = 0.5 * rng.standard_normal(width)
    w2 = rng.choice([-1.0, 1.0], width) * rng.uniform(0.5, 1.5, width)
    act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0.0))
    X = rng.standard_normal((n + n_test, d))
    y = act(X @ w1.T + b1) @ w2 + noise * rng.standard_normal(n + n_test)
    return {"X": X[:n], "y": y[:n], "X_test": X[n:], "y_test": y[n:]}


def cases(quick: bool, seeds: tuple[int, ...] = SEEDS) -> list[dict[str, Any]]:
    """The grid (or its first tanh and relu cases of each setting for ``quick``)."""
    grid = [{"activation": a, "width": w, **s, "seed": seed}
            for a, w, s, seed in itertools.product(ACTIVATIONS, WIDTHS, SETTINGS, seeds)]
    if quick:
        return [c for c in grid if c["seed"] == 0 and c["width"] == 5]
    return grid


def run_case(case: dict[str, Any], method: str, workdir: Path,
             overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One experiment, as ``bayesguide run`` would do it; the pick and its numbers."""
    name = f"{case['activation']}-w{case['width']}-d{case['d']}-n{case['n']}-s{case['seed']}"
    data = workdir / f"{name}.npz"
    if not data.exists():
        np.savez(data, **teacher_data(case["activation"], case["width"], case["d"], case["n"], case["noise"],
                                      case["seed"]))
    raw = {
        "data": {"source": str(data), "task": "regression"},
        "network": {"hidden": [3 * case["width"]], "activation": case["activation"]},
        "prior": dict(METHODS[method]),
        # the default 8 path points, or all a 6-unit student has (a user is told to lower it)
        "select": {"n_candidates": min(8, 3 * case["width"] + 1)},
        "output": {"dir": str(workdir / f"{name}-{method}")},
    }
    for table, values in (overrides or {}).items():
        raw.setdefault(table, {}).update(values)
    exp = Experiment.from_dict(raw)
    start = time.perf_counter()
    results = run_experiment(exp, progress=False, log=lambda _: None)
    seconds = time.perf_counter() - start
    best = results["best"]
    rows = {c["name"]: c for c in results["candidates"]}
    pick = rows[best]
    return {
        **case, "method": method, "picked": int(pick["widths"][0]), "seconds": seconds,
        "path": [int(c["widths"][0]) for c in results["candidates"]],
        "posterior": pick["posterior_prob"], "evidence_prob": pick["evidence_prob"],
        "test_rmse_over_noise": pick["metrics"]["test"] / case["noise"],
        "flags": list(results.get("flags", [])),
    }


def summarise(records: list[dict[str, Any]]) -> str:
    lines = ["method   cases  exact  within±1  median P(pick)  median test RMSE/σ"]
    for method in sorted({r["method"] for r in records}):
        rs = [r for r in records if r["method"] == method]
        exact = sum(r["picked"] == r["width"] for r in rs)
        near = sum(abs(r["picked"] - r["width"]) <= 1 for r in rs)
        lines.append(f"{method:8s} {len(rs):5d}  {exact / len(rs):5.0%}  {near / len(rs):8.0%}  "
                     f"{np.median([r['posterior'] for r in rs]):14.3f}  "
                     f"{np.median([r['test_rmse_over_noise'] for r in rs]):18.2f}")
        misses = [f"{r['activation']} w{r['width']} d{r['d']} n{r['n']} s{r['seed']} -> {r['picked']}"
                  for r in rs if r["picked"] != r["width"]]
        if misses:
            lines.append("  misses: " + "; ".join(misses))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 cases: a smoke run")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_student.json"))
    parser.add_argument("--resume", action="store_true", help="skip the cases already in --out")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="teacher seeds (default 0 1 2)")
    parser.add_argument("--set", nargs="*", default=[], metavar="TABLE.KEY=VALUE",
                        help="experiment-file keys every case sets (a TOML value), e.g. select.fine_tune=1000")
    args = parser.parse_args()
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        table, _, name = key.partition(".")
        overrides.setdefault(table, {})[name] = tomllib.loads(f"v = {value}")["v"]
    records: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.resume and args.out.exists() else []
    done = {(r["method"], r["activation"], r["width"], r["d"], r["n"], r["seed"]) for r in records}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(args.quick, tuple(args.seeds)):
            for method in args.methods:
                key = (method, case["activation"], case["width"], case["d"], case["n"], case["seed"])
                if key in done:
                    continue
                record = run_case(case, method, Path(tmp), overrides)
                records.append(record)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(args.out, records)
                print(f"{method:8s} {case['activation']} w{case['width']} d{case['d']} n{case['n']} "
                      f"s{case['seed']}: picked {record['picked']} (P {record['posterior']:.3f}, "
                      f"evidence alone {record['evidence_prob']:.3f}) path {record['path']} "
                      f"{record['seconds']:.0f} s", flush=True)
    print(summarise(records))


if __name__ == "__main__":
    main()
