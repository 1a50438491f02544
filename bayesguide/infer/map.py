"""``fit_map``: maximum a posteriori training, i.e. guided regularization.

The MAP objective is the negative log joint of [`GuidedModel`][bayesguide.GuidedModel],

$$
L(θ) = -\\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, θ)
       + \\sum_{\\text{sites}} \\text{penalty}(Θ_s) - \\sum_{\\text{sites}} \\log c_s,
$$

"summed NLL + guided L1 / L2 / group penalty + a constant" — exactly what Pyro's
``Trace_ELBO`` computes for the model and a point-mass guide (``AutoDelta``).

Two engines compute it. ``"fast"`` (default) evaluates the network's own forward and
the penalties directly in torch ([`neg_log_prior_blocks`][bayesguide.model.guided.GuidedModel.neg_log_prior_blocks]);
``"pyro"`` runs ``Trace_ELBO().differentiable_loss`` on the Pyro model and the
[`DeltaGuide`][bayesguide.DeltaGuide]. The test suite checks that both give the same loss and
gradients; ``benchmarks/map_overhead.py`` measures the fast engine against a
hand-written training loop.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import Trace_ELBO
from torch.utils.data import DataLoader
from typing_extensions import Unpack

from bayesguide._options import Option
from bayesguide.infer.common import check_continuation, check_init, check_model, make_diagnose
from bayesguide.infer.compile import check_compile, compile_extras, compiled
from bayesguide.infer.loop import Objective, optimize
from bayesguide.infer.result import FitResult, build_result, fit_on
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint
from bayesguide.model.batches import Batches, BatchStream, as_batches
from bayesguide.model.device import place_data, resolve_device, take_batch
from bayesguide.posterior import DeltaGuide, Guide

__all__ = ["Engine", "check_stream", "fit_map", "map_steps", "map_stream_steps", "pyro_objective"]

DEFAULTS = OptimSettings(steps=2000, lr=1e-3)
"""The defaults of ``fit_map``."""


class Engine(Option):
    """How the objective is evaluated."""

    FAST = "fast", "lean torch objective, same value as Pyro's"
    """The log joint written directly in torch (proven equal to Pyro's by the tests)."""
    PYRO = "pyro", "Pyro's Trace_ELBO"
    """``pyro.infer.Trace_ELBO`` on the Pyro model and guide."""


def fit_map(
    model: GuidedModel,
    X: ArrayLike | Batches | DataLoader[Any],
    y: ArrayLike | None = None,
    optim: OptimSettings | None = None,
    *,
    engine: str | Engine = "fast",
    compile: bool = False,
    init: FitResult | None = None,
    callback: Callable[[int], None] | None = None,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """Fit the MAP weights of ``model``: training under the guided penalty.

    Parameters
    ----------
    model
        The [`GuidedModel`][bayesguide.GuidedModel]; its network is copied, never changed.
    X
        Training inputs (an array or tensor), validated before any training; or, for
        data that do not fit in memory, a data loader of ``(X, y)`` batches: a
        ``torch.utils.data.DataLoader`` over a sized dataset, or
        [`Batches`][bayesguide.model.batches.Batches] (any re-iterable of batches with its
        number of examples ``n``). Each step then reads the loader's next batch (a new pass
        starts when one ends) and scales its log-likelihood by ``n / B``, so the objective
        is the same as on tensors; the batch size is the loader's (``batch_size`` is
        refused), the first batch is checked before any step and every batch as it is
        read (see [`bayesguide.model.batches`][]).
    y
        Training targets, validated with ``X`` before any training; omitted when ``X`` is
        a data loader.
    optim
        The optimisation settings ([`OptimSettings`][bayesguide.OptimSettings]); default
        ``steps=2000``, ``lr=1e-3``, full batch, constant learning rate, ``seed=0``.
    engine
        ``"fast"`` (default) or ``"pyro"``; both minimise the same objective. A data
        loader needs ``"fast"``.
    compile
        Compile the objective (the network's forward, the log-likelihood and the
        penalties, and their backward) with ``torch.compile``; the ``"fast"`` engine only.
        The same objective, so the same losses to rounding; it pays a compilation of a few
        seconds to a minute before and during the first step, reported in
        ``fit.extras["compile"]`` ([`CompileReport`][bayesguide.infer.compile.CompileReport]),
        and is worth it only when the run is long enough for the faster steps to repay it:
        ``benchmarks/map_overhead.py --compile`` measures both. Off by default.
        Machines where ``torch.compile`` cannot work (no C++ compiler for the CPU) get a
        ``RuntimeError`` naming the reason before any step.
    init
        A previous MAP fit of the same model to continue (optimiser state and histories
        carry over; ``bg.resume_fit(fit, X, y, steps)`` does this for any fitter), or
        another fit of it (an SVI fit's posterior mean) to warm-start from.
    callback
        Called after every optimizer step with the absolute step number (counting the
        steps of ``init`` when continuing); see [`bayesguide.infer.loop.optimize`][].
    **options
        Fields of [`OptimSettings`][bayesguide.OptimSettings] overriding ``optim``: ``steps``,
        ``lr``, ``batch_size``, ``schedule``, ``patience``, ``min_delta``, ``seed``,
        ``progress``, ``record_every``, ``device``. ``device`` is where the steps run:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a `torch.device`; default ``None``: where
        ``model.net``'s parameters are. A copy of the network is moved there; the data
        stay where they are (the full batch is moved once, a minibatch at every step);
        an unknown or unavailable device is a ``ValueError`` before any step.

    Returns
    -------
    FitResult
        ``method="map"``, ``fitter="map"``; on the CPU (network, guide, optimiser state)
        whatever ``device`` the steps ran on.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> model = bg.GuidedModel(net, bg.GuidedLaplace(strength=0.1))
    >>> fit = bg.fit_map(model, X, y, steps=50, progress=False)
    >>> fit.unit_norms["0"].shape
    (50, 8)
    """
    check_model(model)
    settings = OptimSettings.resolve(optim, DEFAULTS, "fit_map", dict(options))
    engine = Engine.resolve(engine, "engine")
    check_compile(compile, engine.value, resolve_device(settings.device, model.net))
    check_init(init, model)
    source = as_batches(X, y)
    if source is not None:
        stream = check_stream(model, source, settings, engine, "fit_map")
        return fit_on(map_stream_steps(model, stream, settings, init=init, callback=callback, compile=compile))
    Xt, yt = model.prepare_data(X, y)
    return fit_on(map_steps(model, Xt, yt, settings, engine=engine, init=init, callback=callback,
                            compile=compile))


def check_stream(model: GuidedModel, source: Batches, settings: OptimSettings, engine: Engine,
                 fitter: str) -> BatchStream:
    """``source`` checked for a fit (its first batch read), or a ``ValueError`` naming what a loader fit cannot do."""
    if engine is not Engine.FAST:
        raise ValueError(
            f"{fitter} reads a data loader only with engine='fast': engine={engine.value!r} subsamples in-memory "
            f"tensors by index"
        )
    if settings.batch_size is not None:
        raise ValueError(
            f"batch_size={settings.batch_size} cannot be used with a data loader: the batches are the loader's "
            f"(set batch_size on the DataLoader)"
        )
    return BatchStream(source, model.net, model.likelihood, model.dtype)


def map_steps(
    model: GuidedModel,
    Xt: torch.Tensor,
    yt: torch.Tensor,
    settings: OptimSettings,
    *,
    engine: str | Engine = "fast",
    init: FitResult | None = None,
    callback: Callable[[int], None] | None = None,
    fitter: str = "map",
    extras: dict[str, Any] | None = None,
    fingerprint: str | None = None,
    compile: bool = False,
) -> FitResult:
    """MAP steps on prepared data: the body of [`fit_map`][bayesguide.fit_map], shared with ``fit_relevance``.

    ``init`` is continued (guide, optimiser state, histories) when it was made by the
    same ``fitter``; otherwise its network is a warm start. The steps run on
    ``settings.device`` (default: ``model.net``'s), and the result stays there (the
    public fitters bring it back to the CPU, [`fit_on`][bayesguide.infer.result.fit_on]).
    ``fingerprint`` is the data's, when the caller has it already. ``compile`` compiles
    the objective (see [`fit_map`][bayesguide.fit_map]).
    """
    engine = Engine.resolve(engine, "engine")
    device = resolve_device(settings.device, model.net)
    check_compile(compile, engine.value, device)
    fingerprint = data_fingerprint(Xt, yt) if fingerprint is None else fingerprint
    check_continuation(init, fitter, fingerprint)
    guide, module, state, offset = _start(model, init, fitter, device)

    X, y = place_data(Xt, yt, device, settings.full_batch(Xt.shape[0]))
    objective: Objective
    setup = 0.0
    if engine is Engine.FAST:
        start = time.perf_counter()
        objective = _fast_objective_terms(model, guide, X, y, compile=compile)
        setup = time.perf_counter() - start
    else:
        objective = _with_terms(model, module, pyro_objective(model, guide, module, X, y))
    out = optimize(
        objective, list(guide.parameters()), Xt.shape[0], settings, label="MAP",
        record=model.unit_norm_recorder(module), diagnose=make_diagnose(model, guide, module, X, y),
        optimizer_state=state, step_offset=offset, callback=callback, device=device,
    )
    return build_result(
        method="map", fitter=fitter, model=model, module=module, guide=guide, out=out,
        settings=settings.as_dict() | {"engine": engine.value} | ({"compile": True} if compile else {}),
        n_data=Xt.shape[0], fingerprint=fingerprint, init=init, extras=compile_extras(extras, compile, out, setup),
    )


def map_stream_steps(
    model: GuidedModel,
    stream: BatchStream,
    settings: OptimSettings,
    *,
    init: FitResult | None = None,
    callback: Callable[[int], None] | None = None,
    fitter: str = "map",
    compile: bool = False,
) -> FitResult:
    """MAP steps on batches read from a loader: [`map_steps`][bayesguide.infer.map.map_steps] for a `BatchStream`.

    Each step reads the next batch (moved to the device) and scales its log-likelihood
    by ``n / B``; the fit records ``n_data = stream.n`` and the loader's fingerprint.
    ``init`` is continued when it was made by the same ``fitter`` (the blocks of a
    ``fit_marglik`` or ``fit_relevance`` fit), as in `map_steps`.
    """
    device = resolve_device(settings.device, model.net)
    check_continuation(init, fitter, stream.fingerprint)
    guide, module, state, offset = _start(model, init, fitter, device)
    start = time.perf_counter()
    terms = _terms(model, guide, compile=compile)
    setup = time.perf_counter() - start
    n = stream.n

    def batch_on(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

    def objective(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xb, yb = batch_on(batch)
        return terms(xb, yb, None if xb.shape[0] == n else n / xb.shape[0])

    def diagnose(batch: tuple[torch.Tensor, torch.Tensor]) -> str:
        return make_diagnose(model, guide, module, *batch_on(batch))(None)

    out = optimize(
        objective, list(guide.parameters()), n, settings, label="MAP",
        record=model.unit_norm_recorder(module), diagnose=diagnose,
        optimizer_state=state, step_offset=offset, callback=callback, device=device, batches=stream.__iter__,
    )
    return build_result(
        method="map", fitter=fitter, model=model, module=module, guide=guide, out=out,
        settings=settings.as_dict() | {"engine": Engine.FAST.value, "data": "loader"}
        | ({"compile": True} if compile else {}),
        n_data=n, fingerprint=stream.fingerprint, init=init, extras=compile_extras(None, compile, out, setup),
    )


def _start(model: GuidedModel, init: FitResult | None, fitter: str,
           device: torch.device) -> tuple[DeltaGuide, torch.nn.Module, dict[str, Any] | None, int]:
    """The guide, network, optimiser state and step offset a MAP fit starts from (on ``device``, in train mode)."""
    if init is not None and init.fitter == fitter:
        guide = copy.deepcopy(init.guide)
        assert isinstance(guide, DeltaGuide)
        module, state, offset = guide.module, init.optimizer_state, init.steps
    else:
        module = copy.deepcopy(init.module if init is not None else model.net)
        guide = DeltaGuide(model, module)
        state, offset = None, 0
    guide.to(device)  # and its module, the network
    module.train()
    return guide, module, state, offset


def _fast_objective(
    model: GuidedModel, guide: DeltaGuide, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """The MAP objective (the negative log joint) written directly in torch: the loss only."""
    objective = _fast_objective_terms(model, guide, X, y)
    return lambda idx: objective(idx)[0]


def _fast_objective_terms(
    model: GuidedModel, guide: DeltaGuide, X: torch.Tensor, y: torch.Tensor, *, compile: bool = False
) -> Callable[[torch.Tensor | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The MAP objective (the negative log joint) written directly in torch, with its terms.

    It returns the loss and its two terms, ``{"nll": data term, "penalty": regulariser}``
    (the loss is their sum minus the prior's log normaliser), which the loop records.

    The penalties are evaluated on each layer's weight and bias tensors
    ([`neg_log_prior_blocks`][bayesguide.model.guided.GuidedModel.neg_log_prior_blocks]) instead of on the packed
    ``(n, p)`` unit matrix: packing copies the weights into a new matrix every step, and
    those extra allocations make glibc hand memory back to the OS and fault it in again
    (``benchmarks/map_overhead.py`` counts the page faults). Both give the same value.

    ``X, y`` are placed by [`place_data`][bayesguide.model.device.place_data]: on the
    network's device for the full batch, else wherever they are, each minibatch moved
    by [`take_batch`][bayesguide.model.device.take_batch].
    """
    device = next(guide.module.parameters()).device
    terms = _terms(model, guide, compile=compile)
    n = X.shape[0]

    def objective(idx: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xb, yb = take_batch(X, y, idx, device)
        return terms(xb, yb, None if idx is None else n / idx.shape[0])

    return objective


def _terms(
    model: GuidedModel, guide: DeltaGuide, *, compile: bool = False
) -> Callable[[torch.Tensor, torch.Tensor, float | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The MAP loss and its terms on a batch already on the device, its log-likelihood scaled by ``scale``.

    ``scale`` is ``N / B`` for a minibatch, ``None`` for the full batch (no product: the
    full-batch loss is bit for bit the unscaled one). ``compile``: the function compiled
    by ``torch.compile`` (forward, likelihood and penalties in one graph).
    """
    module = guide.module
    # set up once; the priors are read at every evaluation, not copied, so that in-place
    # updates (UnitGroupDistribution.set_rate, empirical-Bayes guidance) are seen
    prior_terms = model.prior_terms_function(dict(module.named_parameters()))
    likelihood = model.likelihood
    fixed_noise = model.noise_tensor(None, model.dtype) if not model.learns_noise else None

    def terms(xb: torch.Tensor, yb: torch.Tensor,
              scale: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        nll = likelihood.nll_sum(module(xb), yb, noise)
        if scale is not None:
            nll = nll * scale
        penalty, log_norm = prior_terms()
        return penalty - log_norm + nll, {"nll": nll, "penalty": penalty}

    return compiled(terms) if compile else terms


def _with_terms(
    model: GuidedModel, module: torch.nn.Module, objective: Callable[[torch.Tensor | None], torch.Tensor]
) -> Callable[[torch.Tensor | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``objective`` (a MAP loss) with its terms: the penalty at the current weights, the rest is the NLL."""
    prior_terms = model.prior_terms_function(dict(module.named_parameters()))

    def with_terms(idx: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = objective(idx)
        with torch.no_grad():
            penalty, log_norm = prior_terms()
            nll = loss.detach() - (penalty - log_norm)
        return loss, {"nll": nll, "penalty": penalty}

    return with_terms


def pyro_objective(
    model: GuidedModel, guide: Guide, module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """``Trace_ELBO`` loss of ``model`` and ``guide`` on a batch (the ``"pyro"`` engine)."""
    elbo = Trace_ELBO()

    def objective(idx: torch.Tensor | None) -> torch.Tensor:
        loss = elbo.differentiable_loss(model.model, guide, X, y, subsample=idx, module=module)
        assert isinstance(loss, torch.Tensor)
        return loss

    return objective
