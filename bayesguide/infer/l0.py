"""``fit_l0``: weights and hard-concrete L0 gates trained jointly (Louizos, Welling & Kingma 2018).

The prior and the gate distribution are in [`bayesguide.priors.l0`][]. The objective,

``−(N/B) Σ_batch log p(y | x, θ ⊙ z) + λ Σ_j g_j σ(log α_j − β log(−γ/ζ)) + w Σ ‖θ‖₂²``,

is minimised with Adam over the weights and every gate's ``log α``, with one
hard-concrete draw ``z`` per unit and step (shared by the batch's examples). Afterwards
each prunable unit's row (weights and bias) is multiplied by its deterministic gate
``ẑ_j = min(1, max(0, σ(log α_j)(ζ − γ) + γ))``, so closed units have exactly-zero rows
and ``bg.prune(fit, threshold=...)`` removes them; the gates are an [`L0Gates`][bayesguide.L0Gates]
in ``fit.extras["l0"]`` ([`l0_gates`][bayesguide.l0_gates]).

Examples
--------
>>> import torch, bayesguide as bg
>>> X = torch.randn(64, 3); y = X[:, :1]
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
>>> model = bg.GuidedModel(net, bg.HardConcreteGates(strength=1.0), "gaussian", noise=0.5)
>>> fit = bg.fit_l0(model, X, y, steps=20, lr=1e-2, progress=False)
>>> l0_gates(fit).log_alpha["0"].shape
(6,)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from typing_extensions import Unpack

from bayesguide.infer.common import check_continuation, check_init, check_model
from bayesguide.infer.loop import optimize
from bayesguide.infer.map import Engine, check_stream
from bayesguide.infer.result import FitResult, build_result, fit_on, register_extra
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint
from bayesguide.model.batches import Batches, as_batches
from bayesguide.model.device import place_data, resolve_device, take_batch
from bayesguide.network import functional_forward
from bayesguide.posterior import DeltaGuide
from bayesguide.priors.l0 import (
    HardConcreteGates,
    deterministic_gates,
    expected_l0_penalty,
    open_probability,
    sample_gates,
)

__all__ = ["L0Gates", "fit_l0", "l0_gates"]

DEFAULTS = OptimSettings(steps=2000, lr=1e-2)
"""The defaults of ``fit_l0``."""


@dataclass(frozen=True)
class L0Gates:
    """The gates of an [`fit_l0`][bayesguide.fit_l0] fit (``fit.extras["l0"]``).

    Attributes
    ----------
    log_alpha
        Per prunable layer (keyed by layer name), the final ``log α_j``.
    gates
        The deterministic test-time gates ``ẑ_j`` folded into ``fit.module``.
    open_probability
        ``P(z_j ≠ 0) = σ(log α_j − β log(−γ/ζ))``.
    expected_l0
        ``Σ_j P(z_j ≠ 0)`` over all prunable units (unweighted), at ``steps``.
    steps
        The steps at which ``expected_l0`` was recorded (``fit.norm_steps``).
    temperature
        The gates' temperature ``β``.
    stretch
        The stretch interval ``(γ, ζ)`` of the hard-concrete distribution.
    """

    log_alpha: dict[str, np.ndarray]
    gates: dict[str, np.ndarray]
    open_probability: dict[str, np.ndarray]
    expected_l0: np.ndarray
    steps: np.ndarray
    temperature: float
    stretch: tuple[float, float]

    @property
    def n_open(self) -> dict[str, int]:
        """Per layer, the number of gates with ``ẑ_j > 0``."""
        return {k: int((v > 0).sum()) for k, v in self.gates.items()}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (``FitResult.save``)."""
        return {
            "log_alpha": {k: v.tolist() for k, v in self.log_alpha.items()},
            "gates": {k: v.tolist() for k, v in self.gates.items()},
            "open_probability": {k: v.tolist() for k, v in self.open_probability.items()},
            "expected_l0": self.expected_l0.tolist(), "steps": self.steps.tolist(),
            "temperature": self.temperature, "stretch": list(self.stretch),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> L0Gates:
        """The gates [`to_json`][bayesguide.infer.l0.L0Gates.to_json] wrote."""
        def arrays(d: Mapping[str, Any]) -> dict[str, np.ndarray]:
            return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}

        return cls(
            log_alpha=arrays(data["log_alpha"]), gates=arrays(data["gates"]),
            open_probability=arrays(data["open_probability"]),
            expected_l0=np.asarray(data["expected_l0"], dtype=np.float64),
            steps=np.asarray(data["steps"], dtype=np.int64), temperature=float(data["temperature"]),
            stretch=(float(data["stretch"][0]), float(data["stretch"][1])),
        )

    def __str__(self) -> str:
        lines = [f"L0Gates(β={self.temperature:g}, stretch={self.stretch}, "
                 f"final expected L0 {float(self.expected_l0[-1]):.4g})"]
        for i, (k, v) in enumerate(self.gates.items(), start=1):  # counted as a reader counts them
            lines.append(f"  hidden layer {i} (module {k}): {int((v > 0).sum())}/{v.size} gates open")
        return "\n".join(lines)


register_extra("l0", L0Gates.from_json)


def l0_gates(fit: FitResult) -> L0Gates:
    """The [`L0Gates`][bayesguide.L0Gates] of a [`fit_l0`][bayesguide.fit_l0] result."""
    gates = fit.extras.get("l0")
    if not isinstance(gates, L0Gates):
        raise ValueError("this fit has no L0 gates: it was not made by bg.fit_l0")
    return gates


def _diagnose(
    gate_params: Mapping[str, torch.Tensor], module: nn.Module
) -> Callable[[torch.Tensor | None], str]:
    def diagnose(idx: torch.Tensor | None) -> str:
        problems = [f"log α of layer {k!r} is non-finite" for k, v in gate_params.items()
                    if not torch.isfinite(v).all()]
        problems += [f"parameter {k!r} is non-finite" for k, v in module.named_parameters()
                     if not torch.isfinite(v).all()]
        return "; ".join(problems) or "the likelihood or a penalty overflowed (lower lr)"

    return diagnose


def _start(model: GuidedModel, prior: HardConcreteGates, init: FitResult | None,
           dtype: torch.dtype) -> tuple[nn.Module, dict[str, nn.Parameter], dict[str, Any] | None, int, list[float]]:
    """Weights, ``log α`` per site, optimiser state, step offset and expected-L0 history to start from.

    Continuing an L0 fit unfolds its gates: open units' rows are divided by ``ẑ_j``;
    closed units (``ẑ_j = 0``) restart from zero weights, their ``log α`` carried on.
    """
    prunable = model.prunable_sites
    if init is None or init.fitter != "l0":
        module = copy.deepcopy(init.module if init is not None else model.net)
        log_alpha = {s.name: nn.Parameter(torch.full((s.n_units,), prior.init_log_alpha, dtype=dtype))
                     for s in prunable}
        return module, log_alpha, None, 0, []
    gates = l0_gates(init)
    module = copy.deepcopy(init.module)
    params = dict(module.named_parameters())
    log_alpha = {}
    with torch.no_grad():
        for s in prunable:
            key = s.layer.name
            log_alpha[s.name] = nn.Parameter(torch.as_tensor(gates.log_alpha[key], dtype=dtype).clone())
            zhat = torch.as_tensor(gates.gates[key], dtype=dtype)
            scale = torch.where(zhat > 0, zhat.clamp(min=1e-12).reciprocal(), torch.zeros_like(zhat))
            for name in s.param_names:
                p = params[name]
                p.mul_(scale.reshape((-1,) + (1,) * (p.ndim - 1)))
    return module, log_alpha, init.optimizer_state, init.steps, gates.expected_l0.tolist()


def fit_l0(
    model: GuidedModel,
    X: ArrayLike | Batches | DataLoader[Any],
    y: ArrayLike | None = None,
    optim: OptimSettings | None = None,
    *,
    init: FitResult | None = None,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """Train weights and hard-concrete gates jointly, then fold the gates in.

    See [`bayesguide.infer.l0`][] for the objective and [`bayesguide.priors.l0`][] for
    the gates.

    Parameters
    ----------
    model
        A [`GuidedModel`][bayesguide.GuidedModel] whose prior is [`HardConcreteGates`][bayesguide.HardConcreteGates]
        (its ``plain_prior`` is not used: the optional weight decay covers all sites).
    X
        Training inputs (an array or tensor), validated before any training; or a data
        loader of ``(X, y)`` batches (a ``DataLoader`` over a sized dataset, or
        [`Batches`][bayesguide.model.batches.Batches]), read as by [`fit_map`][bayesguide.fit_map]:
        each step the next batch, its log-likelihood scaled by ``n / B``.
    y
        Training targets, validated with ``X`` before any training; omitted for a loader.
    optim
        The optimisation settings ([`OptimSettings`][bayesguide.OptimSettings]); default
        ``steps=2000``, ``lr=1e-2`` (shared by the weights and ``log α``).
    init
        A previous ``fit_l0`` fit of the same model to continue — its folded gates are
        unfolded: open units' rows are divided by ``ẑ_j``, closed units (``ẑ_j = 0``)
        restart from zero weights with their ``log α`` carried on — or another fit to
        warm-start the weights from.
    **options
        Fields of [`OptimSettings`][bayesguide.OptimSettings] overriding ``optim``, including
        ``device``: where the steps run, as in [`fit_map`][bayesguide.fit_map] (default:
        where ``model.net``'s parameters are; the gates are drawn from that device's
        random generator).

    Returns
    -------
    FitResult
        ``method="map"``, ``fitter="l0"``, ``module`` the gated network, ``guide`` a
        [`DeltaGuide`][bayesguide.DeltaGuide] on it, ``unit_norms`` the norms of the
        deterministically gated unit groups, ``extras["l0"]`` an [`L0Gates`][bayesguide.L0Gates]; on
        the CPU.

    References
    ----------
    Louizos, Welling & Kingma, "Learning Sparse Neural Networks through L0
    Regularization", ICLR 2018.
    """
    check_model(model)
    prior = model.prior
    if not isinstance(prior, HardConcreteGates):
        raise ValueError(
            f"fit_l0 needs a GuidedModel with a bg.HardConcreteGates prior, got {type(prior).__name__}; "
            f"use bg.fit_map or bg.fit_svi for other priors"
        )
    settings = OptimSettings.resolve(optim, DEFAULTS, "fit_l0", dict(options))
    check_init(init, model)
    device = resolve_device(settings.device, model.net)
    source = as_batches(X, y)
    stream = None if source is None else check_stream(model, source, settings, Engine.FAST, "fit_l0")
    if stream is None:
        Xt, yt = model.prepare_data(X, y)
        fingerprint, n, dtype = data_fingerprint(Xt, yt), Xt.shape[0], Xt.dtype
    else:
        fingerprint, n, dtype = stream.fingerprint, stream.n, model.dtype
    check_continuation(init, "l0", fingerprint)
    beta, stretch, lam, wd = prior.temperature, prior.stretch, prior.strength, prior.weight_decay

    module, log_alpha, state, offset, history = _start(model, prior, init, dtype)
    guide = DeltaGuide(model, module)
    guide.to(device)  # and the network
    log_alpha = {k: v if v.device == device else nn.Parameter(v.detach().to(device)) for k, v in log_alpha.items()}
    module.train()
    params = dict(module.named_parameters())
    chain = model.chain(module)
    prunable = model.prunable_sites
    coeffs = {s.name: model.coefficients[s.name].to(dtype).to(device) for s in prunable}
    likelihood = model.likelihood
    fixed_noise = None if model.learns_noise else model.noise_tensor(None, dtype)

    def loss_on(xb: torch.Tensor, yb: torch.Tensor, scale: float | None) -> torch.Tensor:
        values = {s.name: s.pack(params) for s in model.sites}
        loss = torch.zeros((), dtype=dtype)
        if wd > 0:
            for v in values.values():
                loss = loss + wd * v.pow(2).sum()
        for s in prunable:
            z = sample_gates(log_alpha[s.name], beta, stretch)
            values[s.name] = values[s.name] * z.unsqueeze(-1)
            loss = loss + expected_l0_penalty(log_alpha[s.name], coeffs[s.name], lam, beta, stretch)
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        loglik = likelihood.log_prob_sum(functional_forward(chain, model.sites, values, xb), yb, noise)
        if scale is not None:
            loglik = loglik * scale
        return loss - loglik

    objective: Callable[[Any], torch.Tensor]
    if stream is None:
        Xd, yd = place_data(Xt, yt, device, settings.full_batch(n))

        def by_index(idx: torch.Tensor | None) -> torch.Tensor:
            return loss_on(*take_batch(Xd, yd, idx, device), None if idx is None else n / idx.shape[0])

        objective = by_index
    else:
        def by_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            xb, yb = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            return loss_on(xb, yb, None if xb.shape[0] == n else n / xb.shape[0])

        objective = by_batch

    def record() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            history.append(float(sum(open_probability(a, beta, stretch).sum() for a in log_alpha.values())))
            return {
                s.layer.name: torch.linalg.vector_norm(
                    s.pack(params) * deterministic_gates(log_alpha[s.name], stretch).unsqueeze(-1), dim=-1
                )
                for s in prunable
            }

    out = optimize(
        objective, [*guide.parameters(), *log_alpha.values()], n, settings, label="L0",
        record=record, diagnose=_diagnose(log_alpha, module), optimizer_state=state, step_offset=offset,
        device=device, batches=None if stream is None else stream.__iter__,
    )
    gates = _fold(prunable, params, log_alpha, stretch)
    steps = out.record_steps if init is None or init.fitter != "l0" else np.concatenate(
        [l0_gates(init).steps, out.record_steps])
    state_l0 = L0Gates(
        log_alpha={k: v.numpy() for k, v in gates[0].items()}, gates={k: v.numpy() for k, v in gates[1].items()},
        open_probability={k: open_probability(v, beta, stretch).numpy() for k, v in gates[0].items()},
        expected_l0=np.asarray(history, dtype=np.float64), steps=steps.copy(), temperature=beta, stretch=stretch,
    )
    return fit_on(build_result(
        method="map", fitter="l0", model=model, module=module, guide=guide, out=out,
        settings=settings.as_dict() | ({} if stream is None else {"data": "loader"}), n_data=n,
        fingerprint=fingerprint, init=init, extras={"l0": state_l0},
    ))


def _fold(prunable: list[Any], params: Mapping[str, torch.Tensor], log_alpha: Mapping[str, nn.Parameter],
          stretch: tuple[float, float]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Multiply unit ``j``'s row (weights and bias) by ``ẑ_j``; the ``log α`` and ``ẑ`` per layer."""
    alphas: dict[str, torch.Tensor] = {}
    gates: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for s in prunable:
            a = log_alpha[s.name].detach()
            zhat = deterministic_gates(a, stretch)
            for name in s.param_names:
                p = params[name]
                p.mul_(zhat.reshape((-1,) + (1,) * (p.ndim - 1)))
            alphas[s.layer.name], gates[s.layer.name] = a.cpu(), zhat.cpu()
    return alphas, gates
