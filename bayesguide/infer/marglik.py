"""``fit_marglik``: MAP training with the prior precisions learned from the Laplace evidence.

Immer, Bauer, Fortuin, Rätsch & Khan, "Scalable marginal likelihood estimation for model
selection in deep learning" (ICML 2021), per unit as in MacKay's automatic relevance
determination (MacKay 1995; Tipping 2001). The prior is Gaussian
([`GuidedNormal`][bayesguide.GuidedNormal]): unit ``j`` of a prunable layer has precision
``α_j = 2 λ g_j`` on its weight group ``θ_j`` (``p_j`` weights), each plain layer
(the output layer) one precision ``α_l`` on all its weights. Every ``every`` MAP steps
(after ``burn_in``), at the current weights ``θ`` and noise ``σ``, the precisions are
moved to the maximum of the Laplace log evidence plus the log hyperprior
``Σ_j ν g⁰_j log α_j`` (``g⁰`` the base guidance, ``ν`` the confidence,
[`bayesguide.guidance.marglik`][]). Setting its derivative in ``α_j`` to zero,

$$
\\frac{p_j}{2 α_j} - \\frac{\\lVert θ_j \\rVert^2}{2}
- \\frac12 \\operatorname{tr}\\big[(H^{-1})_{jj}\\big] + \\frac{ν g⁰_j}{α_j} = 0
\\;\\Longrightarrow\\;
α_j = \\frac{γ_j + 2 ν g⁰_j}{\\lVert θ_j \\rVert^2}, \\qquad
γ_j = p_j - α_j \\operatorname{tr}\\big[(H^{-1})_{jj}\\big],
$$

MacKay's fixed point, iterated ``iterations`` times on one curvature (``H = G/σ² + A``,
``G`` the KFAC or diagonal GGN of [`bayesguide.curvature.effective`][]). A plain layer
gets ``α_l = Σ_{j ∈ l} γ_j / ‖θ_l‖²``. Precisions stay within ``[1e-8, max_precision]``.

A unit the data do not need has ``γ_j → 0`` while the prior keeps shrinking ``θ_j``: its
precision diverges and its weights go to zero — the evidence prunes it, and the guidance
(through ``ν g⁰_j``) decides which of two equally useless units goes first. The
precisions are written into the prior in place (``set_rate(α / 2)``) and kept as the
fit model's coefficients ``g_j = α_j / (2 λ)``, so a candidate cut from the fit carries
the learned prior, and its Laplace evidence (``bg.compare``) is the evidence whose
maximiser the fit tracked. As with relevance guidance the objective changes during
training: the result is a fixed point of "MAP steps ↔ type-II update", not the MAP of
one prior.

Examples
--------
>>> import torch, bayesguide as bg
>>> torch.manual_seed(0) and None
>>> X = torch.randn(64, 3); y = torch.tanh(X[:, :1])
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
>>> prior = bg.GuidedNormal(strength=1.0, guidance=bg.guidance.marglik(every=20, burn_in=20))
>>> fit = bg.fit_marglik(bg.GuidedModel(net, prior, "gaussian", noise=0.1), X, y, steps=60, lr=0.01)
>>> fit.fitter, fit.model.coefficients["0.units"].shape, len(fit.extras["precisions"].steps)
('marglik', torch.Size([6]), 3)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from typing_extensions import Unpack

from bayesguide.curvature import effective_parameters_kron, site_blocks
from bayesguide.guidance import MarginalLikelihood
from bayesguide.infer.common import continued_model
from bayesguide.infer.map import Engine, check_stream, map_steps, map_stream_steps
from bayesguide.infer.result import FitResult, fit_on, register_extra
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.likelihoods import Likelihood
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint
from bayesguide.model.batches import Batches, BatchStream, as_batches
from bayesguide.model.device import module_device, resolve_device, to_device
from bayesguide.priors import GuidedNormal, UnitNormal

__all__ = ["PrecisionTrace", "fit_marglik", "marglik_model", "marglik_settings", "marglik_steps", "update_precisions"]

DEFAULTS = OptimSettings(steps=2000, lr=1e-3, progress=False)
"""The defaults of ``fit_marglik``."""

MIN_PRECISION = 1e-8
"""The smallest precision an update may set (an improper prior would have no evidence)."""


@dataclass(frozen=True)
class PrecisionTrace:
    """What each type-II update of a ``fit_marglik`` fit found (``fit.extras["precisions"]``).

    Attributes
    ----------
    steps
        The step count of each update.
    effective
        ``Σ γ``: the effective number of parameters of the whole network at that update.
    capped
        Prunable units whose precision reached ``max_precision`` (pruned by the evidence).
    """

    steps: tuple[int, ...] = ()
    effective: tuple[float, ...] = ()
    capped: tuple[int, ...] = ()

    def added(self, step: int, effective: float, capped: int) -> PrecisionTrace:
        return PrecisionTrace((*self.steps, step), (*self.effective, effective), (*self.capped, capped))

    def to_json(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "effective": list(self.effective), "capped": list(self.capped)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrecisionTrace:
        return cls(tuple(int(v) for v in data["steps"]), tuple(float(v) for v in data["effective"]),
                   tuple(int(v) for v in data["capped"]))


register_extra("precisions", PrecisionTrace.from_json)


def marglik_settings(model: GuidedModel, settings: MarginalLikelihood | None) -> MarginalLikelihood:
    """The settings of ``model`` (or ``settings``), after checking that the model can use them."""
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")
    for role, prior in (("prior", model.prior), ("plain_prior", model.plain_prior)):
        if not isinstance(prior, GuidedNormal):
            raise ValueError(f"evidence-driven fitting learns the precisions of a Gaussian prior: the {role} must be "
                             f"bg.GuidedNormal, not {type(prior).__name__}")
    if settings is None:
        settings = model.prior.guidance if isinstance(model.prior.guidance, MarginalLikelihood) else None
        if settings is None:
            raise ValueError("the model's guidance is not bg.guidance.marglik(...): build the prior with it "
                             "or pass marglik=...")
    if not isinstance(settings, MarginalLikelihood):
        raise TypeError(f"marglik must come from bg.guidance.marglik(...), got {type(settings).__name__}")
    return settings


def marglik_model(model: GuidedModel, settings: MarginalLikelihood) -> GuidedModel:
    """A fresh GuidedModel on the same network with guidance ``settings``: the caller's is never changed."""
    assert isinstance(model.prior, GuidedNormal)
    return GuidedModel(model.net, GuidedNormal(model.prior.strength, settings), model.likelihood,
                       noise=model.noise, plain_prior=model.plain_prior)


def _strength(model: GuidedModel, prunable: bool) -> float:
    prior = model.prior if prunable else model.plain_prior
    assert isinstance(prior, GuidedNormal)
    return float(prior.strength)


def update_precisions(model: GuidedModel, fit: FitResult, X: torch.Tensor | BatchStream,
                      s: MarginalLikelihood) -> tuple[float, int]:
    """One type-II update of every precision of ``model`` at ``fit``'s weights, written in place.

    ``X``: the prepared training inputs, or a [`BatchStream`][bayesguide.model.batches.BatchStream]
    whose batches the curvature accumulates over (one pass; the same sums as on the
    tensors).

    The noise ``σ`` is the model's, or the fit's current MAP value when it learns it (a
    type-II noise update ``σ² = RSS / (N − Σ γ)`` was tried: early in training it keeps
    ``σ`` at the residual of an unconverged fit and slowed the pruning on teacher–student
    data). Returns what the fit's [`PrecisionTrace`][bayesguide.infer.marglik.PrecisionTrace] records: ``Σ γ`` over the
    network and the number of prunable units at the cap.
    """
    module = fit.module
    was_training = module.training
    module.eval()
    try:
        blocks = site_blocks(model, module, X, s.hessian)
    finally:
        module.train(was_training)
    sigma = model.noise if model.noise is not None else fit.noise
    sigma2 = float(sigma) ** 2 if sigma is not None and model.likelihood is Likelihood.GAUSSIAN else 1.0
    params = dict(module.named_parameters())
    with torch.no_grad():
        sq = {site.name: site.pack(params).detach().to(torch.float64).pow(2).sum(-1).cpu() for site in model.sites}
    alphas = {site.name: (2.0 * _strength(model, site.prunable) * model.coefficients[site.name].to(torch.float64))
              .clamp(MIN_PRECISION, s.max_precision) for site in model.sites}
    gammas: dict[str, torch.Tensor] = {}
    for _ in range(s.iterations):
        for site, block in zip(model.sites, blocks, strict=True):
            gamma = effective_parameters_kron(block, alphas[site.name], sigma2).clamp(min=0.0)
            if site.prunable:
                alpha = (gamma + 2.0 * s.confidence * s.base(site.n_units)) / sq[site.name]
            else:
                alpha = torch.full_like(gamma, float(gamma.sum() / sq[site.name].sum()))
            alpha = torch.nan_to_num(alpha, nan=s.max_precision, posinf=s.max_precision)
            alphas[site.name] = alpha.clamp(MIN_PRECISION, s.max_precision)
            gammas[site.name] = gamma
    capped = 0
    for site in model.sites:
        strength = _strength(model, site.prunable)
        g = alphas[site.name] / (2.0 * strength)
        model.coefficients[site.name].copy_(g)
        dist = model.site_distribution(site, model.dtype, device=module_device(module))
        assert isinstance(dist, UnitNormal)
        model.set_site_rate(site, (strength * g).to(model.dtype))
        capped += int((alphas[site.name] >= s.max_precision).sum()) if site.prunable else 0
    return float(sum(g.sum() for g in gammas.values())), capped


def marglik_steps(
    model: GuidedModel, X: torch.Tensor | BatchStream, y: torch.Tensor | None, s: MarginalLikelihood,
    settings: OptimSettings, fit: FitResult | None, engine: str = "fast",
) -> FitResult:
    """Evidence-driven training of ``model`` (already its own) for ``settings.steps`` steps, continuing ``fit``.

    Updates happen when the fit's step count reaches ``burn_in``, ``burn_in + every``,
    ...; the MAP steps between two updates form one block, block ``k`` (counted over the
    whole fit) using minibatch seed ``seed + k``.

    The steps and the updates run on ``settings.device`` (default: ``model.net``'s); the
    updates' curvature reads the whole training set, so ``X, y`` are moved there once,
    and the fit stays there (its caller brings it back to the CPU).

    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream] (``y`` ``None``,
    ``engine="fast"``, checked by the caller): the MAP steps read its batches
    ([`map_stream_steps`][bayesguide.infer.map.map_stream_steps]) and each update's
    curvature accumulates over one pass of it.
    """
    device = resolve_device(settings.device, model.net)
    stream = X if isinstance(X, BatchStream) else None
    if stream is None:
        assert isinstance(X, torch.Tensor) and y is not None
        fingerprint = data_fingerprint(X, y)
        X, y = to_device(X, device), to_device(y, device)
    done = 0
    seed = settings.seed
    trace = fit.extras.get("precisions", PrecisionTrace()) if fit is not None else PrecisionTrace()
    while done < settings.steps:
        at = 0 if fit is None else fit.steps
        if at < s.burn_in:
            block, target = 0, s.burn_in
        else:
            block = 1 + (at - s.burn_in) // s.every
            target = s.burn_in + block * s.every
        chunk = min(target - at, settings.steps - done)
        block_settings = settings.with_options(
            "fit_marglik", steps=chunk, progress=False, seed=None if seed is None else seed + block)
        if stream is None:
            assert isinstance(X, torch.Tensor) and y is not None
            fit = map_steps(model, X, y, block_settings, engine=engine, init=fit, fitter="marglik",
                            fingerprint=fingerprint)
        else:
            fit = map_stream_steps(model, stream, block_settings, init=fit, fitter="marglik")
        done += chunk
        if fit.steps == target:
            trace = trace.added(fit.steps, *update_precisions(model, fit, X, s))
        fit = dataclasses.replace(fit, extras=dict(fit.extras) | {"precisions": trace})
    assert fit is not None
    data = {} if stream is None else {"data": "loader"}
    return dataclasses.replace(fit, settings=settings.as_dict() | {"engine": engine, "marglik": repr(s)} | data)


def fit_marglik(
    model: GuidedModel,
    X: ArrayLike | Batches | DataLoader[Any],
    y: ArrayLike | None = None,
    optim: OptimSettings | None = None,
    *,
    marglik: MarginalLikelihood | None = None,
    engine: str = "fast",
    init: FitResult | None = None,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """MAP training with every prior precision re-estimated from the Laplace evidence (module docstring).

    The caller's ``model`` is not changed: the fit runs on a fresh
    [`GuidedModel`][bayesguide.GuidedModel] on the same network, ``fit.model``, whose
    coefficients hold the learned precisions (``α = 2 λ g``). The Adam state carries over
    between updates; a Gaussian model may learn its noise (the update uses the current
    ``σ``) or keep it fixed.

    Parameters
    ----------
    model
        A model whose prior and plain prior are [`GuidedNormal`][bayesguide.GuidedNormal] (their
        strengths and guidance give the starting precisions).
    X
        Training inputs (an array or tensor), validated before any training; or a data
        loader of ``(X, y)`` batches (a ``DataLoader`` over a sized dataset, or
        [`Batches`][bayesguide.model.batches.Batches]), as in [`fit_map`][bayesguide.fit_map]:
        each MAP step reads the loader's next batch (log-likelihood scaled by ``n / B``),
        and each update's KFAC or diagonal curvature is summed over one pass of the
        loader — the same sums as on the tensors, never all data at once.
    y
        Training targets, validated with ``X`` before any training; omitted when ``X`` is
        a data loader.
    optim
        The optimisation settings; default ``steps=2000``, ``lr=1e-3``, no progress bar.
        ``batch_size`` sets the minibatch of the MAP steps (for a loader, its own batch
        size); the curvature of an update is always computed on the full training set.
    marglik
        The settings; default: the model's guidance, which must be
        [`bayesguide.guidance.marglik`][].
    engine
        As in [`bayesguide.fit_map`][].
    init
        A previous ``fit_marglik`` fit to continue (``bg.resume_fit``): its model (with
        the learned precisions), weights and optimiser state carry over.
    **options
        Fields of [`OptimSettings`][bayesguide.OptimSettings] overriding ``optim``, including
        ``device``: where the steps and the updates run, as in [`fit_map`][bayesguide.fit_map]
        (default: where ``model.net``'s parameters are). The updates read the whole
        training set, so it is moved to the device once.

    Returns
    -------
    FitResult
        ``method="map"``, ``fitter="marglik"``; ``extras["precisions"]`` traces the
        effective number of parameters and the units at the precision cap per update.
        On the CPU.
    """
    own = continued_model(init, "marglik", model)
    s = marglik_settings(model if own is None else own, marglik)
    own = marglik_model(model, s) if own is None else own
    settings = OptimSettings.resolve(optim, DEFAULTS, "fit_marglik", dict(options))
    source = as_batches(X, y)
    if source is not None:
        stream = check_stream(own, source, settings, Engine.resolve(engine, "engine"), "fit_marglik")
        return fit_on(marglik_steps(own, stream, None, s, settings, init, engine=engine))
    Xt, yt = own.prepare_data(X, y)
    return fit_on(marglik_steps(own, Xt, yt, s, settings, init, engine=engine))
