"""Forward-pass latency of networks, measured with ``torch.utils.benchmark``.

[`latency_ms`][bayesguide.latency.latency_ms] times each module on the same input with
``torch.utils.benchmark.Timer.blocked_autorange`` (which handles warm-up and chooses the
number of runs per block), alternating the modules over ``rounds`` so that a change in
machine load hits them all, and reports the median of the rounds. Foundation module: no
bayesguide imports.

Examples
--------
>>> import torch
>>> big = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
>>> small = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
>>> ms = latency_ms({"big": big, "small": small}, torch.randn(256, 64), rounds=2, min_run_time=0.01)
>>> sorted(ms), all(v > 0 for v in ms.values())
(['big', 'small'], True)
"""

from __future__ import annotations

import statistics

import torch
from torch import nn
from torch.utils import benchmark

__all__ = ["latency_ms"]


def latency_ms(modules: dict[str, nn.Module], x: torch.Tensor, *, rounds: int = 5,
               min_run_time: float = 0.05) -> dict[str, float]:
    """Median milliseconds of one forward pass of each module on ``x`` (eval mode, no grad).

    Parameters
    ----------
    modules
        Networks by name; each runs on ``x`` cast to its parameters' dtype.
    x
        The input batch.
    rounds
        Alternated measurement rounds; the result is the median over them.
    min_run_time
        Seconds of each ``blocked_autorange`` measurement.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    timers = {}
    for name, module in modules.items():
        module.eval()
        xm = x.to(next(module.parameters()).dtype)
        timers[name] = benchmark.Timer(stmt="with torch.no_grad(): m(x)", num_threads=torch.get_num_threads(),
                                       globals={"m": module, "x": xm, "torch": torch})
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer.blocked_autorange(min_run_time=min_run_time).median)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}
