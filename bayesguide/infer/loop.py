"""The optimisation loop every fitter runs: batches, schedule, progress, guards.

``optimize`` minimises ``objective(idx)`` (``idx`` the minibatch indices, ``None`` for
the full batch) — or, for data read from a loader, ``objective(batch)`` with ``batch`` the
next item of ``batches()`` (see `optimize`) — with Adam under one
[`OptimSettings`][bayesguide.infer.settings.OptimSettings].
It records the loss every step and, every ``record_every`` steps, a snapshot from
``record()`` (the unit norms). An objective may also return the terms its loss is the
sum of, as ``(loss, {"nll": ..., "penalty": ...})``: each term is then recorded every
step too (`LoopOutput.terms`), and the progress bar shows the terms instead of the
total. It stops early when the smoothed loss has not improved
by a relative ``min_delta`` for ``patience`` steps, and stops with
[`NonFiniteLossError`][bayesguide.NonFiniteLossError] as soon as the loss is NaN or infinite, naming the step and
— through ``diagnose`` — the offending site.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bayesguide.infer.settings import OptimSettings, Schedule

__all__ = ["LoopOutput", "NonFiniteLossError", "Objective", "StreamObjective", "lr_factor", "make_adam", "optimize"]

Objective = Callable[[torch.Tensor | None], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""
What an objective returns: the loss, or the loss and named terms (recorded detached, e.g.
``{"nll": data term, "penalty": regulariser}``).
"""

StreamObjective = Callable[[Any], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""An objective of data read from a loader: it takes the batch itself (whatever ``batches()`` yields)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and site."""


@dataclass(frozen=True)
class LoopOutput:
    """What `optimize` returns.

    Attributes
    ----------
    losses
        The loss at every step taken.
    records
        The snapshots of ``record()``, one per recorded step.
    record_steps
        The absolute step numbers of ``records``.
    stop_reason
        ``"completed"`` or why the loop stopped early.
    optimizer_state
        Adam's state, to continue from.
    wall_time
        Seconds spent in the loop.
    extra
        Anything a fitter adds; the loop itself adds ``"first_step_seconds"``, the wall
        time of the first step (a compiled objective compiles during it).
    terms
        The named terms of the loss at every step (each as long as ``losses``), when
        the objective returns them; empty otherwise.
    """

    losses: np.ndarray
    records: list[dict[str, torch.Tensor]]
    record_steps: np.ndarray
    stop_reason: str
    optimizer_state: dict[str, Any]
    wall_time: float
    extra: dict[str, Any] = field(default_factory=dict)
    terms: dict[str, np.ndarray] = field(default_factory=dict)


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """The learning rate of step ``step`` of ``total``, as a fraction of ``lr``."""
    if schedule is Schedule.COSINE:
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * step / max(total - 1, 1)))
    if schedule is Schedule.ANNEAL:
        half = total // 2
        return 1.0 if step < half else lr_factor(Schedule.COSINE, step - half, total - half)
    return 1.0


_IMPLEMENTATION = ("fused", "foreach")
"""The keys of an Adam parameter group that choose its implementation, not its arithmetic."""


def make_adam(parameters: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam over ``parameters``: the fused kernel where torch has one, else torch's default.

    The fused implementation (``Adam(fused=True)``) updates every parameter in one kernel
    per step instead of a dozen small ones; it is the same algorithm (the trajectories
    agree to rounding) and torch offers it for floating-point parameters on the CPU and
    on accelerators. Parameters it does not take (another dtype or device) fall back to
    torch's default implementation.
    """
    if all(p.is_floating_point() for p in parameters):  # torch checks complex ones only when it steps
        try:
            return torch.optim.Adam(parameters, lr=lr, fused=True)
        except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
            pass
    return torch.optim.Adam(parameters, lr=lr)


def _scalar(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, as a 0-d tensor (a view only when it is not one already)."""
    t = t.detach()
    return t if t.dim() == 0 else t.reshape(())


def _read(loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> list[float]:
    """The loss and its terms as floats.

    On the CPU each is read by ``item()`` (under a microsecond each; stacking them
    first costs several times that); on an accelerator they are stacked and copied
    back in one transfer, so the step waits for the device once.
    """
    if loss.is_cpu:
        return [loss.item(), *(t.item() for t in terms.values())]
    return torch.stack([_scalar(loss), *map(_scalar, terms.values())]).tolist()


def optimize(
    objective: Objective | StreamObjective,
    parameters: list[torch.nn.Parameter],
    n_data: int,
    settings: OptimSettings,
    *,
    label: str = "fit",
    record: Callable[[], dict[str, torch.Tensor]],
    diagnose: Callable[[Any], str],
    optimizer_state: dict[str, Any] | None = None,
    step_offset: int = 0,
    callback: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    batches: Callable[[], Iterator[Any]] | None = None,
) -> LoopOutput:
    """Minimise ``objective`` over ``parameters``; see the module docstring.

    The loop is kept lean: per step it evaluates the objective, reads the loss once
    (``loss.item()``, needed for the history and the non-finite guard), steps Adam and
    copies a snapshot into a buffer allocated once, so that no small long-lived tensors
    accumulate between the large per-step temporaries.

    ``objective`` returns the loss, or ``(loss, terms)`` with ``terms`` a mapping of
    named scalar tensors (the same names at every step) that are recorded per step into
    `LoopOutput.terms`, read back with the loss (on an accelerator in one transfer: no
    more device synchronisations than the loss alone, see `_read`); the progress bar then
    shows them (every 50 steps) instead of the loss.

    ``label`` names the progress bar. ``callback``, if given, is called after every
    optimizer step (after the snapshot)
    with the absolute step number ``step_offset + step``; it may change state the
    objective reads (e.g. prior rates, as empirical-Bayes guidance does).

    ``device`` is where the parameters live (default: the CPU). The minibatch order is
    drawn on the CPU, so it is the same on every device; with a ``seed``, the random
    state of ``device`` (dropout, SVI draws on a GPU) is seeded too and restored
    afterwards, like the CPU's. The objective moves each batch to the device itself
    ([`bayesguide.model.device.take_batch`][]).

    ``batches``, for data that are not held in memory, makes one pass (an epoch) over
    the data: at every step the loop takes the next batch and hands it to ``objective``
    (and ``diagnose``) instead of indices; when a pass ends it starts the next one with
    ``batches()`` (inside the seeded random state, so a shuffling ``DataLoader`` draws the
    same orders for the same ``seed``). ``n_data`` and ``settings.batch_size`` are then
    not used for batching; a pass that yields nothing is a ``ValueError``.
    """
    optimizer = make_adam(parameters, settings.lr)
    if optimizer_state is not None:
        # a copy: Adam's load_state_dict keeps CPU tensors as they are and then updates them in place,
        # which would change the fit being resumed (resuming it twice would not give the same result)
        optimizer.load_state_dict(copy.deepcopy(optimizer_state))
        for group in optimizer.param_groups:
            group["lr"] = settings.lr
            # the implementation is this run's choice, not the saved one's (a state saved by an unfused Adam)
            for key in _IMPLEMENTATION:
                group[key] = optimizer.defaults[key]
    steps, lr, schedule, patience = settings.steps, settings.lr, settings.schedule, settings.patience
    every = settings.record_every or max(1, steps // 100)
    batch = None if batches is not None or settings.full_batch(n_data) else settings.batch_size
    stream: Iterator[Any] | None = None
    losses = np.empty(steps)
    # per-step terms of the loss, when the objective returns them: one (steps,) array per name
    term_store: dict[str, np.ndarray] = {}
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

    def new_pass() -> tuple[Iterator[Any], Any]:
        """A new pass over ``batches`` and its first batch; seeded, in an RNG state of its own.

        A ``DataLoader`` draws from the global RNG when a pass starts (its base seed, a
        shuffling sampler's seed): with a ``seed`` those draws come from a forked state
        seeded from ``generator``, so that the shuffles are reproducible and the fit's own
        random stream (dropout, SVI draws) is the one it has on tensors.
        """
        assert batches is not None
        if settings.seed is None:
            it = batches()
            return it, next(it, None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            it = batches()
            return it, next(it, None)

    cuda = [] if device is None or device.type != "cuda" else [
        device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda, enabled=settings.seed is not None):
        if settings.seed is not None:
            torch.manual_seed(settings.seed + step_offset)
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=label, disable=not settings.progress,
                   leave=False, mininterval=0.5)
        show = not bar.disable
        done, first_step = 0, math.nan
        try:
            for step in range(steps):
                idx: Any = None
                if batch is not None:
                    assert perm is not None
                    if cursor + batch > n_data:
                        perm, cursor = torch.randperm(n_data, generator=generator), 0
                    idx = perm[cursor : cursor + batch]
                    cursor += batch
                elif batches is not None:
                    idx = None if stream is None else next(stream, None)
                    if idx is None:  # the first step, or the end of a pass: the next epoch
                        stream, idx = new_pass()
                        if idx is None:
                            raise ValueError("the data loader yielded no batch: a pass over it is empty")
                if schedule is not Schedule.CONSTANT:
                    for group in optimizer.param_groups:
                        group["lr"] = lr * lr_factor(schedule, step, steps)
                optimizer.zero_grad(set_to_none=True)
                out = objective(idx)
                terms: dict[str, torch.Tensor] | None = None
                if isinstance(out, torch.Tensor):
                    loss = out
                else:
                    loss, terms = out
                if terms:  # the loss and its terms read back together
                    values = _read(loss, terms)
                    value = values[0]
                else:
                    value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"the loss became {value} at step {step_offset + step}: {diagnose(idx)}"
                    )
                loss.backward()
                optimizer.step()
                losses[step] = value
                if terms:
                    for name, term_value in zip(terms, values[1:]):
                        buf = term_store.get(name)
                        if buf is None:
                            buf = term_store[name] = np.full(steps, math.nan)
                        buf[step] = term_value
                done = step + 1
                if step == 0:
                    first_step = time.perf_counter() - start
                if step % every == 0 or step == steps - 1:
                    snapshot(step)
                if callback is not None:
                    callback(step_offset + step)
                if show:
                    if step % 50 == 0:
                        shown = dict(zip(terms, values[1:])) if terms else {"loss": value}
                        bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
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
        extra={"first_step_seconds": first_step},
        terms={k: v[:done].copy() for k, v in term_store.items()},
    )
