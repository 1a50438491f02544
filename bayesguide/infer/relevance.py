"""``fit_relevance``: MAP training with relevance guidance re-estimated from data (empirical Bayes).

Bonetta, Ribero & Cancelliere, "Regularization-based pruning of irrelevant weights in
deep neural architectures", arXiv 2204.04977 (2022; Applied Intelligence 2023), in the
loss-sensitivity family of LOBSTER (Tartaglione et al., "LOss-Based SensiTivity
rEgulaRization", 2020/2022): a weight-decay-like term shrinks only the parameters the
loss is insensitive to, relevant parameters get the plain gradient update. Here it acts
on whole units (the weight group ``θ_j`` of unit ``j``: incoming row and bias), so that
what dies can be cut physically (the iterative pruning loop is
[`bayesguide.relevance_pruning`][]).

**Sensitivity and insensitivity.** With ``L(θ) = −Σ_i log p(y_i | x_i, θ)`` the summed
data loss (no prior) over the training set, the sensitivity of unit ``j`` is

* ``"gradient"`` (default): ``s_j = ‖∂L/∂θ_j‖₂`` — the per-weight sensitivity
  ``|∂L/∂w|`` of the LOBSTER family, lifted to the group by the Euclidean norm;
* ``"taylor"``: ``s_j = Σ_{w ∈ θ_j} |w · ∂L/∂w|`` — the first-order estimate of how
  much the loss changes when the unit's weights are set to zero.

Per layer, the insensitivity is ``g_j = ReLU(1 − s_j / scale)``, with ``scale`` the
largest ``s`` of the layer (``"max"``, default: the most sensitive unit gets
``g = 0``), a quantile of ``s`` (``"quantile"``) or its mean (``"mean"``). When every
``s_j`` is 0 the layer is entirely insensitive: ``g = 1``. Only the ratio ``s_j /
scale`` matters, so the loss convention (sum or mean) does not change ``g``. The paper
states its rule per weight; the exact normalisation of its sensitivity could not be
checked here, so the two choices above and the scale are documented choices, not a
transcription.

**Bayesian reading.** ``g`` is the guidance of a guided Gaussian prior
([`bayesguide.GuidedNormal`][], strength ``λ``): every weight of unit ``j`` is
``Normal(0, 1/√(2 λ g_j))``, i.e. precision ``2 λ g_j``, so the penalty is ``λ Σ_j g_j
‖θ_j‖₂²`` and its gradient ``2 λ g_j θ_j`` is the paper's selective weight decay (their
decay constant is ``2λ``). Relevant units (``g_j = 0``) have an improper flat prior: the
plain update. Every ``every`` steps the precisions are re-estimated from the data
(type-II / empirical Bayes, written into the prior in place with
[`set_rate`][bayesguide.priors.base.UnitGroupDistribution.set_rate]), so **the objective
changes during training**: the result is not the MAP of one fixed prior, but a fixed
point of the alternation "MAP step(s) under the current prior ↔ re-estimate the prior".
The fit's model holds the last estimate (``fit.model.coefficients``), which is what a
candidate cut from it carries.

Examples
--------
>>> import torch, bayesguide as bg
>>> X = torch.randn(64, 3); y = X[:, :1] * 2.0
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> prior = bg.GuidedNormal(strength=1.0, guidance=bg.guidance.relevance(every=5))
>>> model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=0.5)
>>> fit = bg.fit_relevance(model, X, y, steps=20, lr=0.01)
>>> fit.steps, fit.fitter, fit.model.coefficients["0.units"].shape
(20, 'relevance', torch.Size([4]))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from typing_extensions import Unpack

from bayesguide.guidance import Relevance, Sensitivity
from bayesguide.guidance.relevance import Scale
from bayesguide.infer.common import continued_model
from bayesguide.infer.map import Engine, check_stream, map_steps, map_stream_steps
from bayesguide.infer.result import FitResult, fit_on
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint
from bayesguide.model.batches import Batches, BatchStream, as_batches
from bayesguide.model.device import module_device, module_on, resolve_device, to_device
from bayesguide.priors import GuidedNormal, UnitNormal

__all__ = [
    "data_loss", "fit_relevance", "insensitivity", "relevance_model", "relevance_settings", "relevance_steps",
]

DEFAULTS = OptimSettings(steps=2000, lr=1e-3, progress=False)
"""The defaults of ``fit_relevance``."""


def data_loss(model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The summed negative log-likelihood of ``module`` on prepared ``X, y`` (no prior)."""
    noise = model.noise_tensor(None, X.dtype)
    return model.likelihood.nll_sum(module(X), y, noise)


def _data_grads(model: GuidedModel, module: nn.Module, X: torch.Tensor | BatchStream, y: torch.Tensor | None,
                wanted: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """The gradient of the summed data loss in ``wanted``; for a stream, the batches' gradients summed."""
    if isinstance(X, torch.Tensor):
        assert y is not None
        return torch.autograd.grad(data_loss(model, module, X, y), wanted, allow_unused=True)
    device = module_device(module)
    total: list[torch.Tensor | None] = [None] * len(wanted)
    for xb, yb in X:
        grads = torch.autograd.grad(data_loss(model, module, xb.to(device), yb.to(device)), wanted,
                                    allow_unused=True)
        total = [g if t is None else t if g is None else t + g for t, g in zip(total, grads, strict=True)]
    return tuple(total)


def insensitivity(
    model: GuidedModel, module: nn.Module, X: torch.Tensor | BatchStream, y: torch.Tensor | None, settings: Relevance
) -> dict[str, torch.Tensor]:
    """``g_j = ReLU(1 − s_j / scale)`` of every prunable site of ``module`` (float64).

    ``X, y`` are prepared tensors (``model.prepare_data``), or ``X`` a
    [`BatchStream`][bayesguide.model.batches.BatchStream] and ``y`` ``None`` (the
    gradient is then summed over the batches of one pass); the sensitivity is computed
    on the summed data loss, in ``module``'s current train/eval mode.
    """
    params = dict(module.named_parameters())
    sites = model.prunable_sites
    wanted = [params[k] for s in sites for k in s.param_names]
    grads = _data_grads(model, module, X, y, wanted)
    by_name = dict(zip([k for s in sites for k in s.param_names], grads, strict=True))
    out: dict[str, torch.Tensor] = {}
    for site in sites:
        parts = []
        for k in site.param_names:
            g = by_name[k]
            g = torch.zeros_like(params[k]) if g is None else g
            w = params[k].detach()
            term = g if settings.sensitivity is Sensitivity.GRADIENT else w * g
            parts.append(term.reshape(site.n_units, -1))
        mat = torch.cat(parts, dim=1).to(torch.float64)
        if settings.sensitivity is Sensitivity.GRADIENT:
            s = torch.linalg.vector_norm(mat, dim=1)
        else:
            s = mat.abs().sum(1)
        if settings.scale is Scale.MAX:
            ref = s.max()
        elif settings.scale is Scale.MEAN:
            ref = s.mean()
        else:
            ref = torch.quantile(s, settings.quantile)
        g = torch.ones_like(s) if float(ref) <= 0 else torch.relu(1.0 - s / ref)
        out[site.name] = g
    return out


def relevance_settings(model: GuidedModel, settings: Relevance | None) -> Relevance:
    """The relevance settings of ``model`` (or ``settings``), after checking the model can use them."""
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")
    if not isinstance(model.prior, GuidedNormal):
        raise ValueError(
            f"relevance guidance re-estimates the precisions of a Gaussian prior: use "
            f"bg.GuidedNormal, not {type(model.prior).__name__}"
        )
    if model.learns_noise:
        raise ValueError("relevance guidance needs a fixed Gaussian noise: pass noise=σ to the GuidedModel")
    if not model.prunable_sites:
        raise ValueError("relevance guidance re-estimates the guidance of hidden units: the network has no hidden "
                         "Linear or Conv2d layer")
    if settings is None:
        settings = model.prior.guidance if isinstance(model.prior.guidance, Relevance) else None
        if settings is None:
            raise ValueError(
                "the model's guidance is not bg.guidance.relevance(...): build the prior with it "
                "or pass relevance=..."
            )
    if not isinstance(settings, Relevance):
        raise TypeError(f"relevance must come from relevance(...), got {type(settings).__name__}")
    return settings


def relevance_model(model: GuidedModel, settings: Relevance) -> GuidedModel:
    """A fresh GuidedModel on the same network with guidance ``settings``: the caller's is never changed."""
    assert isinstance(model.prior, GuidedNormal)
    return GuidedModel(model.net, GuidedNormal(model.prior.strength, settings), model.likelihood,
                       noise=model.noise, plain_prior=model.plain_prior)


def _estimate(model: GuidedModel, module: nn.Module, X: torch.Tensor | BatchStream, y: torch.Tensor | None,
              s: Relevance) -> None:
    """Re-estimate the coefficients and write them into the model's priors in place."""
    g = insensitivity(model, module, X, y, s)
    for site in model.prunable_sites:
        model.coefficients[site.name].copy_(g[site.name])
        dist = model.site_distribution(site, model.dtype, device=module_device(module))
        assert isinstance(dist, UnitNormal)
        model.set_site_rate(site, model.prior.strength * g[site.name].to(model.dtype))


def relevance_steps(
    model: GuidedModel, X: torch.Tensor | BatchStream, y: torch.Tensor | None, s: Relevance, settings: OptimSettings,
    fit: FitResult | None, after_block: Callable[[FitResult], bool] | None = None, engine: str = "fast",
) -> FitResult:
    """Relevance training of ``model`` (already its own) for ``settings.steps`` steps, continuing ``fit``.

    The estimate is made before the first step of a new fit and after every block of
    ``every`` Adam steps; block ``k`` (counted over the whole fit) uses minibatch seed
    ``seed + k``. ``after_block(fit)`` returning ``True`` stops early.

    The steps and the estimates run on ``settings.device`` (default: ``model.net``'s);
    the estimates read the whole training set, so ``X, y`` are moved there once, and the
    fit stays there (its callers bring it back to the CPU).

    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream] (``y`` ``None``,
    ``engine="fast"``, checked by the caller): the steps read its batches
    ([`map_stream_steps`][bayesguide.infer.map.map_stream_steps]) and each estimate sums
    the gradient over one pass of it.
    """
    device = resolve_device(settings.device, model.net)
    stream = X if isinstance(X, BatchStream) else None
    if stream is None:
        assert isinstance(X, torch.Tensor) and y is not None
        fingerprint = data_fingerprint(X, y)
        X, y = to_device(X, device), to_device(y, device)
    if fit is None:
        _estimate(model, module_on(model.net, device), X, y, s)
    done = 0
    seed = settings.seed
    while done < settings.steps:
        chunk = min(s.every, settings.steps - done)
        block = 0 if fit is None else -(-fit.steps // s.every)
        block_settings = settings.with_options(
            "fit_relevance", steps=chunk, progress=False, seed=None if seed is None else seed + block)
        if stream is None:
            assert isinstance(X, torch.Tensor) and y is not None
            fit = map_steps(model, X, y, block_settings, engine=engine, init=fit, fitter="relevance",
                            fingerprint=fingerprint)
        else:
            fit = map_stream_steps(model, stream, block_settings, init=fit, fitter="relevance")
        done += chunk
        _estimate(model, fit.module, X, y, s)
        if after_block is not None and after_block(fit):
            break
    assert fit is not None
    data = {} if stream is None else {"data": "loader"}
    return dataclasses.replace(fit, settings=settings.as_dict() | {"engine": engine, "relevance": repr(s)} | data)


def fit_relevance(
    model: GuidedModel,
    X: ArrayLike | Batches | DataLoader[Any],
    y: ArrayLike | None = None,
    optim: OptimSettings | None = None,
    *,
    relevance: Relevance | None = None,
    engine: str = "fast",
    init: FitResult | None = None,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """MAP training with the prior's precisions re-estimated every ``every`` steps.

    The estimate ``g = ReLU(1 − s / scale)`` ([`insensitivity`][bayesguide.infer.relevance.insensitivity]) is made on
    the
    full training set before the first step and after every ``every`` Adam steps, and
    written into the prior in place; the Adam state carries over between estimates.
    The caller's ``model`` is not changed: the fit runs on a fresh
    [`GuidedModel`][bayesguide.GuidedModel] on the same network, ``fit.model``, whose
    coefficients are the last estimate.

    Parameters
    ----------
    model
        A model with a [`GuidedNormal`][bayesguide.GuidedNormal] prior and fixed noise.
    X
        Training inputs (an array or tensor), validated before any training; or a data
        loader of ``(X, y)`` batches (a ``DataLoader`` over a sized dataset, or
        [`Batches`][bayesguide.model.batches.Batches]), read as by [`fit_map`][bayesguide.fit_map]
        (each step the next batch, its log-likelihood scaled by ``n / B``); each estimate
        then sums the gradient over one pass of the loader.
    y
        Training targets, validated with ``X`` before any training; omitted for a loader.
    optim
        The optimisation settings ([`OptimSettings`][bayesguide.OptimSettings]); default
        ``steps=2000``, ``lr=1e-3``, no progress bar. ``batch_size`` sets the minibatch
        of the Adam steps (for a loader, its own batch size); the sensitivities are always
        estimated on the full training set. Block ``k`` of ``every`` steps uses minibatch seed ``seed + k``, so the
        blocks do not repeat one another's minibatch order. ``schedule`` and
        ``patience`` apply within each block.
    relevance
        The settings; default: the model's guidance, which must be
        [`bayesguide.guidance.relevance`][].
    engine
        As in [`bayesguide.fit_map`][].
    init
        A previous ``fit_relevance`` fit to continue (``bg.resume_fit``): its model (with
        the last estimate), weights and optimiser state carry over, and the estimates go
        on every ``every`` steps.
    **options
        Fields of [`OptimSettings`][bayesguide.OptimSettings] overriding ``optim``, including
        ``device``: where the steps and the estimates run, as in
        [`fit_map`][bayesguide.fit_map] (default: where ``model.net``'s parameters are). The
        estimates read the whole training set, so it is moved to the device once.

    Returns
    -------
    FitResult
        ``method="map"``, ``fitter="relevance"``; on the CPU.
    """
    own = continued_model(init, "relevance", model)
    s = relevance_settings(model if own is None else own, relevance)
    own = relevance_model(model, s) if own is None else own
    settings = OptimSettings.resolve(optim, DEFAULTS, "fit_relevance", dict(options))
    source = as_batches(X, y)
    if source is not None:
        stream = check_stream(own, source, settings, Engine.resolve(engine, "engine"), "fit_relevance")
        return fit_on(relevance_steps(own, stream, None, s, settings, init, engine=engine))
    Xt, yt = own.prepare_data(X, y)
    return fit_on(relevance_steps(own, Xt, yt, s, settings, init, engine=engine))
