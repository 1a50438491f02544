"""Does physical pruning buy real speed? CPU inference latency against the FLOP ratio.

For an MLP and a CNN with BatchNorm, a fraction of the hidden units is made dead
(incoming weights zero), then three versions of each network are timed on the same
batch of 256 examples, alternated inside one process (so machine load hits all of them
alike), and the median over repeats is reported:

* ``original`` — the dense network;
* ``pruned``   — ``bayesguide.pruning.shrink``: a new, smaller dense network (outputs
  checked equal to the original's);
* ``masked``   — ``torch.nn.utils.prune`` masks on the original: same FLOPs, no gain.

It prints, per network, the FLOP ratio ``original / pruned``, the measured speed-ups
and their ratio to the FLOP ratio (the target is ≥ 0.7).

``--round-to N [N ...]`` repeats each network with every layer's kept count rounded up
to a multiple of ``N`` (at most the layer's width), as ``pruning_path(round_to=N)`` /
``[select] round_to`` cut it, and ends with a table of speed-up ÷ FLOP ratio with and
without rounding: CPU convolution kernels are inefficient at 8–16 channels, so a
slightly larger network can be faster.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/prune_speedup.py            # full run
    OMP_NUM_THREADS=1 python benchmarks/prune_speedup.py --round-to 16 32
    python benchmarks/prune_speedup.py --smoke                      # a few seconds, CI
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bayesguide.pruning.structure import analyse, costs, output_positions
from bayesguide.pruning.surgery import shrink


def mlp(width: int, n_in: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def cnn(channels: int, side: int) -> nn.Sequential:
    c = channels
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.Conv2d(2 * c, 2 * c, 3),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * c * (side - 2) ** 2, 10),
    )


def kept_count(n: int, keep_fraction: float, round_to: int | None) -> int:
    """Units kept of ``n``: ``keep_fraction`` of them, rounded up to a multiple of ``round_to`` (at most ``n``)."""
    k = max(1, round(keep_fraction * n))
    return k if round_to is None else min(n, math.ceil(k / round_to) * round_to)


def kill(net: nn.Module, keep_fraction: float, gen: torch.Generator,
         round_to: int | None = None) -> dict[str, torch.Tensor]:
    """Zero the incoming weights and bias of a random ``1 - keep_fraction`` of every hidden layer."""
    keep: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for block in analyse(net).blocks:
            m = block.layer.module
            assert isinstance(m, (nn.Linear, nn.Conv2d))
            n = m.weight.shape[0]
            mask = torch.zeros(n, dtype=torch.bool)
            mask[torch.randperm(n, generator=gen)[: kept_count(n, keep_fraction, round_to)]] = True
            m.weight[~mask] = 0.0
            if m.bias is not None:
                m.bias[~mask] = -1.0  # dead and silent after ReLU / shifted by BatchNorm
            keep[block.layer.name] = mask
    return keep


def masked(net: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """``torch.nn.utils.prune`` masks on a copy: weights multiplied by a 0/1 mask at every call."""
    out = copy.deepcopy(net)
    for name, mask in keep.items():
        m = out.get_submodule(name)
        assert isinstance(m, (nn.Linear, nn.Conv2d))
        shape = (-1,) + (1,) * (m.weight.ndim - 1)
        torch_prune.custom_from_mask(m, "weight", mask.reshape(shape).expand_as(m.weight).to(m.weight.dtype))
    return out


def flops(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    s = analyse(net)
    widths = {b.layer.name: b.n_units for b in s.blocks}
    return costs(s, widths, output_positions(net, s, input_shape))[1]


def median_times(fns: dict[str, Callable[[], torch.Tensor]], repeats: int, inner: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for f in fns.values():  # warm-up
            f()
        for _ in range(repeats):
            for name, f in fns.items():  # alternate the variants
                t0 = time.perf_counter()
                for _ in range(inner):
                    f()
                times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def run(name: str, net: nn.Module, x: torch.Tensor, keep_fraction: float, repeats: int, inner: int,
        round_to: int | None = None) -> tuple[float, float, float]:
    """Time one network; its FLOP ratio, the pruned network's speed-up and their ratio."""
    net.eval()
    keep = kill(net, keep_fraction, torch.Generator().manual_seed(0), round_to)
    small, plan = shrink(net, keep)
    small.eval()
    mask = masked(net, keep).eval()
    with torch.no_grad():
        err = float((small(x) - net(x)).abs().max())
        err_mask = float((mask(x) - net(x)).abs().max())
    shape = tuple(x.shape[1:])
    ratio = flops(net, shape) / flops(small, shape)
    t = median_times(
        {"original": lambda: net(x), "pruned": lambda: small(x), "masked": lambda: mask(x)}, repeats, inner
    )
    speed = t["original"] / t["pruned"]
    widths = [len(v) for v in plan.kept.values()]
    rounding = "" if round_to is None else f", kept counts rounded up to multiples of {round_to}"
    print(
        f"{name}{rounding}: widths {[int(m.numel()) for m in keep.values()]} -> {widths}, batch {x.shape[0]}, "
        f"max |Δ output| pruned {err:.1e}, masked {err_mask:.1e}"
    )
    print(
        f"  median latency (ms): original {1e3 * t['original']:.3f}, pruned {1e3 * t['pruned']:.3f}, "
        f"masked {1e3 * t['masked']:.3f}"
    )
    print(
        f"  FLOP ratio {ratio:.2f}x | speed-up pruned {speed:.2f}x, masked {t['original'] / t['masked']:.2f}x"
        f" | speed-up / FLOP ratio = {speed / ratio:.2f} (target >= 0.70)"
    )
    return ratio, speed, speed / ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks and few repeats (seconds)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--keep", type=float, default=0.25, help="fraction of hidden units kept")
    parser.add_argument("--round-to", type=int, nargs="*", default=[], metavar="N",
                        help="also time kept counts rounded up to multiples of N (as pruning_path(round_to=N))")
    parser.add_argument("--only", choices=("mlp", "cnn"), default=None, help="time one network only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = 256
    if args.smoke:
        sizes, repeats, inner = {"mlp": (32, 16), "cnn": (4, 6)}, 2, 1
    else:
        sizes, repeats, inner = {"mlp": (1024, 784), "cnn": (32, 16)}, args.repeats, 3
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {batch}, "
        f"keep {args.keep:.0%} of hidden units, {repeats} alternated repeats, median"
    )
    width, n_in = sizes["mlp"]
    channels, side = sizes["cnn"]
    nets = {"MLP": (lambda: mlp(width, n_in), torch.randn(batch, n_in)),
            "CNN": (lambda: cnn(channels, side), torch.randn(batch, 3, side, side))}
    if args.only is not None:
        nets = {k: v for k, v in nets.items() if k.lower() == args.only}
    rows: list[tuple[str, str, float, float, float]] = []
    for name, (make, x) in nets.items():
        for round_to in [None, *args.round_to]:
            torch.manual_seed(0)  # the same weights for every rounding
            ratio, speed, per = run(name, make(), x, args.keep, repeats, inner, round_to)
            rows.append((name, "none" if round_to is None else str(round_to), ratio, speed, per))
    if args.round_to:
        print("\nnetwork  round_to  FLOP ratio  speed-up  speed-up / FLOP ratio")
        for name, rt, ratio, speed, per in rows:
            print(f"{name:<8} {rt:>8} {ratio:>10.2f}x {speed:>8.2f}x {per:>22.2f}")
    ratios = [per for *_, per in rows]
    print("all at target" if min(ratios) >= 0.7 else "BELOW TARGET: " + ", ".join(f"{r:.2f}" for r in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
