"""Laplace evidence with generalized Gauss–Newton curvature.

For an architecture ``M`` with MAP weights ``θ*`` (``P`` of them) and a Gaussian prior
``N(0, A⁻¹)`` with diagonal precision ``A = c · D`` (``D`` from the guidance, ``c`` a
global scale),

$$
\\log p(\\mathcal D \\mid M) \\approx \\log p(\\mathcal D \\mid θ^*) + \\log p(θ^* \\mid M)
    + \\tfrac P2 \\log 2π - \\tfrac12 \\log\\det H, \\qquad H = G + A,
$$

with ``G = Σ_i J_iᵀ Λ_i J_i`` the GGN of the negative log-likelihood (``J_i`` the
Jacobian of the network output for example ``i``; ``Λ_i`` the Hessian of the NLL in the
output: ``diag(p) − ppᵀ`` categorical, ``I/σ²`` Gaussian, ``diag(p(1−p))``
Bernoulli). Writing ``e_k`` for the eigenvalues of ``D^{-1/2} G₁ D^{-1/2}`` (``G₁``
the GGN at ``σ = 1``) the expression collapses to

$$
\\log p(\\mathcal D \\mid M) = \\log p(\\mathcal D \\mid θ^*, σ) - \\tfrac c2 θ^{*⊤} D θ^*
    - \\tfrac12 \\sum_k \\log\\big(1 + e_k / (σ^2 c)\\big),
$$

which is what type-II maximum likelihood (``optimize_prior=True``) maximises over
``c`` (and ``σ`` for a Gaussian likelihood with learned noise), at fixed ``θ*``
(MacKay 1992). ``hessian="diag"`` keeps only the diagonal of ``G``
(``e_k = G_kk / D_k``); ``hessian="kron"`` replaces each layer's block of ``G`` by its
Kronecker factorisation ``G_l ⊗ A_l`` (KFAC; ``BatchNorm`` layers keep their diagonal —
though the estimator [`laplace_estimate`][bayesguide.marglik.laplace.laplace_estimate] folds them away first)
and drops the blocks between layers, for which the ``e_k`` are products of the factors'
eigenvalues ([`bayesguide.curvature.kron`][], where the normalisation is documented).
The three are curvature backends behind one interface ([`bayesguide.curvature`][]).

The Gaussian prior ``D`` is the model's own (``GuidedNormal``), its family's Gaussian
counterpart, or the uniform ``GuidedNormal(λ, uniform())`` where neither exists; which
one is ``Evidence.prior_used`` ([`bayesguide.posterior.gaussian_prior`][] documents
the rule). Substituted priors only fix the *shape* of the prior precision; use
``optimize_prior=True`` (the default of ``bg.compare``) so that type-II maximum
likelihood sets its scale ``c`` from the data.

References: MacKay, "A practical Bayesian framework for backpropagation networks"
(1992); Immer et al., "Scalable marginal likelihood estimation for model selection in
deep learning" (ICML 2021).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import scipy.optimize
import torch
from torch import nn

from bayesguide.curvature import HessianStructure, flat_weights, make_curvature, outputs
from bayesguide.curvature.base import check_dense_memory
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik.result import Evidence
from bayesguide.model import GuidedModel, fold_batchnorm
from bayesguide.model.batches import BatchStream
from bayesguide.model.device import DeviceLike, module_device, module_on, resolve_device
from bayesguide.posterior import EvidencePrior, Fitted, gaussian_prior

__all__ = ["laplace_estimate", "laplace_evidence"]


def _check_finite_weights(model: GuidedModel, module: nn.Module) -> None:
    """Refuse NaN / inf weights, naming the first site and unit that hold one.

    Without this check they surface later as a failed Cholesky factorisation.
    """
    params = dict(module.named_parameters())
    with torch.no_grad():
        for site in model.sites:
            bad = ~torch.isfinite(site.pack(params))
            if bad.any():
                unit = int(bad.any(dim=-1).nonzero()[0])
                raise ValueError(
                    f"the weights of site {site.name!r} are not finite (NaN or inf, first in unit {unit}): "
                    f"the Laplace evidence needs finite weights; if they come from a fit, it diverged: "
                    f"refit with a smaller lr or a stronger prior"
                )


def _stream_fit_terms(model: GuidedModel, module: nn.Module, stream: BatchStream,
                      gaussian: bool) -> tuple[float, int, float]:
    """``(rss, n_obs, loglik)`` at the mode, summed over one pass of ``stream`` (in float64).

    Gaussian: the residual sum of squares and the number of target values (the
    log-likelihood is a function of them and ``σ``); otherwise the log-likelihood.
    """
    device = module_device(module)
    rss, n_obs, loglik = 0.0, 0, 0.0
    with torch.no_grad():
        for xb, yb in stream:
            out, yd = module(xb.to(device)), yb.to(device)
            if gaussian:
                rss += float((yd - out).to(torch.float64).pow(2).sum())
                n_obs += yd.numel()
            else:
                loglik += float(model.likelihood.log_prob_sum(out, yd, None))
    return rss, n_obs, loglik


def laplace_estimate(
    fitted: Fitted, X: torch.Tensor | BatchStream, y: torch.Tensor | None, *,
    hessian: str | HessianStructure = "full", optimize_prior: bool = False, max_params: int = 20_000,
    progress: bool = True, device: DeviceLike = None, memory_budget: float | None = None,
) -> Evidence:
    """The ``"laplace"`` estimator: `laplace_evidence` at a fit's or candidate's weights.

    ``X, y`` are the prepared training data (checked by the caller), or ``X`` a
    [`BatchStream`][bayesguide.model.batches.BatchStream] and ``y`` ``None`` for data read
    from a loader. ``memory_budget``: bytes the dense ``hessian="full"`` matrices may take
    (default: half the available memory,
    [`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]). ``progress`` shows a
    bar once the curvature has taken more than two seconds. A network with ``BatchNorm``
    is scored with each one folded into the layer before it
    ([`bayesguide.model.fold_batchnorm`][]: the same function in eval mode, without
    normalisation); ``Evidence.batchnorm_folded`` counts them. ``device``: where the
    curvature's network passes run (default: where ``fitted.module`` is, the CPU for
    bayesguide's own fits and candidates), see [`laplace_evidence`][bayesguide.marglik.laplace.laplace_evidence].
    """
    target = resolve_device(device, fitted.module)
    # folded where the fit's network is, then our own copy is moved in place
    model, module, folded = fold_batchnorm(fitted.model, copy.deepcopy(fitted.module))
    module.to(target)
    ev = laplace_evidence(model, module, X, y, hessian=hessian, optimize_prior=optimize_prior,
                          noise=fitted.noise, max_params=max_params, progress=progress, device=target,
                          memory_budget=memory_budget)
    return dataclasses.replace(ev, batchnorm_folded=folded) if folded else ev


def laplace_evidence(
    model: GuidedModel,
    module: nn.Module,
    X: torch.Tensor | BatchStream,
    y: torch.Tensor | None,
    *,
    hessian: str | HessianStructure = "full",
    optimize_prior: bool = False,
    noise: float | None = None,
    max_params: int = 20_000,
    progress: bool = False,
    device: DeviceLike = None,
    memory_budget: float | None = None,
) -> Evidence:
    """Laplace log evidence of ``model`` with weights ``module`` (see the module docstring).

    ``X``, ``y`` must already be prepared (``model.prepare_data``). For data that do not
    fit in memory ``X`` is a [`BatchStream`][bayesguide.model.batches.BatchStream] (a
    validated loader) and ``y`` is ``None``: the log-likelihood at the mode is summed over
    the batches in one pass, and ``"kron"``, ``"diag"``, ``"ekfac"`` (and ``"full"``, within
    the memory budget) accumulate the curvature over them in another; the result equals
    that of the same data as tensors up to the order of the float64 sums.
    ``memory_budget`` bounds the bytes of the dense ``"full"`` matrices (default: half the
    available memory), checked before any pass over the data
    ([`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]). ``noise`` is the
    Gaussian ``σ`` when the model learns it (the fit's value); with
    ``optimize_prior=True`` it is re-estimated jointly with the prior scale.

    ``device`` is where the network passes of the curvature run (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``; default: where ``module``'s parameters are): ``module`` is moved there
    (a copy, when it is elsewhere), ``X`` stays where it is and is moved chunk by chunk.
    The curvature and every number of the result come back on the CPU; the type-II
    optimisation and the log determinant run there.

    Raises
    ------
    ValueError
        If a weight is NaN or inf (the site and unit named), or if ``hessian="full"``
        would exceed the memory budget (``P`` and the bytes named), before any curvature
        is computed.
    """
    structure = HessianStructure.resolve(hessian, "hessian structure")
    module = module_on(module, resolve_device(device, module)).eval()
    _check_finite_weights(model, module)
    theta64 = flat_weights(model, module).to(torch.float64).cpu()
    P = theta64.numel()
    if structure is HessianStructure.FULL:
        check_dense_memory(P, memory_budget)
    d, prior_used = gaussian_prior(model)
    quad = float((d * theta64.pow(2)).sum())

    gaussian = model.likelihood is Likelihood.GAUSSIAN
    sigma0 = model.noise if model.noise is not None else noise
    if gaussian and sigma0 is None:
        raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    if isinstance(X, BatchStream):
        rss, n_obs, loglik_fixed = _stream_fit_terms(model, module, X, gaussian)
    else:
        assert y is not None
        out = outputs(module, X)
        if gaussian:
            rss = float((y - out).pow(2).sum())
            n_obs = y.numel()
        else:
            loglik_fixed = float(model.likelihood.log_prob_sum(out, y, None))

    curvature = make_curvature(structure, model, module, X, max_params=max_params, progress=progress,
                               memory_budget=memory_budget)
    # e: eigenvalues of D^{-1/2} G₁ D^{-1/2}, needed by type-II ML (and cheap for diag / kron)
    e = curvature.scaled_eigenvalues(d) if optimize_prior or curvature.cheap_eigenvalues else None
    if e is not None and float(e.min()) < -1e-8 * max(float(e.abs().max()), 1.0):
        raise ValueError(
            f"the GGN is not positive semi-definite (smallest scaled eigenvalue {float(e.min()):.3g}); "
            f"the curvature is numerically broken — check the data and the weights for extreme values"
        )
    e_np = np.clip(e.numpy(), 0.0, None) if e is not None else np.zeros(0)

    def loglik(sigma: float) -> float:
        if not gaussian:
            return loglik_fixed
        return -0.5 * rss / sigma**2 - n_obs * math.log(sigma) - 0.5 * n_obs * math.log(2 * math.pi)

    def objective(log_c: float, log_sigma: float) -> float:
        c, sigma = math.exp(log_c), math.exp(log_sigma)
        return loglik(sigma) - 0.5 * c * quad - 0.5 * float(np.log1p(e_np / (sigma**2 * c)).sum())

    log_c, log_sigma = 0.0, 0.0
    if gaussian:
        assert sigma0 is not None
        log_sigma = math.log(sigma0)
    if optimize_prior:
        learn_sigma = gaussian and model.noise is None
        x0 = np.array([log_c, log_sigma]) if learn_sigma else np.array([log_c])

        def negative(x: np.ndarray) -> float:
            return -objective(float(x[0]), float(x[1]) if learn_sigma else log_sigma)

        res = scipy.optimize.minimize(negative, x0, method="L-BFGS-B", bounds=[(-30.0, 30.0)] * len(x0))
        log_c = float(res.x[0])
        if learn_sigma:
            log_sigma = float(res.x[1])

    c, sigma = math.exp(log_c), math.exp(log_sigma)
    # "full" answers from the eigenvalues above when it has them (same d): no second factorisation
    logdet = curvature.logdet(d, c, sigma**2 if gaussian else 1.0)
    prec = c * d
    log_prior = float(0.5 * torch.log(prec / (2 * math.pi)).sum()) - 0.5 * c * quad
    occam = 0.5 * P * math.log(2 * math.pi) - 0.5 * logdet
    ll = loglik(sigma)
    return Evidence(
        log_evidence=ll + log_prior + occam, method="laplace", n_params=P, noise=sigma if gaussian else None,
        log_likelihood=ll, log_prior=log_prior, occam=occam, hessian=structure.value, prior_scale=c,
        prior_used=prior_used.value, substituted=prior_used is not EvidencePrior.OWN,
    )
