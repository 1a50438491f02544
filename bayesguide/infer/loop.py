"""The optimisation loop every fitter runs: batches, schedule, progress, guards.

``optimize`` minimises ``objective(idx)`` (``idx`` the minibatch indices, ``None`` for
the full batch) with Adam under one :class:`~bayesguide.infer.settings.OptimSettings`.
It records the loss every step and, every ``record_every`` steps, a snapshot from
``record()`` (the unit norms). It stops early when the smoothed loss has not improved
by a relative ``min_delta`` for ``patience`` steps, and stops with
:class:`NonFiniteLossError` as soon as the loss is NaN or infinite, naming the step and
— through ``diagnose`` — the offending site.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bayesguide.infer.settings import OptimSettings, Schedule

__all__ = ["LoopOutput", "NonFiniteLossError", "lr_factor", "optimize"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and site."""


@dataclass(frozen=True)
class LoopOutput:
    losses: np.ndarray
    records: list[dict[str, torch.Tensor]]
    record_steps: np.ndarray
    stop_reason: str
    optimizer_state: dict[str, Any]
    wall_time: float
    extra: dict[str, Any] = field(default_factory=dict)


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """The learning rate of step ``step`` of ``total``, as a fraction of ``lr``."""
    if schedule is Schedule.COSINE:
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * step / max(total - 1, 1)))
    if schedule is Schedule.ANNEAL:
        half = total // 2
        return 1.0 if step < half else lr_factor(Schedule.COSINE, step - half, total - half)
    return 1.0


def optimize(
    objective: Callable[[torch.Tensor | None], torch.Tensor],
    parameters: list[torch.nn.Parameter],
    n_data: int,
    settings: OptimSettings,
    *,
    label: str = "fit",
    record: Callable[[], dict[str, torch.Tensor]],
    diagnose: Callable[[torch.Tensor | None], str],
    optimizer_state: dict[str, Any] | None = None,
    step_offset: int = 0,
    callback: Callable[[int], None] | None = None,
    device: torch.device | None = None,
) -> LoopOutput:
    """Minimise ``objective`` over ``parameters``; see the module docstring.

    The loop is kept lean: per step it evaluates the objective, reads the loss once
    (``loss.item()``, needed for the history and the non-finite guard), steps Adam and
    copies a snapshot into a buffer allocated once, so that no small long-lived tensors
    accumulate between the large per-step temporaries.

    ``label`` names the progress bar. ``callback``, if given, is called after every
    optimizer step (after the snapshot)
    with the absolute step number ``step_offset + step``; it may change state the
    objective reads (e.g. prior rates, as empirical-Bayes guidance does).

    ``device`` is where the parameters live (default: the CPU). The minibatch order is
    drawn on the CPU, so it is the same on every device; with a ``seed``, the random
    state of ``device`` (dropout, SVI draws on a GPU) is seeded too and restored
    afterwards, like the CPU's. The objective moves each batch to the device itself
    (:func:`bayesguide.model.device.take_batch`).
    """
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    if optimizer_state is not None:
        # a copy: Adam's load_state_dict keeps CPU tensors as they are and then updates them in place,
        # which would change the fit being resumed (resuming it twice would not give the same result)
        optimizer.load_state_dict(copy.deepcopy(optimizer_state))
        for group in optimizer.param_groups:
            group["lr"] = settings.lr
    steps, lr, schedule, patience = settings.steps, settings.lr, settings.schedule, settings.patience
    every = settings.record_every or max(1, steps // 100)
    batch = None if settings.full_batch(n_data) else settings.batch_size
    losses = np.empty(steps)
    record_steps: list[int] = []
    # snapshots: one (capacity, *shape) buffer per key, filled row by row; a snapshot
    # whose keys or shapes change falls back to a list
    capacity = (steps - 1) // every + 3
    store: dict[str, torch.Tensor] = {}
    spilled: list[dict[str, torch.Tensor]] = []

    def snapshot(step: int) -> None:
        snap = record()
        row = len(record_steps)
        record_steps.append(step_offset + step)
        if not store and not spilled:
            store.update({k: v.detach().new_empty((capacity, *v.shape)) for k, v in snap.items()})
        if not spilled and row < capacity and snap.keys() == store.keys() and all(
            v.shape == store[k].shape[1:] and v.dtype == store[k].dtype for k, v in snap.items()
        ):
            for k, v in snap.items():
                store[k][row].copy_(v.detach())
            return
        if not spilled:
            spilled.extend({k: buf[i] for k, buf in store.items()} for i in range(row))
        spilled.append(snap)

    stop_reason = "completed"
    best, since_best, smooth = math.inf, 0, math.nan
    generator = torch.Generator()
    if settings.seed is not None:
        generator.manual_seed(settings.seed + step_offset)
    perm, cursor = torch.randperm(n_data, generator=generator) if batch else None, 0

    cuda = [] if device is None or device.type != "cuda" else [
        device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda, enabled=settings.seed is not None):
        if settings.seed is not None:
            torch.manual_seed(settings.seed + step_offset)
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=label, disable=not settings.progress,
                   leave=False, mininterval=0.5)
        show = not bar.disable
        done = 0
        try:
            for step in range(steps):
                idx = None
                if batch is not None:
                    assert perm is not None
                    if cursor + batch > n_data:
                        perm, cursor = torch.randperm(n_data, generator=generator), 0
                    idx = perm[cursor : cursor + batch]
                    cursor += batch
                if schedule is not Schedule.CONSTANT:
                    for group in optimizer.param_groups:
                        group["lr"] = lr * lr_factor(schedule, step, steps)
                optimizer.zero_grad(set_to_none=True)
                loss = objective(idx)
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"the loss became {value} at step {step_offset + step}: {diagnose(idx)}"
                    )
                loss.backward()
                optimizer.step()
                losses[step] = value
                done = step + 1
                if step % every == 0 or step == steps - 1:
                    snapshot(step)
                if callback is not None:
                    callback(step_offset + step)
                if show:
                    if step % 50 == 0:
                        bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                    bar.update(1)
                if patience is not None:
                    smooth = value if math.isnan(smooth) else 0.9 * smooth + 0.1 * value
                    if smooth < best - max(settings.min_delta * abs(best), settings.min_delta_abs) \
                            or math.isinf(best):
                        best, since_best = smooth, 0
                    else:
                        since_best += 1
                        if since_best >= patience:
                            stop_reason = (
                                f"plateau: no relative improvement above {settings.min_delta:g} "
                                + (f"(nor {settings.min_delta_abs:g} nats) " if settings.min_delta_abs else "")
                                + f"in {patience} steps"
                            )
                            if record_steps[-1] != step_offset + step:
                                snapshot(step)
                            break
        finally:
            bar.close()
        wall = time.perf_counter() - start
    records = spilled or [{k: buf[i] for k, buf in store.items()} for i in range(len(record_steps))]
    return LoopOutput(
        losses=losses[:done].copy(),
        records=records,
        record_steps=np.asarray(record_steps, dtype=np.int64),
        stop_reason=stop_reason,
        optimizer_state=optimizer.state_dict(),
        wall_time=wall,
    )
