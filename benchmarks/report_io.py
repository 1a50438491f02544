"""What writing ``results.json`` costs a run: file size and total write time, before and after.

A run rewrites ``results.json`` atomically after every step (the fit, every scored
candidate, the end), so that a crash keeps what was finished. This script replays the
writes of a demo-sized run — ``bayesguide demo``: two hidden layers of 128 units, unit
norms recorded at 500 points, 12 candidates — or of a stored run directory
(``--from RUN_DIR``), twice, alternated in one process:

* ``before`` — what bayesguide wrote up to this change: unit norms at full float64
  precision, the whole document through ``jsonable`` and ``json.dumps(indent=1)`` at
  every write;
* ``after`` — ``RunResults.save(run_dir, memo)`` as the runner calls it: compact
  JSON, unit norms at 7 significant digits (``fit_record``), the fit and every finished
  candidate serialised once.

It prints the final file's size and the total wall and CPU time of one run's writes
(median over the repeats), and their ratios.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/report_io.py                        # demo-sized, synthetic
    OMP_NUM_THREADS=1 python benchmarks/report_io.py --from bayesguide-demo # a stored run
    python benchmarks/report_io.py --smoke                                  # a second, CI
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bayesguide.atomic import write_json_atomic
from bayesguide.results import CandidateRecord, DataRecord, FitRecord, RunResults, significant


def synthetic(layers: int, units: int, records: int, candidates: int, seed: int = 0) -> RunResults:
    """A complete document shaped like the demo's: float32 unit norms stored as Python floats."""
    rng = np.random.default_rng(seed)
    norms = {str(2 * i): rng.lognormal(-1.0, 1.5, (records, units)).astype(np.float32).astype(float).tolist()
             for i in range(layers)}
    losses = rng.random(500).astype(np.float32).astype(float).tolist()
    fit = FitRecord(method="map", prior="GuidedLaplace(strength=1.0, guidance=linear)", steps=1500,
                    wall_time_s=20.0, stop_reason="steps", final_loss=losses[-1], losses=losses,
                    loss_steps=list(range(0, 1500, 3)), unit_norms=norms, norm_steps=list(range(records)),
                    loss_terms={"nll": losses, "penalty": losses}, train_metric=0.99, test_metric=0.95)
    cands = []
    for i in range(candidates):
        width = max(1, units - i * units // candidates)
        cands.append(CandidateRecord(
            name=f"w{width}-{width}", widths=[width] * layers,
            kept={str(2 * j): list(range(width)) for j in range(layers)},
            n_params=width * 100, flops=width * 200, log_evidence=-1000.0 - i, status="ok",
            metrics={"train": 0.9, "test": 0.88}, columns={"prior_scale": 0.5, "substituted": False,
                                                           "prior_used": "own", "evidence_prob": 0.1}))
    return RunResults(status="complete", config={"data": {"source": "digits"}}, metric="accuracy",
                      data=DataRecord(name="digits", task="classification", n_train=1437, n_test=360),
                      fit=fit, candidates=tuple(cands), best=cands[0].name, flags=("a flag",),
                      timings={"total_s": 90.0}, config_hash="0123456789abcdef")


def steps(final: RunResults) -> list[RunResults]:
    """The documents a run writes on its way to ``final``: started, fitted, each candidate, complete."""
    start = dataclasses.replace(final, status="running", fit=None, candidates=(), best=None, flags=())
    fitted = dataclasses.replace(start, fit=final.fit)
    out = [start, fitted]
    for i in range(1, len(final.candidates) + 1):
        out.append(dataclasses.replace(fitted, candidates=final.candidates[:i]))
    out.append(final)
    return out


def rounded(final: RunResults) -> RunResults:
    """``final`` with its unit norms as ``fit_record`` now stores them (7 significant digits)."""
    assert final.fit is not None
    norms = {k: significant(v) for k, v in final.fit.unit_norms.items()}
    return dataclasses.replace(final, fit=dataclasses.replace(final.fit, unit_norms=norms))


def write_before(documents: list[RunResults], run_dir: Path) -> None:
    for doc in documents:
        write_json_atomic(run_dir / "results.json", doc.to_json())


def write_after(documents: list[RunResults], run_dir: Path) -> None:
    memo: dict[int, tuple[Any, str]] = {}
    for doc in documents:
        doc.save(run_dir, memo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", default=None, help="replay this run directory's results.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a tiny document, one repeat")
    args = parser.parse_args(argv)
    if args.source is not None:
        final = RunResults.load(args.source)
        what = f"{args.source}/results.json"
    elif args.smoke:
        final, what = synthetic(2, 16, 20, 3), "a tiny synthetic run"
    else:
        final = synthetic(2, 128, 500, 12)
        what = "a demo-sized synthetic run (2 x 128 units, 500 records, 12 candidates)"
    repeats = 1 if args.smoke else args.repeats
    c0 = time.process_time()
    after = rounded(final)  # done once per run, by fit_record
    rounding = time.process_time() - c0
    variants = {"before": (steps(final), write_before), "after": (steps(after), write_after)}
    print(f"{what}: {len(variants['before'][0])} writes per run, {repeats} alternated repeats, median")
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    size: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, (documents, write) in variants.items():  # alternated: machine load hits both alike
                run_dir = Path(tmp) / name
                run_dir.mkdir(exist_ok=True)
                w0, c0 = time.perf_counter(), time.process_time()
                write(documents, run_dir)
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
                size[name] = (run_dir / "results.json").stat().st_size
        for name in variants:  # both files hold the same document (up to the rounding of unit norms)
            loaded = RunResults.load(Path(tmp) / name)
            assert [c.name for c in loaded.candidates] == [c.name for c in final.candidates]
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    for name in variants:
        print(f"  {name:<6} results.json {size[name] / 1e6:7.3f} MB; "
              f"writes {w[name]:7.3f} s wall, {c[name]:7.3f} s CPU")
    print(f"  (after: rounding the unit norms once, in fit_record, took {rounding:.3f} s CPU more)")
    print(f"  after / before: size {size['after'] / size['before']:.2f}, wall {w['after'] / w['before']:.2f}, "
          f"CPU {c['after'] / c['before']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
