"""The conditional marginal likelihood (CLML): how well an architecture, trained on part of
the data, predicts the rest — a selection criterion beside the evidence.

Lotfi, Izmailov, Benton, Goldblum & Wilson, "Bayesian model selection, the marginal
likelihood, and generalization" (ICML 2022): the evidence ``log p(D | M) = Σ_i log p(d_i
| d_{<i}, M)`` also charges a model for how badly it predicts the *first* examples, with
little data — which a flexible model that generalises well pays dearly for. Conditioning
on the first ``m`` examples drops those terms:

$$
\\mathrm{CLML}(M) = \\log p(\\mathcal D_{>m} \\mid \\mathcal D_{\\le m}, M)
  = \\log \\int p(\\mathcal D_{>m} \\mid θ)\\, p(θ \\mid \\mathcal D_{\\le m}, M)\\, dθ .
$$

Here ([`clml_estimate`][bayesguide.marglik.conditional.clml_estimate]): the examples are shuffled once (``seed``) and
split at
``m = round(fraction · N)``; the architecture is re-fitted on ``D_{≤m}`` by ``steps``
MAP steps from its current weights (under the model its fine-tuning uses); the Laplace
posterior of ``D_{≤m}`` is formed there (prior scale and a learned ``σ`` by type-II
maximum likelihood on ``D_{≤m}`` when ``optimize_prior``); and the integral is the
Monte Carlo average over ``draws`` posterior draws pushed through the network
*linearised* at the mode (the GLM predictive, as for PSIS-LOO):

$$
\\widehat{\\mathrm{CLML}} = \\log \\frac1S \\sum_s \\exp\\Big(\\sum_{i > m} \\log p(y_i \\mid x_i, θ_s)\\Big),
\\qquad θ_s \\sim \\mathcal N(θ^*_{\\le m}, H_{\\le m}^{-1}),
$$

with the effective sample size and Pareto k of the weights (``k > 0.7``: the draws
cannot represent the joint predictive of that many held-out points; the estimate is
then biased low). For Bayesian linear regression the posterior and the linearisation
are exact, so the estimate converges to the closed form (tested). The value is on
another scale than the evidence (it scores ``N − m`` examples), so compare candidates
with one criterion at a time: ``[select] evidence = "clml"`` or
``bg.compare(..., evidence="clml")``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch

from bayesguide.infer import fit_map
from bayesguide.marglik.laplace import laplace_evidence
from bayesguide.marglik.result import Evidence
from bayesguide.marglik.variational import weight_diagnostics
from bayesguide.model.batches import Batches, BatchStream
from bayesguide.model.device import DeviceLike, resolve_device
from bayesguide.posterior import Fitted, laplace_posterior, log_likelihood_draws
from bayesguide.pruning.tuning import tuning_model

__all__ = ["clml_estimate", "clml_split"]


def clml_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices ``(conditioned, predicted)`` of a CLML split of ``n`` examples.

    Examples
    --------
    >>> a, b = clml_split(10, 0.8, 0)
    >>> len(a), len(b), sorted(a.tolist() + b.tolist()) == list(range(10))
    (8, 2, True)
    """
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction must lie in (0, 1) (the share of the data conditioned on), got {fraction!r}")
    if n < 2:
        raise ValueError(f"the conditional marginal likelihood needs at least 2 examples, got {n}")
    m = min(max(round(fraction * n), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:m], perm[m:]


class _Part:
    """The examples of a stream whose position (in one pass) is marked in ``keep``: a re-iterable of batches."""

    def __init__(self, stream: BatchStream, keep: torch.Tensor) -> None:
        self.stream, self.keep = stream, keep

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0
        for xb, yb in self.stream:
            mask = self.keep[start : start + xb.shape[0]].to(xb.device)
            start += xb.shape[0]
            if mask.any():
                yield xb[mask], yb[mask]


def _split_stream(stream: BatchStream, net: torch.nn.Module, fraction: float,
                  seed: int) -> tuple[BatchStream, BatchStream]:
    """The conditioned and the predicted examples of a stream (each in the stream's order), split by `clml_split`."""
    first, rest = clml_split(stream.n, fraction, seed)
    parts = []
    for idx in (first, rest):
        keep = torch.zeros(stream.n, dtype=torch.bool)
        keep[idx] = True
        parts.append(BatchStream(Batches(_Part(stream, keep), n=idx.numel()), net,
                                 stream.likelihood, stream.dtype))
    return parts[0], parts[1]


def clml_estimate(
    fitted: Fitted, X: torch.Tensor | BatchStream, y: torch.Tensor | None, *, fraction: float = 0.8, steps: int = 300,
    lr: float = 1e-3, draws: int = 1000, hessian: str = "full", optimize_prior: bool = True, seed: int = 0,
    device: DeviceLike = None,
) -> Evidence:
    """The ``"clml"`` estimator (see the module docstring) on prepared training data.

    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream] (``y`` ``None``):
    the split is then by position in a pass (the same ``clml_split`` of ``n``); the
    re-fit reads the conditioned examples of each batch as a loader fit does
    ([`bayesguide.fit_map`][]: one batch a step, scaled by ``m / B``), the Laplace
    curvature is summed over them, and the predictive log-likelihoods of the others are
    summed per draw, batch by batch. A loader of one batch gives the estimate of the
    tensors up to the order of the sums, when ``steps=0``; with ``steps > 0`` the
    re-fit sees the conditioned examples in the loader's order instead of the split's.

    Parameters
    ----------
    fitted
        A fit or a candidate; its weights start the re-fit on ``D_{≤m}``.
    fraction
        ``m / N``, the share conditioned on (in (0, 1)).
    steps
        MAP steps re-fitting on ``D_{≤m}`` (0: use the weights as they are).
    lr
        The learning rate of those steps.
    draws
        Posterior draws ``S``.
    hessian
        ``"full"`` or ``"diag"`` (``"kron"`` — chosen by ``hessian="auto"`` for large
        networks — uses ``"diag"``: the Laplace posterior has no KFAC sampler).
    optimize_prior
        Type-II maximum likelihood of the prior scale (and a learned ``σ``) on ``D_{≤m}``.
    seed
        Seeds the split and the draws.
    device
        Where the re-fit, the curvature and the predictive run (default: where
        ``fitted.module`` is); the draws are made on the CPU.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise ValueError(f"draws must be an int >= 2, got {draws!r}")
    target = resolve_device(device, fitted.module)
    Xf: torch.Tensor | BatchStream
    Xr: torch.Tensor | BatchStream
    yf: torch.Tensor | None
    yr: torch.Tensor | None
    if isinstance(X, BatchStream):
        Xf, Xr = _split_stream(X, fitted.module, fraction, seed)
        yf = yr = None
    else:
        assert y is not None
        first, rest = clml_split(X.shape[0], fraction, seed)
        Xf, yf, Xr, yr = X[first], y[first], X[rest], y[rest]
    model = tuning_model(fitted)
    module = copy.deepcopy(fitted.module)
    noise = fitted.noise
    if steps:
        fit = fit_map(model.with_network(module), Xf, yf, steps=steps, lr=lr, seed=seed, progress=False,
                      device=target)
        module, noise = fit.module, fit.noise
    structure = "diag" if hessian == "kron" else hessian
    scale = 1.0
    if optimize_prior:
        ev = laplace_evidence(model, module, Xf, yf, hessian=structure, optimize_prior=True, noise=noise,
                              device=target)
        scale = float(ev.prior_scale) if ev.prior_scale is not None else 1.0
        noise = ev.noise if model.learns_noise else noise
    post = laplace_posterior(model, module, Xf, yf, hessian=structure, prior_scale=scale, noise=noise,
                             device=target)
    flat = post.sample(draws, torch.Generator().manual_seed(seed))
    lw_t = torch.zeros(draws, dtype=torch.float64)
    for xb, yb in [(Xr, yr)] if isinstance(Xr, torch.Tensor) else Xr:
        assert yb is not None
        lw_t += log_likelihood_draws(model, module, post.unflatten(flat), xb, yb,
                                     noise if model.learns_noise else None, around=post.unflatten(post.mean),
                                     device=target).sum(1)
    lw = lw_t.numpy()
    if not np.isfinite(lw).all():
        raise ValueError("non-finite predictive log-likelihoods: the Laplace posterior puts mass where the "
                         "likelihood is 0 or NaN")
    top = lw.max()
    w = np.exp(lw - top)
    estimate = float(top + math.log(w.mean()))
    se = float(w.std(ddof=1) / (w.mean() * math.sqrt(lw.size)))
    ess, k = weight_diagnostics(lw)
    return Evidence(log_evidence=estimate, method="clml", n_params=post.n_params,
                    noise=noise if model.learns_noise else None, hessian=structure, prior_scale=scale,
                    std_error=se, particles=lw.size, ess=ess, pareto_k=k)
