"""``fit_svi``: stochastic variational inference for an approximate posterior.

Maximises the evidence lower bound

$$
\\text{ELBO}(q) = \\mathbb{E}_{q(θ)}\\Big[\\frac{N}{B}\\sum_{i \\in \\text{batch}}
    \\log p(y_i \\mid x_i, θ) + \\log p(θ) - \\log q(θ)\\Big]
$$

with one reparameterised sample per step, the estimator of Pyro's ``Trace_ELBO``. The
``"fast"`` engine draws ``θ`` from the guide and evaluates the log joint directly in
torch; ``"pyro"`` runs ``Trace_ELBO`` on the Pyro model and guide (tests check that
both give the same value at the same draw).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from typing_extensions import Unpack

from bayesguide.infer.common import check_continuation, check_init, check_model, make_diagnose
from bayesguide.infer.loop import Objective, StreamObjective, optimize
from bayesguide.infer.map import Engine, check_stream, map_steps, map_stream_steps, pyro_objective
from bayesguide.infer.result import FitResult, build_result, fit_on, register_extra
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint, map_model
from bayesguide.model.batches import Batches, BatchStream, as_batches
from bayesguide.model.device import place_data, resolve_device, take_batch
from bayesguide.posterior import Guide, GuideKind, make_guide

__all__ = ["WarmStart", "fit_svi"]

DEFAULTS = OptimSettings(steps=3000, lr=1e-3)
"""The defaults of ``fit_svi``."""


@dataclass(frozen=True)
class WarmStart:
    """The MAP steps an SVI fit started from (``fit.extras["warm_start"]`` of ``fit_svi(warm_start=k)``).

    Attributes
    ----------
    steps
        The MAP steps taken (``k``; the fit's own ``losses`` are its SVI steps only).
    prior
        The prior they were taken under, as text (the model's, or for a prior without a
        MAP its Gaussian counterpart).
    final_loss
        The MAP objective at their last step.
    seconds
        Their wall time.
    """

    steps: int
    prior: str
    final_loss: float
    seconds: float

    def __str__(self) -> str:
        return f"warm start: {self.steps} MAP steps under {self.prior} ({self.seconds:.1f} s)"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WarmStart:
        return cls(steps=int(data["steps"]), prior=str(data["prior"]), final_loss=float(data["final_loss"]),
                   seconds=float(data["seconds"]))


register_extra("warm_start", WarmStart.from_json)


def fit_svi(
    model: GuidedModel,
    X: ArrayLike | Batches | DataLoader[Any],
    y: ArrayLike | None = None,
    optim: OptimSettings | None = None,
    *,
    guide: str | GuideKind = "normal",
    rank: int = 10,
    init_scale: float = 0.01,
    engine: str | Engine = "fast",
    init: FitResult | None = None,
    warm_start: int = 0,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """Fit an approximate posterior of ``model`` by SVI.

    Parameters
    ----------
    model
        The [`GuidedModel`][bayesguide.GuidedModel]; its network is copied, never changed.
    X
        Training inputs (an array or tensor), validated before any training; or a data
        loader of ``(X, y)`` batches (a ``DataLoader`` over a sized dataset, or
        [`Batches`][bayesguide.model.batches.Batches]), read batch by batch with the
        log-likelihood scaled by ``n / B``, as in [`fit_map`][bayesguide.fit_map].
    y
        Training targets, validated with ``X`` before any training; omitted when ``X`` is
        a data loader.
    optim
        The optimisation settings ([`OptimSettings`][bayesguide.OptimSettings]); default
        ``steps=3000``, ``lr=1e-3``.
    guide
        ``"normal"`` (mean-field, like Pyro's ``AutoNormal``) or ``"lowrank"``
        (covariance ``F Fᵀ + diag(d²)`` of rank ``rank``).
    rank
        Rank of the low-rank guide's factor ``F``.
    init_scale
        Initial posterior standard deviation of every weight.
    engine
        ``"fast"`` (default) or ``"pyro"``, as in [`fit_map`][bayesguide.fit_map] (a data
        loader needs ``"fast"``).
    init
        A previous fit: an SVI fit is continued (guide and optimiser state); a MAP fit
        gives the guide's starting locations (a good warm start).
    warm_start
        The first ``warm_start`` of the ``steps`` are MAP steps, and the guide's locations
        start at the point they reach (the other ``steps - warm_start`` are SVI steps):
        under ``model``'s own prior, or, for a prior without a MAP (the group horseshoe),
        under the Gaussian its Laplace evidence uses,
        ``GuidedNormal(prior.strength, uniform())``
        ([`map_model`][bayesguide.model.counterpart.map_model]). With the same settings
        (learning rate, batches, schedule over its own steps, seed). From a random
        initialisation the ELBO's KL term can switch units off before the data have
        made them useful: on MNIST-1D (3,200 sequences, a 40-256-256-10 MLP, seed 0,
        ``tau0=1``), the group horseshoe's posterior mean reached 41.7 % test accuracy
        after 4,000 SVI steps, and 55.4 % after 1,000 MAP + 3,000 SVI steps
        (``benchmarks/svi_warm_start.py``; ``benchmarks/compression.py`` measures it on five
        tasks, docs/benchmarks.md). The MAP
        part is in ``fit.extras["warm_start"]`` ([`WarmStart`][bayesguide.infer.svi.WarmStart]: its steps,
        prior and final loss), not in ``fit.losses``. 0 (default): none; a new fit only (not with ``init``).
    **options
        Fields of [`OptimSettings`][bayesguide.OptimSettings] overriding ``optim`` (``steps``,
        ``lr``, ``batch_size``, ``schedule``, ``patience``, ``min_delta``, ``seed``,
        ``progress``, ``record_every``, ``device``). ``device`` is where the steps run, as
        in [`fit_map`][bayesguide.fit_map] (default: where ``model.net``'s parameters are).
        The draws come from that device's random generator: with the same ``seed`` a fit
        on a GPU follows another random stream than one on the CPU.

    Returns
    -------
    FitResult
        ``method="svi"``; ``module`` holds the posterior mean, ``guide`` the fitted
        guide, ``losses`` the negative ELBO per step; on the CPU.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> model = bg.GuidedModel(net, bg.GuidedNormal(strength=1.0))
    >>> post = bg.fit_svi(model, X, y, steps=20, progress=False)
    >>> post.method
    'svi'
    """
    check_model(model)
    settings = OptimSettings.resolve(optim, DEFAULTS, "fit_svi", dict(options))
    engine_kind = Engine.resolve(engine, "engine")
    guide_kind = GuideKind.resolve(guide, "guide")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    check_init(init, model)
    warm = _check_warm_start(warm_start, init, settings.steps)
    device = resolve_device(settings.device, model.net)
    source = as_batches(X, y)
    stream: BatchStream | None = None
    if source is not None:
        stream = check_stream(model, source, settings, engine_kind, "fit_svi")
        n, fingerprint = stream.n, stream.fingerprint
    else:
        Xt, yt = model.prepare_data(X, y)
        n = Xt.shape[0]
        fingerprint = data_fingerprint(Xt, yt)
    check_continuation(init, "svi", fingerprint)

    config = settings.as_dict() | {
        "engine": engine_kind.value, "guide": guide_kind.value, "rank": rank, "init_scale": init_scale,
    } | ({"data": "loader"} if stream is not None else {})
    extras: dict[str, Any] = {}
    if init is not None and init.fitter == "svi":
        module = copy.deepcopy(init.module)
        q: Guide = copy.deepcopy(init.guide)
        state, offset = init.optimizer_state, init.steps
    else:
        start = init.module if init is not None else model.net
        if warm:
            warm_fit = _warm_start(model, dataclasses.replace(settings, steps=warm), engine_kind,
                                   stream if stream is not None else (Xt, yt, fingerprint))
            start, settings = warm_fit.module, dataclasses.replace(settings, steps=settings.steps - warm)
            extras["warm_start"] = WarmStart(warm, str(warm_fit.model.prior), float(warm_fit.losses[-1]),
                                             warm_fit.wall_time)
        module = copy.deepcopy(start)
        q = make_guide(guide_kind, model, module, rank=rank, init_scale=init_scale)
        state, offset = None, 0
    module.to(device)
    q.to(device)
    module.train()

    objective: Objective | StreamObjective
    diagnose: Callable[[Any], str]
    batches = None
    if stream is not None:
        elbo = _neg_elbo(model, q, module)

        def batch_on(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

        def stream_objective(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            xb, yb = batch_on(batch)
            return elbo(xb, yb, None if xb.shape[0] == n else n / xb.shape[0])

        def stream_diagnose(batch: tuple[torch.Tensor, torch.Tensor]) -> str:
            return make_diagnose(model, q, module, *batch_on(batch))(None)

        objective, diagnose, batches = stream_objective, stream_diagnose, stream.__iter__
    else:
        Xd, yd = place_data(Xt, yt, device, settings.full_batch(n))
        if engine_kind is Engine.FAST:
            objective = _fast_objective(model, q, module, Xd, yd)
        else:
            objective = pyro_objective(model, q, module, Xd, yd)
        diagnose = make_diagnose(model, q, module, Xd, yd)

    def record() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            means = q.mean_values()
            return {
                s.layer.name: torch.linalg.vector_norm(means[s.name], dim=-1) for s in model.prunable_sites
            }

    out = optimize(
        objective, list(q.parameters()), n, settings, label="SVI", record=record,
        diagnose=diagnose, optimizer_state=state, step_offset=offset, device=device, batches=batches,
    )
    _load_values(model, module, q.mean_values())
    return fit_on(build_result(
        method="svi", fitter="svi", model=model, module=module, guide=q, out=out, settings=config,
        n_data=n, fingerprint=fingerprint, init=init, extras=extras,
    ))


def _check_warm_start(warm_start: int, init: FitResult | None, steps: int) -> int:
    """``warm_start`` checked against the fit's ``steps`` and ``init``."""
    if isinstance(warm_start, bool) or not isinstance(warm_start, int) or warm_start < 0:
        raise ValueError(f"warm_start must be a non-negative int (MAP steps before SVI), got {warm_start!r}")
    if warm_start and init is not None:
        raise ValueError("warm_start starts a new fit from MAP steps; init gives the start already: pass one of them")
    if warm_start >= steps:
        raise ValueError(f"warm_start ({warm_start}) must be smaller than steps ({steps}): the MAP steps are part "
                         f"of the fit's steps, and at least one SVI step must remain")
    return warm_start


def _warm_start(model: GuidedModel, settings: OptimSettings, engine: Engine,
                data: BatchStream | tuple[torch.Tensor, torch.Tensor, str]) -> FitResult:
    """The MAP steps of ``fit_svi(warm_start=...)``, under [`map_model`][bayesguide.model.counterpart.map_model]."""
    surrogate = map_model(model)
    if isinstance(data, BatchStream):
        return map_stream_steps(surrogate, data, settings)
    Xt, yt, fingerprint = data
    return map_steps(surrogate, Xt, yt, settings, engine=engine, fingerprint=fingerprint)


def _load_values(model: GuidedModel, module: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy site values (e.g. the posterior mean) into ``module``'s parameters."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for site in model.sites:
            for name, value in site.unpack(values[site.name]).items():
                params[name].copy_(value)


def _fast_objective(
    model: GuidedModel, guide: Guide, module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """The negative ELBO at one draw, ``log q − (N/B) log-lik − log prior``, in torch.

    This is ``model.log_joint`` at the guide's draw, evaluated with ``module``'s own
    forward (buffers and train/eval mode as in `functional_forward`)
    on contiguous copies of the drawn weights: a weight sliced out of the ``(n, p)`` unit
    matrix is strided, and ``F.linear`` on it is up to ~1.6 times slower (measured for a
    10-unit output layer, forward and backward), which the copy more than pays for. The
    log prior is ``log_normaliser − penalty`` per site, as in the MAP objective, without
    the support check of ``log_prob`` ([`log_prior`][bayesguide.model.guided.GuidedModel.log_prior]): a
    non-finite draw gives a non-finite loss, which the loop reports as
    [`NonFiniteLossError`][bayesguide.infer.loop.NonFiniteLossError].

    With a hierarchical prior ([`GroupHorseshoe`][bayesguide.GroupHorseshoe]) the draw includes the
    latent scales ``z`` and the log prior is the joint ``log p(z) + log p(Θ | z)`` (their
    ``log q(z)`` is part of the guide's ``log_q``).
    """
    n = X.shape[0]
    device = next(guide.parameters()).device
    elbo = _neg_elbo(model, guide, module)

    def objective(idx: torch.Tensor | None) -> torch.Tensor:
        xb, yb = take_batch(X, y, idx, device)
        return elbo(xb, yb, None if idx is None else n / idx.shape[0])

    return objective


def _neg_elbo(
    model: GuidedModel, guide: Guide, module: torch.nn.Module
) -> Callable[[torch.Tensor, torch.Tensor, float | None], torch.Tensor]:
    """The negative ELBO at one draw on a batch already on the device, log-likelihood scaled by ``scale``."""
    sites = model.sites
    likelihood, dtype = model.likelihood, model.dtype
    fixed_noise = None if model.learns_noise else model.noise_tensor(None, dtype)
    model.log_prior(guide.mean_values(), dtype)  # builds the priors once, before the first step

    def objective(xb: torch.Tensor, yb: torch.Tensor, scale: float | None) -> torch.Tensor:
        values, log_q = guide.sample_values()
        weights = {
            name: tensor.contiguous()
            for site in sites
            for name, tensor in site.unpack(values[site.name]).items()
        }
        out = torch.func.functional_call(module, weights, (xb,))
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        loglik = likelihood.log_prob_sum(out, yb, noise)
        if scale is not None:
            loglik = loglik * scale
        return log_q - loglik - model.log_prior(values, dtype)

    return objective
