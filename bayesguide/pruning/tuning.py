"""Fine-tuning a candidate: MAP steps re-fitting a pruned network from its pruned weights.

A network cut from a larger fit is not at a mode of its own posterior, and the Laplace
evidence is an expansion around one; so candidates are usually re-fitted for a few
hundred MAP steps first. [`tuning_model`][bayesguide.pruning.tuning.tuning_model] is the model a candidate is fine-tuned
under — its own prior when that prior is a density over the weights
(``UnitPrior.has_density``), otherwise the Gaussian prior their Laplace evidence uses:

* for a hierarchical prior fitted by SVI (the group horseshoe), the Gaussian the fit
  itself put on the weights, [`conditional_model`][bayesguide.pruning.tuning.conditional_model]:
  unit ``j``'s rate is ``E_q[rate_j(z)]``, the conditional rate averaged over the
  posterior of the latent scales (``E_q[1 / (2 τ² λ_j²)]`` for the horseshoe);
* otherwise (L0 gates) ``GuidedNormal(λ, uniform())``.

[`fine_tune_fit`][bayesguide.pruning.tuning.fine_tune_fit] runs the steps;
[`bayesguide.pruning.with_tuning`][] attaches the result to the candidate.
"""

from __future__ import annotations

import dataclasses

import torch
from typing_extensions import Unpack

from bayesguide.guidance import Profile, custom, uniform
from bayesguide.infer import FitResult, OptimSettings, fit_map
from bayesguide.infer.settings import OptimOptions
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.posterior import Fitted
from bayesguide.priors import GuidedNormal, HierarchicalUnitPrior
from bayesguide.pruning.candidate import Candidate

__all__ = ["DEFAULTS", "conditional_model", "fine_tune_fit", "tuning_model"]

DEFAULTS = OptimSettings(steps=200, lr=1e-3, progress=False)
"""The defaults of fine-tuning: 200 steps at lr 1e-3, seed 0, no progress bar."""


def conditional_model(fitted: Fitted) -> GuidedModel | None:
    """The Gaussian a hierarchical prior's SVI fit puts on the weights, as a model around ``fitted.module``.

    Under the posterior ``q(z)`` of the latent scales, the ELBO's prior term in unit
    ``j``'s weights is ``E_q[log p(θ_j | z)] = const − E_q[rate_j(z)] ‖θ_j‖²``: a
    Gaussian with precision ``2 E_q[rate_j(z)]``
    ([`HierarchicalUnitPrior.expected_rates`][bayesguide.priors.HierarchicalUnitPrior.expected_rates]).
    The result is a ``GuidedNormal`` with those rates (its strength the prior's,
    its guidance the rates divided by it) and the fit's plain prior on the other layers.
    For a candidate the rates are the kept units' of the fit it was cut from, so they
    stay the same after fine-tuning. ``None`` when ``fitted``'s prior is not
    hierarchical, its guide holds no latent factors (not an SVI fit), or the prior gives
    no closed form.

    Scoring a horseshoe's candidates under this Gaussian instead of a uniform one is
    what lets the evidence charge a unit the shrinkage the horseshoe put on it: on
    MNIST-1D the uniform Gaussian (precision ``2λ`` on every weight) priced the wide
    candidates thousands of nats below the narrow ones, and the pick was 1.2–7.3 test
    points below the best on its path (docs/benchmarks.md).
    """
    model = fitted.model
    source, kept = (fitted.fit, fitted.kept) if isinstance(fitted, Candidate) else (fitted, None)
    factors = getattr(source.guide, "latent_factors", None)
    if not isinstance(model.prior, HierarchicalUnitPrior) or factors is None:
        return None
    strength = model.prior.strength
    guidance: dict[str | int, Profile] = {}
    with torch.no_grad():
        for site in source.model.prunable_sites:
            moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for lat in source.model.latent_sites:
                if lat.site == site.name:
                    loc, scale = factors.loc_scale(lat.name)
                    moments[lat.local] = (loc.to(torch.float64), scale.to(torch.float64))
            rates = model.prior.expected_rates(moments)
            if rates is None:
                return None
            name = site.layer.name
            if kept is not None:
                rates = rates[list(kept[name])]
            guidance[name] = custom(rates / strength)
    return GuidedModel(fitted.module, GuidedNormal(strength, guidance), model.likelihood, noise=model.noise,
                       plain_prior=model.plain_prior)


def tuning_model(cand: Fitted) -> GuidedModel:
    """The model a candidate is fine-tuned under by MAP.

    The candidate's own, except for priors without a MAP fit: for a hierarchical prior
    fitted by SVI (the group horseshoe) its [`conditional_model`][bayesguide.pruning.tuning.conditional_model],
    for the others (L0 gates) ``GuidedNormal(strength, uniform())``: the Gaussian prior
    their Laplace evidence uses.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> fit = bg.fit_l0(bg.GuidedModel(net, bg.HardConcreteGates(2.0), "gaussian", noise=0.5), X, y,
    ...                 steps=3, progress=False)
    >>> cand = bg.prune(fit, keep=2)
    >>> tuning_model(cand).prior
    GuidedNormal(strength=2.0, guidance=uniform())
    >>> fine_tune_fit(cand, X, y, steps=3).model is cand.model  # re-fitted, still carrying its own prior
    True
    """
    model = cand.model
    if model.prior.has_density:
        return model
    conditional = conditional_model(cand)
    if conditional is not None:
        return conditional
    return GuidedModel(cand.module, GuidedNormal(model.prior.strength, uniform()), model.likelihood,
                       noise=model.noise, plain_prior=model.plain_prior)


def fine_tune_fit(cand: Fitted, X: ArrayLike, y: ArrayLike, optim: OptimSettings | None = None,
                  **options: Unpack[OptimOptions]) -> FitResult:
    """MAP steps re-fitting ``cand`` from its pruned weights, under `tuning_model`.

    ``optim`` / ``options`` are the [`OptimSettings`][bayesguide.OptimSettings] of the steps
    (default `DEFAULTS`: 200 steps, lr 1e-3, seed 0, no progress bar), including
    ``device``: where the steps run (default: where ``cand.module`` is; the result comes
    back on the CPU, see [`bayesguide.fit_map`][]). The result
    carries the candidate's own model (so the evidence still knows which prior the
    candidate came from and which Gaussian it is scored under).
    """
    settings = OptimSettings.resolve(optim, DEFAULTS, "fine_tune_fit", dict(options))
    model = tuning_model(cand)
    if model.net is not cand.module:  # fine-tuned before: go on from the current weights
        model = model.with_network(cand.module)
    tuned = fit_map(model, X, y, settings)
    return dataclasses.replace(tuned, model=cand.model)
