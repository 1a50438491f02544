"""``fit_map``: maximum a posteriori training, i.e. guided regularization.

The MAP objective is the negative log joint of :class:`~bayesguide.GuidedModel`,

.. math::

    L(θ) = -\\frac{N}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, θ)
           + \\sum_{\\text{sites}} \\text{penalty}(Θ_s) - \\sum_{\\text{sites}} \\log c_s,

"summed NLL + guided L1 / L2 / group penalty + a constant" — exactly what Pyro's
``Trace_ELBO`` computes for the model and a point-mass guide (``AutoDelta``).

Two engines compute it. ``"fast"`` (default) evaluates the network's own forward and
the penalties directly in torch, with the normalising constants added as one number;
``"pyro"`` runs ``Trace_ELBO().differentiable_loss`` on the Pyro model and the
:class:`~bayesguide.infer.guides.DeltaGuide`. The test suite checks that both give the
same loss and gradients; ``benchmarks/map_overhead.py`` measures the fast engine
against a hand-written training loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from pyro.infer import Trace_ELBO

from bayesguide._options import Option
from bayesguide.infer.guides import DeltaGuide, Guide
from bayesguide.infer.loop import LoopSettings, Schedule, optimize
from bayesguide.infer.result import FitResult, build_result, data_fingerprint
from bayesguide.model import ArrayLike, GuidedModel

__all__ = ["Engine", "fit_map"]


class Engine(Option):
    """How the objective is evaluated."""

    #: the log joint written directly in torch (proven equal to Pyro's by the tests)
    FAST = "fast"
    #: ``pyro.infer.Trace_ELBO`` on the Pyro model and guide
    PYRO = "pyro"

    @property
    def description(self) -> str:
        return {"fast": "lean torch objective, same value as Pyro's", "pyro": "Pyro's Trace_ELBO"}[self.value]


def _check_model(model: GuidedModel) -> None:
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")


def _check_init(init: FitResult | None, model: GuidedModel) -> None:
    if init is not None:
        if not isinstance(init, FitResult):
            raise TypeError(f"init must be a FitResult, got {type(init).__name__}")
        if init.model is not model:
            raise ValueError("init is a fit of another GuidedModel; resume with the model it was fitted with")


def make_diagnose(
    model: GuidedModel, guide: Guide, module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], str]:
    """A function that names what made the loss non-finite (parameters or which term)."""

    def diagnose(idx: torch.Tensor | None) -> str:
        problems: list[str] = []
        with torch.no_grad():
            values = guide.mean_values()
            for name, v in values.items():
                if not torch.isfinite(v).all():
                    problems.append(f"site {name!r} has non-finite parameters")
            for site in model.sites:
                prior = model.site_distribution(site, X.dtype, values)
                lp = prior.log_normaliser - prior.penalty(values[site.name])
                if not torch.isfinite(lp):
                    problems.append(f"prior term of site {site.name!r} is {float(lp)}")
            noise = guide.noise()
            if noise is not None and not torch.isfinite(noise):
                problems.append("site 'noise' is non-finite")
            xb, yb = (X, y) if idx is None else (X[idx], y[idx])
            ll, _ = model.log_joint(model.chain(module), values, xb, yb, noise=noise)
            if not torch.isfinite(ll):
                problems.append(f"likelihood term 'obs' is {float(ll)}")
        return "; ".join(problems) or "no single term is non-finite (overflow in the sum; lower lr)"

    return diagnose


def fit_map(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    *,
    steps: int = 2000,
    lr: float = 1e-3,
    batch_size: int | None = None,
    schedule: str | Schedule = "constant",
    patience: int | None = None,
    min_delta: float = 1e-4,
    seed: int | None = 0,
    progress: bool = True,
    record_every: int | None = None,
    engine: str | Engine = "fast",
    init: FitResult | None = None,
    callback: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit the MAP weights of ``model``: training under the guided penalty.

    Parameters
    ----------
    model
        The :class:`~bayesguide.GuidedModel`; its network is copied, never changed.
    X, y
        Training data (arrays or tensors), validated before any training.
    steps, lr
        Adam steps and learning rate.
    batch_size
        Minibatch size, ``None`` for full batch. Minibatch likelihoods are scaled by
        ``N / B``, so the objective is an unbiased estimate of the full one.
    schedule
        ``"constant"`` or ``"cosine"``.
    patience, min_delta
        Stop when the smoothed loss has not improved by a relative ``min_delta`` for
        ``patience`` steps (``None``: run all steps).
    seed
        Seeds minibatch order and dropout for this fit only (the global RNG is
        restored); ``None`` uses the global RNG.
    progress
        Show a progress bar; ``False`` silences it.
    record_every
        Record unit norms every this many steps (default ``steps // 100``).
    engine
        ``"fast"`` (default) or ``"pyro"``; both minimise the same objective.
    init
        A previous :class:`FitResult` of the same model to continue from (also
        ``fit.resume(X, y, steps)``).
    callback
        Called after every optimizer step with the absolute step number (counting the
        steps of ``init`` when resuming); see :func:`bayesguide.infer.loop.optimize`.

    Returns
    -------
    FitResult

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
    _check_model(model)
    settings = LoopSettings(
        steps=steps, lr=lr, batch_size=batch_size, schedule=Schedule.resolve(schedule, "schedule"),
        patience=patience, min_delta=min_delta, seed=seed, progress=progress,
        record_every=record_every, description="MAP",
    )
    engine = Engine.resolve(engine, "engine")
    _check_init(init, model)
    Xt, yt = model.prepare_data(X, y)
    n = Xt.shape[0]

    if init is not None and init.method == "map":
        guide = copy.deepcopy(init.guide)
        assert isinstance(guide, DeltaGuide)
        module, state, offset = guide.module, init.optimizer_state, init.steps
    else:
        module = copy.deepcopy(init.module if init is not None else model.net)
        guide = DeltaGuide(model, module)
        state, offset = None, 0
    module.train()

    if engine is Engine.FAST:
        objective = _fast_objective(model, guide, Xt, yt)
    else:
        objective = pyro_objective(model, guide, module, Xt, yt)
    out = optimize(
        objective,
        list(guide.parameters()),
        n,
        settings,
        record=lambda: model.unit_norms(module),
        diagnose=make_diagnose(model, guide, module, Xt, yt),
        optimizer_state=state,
        step_offset=offset,
        callback=callback,
    )
    config = settings.as_dict() | {"engine": engine.value, "record_every": record_every}
    return build_result(
        method="map", model=model, module=module, guide=guide, out=out, settings=config,
        n_data=n, fingerprint=data_fingerprint(Xt, yt), init=init,
    )


def _fast_objective(
    model: GuidedModel, guide: DeltaGuide, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """The MAP objective (the negative log joint) written directly in torch.

    The penalties are evaluated on each layer's weight and bias tensors
    (``UnitGroupDistribution.penalty_parts``) instead of on the packed ``(n, p)`` unit
    matrix: packing copies the weights into a new matrix every step, and those extra
    allocations make glibc hand memory back to the OS and fault it in again
    (``benchmarks/map_overhead.py`` counts the page faults). Both give the same value.
    """
    from bayesguide.network import Site
    from bayesguide.priors import UnitGroupDistribution

    module = guide.module
    params = dict(module.named_parameters())
    terms = [(site, model.site_distribution(site, X.dtype)) for site in model.sites]
    # rates and normalisers are read at every evaluation, not copied, so that in-place
    # updates (UnitGroupDistribution.set_rate, empirical-Bayes guidance) are seen

    def const() -> float:
        return -sum(float(d.log_normaliser) for _, d in terms)

    likelihood, n = model.likelihood, X.shape[0]
    fixed_noise = model.noise_tensor(None, X.dtype) if not model.learns_noise else None

    def site_penalty(site: Site, prior: UnitGroupDistribution) -> Callable[[], torch.Tensor]:
        tensors, units = [params[k] for k in site.param_names], site.n_units
        return lambda: prior.penalty_parts([t.reshape(units, -1) for t in tensors])

    penalties = [site_penalty(site, prior) for site, prior in terms]

    def objective(idx: torch.Tensor | None) -> torch.Tensor:
        xb, yb = (X, y) if idx is None else (X[idx], y[idx])
        noise = fixed_noise if fixed_noise is not None else guide.noise()
        loglik = likelihood.log_prob_sum(module(xb), yb, noise)
        if idx is not None:
            loglik = loglik * (n / idx.shape[0])
        loss = -loglik
        for penalty in penalties:
            loss = loss + penalty()
        return loss + const()

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
