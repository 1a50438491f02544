"""``OptimSettings``: the optimisation settings every fitter shares.

``bg.fit_map``, ``bg.fit_svi``, ``bg.fit_l0`` and ``bg.fit_relevance`` all run the same
Adam loop ([`bayesguide.infer.loop`][]) and take the same settings, either as keywords
(``bg.fit_map(model, X, y, steps=500, lr=3e-3)``) or as one object
(``bg.fit_map(model, X, y, bg.OptimSettings(steps=500, lr=3e-3))``; keywords then
override the object's fields). Each fitter has its own defaults for ``steps`` and ``lr``.

Examples
--------
>>> settings = OptimSettings(steps=100, lr=0.01)
>>> settings.with_options("fit_map", batch_size=32).batch_size
32
>>> settings.with_options("fit_map", stpes=3)
Traceback (most recent call last):
...
ValueError: fit_map has no option 'stpes'; options: steps, lr, batch_size, schedule, patience, ...
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, TypedDict

import torch

from bayesguide._options import Option
from bayesguide.model.device import check_device

__all__ = ["OptimOptions", "OptimSettings", "Schedule"]


class Schedule(Option):
    """Learning-rate schedules."""

    CONSTANT = "constant", "fixed learning rate"
    """The same learning rate at every step."""
    COSINE = "cosine", "cosine decay to lr/100"
    """Cosine decay from ``lr`` to ``lr / 100`` over the run."""
    ANNEAL = "anneal", "constant lr for the first half, then cosine decay to lr/100"
    """``lr`` for the first half, then cosine decay to ``lr / 100`` (move first, then settle)."""


class OptimOptions(TypedDict, total=False):
    """The keyword form of [`OptimSettings`][bayesguide.OptimSettings] (every field optional)."""

    steps: int
    lr: float
    batch_size: int | None
    schedule: str | Schedule
    patience: int | None
    min_delta: float
    seed: int | None
    progress: bool
    record_every: int | None
    min_delta_abs: float
    device: str | torch.device | None


@dataclass(frozen=True)
class OptimSettings:
    """Everything that controls one optimisation run (validated on construction).

    Attributes
    ----------
    steps
        Adam steps (each fitter has its own default).
    lr
        Learning rate (each fitter has its own default).
    batch_size
        Minibatch size, ``None`` for full batch. Minibatch likelihoods are scaled by
        ``N / B``, so the objective is an unbiased estimate of the full one.
    schedule
        ``"constant"``, ``"cosine"`` (decay to ``lr / 100``) or ``"anneal"`` (constant for
        the first half of the steps, then cosine decay to ``lr / 100``).
    patience
        Stop when the smoothed loss has not improved by a relative ``min_delta`` for
        this many steps (``None``: run all steps).
    min_delta
        The relative improvement that resets ``patience``.
    min_delta_abs
        An absolute improvement (in the loss's units, nats) that resetting ``patience``
        also needs: the larger of the two counts (default 0: relative only).
    seed
        Seeds minibatch order, dropout and any noise of the fit, for this fit only (the
        global RNG is restored); ``None`` uses the global RNG. An int in ``[0, 2**63)``
        (not a bool or a float).
    progress
        Show a progress bar; ``False`` silences it.
    record_every
        Record unit norms every this many steps (default ``steps // 100``).
    device
        Where the steps run: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or a
        `torch.device`); ``None`` (default): where the model's network is. The
        network (a copy) is moved there; the data stay where they are — full-batch
        training moves them once, minibatch training moves each minibatch — and the
        result comes back on the CPU ([`bayesguide.model.device`][]). Checked on
        construction: an unknown or unavailable device is a ``ValueError`` listing the
        available ones. Stored as a string (``"cuda:1"``), or ``None``.
    """

    steps: int = 2000
    lr: float = 1e-3
    batch_size: int | None = None
    schedule: Schedule = Schedule.CONSTANT
    patience: int | None = None
    min_delta: float = 1e-4
    seed: int | None = 0
    progress: bool = True
    record_every: int | None = None
    min_delta_abs: float = 0.0
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive int or None (full batch), got {self.batch_size!r}"
            )
        object.__setattr__(self, "schedule", Schedule.resolve(self.schedule, "schedule"))
        if self.patience is not None and (
            isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1
        ):
            raise ValueError(
                f"patience must be a positive int or None (no early stopping), got {self.patience!r}"
            )
        for name in ("min_delta", "min_delta_abs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0 (a finite number), got {value!r}")
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
                raise ValueError(f"seed must be an int or None (the global RNG), got {self.seed!r}")
            if not 0 <= self.seed < 2**63:
                raise ValueError(f"seed must be an int in [0, 2**63) or None (the global RNG), got {self.seed!r}")
            object.__setattr__(self, "seed", int(self.seed))
        every = self.record_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"record_every must be a positive int or None, got {self.record_every!r}")
        if self.device is not None:
            check_device(self.device)  # before any work: an unknown or unavailable device is named now
            object.__setattr__(self, "device", str(self.device) if isinstance(self.device, torch.device)
                               else self.device.strip())

    def with_options(self, fitter: str, **options: Any) -> OptimSettings:
        """These settings with ``options`` (field names) replaced; unknown names are refused.

        ``fitter`` names the caller in the error message.
        """
        names = [f.name for f in dataclasses.fields(self)]
        for key in options:
            if key not in names:
                raise ValueError(f"{fitter} has no option {key!r}; options: {', '.join(names)}")
        return dataclasses.replace(self, **options) if options else self

    @classmethod
    def resolve(cls, optim: OptimSettings | None, defaults: OptimSettings, fitter: str,
                options: dict[str, Any]) -> OptimSettings:
        """``optim`` (or the fitter's ``defaults``) with keyword ``options`` applied."""
        if optim is not None and not isinstance(optim, OptimSettings):
            raise TypeError(f"optim must be a bg.OptimSettings, got {type(optim).__name__}")
        return (defaults if optim is None else optim).with_options(fitter, **options)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (the ``settings`` of a [`FitResult`][bayesguide.FitResult]).

        ``device`` is listed only when set (``None``: the network's own device).
        """
        out = dataclasses.asdict(self)
        out["schedule"] = self.schedule.value
        if self.device is None:
            out.pop("device")
        return out

    def full_batch(self, n_data: int) -> bool:
        """Whether the steps read the full batch of ``n_data`` examples (no ``batch_size``, or one ``>= n_data``)."""
        return not (self.batch_size and self.batch_size < n_data)
