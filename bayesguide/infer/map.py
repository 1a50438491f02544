"""``fit_map``: maximum a posteriori training, i.e. guided regularization.

The MAP objective is the negative log joint of :class:`~bayesguide.GuidedModel`,

.. math::

    L(θ) = -\\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, θ)
           + \\sum_{\\text{sites}} \\text{penalty}(Θ_s) - \\sum_{\\text{sites}} \\log c_s,

"summed NLL + guided L1 / L2 / group penalty + a constant" — exactly what Pyro's
``Trace_ELBO`` computes for the model and a point-mass guide (``AutoDelta``).

Two engines compute it. ``"fast"`` (default) evaluates the network's own forward and
the penalties directly in torch (:meth:`~bayesguide.GuidedModel.neg_log_prior_blocks`);
``"pyro"`` runs ``Trace_ELBO().differentiable_loss`` on the Pyro model and the
:class:`~bayesguide.DeltaGuide`. The test suite checks that both give the same loss and
gradients; ``benchmarks/map_overhead.py`` measures the fast engine against a
hand-written training loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import Trace_ELBO
from typing_extensions import Unpack

from bayesguide._options import Option
from bayesguide.infer.common import check_continuation, check_init, check_model, make_diagnose
from bayesguide.infer.loop import optimize
from bayesguide.infer.result import FitResult, build_result, fit_on
from bayesguide.infer.settings import OptimOptions, OptimSettings
from bayesguide.model import ArrayLike, GuidedModel, data_fingerprint
from bayesguide.model.device import place_data, resolve_device, take_batch
from bayesguide.posterior import DeltaGuide, Guide

__all__ = ["Engine", "fit_map", "map_steps", "pyro_objective"]

#: the defaults of ``fit_map``
DEFAULTS = OptimSettings(steps=2000, lr=1e-3)


class Engine(Option):
    """How the objective is evaluated."""

    #: the log joint written directly in torch (proven equal to Pyro's by the tests)
    FAST = "fast", "lean torch objective, same value as Pyro's"
    #: ``pyro.infer.Trace_ELBO`` on the Pyro model and guide
    PYRO = "pyro", "Pyro's Trace_ELBO"


def fit_map(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    optim: OptimSettings | None = None,
    *,
    engine: str | Engine = "fast",
    init: FitResult | None = None,
    callback: Callable[[int], None] | None = None,
    **options: Unpack[OptimOptions],
) -> FitResult:
    """Fit the MAP weights of ``model``: training under the guided penalty.

    Parameters
    ----------
    model
        The :class:`~bayesguide.GuidedModel`; its network is copied, never changed.
    X, y
        Training data (arrays or tensors), validated before any training.
    optim
        The optimisation settings (:class:`~bayesguide.OptimSettings`); default
        ``steps=2000``, ``lr=1e-3``, full batch, constant learning rate, ``seed=0``.
    engine
        ``"fast"`` (default) or ``"pyro"``; both minimise the same objective.
    init
        A previous MAP fit of the same model to continue (optimiser state and histories
        carry over; ``bg.resume_fit(fit, X, y, steps)`` does this for any fitter), or
        another fit of it (an SVI fit's posterior mean) to warm-start from.
    callback
        Called after every optimizer step with the absolute step number (counting the
        steps of ``init`` when continuing); see :func:`bayesguide.infer.loop.optimize`.
    **options
        Fields of :class:`~bayesguide.OptimSettings` overriding ``optim``: ``steps``,
        ``lr``, ``batch_size``, ``schedule``, ``patience``, ``min_delta``, ``seed``,
        ``progress``, ``record_every``, ``device``.
    device
        (keyword, an :class:`~bayesguide.OptimSettings` field) Where the steps run:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`; default ``None``:
        where ``model.net``'s parameters are. A copy of the network is moved there; the
        data stay where they are (the full batch is moved once, a minibatch at every
        step); an unknown or unavailable device is a ``ValueError`` before any step.

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
    check_init(init, model)
    Xt, yt = model.prepare_data(X, y)
    return fit_on(map_steps(model, Xt, yt, settings, engine=engine, init=init, callback=callback))


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
) -> FitResult:
    """MAP steps on prepared data: the body of :func:`fit_map`, shared with ``fit_relevance``.

    ``init`` is continued (guide, optimiser state, histories) when it was made by the
    same ``fitter``; otherwise its network is a warm start. The steps run on
    ``settings.device`` (default: ``model.net``'s), and the result stays there (the
    public fitters bring it back to the CPU, :func:`~bayesguide.infer.result.fit_on`).
    ``fingerprint`` is the data's, when the caller has it already.
    """
    engine = Engine.resolve(engine, "engine")
    device = resolve_device(settings.device, model.net)
    fingerprint = data_fingerprint(Xt, yt) if fingerprint is None else fingerprint
    check_continuation(init, fitter, fingerprint)
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

    X, y = place_data(Xt, yt, device, settings.full_batch(Xt.shape[0]))
    if engine is Engine.FAST:
        objective = _fast_objective(model, guide, X, y)
    else:
        objective = pyro_objective(model, guide, module, X, y)
    out = optimize(
        objective, list(guide.parameters()), Xt.shape[0], settings, label="MAP",
        record=lambda: model.unit_norms(module), diagnose=make_diagnose(model, guide, module, X, y),
        optimizer_state=state, step_offset=offset, callback=callback, device=device,
    )
    return build_result(
        method="map", fitter=fitter, model=model, module=module, guide=guide, out=out,
        settings=settings.as_dict() | {"engine": engine.value}, n_data=Xt.shape[0],
        fingerprint=fingerprint, init=init, extras=extras,
    )


def _fast_objective(
    model: GuidedModel, guide: DeltaGuide, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """The MAP objective (the negative log joint) written directly in torch.

    The penalties are evaluated on each layer's weight and bias tensors
    (:meth:`~bayesguide.GuidedModel.neg_log_prior_blocks`) instead of on the packed
    ``(n, p)`` unit matrix: packing copies the weights into a new matrix every step, and
    those extra allocations make glibc hand memory back to the OS and fault it in again
    (``benchmarks/map_overhead.py`` counts the page faults). Both give the same value.

    ``X, y`` are placed by :func:`~bayesguide.model.device.place_data`: on the
    network's device for the full batch, else wherever they are, each minibatch moved
    by :func:`~bayesguide.model.device.take_batch`.
    """
    module = guide.module
    params = dict(module.named_parameters())
    device = next(iter(params.values())).device
    # the priors are read at every evaluation, not copied, so that in-place updates
    # (UnitGroupDistribution.set_rate, empirical-Bayes guidance) are seen
    model.neg_log_prior_blocks(params)  # builds the priors once, before the first step
    likelihood, n = model.likelihood, X.shape[0]
    fixed_noise = model.noise_tensor(None, X.dtype) if not model.learns_noise else None

    def objective(idx: torch.Tensor | None) -> torch.Tensor:
        xb, yb = take_batch(X, y, idx, device)
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        loglik = likelihood.log_prob_sum(module(xb), yb, noise)
        if idx is not None:
            loglik = loglik * (n / idx.shape[0])
        return model.neg_log_prior_blocks(params) - loglik

    return objective


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
