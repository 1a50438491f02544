"""``FitResult``: what every fitter returns — plain, frozen data that round-trips to disk.

A fit is a [`Fitted`][bayesguide.posterior.Fitted] (model, network, guide, data
fingerprint) plus its history (losses, unit norms over training), the settings it ran
with, the optimiser state to continue from, the name of the ``fitter`` that made it and
that continues it (``bg.resume_fit``), and fitter-specific ``extras`` (the L0 gates of
``bg.fit_l0``). [`FitResult.save`][bayesguide.infer.result.FitResult.save] writes it as JSON and ``torch.save`` d
tensors
only, and [`FitResult.load`][bayesguide.infer.result.FitResult.load] reads it back with
``torch.load(weights_only=True)``:
loading never executes code from a file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bayesguide.architecture import load_module, save_module
from bayesguide.atomic import jsonable, write_atomic, write_json_atomic
from bayesguide.infer.loop import LoopOutput
from bayesguide.model import GuidedModel
from bayesguide.model.device import CPU, module_device
from bayesguide.posterior import DeltaGuide, Fitted, Guide, LowRankGuide, MeanFieldGuide

__all__ = ["FitResult", "build_result", "fit_on", "register_extra"]

_EXTRAS: dict[str, Callable[[dict[str, Any]], Any]] = {}
"""Decoders of ``FitResult.extras`` entries, by key (``register_extra``)."""


def register_extra(key: str, decode: Callable[[dict[str, Any]], Any]) -> None:
    """Teach `FitResult.load` to read ``extras[key]`` (saved by the value's ``to_json()``)."""
    _EXTRAS[key] = decode


@dataclass(frozen=True)
class FitResult(Fitted):
    """The outcome of a fitter (``bg.fit_map``, ``bg.fit_svi``, ``bg.fit_l0``, ``bg.fit_relevance``).

    Attributes
    ----------
    method
        ``"map"`` (a point estimate) or ``"svi"`` (a variational posterior).
    fitter
        The registered fitter that made it and continues it: ``"map"``, ``"svi"``,
        ``"l0"`` or ``"relevance"`` (see [`bayesguide.infer.registry`][]).
    model
        The [`GuidedModel`][bayesguide.GuidedModel] that was fitted (for relevance fits, a copy
        holding the last estimate of the coefficients).
    module
        An ``nn.Module`` (a copy of ``model.net``, in eval mode) holding the MAP weights
        or the posterior mean.
    guide
        The fitted guide ([`DeltaGuide`][bayesguide.DeltaGuide] for MAP).
    losses
        The objective at every step: ``−log p(y, θ | X)`` for MAP (summed NLL plus
        penalty plus the prior's normalising constants), ``−ELBO`` for SVI; on
        minibatches the likelihood is scaled by ``N / B``.
    loss_terms
        The parts of ``losses`` at every step, for MAP fits (``fit_map``,
        ``fit_relevance``, ``fit_marglik``): ``"nll"``, the data term (summed negative
        log-likelihood, scaled by ``N / B`` on minibatches), and ``"penalty"``, the
        regulariser (the prior's negative log-density without its normalising
        constants, ``Σ λ g_j s(θ_j)``). ``losses − nll − penalty`` is the constant
        ``−Σ log c``, which changes only when the prior's rates do (empirical-Bayes
        guidance). Empty for other fitters and for fits saved before it existed; NaN
        for the steps of a resumed fit that recorded none.
    unit_norms
        Per prunable layer, an array ``(records, units)`` of unit-group norms
        (posterior means for SVI) over training, recorded at ``norm_steps``.
    wall_time
        Seconds spent optimising (all segments, if resumed).
    stop_reason
        ``"completed"`` or why it stopped early.
    settings
        The settings it ran with ([`OptimSettings`][bayesguide.OptimSettings] fields and the
        fitter's own, e.g. ``engine``, ``guide``), as plain JSON values.
    n_data
        Number of training examples.
    data_fingerprint
        Hash of the training data (checked when the fit is continued or scored).
    optimizer_state
        Adam's state, to continue the fit.
    extras
        Fitter-specific results, e.g. ``{"l0": L0Gates}`` for ``bg.fit_l0``.
    """

    method: str
    fitter: str
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
    extras: dict[str, Any] = field(default_factory=dict, repr=False)
    loss_terms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method.upper()} fit"

    @property
    def steps(self) -> int:
        """Total optimisation steps taken (over all resumed segments)."""
        return int(self.losses.shape[0])

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    def final_unit_norms(self) -> dict[str, np.ndarray]:
        """Unit-group norms at the end of the fit, per prunable layer."""
        return {k: v[-1] for k, v in self.unit_norms.items()}

    def __str__(self) -> str:
        norms = self.final_unit_norms()
        terms = ""
        if "nll" in self.loss_terms and "penalty" in self.loss_terms and self.loss_terms["nll"].size:
            nll, penalty = self.loss_terms["nll"][-1], self.loss_terms["penalty"][-1]
            terms = f" = NLL {nll:.6g} + penalty {penalty:.6g} + const"
        lines = [
            f"FitResult({self.method}, {self.steps} steps in {self.wall_time:.1f} s, "
            f"final loss {self.final_loss:.6g}{terms}, {self.stop_reason})",
            f"  prior: {self.model.prior}",
        ]
        for i, (layer, v) in enumerate(norms.items(), start=1):
            top = float(v.max()) if v.size else 0.0
            alive = int((v > 1e-3 * max(top, 1e-30)).sum())
            lines.append(
                f"  hidden layer {i} (module {layer!r}): {v.size} units, {alive} with norm > 1e-3·max; "
                f"norm min {v.min():.3g}, median {np.median(v):.3g}, max {top:.3g}"
            )
        if self.noise is not None:
            lines.append(f"  learned noise σ = {self.noise:.4g}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ disk

    def save(self, directory: str | Path) -> Path:
        """Write the fit into ``directory`` (created): weights, guide, optimiser state, history.

        Files: ``architecture.json`` and ``weights.pt`` (the network,
        [`bayesguide.architecture.save_module`][]), ``guide.pt`` and ``optimizer.pt``
        (tensor state dicts), ``fit.json`` (everything else). No code is pickled; the
        prior and likelihood are *not* saved — [`load`][bayesguide.infer.result.FitResult.load] takes the model.
        """
        directory = Path(directory)
        save_module(self.module, directory)
        write_atomic(directory / "guide.pt", lambda tmp: torch.save(self.guide.state_dict(), tmp))
        write_atomic(directory / "optimizer.pt", lambda tmp: torch.save(self.optimizer_state, tmp))
        rank = self.guide.cov_factor.shape[1] if isinstance(self.guide, LowRankGuide) else None
        record = {
            "format": 1, "method": self.method, "fitter": self.fitter, "guide": type(self.guide).__name__,
            "rank": rank, "losses": self.losses, "unit_norms": self.unit_norms, "norm_steps": self.norm_steps,
            "wall_time": self.wall_time, "stop_reason": self.stop_reason, "settings": self.settings,
            "n_data": self.n_data, "data_fingerprint": self.data_fingerprint,
            "coefficients": {k: v.tolist() for k, v in self.model.coefficients.items()},
            "extras": {k: v.to_json() for k, v in self.extras.items()},
            "loss_terms": self.loss_terms,
        }
        write_json_atomic(directory / "fit.json", record)
        return directory

    @classmethod
    def load(cls, directory: str | Path, model: GuidedModel) -> FitResult:
        """Read a fit written by `save`, for ``model`` (the model it was fitted with).

        ``model`` supplies the prior and likelihood; its network must have the saved
        network's structure. Guidance coefficients that the fitter re-estimated (relevance
        fits) are restored into a copy of ``model``; ``model`` itself is never changed.

        Raises
        ------
        FileNotFoundError
            If a file is missing.
        ValueError
            If the saved network does not match ``model``'s structure.
        """
        directory = Path(directory)
        path = directory / "fit.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is {directory} a saved fit?")
        saved = json.loads(path.read_text())
        module = load_module(directory)
        shapes = [tuple(s.shapes) for s in model.sites]
        own = [tuple(s.shapes) for s in GuidedModel(module, model.prior, model.likelihood).sites]
        if shapes != own:
            raise ValueError(f"the fit in {directory} has unit shapes {own}, the model {shapes}: not its model")
        coefficients = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in saved["coefficients"].items()}
        if any(not torch.equal(coefficients[k], model.coefficients[k]) for k in model.coefficients):
            model = model.with_coefficients(coefficients)
        guide = _guide(saved["guide"], model, module, saved.get("rank"))
        guide.load_state_dict(torch.load(directory / "guide.pt", weights_only=True))
        extras = {k: _EXTRAS[k](v) for k, v in saved.get("extras", {}).items()}
        return cls(
            method=saved["method"], fitter=saved["fitter"], model=model, module=module.eval(), guide=guide,
            losses=np.asarray(saved["losses"], dtype=np.float64),
            unit_norms={k: np.asarray(v, dtype=np.float64) for k, v in saved["unit_norms"].items()},
            norm_steps=np.asarray(saved["norm_steps"], dtype=np.int64), wall_time=float(saved["wall_time"]),
            stop_reason=saved["stop_reason"], settings=dict(saved["settings"]), n_data=int(saved["n_data"]),
            data_fingerprint=saved["data_fingerprint"],
            optimizer_state=torch.load(directory / "optimizer.pt", weights_only=True), extras=extras,
            loss_terms={k: np.asarray(v, dtype=np.float64) for k, v in (saved.get("loss_terms") or {}).items()},
        )


def _guide(kind: str, model: GuidedModel, module: nn.Module, rank: int | None) -> Guide:
    """An empty guide of the saved class (its state is loaded afterwards)."""
    if kind == "DeltaGuide":
        return DeltaGuide(model, module)
    if kind == "MeanFieldGuide":
        return MeanFieldGuide(model, module)
    if kind == "LowRankGuide":
        return LowRankGuide(model, module, rank=int(rank or 1))
    raise ValueError(f"cannot restore a guide of type {kind!r}")


def build_result(
    *,
    method: str,
    fitter: str,
    model: GuidedModel,
    module: nn.Module,
    guide: Guide,
    out: LoopOutput,
    settings: dict[str, Any],
    n_data: int,
    fingerprint: str,
    init: FitResult | None,
    extras: dict[str, Any] | None = None,
) -> FitResult:
    """Assemble a ``FitResult``, appending to ``init``'s histories when continuing it.

    A continued fit keeps ``init``'s ``extras`` (an SVI fit's warm start, say) under
    those of the new segment, which replace an entry of the same key.
    """
    names = list(out.records[0]) if out.records else []
    norms = {k: np.stack([r[k].detach().cpu().numpy() for r in out.records]) for k in names}
    losses, steps, wall = out.losses, out.record_steps, out.wall_time
    terms = {k: np.asarray(v, dtype=np.float64) for k, v in out.terms.items()}
    if init is not None and init.fitter == fitter:  # a resume; another fitter is a warm start
        # a term the earlier segment did not record is NaN there (a fit saved before terms existed)
        gap = np.full(init.steps, np.nan)
        terms = {k: np.concatenate([init.loss_terms.get(k, gap), v]) for k, v in terms.items()}
        losses = np.concatenate([init.losses, losses])
        steps = np.concatenate([init.norm_steps, steps])
        norms = {k: np.concatenate([init.unit_norms[k], v]) for k, v in norms.items()}
        wall += init.wall_time
        extras = init.extras | (extras or {})
    module.eval()
    return FitResult(
        method=method, fitter=fitter, model=model, module=module, guide=guide, losses=losses,
        unit_norms=norms, norm_steps=steps, wall_time=wall, stop_reason=out.stop_reason,
        settings=jsonable(settings), n_data=n_data, data_fingerprint=fingerprint,
        optimizer_state=copy.deepcopy(out.optimizer_state), extras=dict(extras or {}), loss_terms=terms,
    )


def _state_on(state: Any, device: torch.device) -> Any:
    """``state`` (nested dicts and lists of tensors, an optimiser's state) with every tensor on ``device``."""
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {k: _state_on(v, device) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_state_on(v, device) for v in state)
    return state


def fit_on(fit: FitResult, device: torch.device = CPU) -> FitResult:
    """``fit`` with its network, guide and optimiser state on ``device`` (default: the CPU).

    For the fitters' own results only: the network and the guide are moved in place
    (``nn.Module.to``), so use it on a fit nobody else holds. A fit already there is
    returned as it is. Every public fitter returns ``fit_on(result)``: results come back
    on the CPU whatever device the steps ran on.
    """
    if module_device(fit.module) == device and module_device(fit.guide) == device:
        return fit
    fit.module.to(device)
    fit.guide.to(device)
    return dataclasses.replace(fit, optimizer_state=_state_on(fit.optimizer_state, device))
