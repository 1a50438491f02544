"""Relevance-driven selective shrinkage and its iterative pruning loop (empirical Bayes).

Bonetta, Ribero & Cancelliere, "Regularization-based pruning of irrelevant weights in
deep neural architectures", arXiv 2204.04977 (2022; Applied Intelligence 2023), in the
loss-sensitivity family of LOBSTER (Tartaglione et al., "LOss-Based SensiTivity
rEgulaRization", 2020/2022): a weight-decay-like term shrinks only the parameters the
loss is insensitive to, relevant parameters get the plain gradient update, and an
iterative loop removes what fell below a threshold while a validation-loss tolerance
holds. Here both act on whole units (the weight group ``θ_j`` of unit ``j``: incoming
row and bias), so that what dies can be cut physically.

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
(:class:`bayesguide.GuidedNormal`, strength ``λ``): every weight of unit ``j`` is
``Normal(0, 1/√(2 λ g_j))``, i.e. precision ``2 λ g_j``, so the penalty is ``λ Σ_j g_j
‖θ_j‖₂²`` and its gradient ``2 λ g_j θ_j`` is the paper's selective weight decay (their
decay constant is ``2λ``). Relevant units (``g_j = 0``) have an improper flat prior: the
plain update. Every ``every`` steps the precisions are re-estimated from the data
(type-II / empirical Bayes, written into the prior in place with
:meth:`~bayesguide.priors.UnitGroupDistribution.set_rate`), so **the objective changes
during training**: the result is not the MAP of one fixed prior, but a fixed point of
the alternation "MAP step(s) under the current prior ↔ re-estimate the prior". The
fit's model holds the last estimate (``fit.model.coefficients``), which is what a
candidate cut from it carries.

Examples
--------
>>> import torch, bayesguide as bg
>>> from bayesguide.relevance import fit_relevance, relevance
>>> X = torch.randn(64, 3); y = X[:, :1] * 2.0
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> prior = bg.GuidedNormal(strength=1.0, guidance=relevance(every=5))
>>> model = bg.GuidedModel(net, prior, likelihood="gaussian", noise=0.5)
>>> fit = fit_relevance(model, X, y, steps=20, lr=0.01)
>>> fit.steps, fit.model.coefficients["0.units"].shape
(20, torch.Size([4]))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bayesguide._options import Option
from bayesguide.infer.map import fit_map
from bayesguide.infer.result import FitResult
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.priors import GuidedNormal, UnitNormal
from bayesguide.pruning.candidate import Candidate, build, setup
from bayesguide.pruning.path import removal_order
from bayesguide.pruning.scores import make_score

__all__ = [
    "Relevance",
    "Scale",
    "Sensitivity",
    "bisect_largest",
    "fit_relevance",
    "insensitivity",
    "relevance",
    "relevance_pruning",
    "validation_loss",
]


class Sensitivity(Option):
    """How a unit's loss sensitivity ``s_j`` is measured."""

    GRADIENT = "gradient"
    TAYLOR = "taylor"

    @property
    def description(self) -> str:
        return {
            "gradient": "s_j = ‖∂L/∂θ_j‖₂ (LOBSTER's |∂L/∂w| over the unit's group)",
            "taylor": "s_j = Σ |w ∂L/∂w| over the unit's group (first-order loss change)",
        }[self.value]


class Scale(Option):
    """What ``s_j`` is divided by in ``g_j = ReLU(1 − s_j / scale)``, per layer."""

    MAX = "max"
    QUANTILE = "quantile"
    MEAN = "mean"

    @property
    def description(self) -> str:
        return {
            "max": "largest s of the layer: the most sensitive unit gets g = 0",
            "quantile": "the q-quantile of s over the layer: units above it get g = 0",
            "mean": "mean s of the layer",
        }[self.value]


@dataclass(frozen=True)
class Relevance:
    """Settings of the relevance guidance; as a profile it gives the starting coefficients.

    ``profile(n) = initial · 1``: the coefficients a :class:`~bayesguide.GuidedModel`
    starts with. :func:`fit_relevance` replaces them by the estimate
    ``ReLU(1 − s / scale)`` before the first step and every ``every`` steps.
    """

    every: int = 10
    scale: Scale = Scale.MAX
    quantile: float = 0.9
    sensitivity: Sensitivity = Sensitivity.GRADIENT
    initial: float = 1.0

    def __call__(self, n_units: int) -> torch.Tensor:
        if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
            raise ValueError(f"a layer needs at least one unit, got n_units={n_units!r}")
        return torch.full((n_units,), self.initial, dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"relevance(every={self.every}, scale={self.scale.value!r}, "
                f"sensitivity={self.sensitivity.value!r})")


def relevance(
    every: int = 10,
    *,
    scale: str | Scale = "max",
    quantile: float = 0.9,
    sensitivity: str | Sensitivity = "gradient",
    initial: float = 1.0,
) -> Relevance:
    """Relevance-driven (empirical-Bayes) guidance of Bonetta et al., arXiv 2204.04977.

    ``g_j = ReLU(1 − s_j / scale)`` with ``s_j`` the unit's loss sensitivity,
    re-estimated every ``every`` steps of :func:`fit_relevance`; see the module
    docstring for the math and the Bayesian reading. Use it with
    :class:`~bayesguide.GuidedNormal` (guided L2 = the paper's selective weight decay).

    Parameters
    ----------
    every
        Steps between two estimates (>= 1).
    scale
        ``"max"``, ``"quantile"`` (the ``quantile`` of ``s`` over the layer) or ``"mean"``.
    quantile
        For ``scale="quantile"``, in ``(0, 1]``.
    sensitivity
        ``"gradient"`` (``‖∂L/∂θ_j‖₂``) or ``"taylor"`` (``Σ |w ∂L/∂w|``).
    initial
        Coefficient of every unit before the first estimate (only seen at construction).

    Examples
    --------
    >>> relevance(every=5)(3)
    tensor([1., 1., 1.], dtype=torch.float64)
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1 (steps between estimates), got {every!r}")
    if not (isinstance(quantile, (int, float)) and 0.0 < quantile <= 1.0):
        raise ValueError(f"quantile must lie in (0, 1], got {quantile!r}")
    if not (isinstance(initial, (int, float)) and math.isfinite(initial) and initial >= 0):
        raise ValueError(f"initial must be a finite number >= 0, got {initial!r}")
    return Relevance(
        every=every,
        scale=Scale.resolve(scale, "relevance scale"),
        quantile=float(quantile),
        sensitivity=Sensitivity.resolve(sensitivity, "relevance sensitivity"),
        initial=float(initial),
    )


def _data_loss(model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    noise = model.noise_tensor(None, X.dtype)
    return -model.likelihood.log_prob_sum(module(X), y, noise)


def insensitivity(
    model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor, settings: Relevance
) -> dict[str, torch.Tensor]:
    """``g_j = ReLU(1 − s_j / scale)`` of every prunable site of ``module`` (float64).

    ``X, y`` are prepared tensors (``model.prepare_data``); the sensitivity is computed
    on the summed data loss, in ``module``'s current train/eval mode.
    """
    params = dict(module.named_parameters())
    sites = model.prunable_sites
    wanted = [params[k] for s in sites for k in s.param_names]
    grads = torch.autograd.grad(_data_loss(model, module, X, y), wanted, allow_unused=True)
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


def _settings(model: GuidedModel, settings: Relevance | None) -> Relevance:
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")
    if not isinstance(model.prior, GuidedNormal):
        raise ValueError(
            f"relevance guidance re-estimates the precisions of a Gaussian prior: use "
            f"bg.GuidedNormal, not {type(model.prior).__name__}"
        )
    if model.learns_noise:
        raise ValueError("relevance guidance needs a fixed Gaussian noise: pass noise=σ to the GuidedModel")
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


def _own_model(model: GuidedModel, settings: Relevance) -> GuidedModel:
    """A fresh GuidedModel on the same network, so the caller's model is never changed."""
    assert isinstance(model.prior, GuidedNormal)
    prior = GuidedNormal(model.prior.strength, settings)
    plain = model.plain_prior
    return GuidedModel(model.net, prior, model.likelihood, noise=model.noise, plain_prior=plain)


def _update(model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor, s: Relevance) -> None:
    g = insensitivity(model, module, X, y, s)
    for site in model.prunable_sites:
        model.coefficients[site.name].copy_(g[site.name])
        dist = model.site_distribution(site, X.dtype)
        assert isinstance(dist, UnitNormal)
        dist.set_rate(model.prior.strength * g[site.name].to(X.dtype))


def _train(
    model: GuidedModel, X: torch.Tensor, y: torch.Tensor, s: Relevance, steps: int,
    fit: FitResult | None, after_chunk: Callable[[FitResult], bool] | None, fit_kwargs: dict[str, Any],
) -> FitResult:
    """Relevance training of ``model`` (already its own) for up to ``steps`` steps."""
    if fit is None:
        _update(model, model.net, X, y, s)
    done, block = 0, 0
    seed = fit_kwargs.get("seed")
    while done < steps:
        chunk = min(s.every, steps - done)
        kwargs = dict(fit_kwargs, seed=None if seed is None else seed + block)
        fit = fit_map(model, X, y, steps=chunk, init=fit, progress=False, **kwargs)
        block += 1
        done += chunk
        _update(model, fit.module, X, y, s)
        if after_chunk is not None and after_chunk(fit):
            break
    assert fit is not None
    return fit


def fit_relevance(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    *,
    steps: int = 2000,
    lr: float = 1e-3,
    relevance: Relevance | None = None,
    batch_size: int | None = None,
    seed: int | None = 0,
    engine: str = "fast",
) -> FitResult:
    """MAP training with the prior's precisions re-estimated every ``every`` steps.

    The estimate ``g = ReLU(1 − s / scale)`` (:func:`insensitivity`) is made on the
    full training set before the first step and after every ``every`` Adam steps, and
    written into the prior in place; the Adam state carries over between estimates
    (each block is ``fit_map(..., init=previous)``). The caller's ``model`` is not
    changed: the fit runs on a fresh :class:`~bayesguide.GuidedModel` on the same
    network, ``fit.model``, whose coefficients are the last estimate.

    Parameters
    ----------
    model
        A model with a :class:`~bayesguide.GuidedNormal` prior and fixed noise.
    relevance
        The settings; default: the model's guidance, which must be :func:`relevance`.
    batch_size
        Minibatch size of the Adam steps (``None``: full batch), as in
        :func:`bayesguide.fit_map`; the sensitivities are always estimated on the full
        training set. Block ``k`` of ``every`` steps uses minibatch seed ``seed + k``, so
        the blocks do not repeat one another's minibatch order.
    steps, lr, seed, engine
        As in :func:`bayesguide.fit_map`.
    """
    s = _settings(model, relevance)
    own = _own_model(model, s)
    Xt, yt = own.prepare_data(X, y)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return _train(own, Xt, yt, s, steps, None, None,
                  {"lr": lr, "seed": seed, "engine": engine, "batch_size": batch_size})


def validation_loss(model: GuidedModel, module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood per example of ``module`` (eval mode) on ``X, y``."""
    was = module.training
    module.eval()
    with torch.no_grad():
        value = float(_data_loss(model, module, X, y)) / X.shape[0]
    module.train(was)
    return value


def bisect_largest(n: int, ok: Callable[[int], bool]) -> int:
    """Largest ``k`` in ``[0, n]`` with ``ok(k)``, by bisection, taking ``ok(0)`` as true.

    Exact when ``ok`` is monotone (true up to some ``k*``, false after); otherwise it
    returns some ``k`` with ``ok(k)`` and, if ``k < n``, ``not ok(k + 1)``.

    Examples
    --------
    >>> bisect_largest(10, lambda k: k <= 6)
    6
    """
    lo, hi = 0, n  # invariant: ok(lo); answer in [lo, hi]
    if n > 0 and ok(n):
        return n
    hi = n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _compose(parent: Candidate | None, cand: Candidate) -> Candidate:
    """``cand`` with kept indices and original sizes of the very first network."""
    if parent is None:
        return cand
    kept = {k: tuple(parent.kept[k][i] for i in v) for k, v in cand.kept.items()}
    return dataclasses.replace(
        cand, kept=kept, original_widths=parent.original_widths,
        original_params=parent.original_params, original_flops=parent.original_flops,
    )


def _largest_cut(
    fit: FitResult, Xv: torch.Tensor, yv: torch.Tensor, tolerance: float,
    input_shape: Sequence[int] | None, rnd: int,
) -> tuple[int, Candidate | None]:
    """Bisect the number ``k`` of lowest-norm units removed; the cut candidate if ``k > 0``."""
    structure, positions, _ = setup(fit, None, None, input_shape)
    v0 = validation_loss(fit.model, fit.module, Xv, yv)
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in make_score("norm")(fit).items()}
    order = removal_order(scores, min_width=1)

    def masks_for(k: int) -> dict[str, np.ndarray]:
        masks = {name: np.ones(len(v), dtype=bool) for name, v in scores.items()}
        for layer, j in order[:k]:
            masks[layer][j] = False
        return masks

    def ok(k: int) -> bool:
        cand = build(fit, structure, masks_for(k), "probe", positions)
        return validation_loss(cand.model, cand.module, Xv, yv) <= v0 + tolerance

    k = bisect_largest(len(order), ok)
    if k == 0:
        return 0, None
    layer, j = order[k - 1]
    thr = float(scores[layer][j])
    rule = (f"relevance round {rnd}: {k} units with norm <= {thr:.4g} removed "
            f"(validation loss within {tolerance:g} of {v0:.4g})")
    return k, build(fit, structure, masks_for(k), rule, positions)


def relevance_pruning(
    model: GuidedModel,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike,
    y_val: ArrayLike,
    *,
    tolerance: float = 0.02,
    relevance: Relevance | None = None,
    max_steps: int = 2000,
    patience: int = 5,
    min_delta: float = 1e-3,
    max_rounds: int = 20,
    lr: float = 1e-3,
    seed: int | None = 0,
    input_shape: Sequence[int] | None = None,
) -> list[Candidate]:
    """The iterative pruning loop of Bonetta et al. (arXiv 2204.04977), per unit.

    Repeat: train with relevance guidance (:func:`fit_relevance`) until the validation
    loss ``V`` (mean NLL per example) plateaus — no relative improvement above
    ``min_delta`` for ``patience`` estimates, or ``max_steps`` steps; rank the units by
    their norm ``‖θ_j‖₂/√p`` (what the selective decay shrinks) and remove the ``k``
    lowest, with ``k`` the largest for which the cut network's validation loss stays
    within ``V + tolerance`` (nats per example) (found by bisection, :func:`bisect_largest`; every
    layer keeps at least one unit); continue training the cut network. Stop when
    nothing can be removed, or after ``max_rounds`` rounds.

    Returns
    -------
    list[Candidate]
        Element 0: the first trained network, nothing removed. Element ``i >= 1``: the
        network right after the ``i``-th cut (``module``), cut from ``fit`` (the
        network trained before it), with ``tuned`` the continued training of the cut
        network (the next element is cut from it). ``kept`` and ``original_*`` refer
        to the very first network. The final network is ``[-1].tuned.module``.

    Raises
    ------
    ValueError
        For a negative ``tolerance`` and bad settings.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0 (nats per example), got {tolerance!r}")
    for name, v in (("patience", patience), ("max_steps", max_steps), ("max_rounds", max_rounds)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    s = _settings(model, relevance)
    current = _own_model(model, s)
    Xt, yt = current.prepare_data(X, y)
    Xv, yv = current.prepare_data(X_val, y_val)
    kwargs: dict[str, Any] = {"lr": lr, "seed": seed}

    def train(m: GuidedModel) -> FitResult:
        best, since = math.inf, 0

        def plateau(fit: FitResult) -> bool:
            nonlocal best, since
            v = validation_loss(m, fit.module, Xv, yv)
            if v < best - min_delta * abs(best) or math.isinf(best):
                best, since = v, 0
                return False
            since += 1
            return since >= patience

        return _train(m, Xt, yt, s, max_steps, None, plateau, kwargs)

    fit = train(current)
    structure, positions, _ = setup(fit, None, None, input_shape)
    first = build(fit, structure, {b.layer.name: np.ones(b.n_units, bool) for b in structure.blocks},
                  "relevance round 0: trained, nothing removed", positions)
    out = [first]
    parent = first
    for rnd in range(1, max_rounds + 1):
        k, cand = _largest_cut(fit, Xv, yv, tolerance, input_shape, rnd)
        if k == 0 or cand is None:
            break
        cand = _compose(parent, cand)
        tuned = train(_own_model(cand.model, s))
        cand = dataclasses.replace(cand, tuned=tuned)
        out.append(cand)
        parent, fit = cand, tuned
    return out
