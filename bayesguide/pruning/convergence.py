"""Did a candidate's re-fit reach a mode? The convergence check reported per candidate.

The Laplace evidence is an expansion around a mode of the posterior; a candidate cut
from a larger fit is not at one, and fine-tuning that stopped early leaves it on the
way. `check_convergence` reads a fine-tuning fit two ways:

* **the loss plateau** — the mean objective (negative log joint, nats) over the last
  ``window`` steps against the ``window`` steps before: the fit counts as converged when
  it fell by less than ``tol`` nats (``loss_change``), or when the fit itself stopped on
  a plateau (``OptimSettings.patience``);
* **the gradient** — the root mean square over the parameters of the gradient of the
  negative log joint at the final weights, on the full training set (``grad_rms``; 0 at
  a mode), reported beside it. It does not decide: under a non-smooth prior (L1, group
  lasso) a unit shrinking to zero keeps a gradient of magnitude ``≈ λ√p`` however close
  to the mode the fit is.

A candidate that did not converge keeps its row but is marked (``converged = False``)
and named in a flag of the comparison.

Examples
--------
>>> import torch, bayesguide as bg
>>> X, y = torch.randn(64, 3), torch.randn(64, 1)
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0), "gaussian", noise=1.0), X, y, steps=400, lr=0.02,
...                  progress=False)
>>> c = check_convergence(fit, X, y)
>>> c.converged, c.steps
(True, 400)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bayesguide.infer import FitResult
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.model.batches import BatchStream, open_stream

__all__ = ["Convergence", "check_convergence"]

TOLERANCE = 0.5
"""The largest fall of the objective (nats) over the last window that still counts as converged."""


@dataclass(frozen=True)
class Convergence:
    """The convergence check of one fit (see the module docstring).

    Attributes
    ----------
    converged
        Whether the objective stopped falling (``loss_change < tol``; a plateau stop when too short).
    steps
        Steps the fit ran.
    loss_change
        Mean objective over the window before the last minus over the last (nats; > 0:
        still falling). NaN when the fit is shorter than two windows.
    grad_rms
        RMS of the gradient of the negative log joint over the parameters, at the final
        weights, full training set.
    reason
        One line: why it counts as converged or not.
    """

    converged: bool
    steps: int
    loss_change: float
    grad_rms: float
    reason: str

    def columns(self) -> dict[str, Any]:
        """The comparison-table columns."""
        return {"converged": self.converged, "fine_tune_steps": self.steps, "loss_change": self.loss_change,
                "grad_rms": self.grad_rms}


def _grad_rms(fit: FitResult, model: GuidedModel, X: torch.Tensor | BatchStream, y: torch.Tensor | None) -> float:
    """The RMS gradient of the negative log joint; for a stream, the batches' gradients summed (float64)."""
    module = fit.module
    params = [p for p in module.parameters() if p.requires_grad]
    values = fit.guide.mean_values()
    noise = fit.guide.noise()
    noise = None if noise is None else noise.detach()
    batches = [(X, y)] if isinstance(X, torch.Tensor) else X
    total: list[torch.Tensor | None] = [None] * len(params)
    was_training = module.training
    module.eval()
    try:
        for i, (xb, yb) in enumerate(batches):
            assert yb is not None
            ll, lp = model.log_joint(model.chain(module), values, xb, yb, noise=noise)
            grads = torch.autograd.grad(-(ll + lp) if i == 0 else -ll, params, allow_unused=True)
            for k, g in enumerate(grads):
                if g is not None:
                    g = g.detach().to(torch.float64)
                    prev = total[k]
                    total[k] = g if prev is None else prev + g
    finally:
        module.train(was_training)
    squares = sum(float(g.pow(2).sum()) for g in total if g is not None)
    count = sum(p.numel() for p in params)
    return math.sqrt(squares / max(count, 1))


def check_convergence(fit: FitResult, X: ArrayLike, y: ArrayLike | None = None, *, model: GuidedModel | None = None,
                      window: int | None = None, tol: float = TOLERANCE) -> Convergence:
    """The convergence check of a MAP fit (typically a candidate's fine-tuning).

    Parameters
    ----------
    fit
        A MAP fit (``fit.losses`` is its objective per step).
    X
        Its training inputs (for the gradient); or a data loader of them (a
        ``DataLoader``, [`Batches`][bayesguide.model.batches.Batches] or
        [`BatchStream`][bayesguide.model.batches.BatchStream]), whose batches' gradients are
        summed in one pass.
    y
        Its training targets (for the gradient); omitted for a loader.
    model
        The model whose negative log joint the fit minimised; default ``fit.model`` (a
        candidate's fine-tuning: [`tuning_model`][bayesguide.pruning.tuning.tuning_model]).
    window
        Steps per window; default ``max(10, min(100, steps // 5))``.
    tol
        The largest fall (nats) over the last window that counts as converged.
    """
    if not isinstance(fit, FitResult):
        raise TypeError(f"check_convergence takes a FitResult, got {type(fit).__name__}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0 (nats), got {tol!r}")
    model = fit.model if model is None else model
    stream = open_stream(X, y, model.net, model.likelihood, model.dtype)
    Xt, yt = (stream, None) if stream is not None else model.prepare_data(X, y)
    losses = np.asarray(fit.losses, dtype=np.float64)
    steps = len(losses)
    w = max(10, min(100, steps // 5)) if window is None else int(window)
    if w < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    change = float(losses[-2 * w:-w].mean() - losses[-w:].mean()) if steps >= 2 * w else math.nan
    grad = _grad_rms(fit, model, Xt, yt)
    if math.isnan(change):
        plateau = fit.stop_reason.startswith("plateau")
        converged = plateau
        reason = fit.stop_reason if plateau else f"too few steps ({steps}) to check: at least {2 * w} needed"
    elif change < tol:
        converged, reason = True, f"the objective fell by {change:.3g} nats over the last {w} steps (< {tol:g})"
    else:
        converged, reason = False, f"the objective still fell by {change:.3g} nats over the last {w} steps"
    return Convergence(converged=converged, steps=steps, loss_change=change, grad_rms=grad, reason=reason)
