"""``FitResult``: what a MAP or SVI fit returns (frozen; resumable)."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bayesguide.infer.guides import Guide
from bayesguide.model import ArrayLike, GuidedModel

if TYPE_CHECKING:
    from bayesguide.infer.loop import LoopOutput

__all__ = ["FitResult", "data_fingerprint"]


def data_fingerprint(X: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of the training data, so later stages can refuse other data."""
    h = hashlib.sha1()
    for t in (X, y):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`bayesguide.fit_map` or :func:`bayesguide.fit_svi`.

    Attributes
    ----------
    method
        ``"map"`` or ``"svi"``.
    model
        The :class:`~bayesguide.GuidedModel` that was fitted.
    module
        An ``nn.Module`` (a copy of ``model.net``, in eval mode) holding the MAP weights
        or the posterior mean.
    guide
        The fitted guide (:class:`~bayesguide.infer.guides.DeltaGuide` for MAP).
    losses
        The objective at every step: ``−log p(y, θ | X)`` for MAP (summed NLL plus
        penalty plus the prior's normalising constants), ``−ELBO`` for SVI; on
        minibatches the likelihood is scaled by ``N / B``.
    unit_norms
        Per prunable layer, an array ``(records, units)`` of unit-group norms
        (posterior means for SVI) over training, recorded at ``norm_steps``.
    wall_time
        Seconds spent optimising (all segments, if resumed).
    stop_reason
        ``"completed"`` or why it stopped early.
    settings
        The loop settings (steps, lr, batch size, schedule, seed, engine, …).
    """

    method: str
    model: GuidedModel
    module: nn.Module
    guide: Guide
    losses: np.ndarray
    unit_norms: dict[str, np.ndarray]
    norm_steps: np.ndarray
    wall_time: float
    stop_reason: str
    settings: dict[str, Any]
    n_data: int
    data_fingerprint: str
    optimizer_state: dict[str, Any] = field(repr=False)

    @property
    def steps(self) -> int:
        """Total optimisation steps taken (over all resumed segments)."""
        return int(self.losses.shape[0])

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    @property
    def noise(self) -> float | None:
        """The learned Gaussian noise ``σ`` (``None`` when not learned)."""
        sigma = self.guide.noise()
        return None if sigma is None else float(sigma.detach())

    def final_unit_norms(self) -> dict[str, np.ndarray]:
        """Unit-group norms at the end of the fit, per prunable layer."""
        return {k: v[-1] for k, v in self.unit_norms.items()}

    def predict(self, X: ArrayLike) -> torch.Tensor:
        """Network output (logits or means) at the fitted weights, in eval mode."""
        Xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(self.model.dtype)
        with torch.no_grad():
            return self.module.eval()(Xt)

    def resume(self, X: ArrayLike, y: ArrayLike, steps: int, **overrides: Any) -> FitResult:
        """Continue this fit for ``steps`` more steps (same settings unless overridden).

        The optimiser state, the guide and the histories carry over; ``self`` is left
        unchanged.
        """
        from bayesguide.infer.map import fit_map
        from bayesguide.infer.svi import fit_svi

        kwargs = {k: v for k, v in self.settings.items() if k in _RESUMABLE}
        kwargs.update(overrides)
        kwargs["steps"] = steps
        fit = fit_map if self.method == "map" else fit_svi
        return fit(self.model, X, y, init=self, **kwargs)

    def to_inference_data(self, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> Any:
        """Posterior draws and pointwise log-likelihood as ``arviz.InferenceData``.

        See :func:`bayesguide.predictive.to_inference_data` for the keyword arguments
        (``posterior``, ``draws``, ``seed``, ``chunk_size``, ``hessian``).
        """
        from bayesguide.predictive import to_inference_data

        return to_inference_data(self, X, y, **kwargs)

    def __str__(self) -> str:
        norms = self.final_unit_norms()
        lines = [
            f"FitResult({self.method}, {self.steps} steps in {self.wall_time:.1f} s, "
            f"final loss {self.final_loss:.6g}, {self.stop_reason})",
            f"  prior: {self.model.prior}",
        ]
        for layer, v in norms.items():
            top = float(v.max()) if v.size else 0.0
            alive = int((v > 1e-3 * max(top, 1e-30)).sum())
            lines.append(
                f"  layer {layer}: {v.size} units, {alive} with norm > 1e-3·max; "
                f"norm min {v.min():.3g}, median {np.median(v):.3g}, max {top:.3g}"
            )
        if self.noise is not None:
            lines.append(f"  learned noise σ = {self.noise:.4g}")
        return "\n".join(lines)


_RESUMABLE = frozenset(
    {"lr", "batch_size", "schedule", "patience", "min_delta", "seed", "progress", "engine", "record_every"}
)


def build_result(
    *,
    method: str,
    model: GuidedModel,
    module: nn.Module,
    guide: Guide,
    out: LoopOutput,
    settings: dict[str, Any],
    n_data: int,
    fingerprint: str,
    init: FitResult | None,
) -> FitResult:
    """Assemble a ``FitResult``, appending to ``init``'s histories when resuming."""
    names = list(out.records[0]) if out.records else []
    norms = {k: np.stack([r[k].detach().cpu().numpy() for r in out.records]) for k in names}
    losses, steps, wall = out.losses, out.record_steps, out.wall_time
    if init is not None and init.method == method:  # a resume; another method is a warm start
        losses = np.concatenate([init.losses, losses])
        steps = np.concatenate([init.norm_steps, steps])
        norms = {k: np.concatenate([init.unit_norms[k], v]) for k, v in norms.items()}
        wall += init.wall_time
    module.eval()
    return FitResult(
        method=method,
        model=model,
        module=module,
        guide=guide,
        losses=losses,
        unit_norms=norms,
        norm_steps=steps,
        wall_time=wall,
        stop_reason=out.stop_reason,
        settings=settings,
        n_data=n_data,
        data_fingerprint=fingerprint,
        optimizer_state=copy.deepcopy(out.optimizer_state),
    )
