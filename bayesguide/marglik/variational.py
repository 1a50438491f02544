"""Variational estimates of the evidence: the ELBO and the importance-weighted bound.

With draws ``θ_s ~ q`` from an SVI guide and log-weights
``log w_s = log p(D | θ_s) + log p(θ_s) − log q(θ_s)`` (full data, no minibatch
scaling),

$$
\\mathrm{ELBO} = \\frac1S \\sum_{s=1}^S \\log w_s
    \\;\\le\\; \\mathcal L_S = \\log \\frac1S \\sum_{s=1}^S w_s
    \\;\\le\\; \\log p(\\mathcal D \\mid M)
\\quad\\text{(in expectation over the draws)}.
$$

The importance-weighted bound ``L_S`` (Burda, Grosse & Salakhutdinov, "Importance
weighted autoencoders", ICLR 2016) increases with ``S`` towards the log evidence, and
equals it for every ``S`` when ``q`` is the exact posterior (all weights equal). Its
diagnostics: the effective sample size ``(Σ w)² / Σ w²`` (``S`` for a perfect
proposal) and the Pareto shape ``k`` of the upper tail of the weights (Vehtari et al.,
"Pareto smoothed importance sampling", JMLR 2024): ``k < 0.5`` the estimate is
reliable, ``k > 0.7`` it is not — the guide is too narrow for the posterior.

A Gaussian noise ``σ`` learned by the fit is a point estimate, not integrated over:
the estimates are then of ``log p(D | M, σ)``. The priors must be proper (a guidance
coefficient of 0 is refused).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from bayesguide._arviz import arviz
from bayesguide.marglik.result import Evidence
from bayesguide.model.batches import BatchStream
from bayesguide.model.device import DeviceLike, resolve_device
from bayesguide.posterior import Fitted, guide_draws, log_likelihood_draws, log_prior_draws

__all__ = ["elbo_estimate", "iw_estimate", "log_weights", "weight_diagnostics"]

_MIN_DRAWS_FOR_K = 10
"""Fewer draws than this give no Pareto-k estimate (``nan``)."""


def log_weights(src: Fitted, Xt: torch.Tensor | BatchStream, yt: torch.Tensor | None, particles: int, seed: int,
                chunk_size: int | None = None, device: DeviceLike = None) -> torch.Tensor:
    """``log p(D | θ_s) + log p(θ_s) − log q(θ_s)`` for ``particles`` guide draws (float64, on the CPU).

    The draws are made on the CPU (the same draws on every device); the network runs on
    ``device`` (default: where ``src.module`` is). ``Xt`` may be a
    [`BatchStream`][bayesguide.model.batches.BatchStream] (``yt`` ``None``): ``log p(D | θ_s)``
    is then summed over its batches in one pass, holding ``S × batch`` numbers at a time.
    """
    values, log_q = guide_draws(src.guide, src.model, particles, torch.Generator().manual_seed(seed))
    batches = [(Xt, yt)] if isinstance(Xt, torch.Tensor) else Xt
    loglik = torch.zeros(particles, dtype=torch.float64)
    for xb, yb in batches:
        assert yb is not None
        loglik += log_likelihood_draws(src.model, src.module, values, xb, yb, src.noise, chunk_size=chunk_size,
                                       device=device).sum(1)
    return loglik + log_prior_draws(src.model, values) - log_q


def weight_diagnostics(lw: np.ndarray) -> tuple[float, float]:
    """Effective sample size and Pareto k of the weights ``exp(lw)``."""
    w = np.exp(lw - lw.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    if lw.size < _MIN_DRAWS_FOR_K:
        return ess, math.nan
    if lw.max() - lw.min() < 1e-9:
        return ess, 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        _, k = arviz().psislw(lw.copy())
    return ess, float(k)


def _estimate(src: Fitted, Xt: torch.Tensor | BatchStream, yt: torch.Tensor | None, particles: int, seed: int,
              chunk_size: int | None, method: str, device: DeviceLike) -> Evidence:
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be a positive int, got {particles!r}")
    target = resolve_device(device, src.module)
    if not src.variational:
        raise ValueError(
            f"method={method!r} needs a variational posterior, but this {src.label} has a "
            f"point-mass (MAP) guide: fit one with bg.fit_svi (init= the MAP fit is a good "
            f"warm start), or use method='laplace'"
        )
    lw = log_weights(src, Xt, yt, particles, seed, chunk_size, target).numpy()
    if not np.isfinite(lw).all():
        raise ValueError("non-finite log-weights: the guide puts mass where the model's density is 0 or NaN")
    S = lw.size
    elbo = float(lw.mean())
    ess, k = weight_diagnostics(lw)
    if method == "elbo":
        estimate = elbo
        se = float(lw.std(ddof=1) / math.sqrt(S)) if S > 1 else math.nan
    else:
        top = lw.max()
        w = np.exp(lw - top)
        estimate = float(top + math.log(w.mean()))
        # delta method: sd(log mean w) ≈ sd(w) / (mean(w) √S)
        se = float(w.std(ddof=1) / (w.mean() * math.sqrt(S))) if S > 1 else math.nan
    return Evidence(
        log_evidence=estimate, method=method, n_params=sum(s.n_units * s.group_size for s in src.model.sites),
        noise=src.noise if src.model.learns_noise else None, elbo=elbo, std_error=se, particles=S, ess=ess,
        pareto_k=k,
    )


def elbo_estimate(fitted: Fitted, X: torch.Tensor | BatchStream, y: torch.Tensor | None, *, particles: int = 200,
                  seed: int = 0, chunk_size: int | None = None, device: DeviceLike = None) -> Evidence:
    """The ``"elbo"`` estimator: the ELBO of an SVI posterior, a lower bound on the log evidence.

    $$
    \\mathrm{ELBO} = \\mathbb E_q[\\log p(\\mathcal D, θ) - \\log q(θ)]
        = \\log p(\\mathcal D \\mid M) - \\mathrm{KL}(q \\,\\|\\, p(θ \\mid \\mathcal D)),
    $$

    estimated with ``particles`` draws on the full (prepared) training data ``X, y`` —
    or on a [`BatchStream`][bayesguide.model.batches.BatchStream] ``X`` (``y`` ``None``),
    whose batches' log-likelihoods are summed per draw in one pass (the same sums).
    ``seed`` seeds a private generator (the draws are made on the CPU); ``device`` is
    where the network evaluates them (default: where ``fitted.module`` is), in blocks
    of draws and examples moved there.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(30, 2); y = X @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(30)
    >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)), bg.GuidedNormal(0.5),
    ...                        likelihood="gaussian", noise=0.1)
    >>> post = bg.fit_svi(model, X, y, steps=200, lr=0.05, progress=False)
    >>> ev = bg.evidence(post, X, y, method="elbo", particles=50)
    >>> ev.method, ev.particles
    ('elbo', 50)
    """
    return _estimate(fitted, X, y, particles, seed, chunk_size, "elbo", device)


def iw_estimate(fitted: Fitted, X: torch.Tensor | BatchStream, y: torch.Tensor | None, *, particles: int = 1000,
                seed: int = 0, chunk_size: int | None = None, device: DeviceLike = None) -> Evidence:
    """The ``"iwae"`` estimator: ``log (1/S) Σ_s p(D, θ_s) / q(θ_s)`` (Burda et al. 2016).

    Tighter than the ELBO and increasing in ``S``; exact when the guide is the
    posterior. Check ``ess`` and ``pareto_k`` before trusting it: with ``k > 0.7`` the
    estimate is dominated by a few draws and is, in practice, still far below the log
    evidence. ``device`` as for [`elbo_estimate`][bayesguide.marglik.variational.elbo_estimate].

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(30, 2); y = X @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(30)
    >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(2, 1)), bg.GuidedNormal(0.5),
    ...                        likelihood="gaussian", noise=0.1)
    >>> post = bg.fit_svi(model, X, y, steps=200, lr=0.05, progress=False)
    >>> ev = bg.evidence(post, X, y, method="iwae", particles=200)
    >>> bool(ev.log_evidence >= ev.elbo)
    True
    """
    return _estimate(fitted, X, y, particles, seed, chunk_size, "iwae", device)
