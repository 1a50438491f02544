"""Step cost of partial regularization (E & Gao 2020) against full regularization.

E & Gao (arXiv 2009.01395) claim that penalising only part of each layer's units makes
training steps cheaper. Their code penalises the first ``n − ⌊n/β⌋`` rows of each layer
(β = 8) with (sparse) group lasso; in bayesguide that is ``bg.guidance.partial()``
(coefficient 0 on the last ⌊n/8⌋ units). This script measures the time of one MAP step
(``bg.fit_map``, fast engine, Adam) under

* ``none``: no sparsity penalty (uniform L2 with a tiny strength),
* ``group full`` / ``group partial``: group lasso with uniform / partial guidance,
* ``sgl full`` / ``sgl partial``: sparse group lasso (α = 0.5), uniform / partial,

and the same five objectives in a hand-written torch loop (the *reference*), whose
partial penalties are computed on the penalised rows only (``W[:k]``, a view), i.e. the
saving E & Gao describe. Problems: digits (1,348 × 64), MLP 64-256-256-10, and MNIST-1D
(4,000 × 40), MLP 40-256-256-10, ReLU, float32, at batch sizes 32, 256 and full batch.
Every network also has the default plain L2 prior on its output layer.

Per-step times come from timestamps taken after every optimizer step (``fit_map``'s
``callback``; the reference takes them in its loop), so the set-up of a fit is not
counted; the first two steps of each run are dropped. All configurations of one problem
and batch size run in the same process, alternated for several rounds (the order rotates
every round), and the script prints medians over all steps and the ratios
partial / full.

Usage::

    python benchmarks/partial_cost.py            # 5 rounds, about 3–4 minutes on 2 cores
    python benchmarks/partial_cost.py --quick    # 2 rounds, shorter runs
    python benchmarks/partial_cost.py --smoke    # tiny, seconds (CI)
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

import bayesguide as bg

LR = 1e-3
STRENGTH = 0.1
TINY = 1e-8  # strength of the "no sparsity penalty" L2
ALPHA = 0.5
BETA = 8  # E & Gao: the last ⌊n / β⌋ units of each layer are free
PENALTIES = ("none", "group full", "group partial", "sgl full", "sgl partial")


@dataclass(frozen=True)
class Problem:
    name: str
    X: torch.Tensor
    y: torch.Tensor
    net: nn.Sequential


def make_problem(name: str, hidden: int, n: int | None) -> Problem:
    data = bg.datasets.digits() if name == "digits" else bg.datasets.mnist1d()
    X, y = data.X_train, data.y_train
    if n is not None:
        X, y = X[:n], y[:n]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
    return Problem(name, X, y, net)


def prior_of(penalty: str) -> bg.UnitPrior:
    """The bayesguide prior of a configuration."""
    if penalty == "none":
        return bg.GuidedNormal(TINY, bg.guidance.uniform())
    profile = bg.guidance.partial(1.0 / BETA) if penalty.endswith("partial") else bg.guidance.uniform()
    if penalty.startswith("group"):
        return bg.GuidedGroupLasso(STRENGTH, profile)
    return bg.GuidedSparseGroupLasso(STRENGTH, profile, alpha=ALPHA)


def hand_penalty(penalty: str, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The configuration's penalty written by hand; partial ones on the penalised rows only.

    ``params`` = ``[W0, b0, W1, b1, W2, b2]``; the output layer gets plain L2 with the
    same strength (bayesguide's default ``plain_prior``).
    """
    lam = TINY if penalty == "none" else STRENGTH
    total = lam * (params[4].pow(2).sum() + params[5].pow(2).sum())
    for w, b in (params[0:2], params[2:4]):
        if penalty == "none":
            total = total + lam * (w.pow(2).sum() + b.pow(2).sum())
            continue
        n, p = w.shape[0], w.shape[1] + 1
        if penalty.endswith("partial"):
            k = n - n // BETA
            w, b = w[:k], b[:k]  # views: the free rows are never touched
        norms = (w.pow(2).sum(1) + b.pow(2)).sqrt()
        if penalty.startswith("group"):  # λ √p Σ_j ‖θ_j‖₂
            total = total + lam * math.sqrt(p) * norms.sum()
        else:  # λ Σ_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]
            l1 = w.abs().sum() + b.abs().sum()
            total = total + lam * ((1 - ALPHA) * math.sqrt(p) * norms.sum() + ALPHA * l1)
    return total


def reference_steps(problem: Problem, penalty: str, steps: int, batch: int | None) -> list[float]:
    """Hand-written loop (minibatches like ``fit_map``: a fresh permutation per epoch,
    likelihood scaled by ``N / B``); returns the timestamp after each step."""
    net = copy.deepcopy(problem.net)
    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    X, y, n = problem.X, problem.y, problem.X.shape[0]
    generator = torch.Generator().manual_seed(0)
    perm, cursor = torch.randperm(n, generator=generator), 0
    stamps = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        if batch is None:
            loss = F.cross_entropy(net(X), y, reduction="sum")
        else:
            if cursor + batch > n:
                perm, cursor = torch.randperm(n, generator=generator), 0
            idx = perm[cursor:cursor + batch]
            cursor += batch
            loss = F.cross_entropy(net(X[idx]), y[idx], reduction="sum") * (n / batch)
        loss = loss + hand_penalty(penalty, params)
        loss.item()
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return stamps


def library_steps(problem: Problem, penalty: str, steps: int, batch: int | None) -> list[float]:
    """``bg.fit_map`` (fast engine); returns the timestamp after each step."""
    model = bg.GuidedModel(problem.net, prior_of(penalty), likelihood="categorical")
    stamps: list[float] = []
    bg.fit_map(model, problem.X, problem.y, steps=steps, lr=LR, batch_size=batch, progress=False,
               record_every=steps, callback=lambda _: stamps.append(time.perf_counter()))
    return stamps


RUNNERS: dict[str, Callable[[Problem, str, int, int | None], list[float]]] = {
    "bayesguide": library_steps,
    "reference": reference_steps,
}


def step_times(stamps: list[float]) -> list[float]:
    """Intervals between consecutive steps, the first two steps dropped (warm-up)."""
    return [b - a for a, b in itertools.pairwise(stamps[2:])]


def measure(problem: Problem, batch: int | None, rounds: int, target_s: float) -> dict[tuple[str, str], float]:
    """Median step time (s) of every (engine, penalty), alternated over ``rounds``."""
    configs = [(engine, penalty) for penalty in PENALTIES for engine in RUNNERS]
    gc.collect()  # once: a collection costs ~0.3 s next to a large heap; single slow steps
    # (a collection during a run) do not move the medians
    probe = step_times(reference_steps(problem, "none", 8, batch))  # also warms up
    steps = max(8, min(300, round(target_s / statistics.median(probe))))
    for engine, penalty in configs:  # warm-up (allocator, thread pools, lazy imports)
        RUNNERS[engine](problem, penalty, 4, batch)
    samples: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for r in range(rounds):
        shift = (r * 3) % len(configs)
        order = configs[shift:] + configs[:shift]
        if r % 2:
            order.reverse()
        for engine, penalty in order:
            samples[engine, penalty] += step_times(RUNNERS[engine](problem, penalty, steps, batch))
    return {c: statistics.median(v) for c, v in samples.items()}


def penalty_only(hidden: int, in_features: int, repeats: int) -> dict[str, float]:
    """Forward + backward of one layer's penalty alone (µs, median of ``repeats``).

    ``all rows``: bayesguide's ``penalty_parts`` with the partial rates (protected rows
    computed, multiplied by 0); ``penalised rows``: the statistic of the first
    ``n − ⌊n/β⌋`` rows only (slices, as in the reference); ``full``: uniform rates.
    """
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(hidden, in_features, generator=gen).requires_grad_()
    b = torch.randn(hidden, generator=gen).requires_grad_()
    k = hidden - hidden // BETA
    out: dict[str, float] = {}
    for family in ("group", "sgl"):
        partial = prior_of(f"{family} partial")
        g = partial.guidance(hidden).float()
        dist = partial.unit_distribution(g, in_features + 1)
        full = prior_of(f"{family} full").unit_distribution(torch.ones(hidden), in_features + 1)
        variants: dict[str, Callable[[], torch.Tensor]] = {
            "all rows": lambda d=dist: d.penalty_parts([w, b.unsqueeze(1)]),
            "penalised rows": lambda d=dist: (
                d.unit_statistic_parts([w[:k], b[:k].unsqueeze(1)]) * d.rate[:k]
            ).sum(),
            "full": lambda d=full: d.penalty_parts([w, b.unsqueeze(1)]),
        }
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(repeats):
            for name, fn in variants.items():  # interleaved
                start = time.perf_counter()
                fn().backward()
                times[name].append(time.perf_counter() - start)
        for name in variants:
            out[f"{family} {name}"] = 1e6 * statistics.median(times[name])
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of shorter runs")
    parser.add_argument("--smoke", action="store_true", help="tiny problems, seconds: checks the script runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine a descheduled OpenMP worker "
                             "stalls every parallel region; 0 keeps torch's default)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rounds, target_s, hidden, n = args.rounds, 0.35, 256, None
    if args.quick:
        rounds, target_s = 2, 0.2
    if args.smoke:
        rounds, target_s, hidden, n = 1, 0.01, 16, 300
    problems, batches = ("digits", "mnist1d"), (32, 256, None)
    if args.smoke:
        problems, batches = ("digits",), (32, None)
    try:
        return _run(problems, batches, rounds, target_s, hidden, n)
    finally:
        torch.set_num_threads(threads)


def _run(
    problems: Sequence[str], batches: Sequence[int | None], rounds: int, target_s: float, hidden: int, n: int | None
) -> dict[str, float]:
    print(f"MAP step time, MLP in-{hidden}-{hidden}-10 ReLU, float32, Adam, torch threads "
          f"{torch.get_num_threads()}, {rounds} rounds; partial = last ⌊n/{BETA}⌋ units free, "
          f"sgl α = {ALPHA}")
    rows: list[str] = []
    ratios: dict[str, float] = {}
    for name in problems:
        problem = make_problem(name, hidden, n)
        n_data = problem.X.shape[0]
        for batch in batches:
            times = measure(problem, batch, rounds, target_s)
            label = "full" if batch is None else str(batch)
            for engine in RUNNERS:
                ms = {pen: 1e3 * times[engine, pen] for pen in PENALTIES}
                group = ms["group partial"] / ms["group full"]
                sgl = ms["sgl partial"] / ms["sgl full"]
                ratios[f"{name}/{label}/{engine}/group"] = group
                ratios[f"{name}/{label}/{engine}/sgl"] = sgl
                rows.append(
                    f"| {name} (N={n_data}) | {label} | {engine} | {ms['none']:.3f} | {ms['group full']:.3f} | "
                    f"{ms['group partial']:.3f} | {group:.3f} | {ms['sgl full']:.3f} | "
                    f"{ms['sgl partial']:.3f} | {sgl:.3f} |"
                )
            bg_ref = times["bayesguide", "sgl partial"] / times["reference", "sgl partial"]
            ratios[f"{name}/{label}/bg_over_ref/sgl partial"] = bg_ref
            print(f"  {name} batch {label}: done (bayesguide/reference, sgl partial: {bg_ref:.3f})")
    print()
    pen = penalty_only(hidden, 256 if hidden > 16 else 16, 400 if rounds > 1 else 20)
    print(f"penalty of one {hidden}×{hidden + 1} layer alone, forward + backward (µs): "
          + ", ".join(f"{k} {v:.1f}" for k, v in pen.items()))
    for family in ("group", "sgl"):
        sliced, whole = pen[f"{family} penalised rows"], pen[f"{family} all rows"]
        ratios[f"penalty/{family}/penalised_over_all_rows"] = sliced / whole
    print()
    print("| problem | batch | engine | none ms | group full ms | group partial ms | partial/full | "
          "sgl full ms | sgl partial ms | partial/full |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    for family in ("group", "sgl"):
        print(f"{family} penalty alone: penalised rows only / all rows × rate "
              f"{ratios[f'penalty/{family}/penalised_over_all_rows']:.3f}")
    for kind in ("group", "sgl"):
        for engine in RUNNERS:
            values = [v for k, v in ratios.items() if k.endswith(f"/{engine}/{kind}")]
            print(f"{engine} {kind}: median step-time ratio partial/full {statistics.median(values):.3f} "
                  f"(range {min(values):.3f}–{max(values):.3f})")
    return ratios


if __name__ == "__main__":
    main()
