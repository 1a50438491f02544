"""Instructions per MAP step, ``bg.fit_map`` against the fused hand-written loop, counted by Callgrind.

``benchmarks/map_overhead.py`` times the two loops; on a shared 2-core machine its
per-round ratios at batch 32 spread over ±0.15, more than the gap being measured. This
script counts the instructions each side executes instead — deterministic, whatever else
runs — with Valgrind's Callgrind (torch's own ``torch._C._valgrind_toggle`` switches
the counting on around each region). Each side runs 200 and 299 steps of the problem of
``map_overhead.py`` (digits, MLP 64-256-256-10, guided group lasso, ``Adam(fused=True)``);
the difference over 99 steps is the cost per step, the rest the fixed cost of a fit
(data checks, copies, result assembly). It prints both and the ratio bayesguide /
reference; the target of ``map_overhead.py`` (≤ 1.10) applies.

Needs ``valgrind`` on the PATH. It re-runs itself under Callgrind; the import of torch
under instrumentation makes it slow (≈ 10 minutes), so it is not part of the tests.

Usage::

    python benchmarks/map_instructions.py --batch 32
    python benchmarks/map_instructions.py --batch full --prior l1
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STEPS = (200, 299)
"""Both record the unit norms every 2 steps (``steps // 100``), as a 300-step fit does every 3."""


def _measure(batch: int | None, prior: str) -> None:
    """The instrumented part: four regions, each dumped to its own Callgrind file."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import map_overhead as mo

    import bayesguide as bg

    torch.set_num_threads(1)
    problem = mo.make_problem(prior, 256, None)

    def library(k: int) -> object:
        return bg.fit_map(problem.model, problem.X, problem.y, steps=k, lr=mo.LR, progress=False, batch_size=batch)

    def reference(k: int) -> object:
        return mo.reference_map(problem, copy.deepcopy(problem.net), k, batch=batch, fused=True)

    for run in (reference, library):
        for k in STEPS:
            run(k)  # the same path once uncounted (allocator, lazy initialisation)
            torch._C._valgrind_toggle()
            run(k)
            torch._C._valgrind_toggle_and_dump_stats()


def _total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no instruction total in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="32", help="minibatch size, or 'full'")
    parser.add_argument("--prior", choices=["group", "l1"], default="group")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = None if args.batch == "full" else int(args.batch)
    if args.inside:
        _measure(batch, args.prior)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: this benchmark counts instructions with Callgrind")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--inside", "--batch", args.batch, "--prior", args.prior]
        print("running under Callgrind (about 10 minutes) …", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=os.environ | {"PYTHONHASHSEED": "0"})
        dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        totals = [_total(p) for p in dumps]
    if len(totals) != 4:
        sys.exit(f"expected 4 Callgrind dumps, found {len(totals)}")
    (r_short, r_long), (l_short, l_long) = totals[:2], totals[2:]
    span = STEPS[1] - STEPS[0]
    ref, lib = (r_long - r_short) / span, (l_long - l_short) / span
    print(f"batch {args.batch}, prior {args.prior}")
    print(f"instructions per step: reference {ref / 1e6:.3f} M, bayesguide {lib / 1e6:.3f} M")
    print(f"fixed cost of a fit:   reference {(r_short - STEPS[0] * ref) / 1e6:.1f} M, "
          f"bayesguide {(l_short - STEPS[0] * lib) / 1e6:.1f} M")
    print(f"MAP instructions per step ratio bayesguide/reference: {lib / ref:.3f} (target ≤ 1.1)")


if __name__ == "__main__":
    main()
