"""The Laplace posterior ``N(θ*, H⁻¹)`` and the Gaussian prior it (and the evidence) uses.

Around the MAP (or posterior-mean) weights ``θ*`` the Laplace approximation is
``N(θ*, H⁻¹)`` with ``H = G / σ² + c · D``: the GGN of the negative log-likelihood
([`bayesguide.curvature`][]) plus a diagonal Gaussian prior precision ``c · D``.

**Which Gaussian prior** ([`gaussian_prior`][bayesguide.posterior.laplace.gaussian_prior]; ``Evidence.prior_used``
reports it),
decided separately for the prunable layers' prior and the plain prior of the others,
and reported as the strongest substitution of the two:

* ``"own"`` — a ``GuidedNormal`` with every guidance coefficient positive is the
  model's own prior: precision ``2 λ g_j`` on every weight of unit ``j``.
* ``"counterpart"`` — a family with a density and positive coefficients is scored under
  its Gaussian counterpart ([`gaussian_counterpart`][bayesguide.priors.base.UnitPrior.gaussian_counterpart]:
  ``GuidedNormal`` with the same ``λ`` and guidance for L1, group and sparse group lasso).
* ``"uniform"`` — where the Gaussian counterpart does not exist, ``GuidedNormal(λ,
  guidance.uniform())``, precision ``2 λ`` on every weight: when some guidance
  coefficient is 0 (``partial`` guidance, ``relevance`` estimates — an improper flat
  prior, for which the evidence is undefined), and for families without one (L0 gates:
  ``λ`` is the cost of an open gate, not a rate; the horseshoe, whose marginal has no
  closed form).

Substituted priors only fix the *shape* of the prior precision; type-II maximum
likelihood (``optimize_prior=True``) sets its scale ``c`` from the data.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from bayesguide._options import Option
from bayesguide.curvature import HessianStructure, flat_weights, make_curvature
from bayesguide.curvature.base import Inputs
from bayesguide.likelihoods import Likelihood
from bayesguide.model import GuidedModel
from bayesguide.model.device import DeviceLike, resolve_device
from bayesguide.posterior.draws import check_count
from bayesguide.priors import UnitPrior

__all__ = ["EvidencePrior", "LaplacePosterior", "gaussian_prior", "laplace_posterior"]


class EvidencePrior(Option):
    """Which Gaussian prior a Laplace evidence or posterior uses (see the module docstring)."""

    OWN = "own", "the model's own GuidedNormal prior"
    """The model's own ``GuidedNormal`` prior."""
    COUNTERPART = "counterpart", "Gaussian counterpart of a sparse prior (same λ and guidance)"
    """The family's Gaussian counterpart (same ``λ`` and guidance for the built-in sparse priors)."""
    UNIFORM = "uniform", "GuidedNormal with uniform guidance (the prior has no proper Gaussian counterpart)"
    """``GuidedNormal`` with the same ``λ`` and uniform guidance (zero coefficients, L0 gates, horseshoe)."""


def _gaussian_family(family: UnitPrior, coefficients: list[torch.Tensor]) -> tuple[EvidencePrior, float]:
    """Which Gaussian prior stands in for ``family`` (coefficients of all its sites), and its ``λ``."""
    if any(bool((g <= 0).any()) for g in coefficients):
        return EvidencePrior.UNIFORM, family.strength  # a coefficient 0 is an improper flat prior
    counterpart = family.gaussian_counterpart()
    if counterpart is None:
        return EvidencePrior.UNIFORM, family.strength  # not a density over the weights
    used = EvidencePrior.OWN if counterpart is family else EvidencePrior.COUNTERPART
    return used, counterpart.strength


def gaussian_prior(model: GuidedModel, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, EvidencePrior]:
    """Per-weight Gaussian prior precision ``D = 2 λ g`` in site order, flattened, and which prior it is.

    ``g`` is the model's guidance for ``"own"`` and ``"counterpart"``, and 1 for
    ``"uniform"`` (see the module docstring); the returned [`EvidencePrior`][bayesguide.posterior.laplace.EvidencePrior]
    is the
    strongest substitution over the prunable and the plain prior.
    """
    used: dict[bool, tuple[EvidencePrior, float]] = {}
    for prunable in (True, False):
        family = model.prior if prunable else model.plain_prior
        coeffs = [model.coefficients[s.name] for s in model.sites if s.prunable is prunable]
        if coeffs:
            used[prunable] = _gaussian_family(family, coeffs)
    parts = []
    for site in model.sites:
        kind, strength = used[site.prunable]
        g = model.coefficients[site.name].to(dtype)
        if kind is EvidencePrior.UNIFORM:
            g = torch.ones_like(g)
        rate = 2.0 * strength * g
        parts.append(rate.unsqueeze(-1).expand(site.n_units, site.group_size).reshape(-1))
    order = list(EvidencePrior)
    return torch.cat(parts), max((k for k, _ in used.values()), key=order.index)


@dataclass(frozen=True)
class LaplacePosterior:
    """The Laplace posterior ``N(θ*, H⁻¹)`` over the flattened weights (float64).

    Attributes
    ----------
    mean
        ``θ*``, shape ``(P,)``, the sites' unit matrices flattened in site order.
    precision
        ``H = G / σ² + c · D``: ``(P, P)`` for ``hessian="full"``, its diagonal ``(P,)``
        for ``"diag"``.
    cholesky
        Lower Cholesky factor ``L`` of the full ``H`` (``None`` for ``"diag"``).
    hessian
        The curvature structure.
    prior_scale
        The prior scale ``c`` used.
    noise
        The Gaussian ``σ`` used (``None`` for other likelihoods).
    sites
        ``(name, n_units, group_size)`` per site, for
        [`unflatten`][bayesguide.posterior.laplace.LaplacePosterior.unflatten].
    prior_precision
        The Gaussian prior's precision ``c · D`` per weight, shape ``(P,)``.
    """

    mean: torch.Tensor
    precision: torch.Tensor
    cholesky: torch.Tensor | None
    hessian: str
    prior_scale: float
    noise: float | None
    sites: tuple[tuple[str, int, int], ...]
    prior_precision: torch.Tensor | None = None

    @property
    def n_params(self) -> int:
        return int(self.mean.numel())

    def covariance(self) -> torch.Tensor:
        """``H⁻¹`` (``(P, P)``; a diagonal ``H`` gives a diagonal matrix)."""
        if self.cholesky is None:
            return torch.diag(self.precision.reciprocal())
        return torch.cholesky_inverse(self.cholesky)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws ``θ* + L^{-T} ε`` (full) or ``θ* + ε / √H_kk`` (diag), shape ``(n, P)``."""
        check_count(n, "n")
        eps = torch.randn(n, self.n_params, generator=generator, dtype=self.mean.dtype)
        if self.cholesky is None:
            return self.mean + eps * self.precision.rsqrt()
        # Lᵀ x = ε  ⇒  Cov(x) = (L Lᵀ)⁻¹ = H⁻¹
        x = torch.linalg.solve_triangular(self.cholesky.T, eps.T, upper=True).T
        return self.mean + x

    def log_density(self, flat: torch.Tensor) -> torch.Tensor:
        """``log N(θ_s; θ*, H⁻¹)`` of draws ``(S, P)``, shape ``(S,)``."""
        delta = flat.to(torch.float64) - self.mean
        if self.cholesky is None:
            quad = (delta.pow(2) * self.precision).sum(-1)
            logdet = self.precision.log().sum()
        else:
            quad = (delta @ self.cholesky).pow(2).sum(-1)  # δᵀ L Lᵀ δ
            logdet = 2.0 * self.cholesky.diagonal().log().sum()
        return 0.5 * (logdet - quad - self.n_params * math.log(2 * math.pi))

    def log_prior(self, flat: torch.Tensor) -> torch.Tensor:
        """``log N(θ_s; 0, (c D)⁻¹)`` of draws ``(S, P)`` under the Gaussian prior used, ``(S,)``."""
        if self.prior_precision is None:
            raise ValueError("this LaplacePosterior does not carry its prior precision")
        a = self.prior_precision
        quad = (flat.to(torch.float64).pow(2) * a).sum(-1)
        return 0.5 * (a.log().sum() - quad - self.n_params * math.log(2 * math.pi))

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``(..., P)`` into per-site ``(..., n_units, group_size)`` unit matrices."""
        parts = flat.split([n * p for _, n, p in self.sites], dim=-1)
        return {name: part.reshape(*flat.shape[:-1], n, p) for (name, n, p), part in zip(self.sites, parts)}

    def __str__(self) -> str:
        noise = "" if self.noise is None else f", σ={self.noise:.4g}"
        return (f"LaplacePosterior({self.hessian}, P={self.n_params}, prior scale c="
                f"{self.prior_scale:.4g}{noise})")


def laplace_posterior(
    model: GuidedModel,
    module: nn.Module,
    X: Inputs,
    y: torch.Tensor | None,
    *,
    hessian: str | HessianStructure = "full",
    prior_scale: float = 1.0,
    noise: float | None = None,
    device: DeviceLike = None,
) -> LaplacePosterior:
    """The Laplace approximation ``N(θ*, H⁻¹)`` of the posterior at ``module``'s weights.

    $$
    H = \\frac{1}{σ^2} \\sum_i J_i^⊤ Λ_i J_i + c\\, D,
    $$

    the generalized Gauss–Newton matrix of the negative log-likelihood (``σ`` only for a
    Gaussian likelihood) plus the Gaussian prior precision ``c · D``, ``D = 2 λ g`` per
    weight (the Gaussian counterpart of a sparse prior; see
    [`gaussian_prior`][bayesguide.posterior.laplace.gaussian_prior]). For Bayesian linear regression it is the exact
    posterior.

    Parameters
    ----------
    model
        The model: likelihood, prior and prunable sites.
    module
        The network holding ``θ*`` (the MAP weights).
    X
        Prepared inputs (``model.prepare_data``), or a
        [`BatchStream`][bayesguide.model.batches.BatchStream] of batches (the curvature
        is then accumulated over one pass).
    y
        Prepared targets (``model.prepare_data``; ``None`` with a stream). The GGN does
        not depend on the targets.
    hessian
        ``"full"`` (``P × P``, sampled through its Cholesky factor) or ``"diag"``.
    prior_scale
        ``c``, e.g. an ``Evidence.prior_scale`` found by type-II maximum likelihood.
    noise
        The Gaussian ``σ`` when the model learns it (the fit's value).
    device
        Where the curvature's network passes run (``"cpu"``, ``"cuda"``, ...; default:
        where ``module``'s parameters are); a copy of ``module`` is moved there, ``X`` is
        moved chunk by chunk. The posterior itself is on the CPU.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> from bayesguide.posterior import laplace_posterior
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 1)).double()
    >>> model = bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood="gaussian", noise=0.1)
    >>> X, y = model.prepare_data(torch.randn(20, 3), torch.randn(20))
    >>> post = laplace_posterior(model, net, X, y)
    >>> post.sample(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 4])
    """
    structure = HessianStructure.resolve(hessian, "hessian structure")
    if not (math.isfinite(prior_scale) and prior_scale > 0):
        raise ValueError(f"prior_scale must be a positive finite number, got {prior_scale!r}")
    sigma: float | None = None
    if model.likelihood is Likelihood.GAUSSIAN:
        sigma = model.noise if model.noise is not None else noise
        if sigma is None:
            raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    target = resolve_device(device, module)
    module = copy.deepcopy(module).to(target).eval()
    theta = flat_weights(model, module).cpu()
    d, _ = gaussian_prior(model)
    H = make_curvature(structure, model, module, X).precision(d, prior_scale, 1.0 if sigma is None else sigma**2)
    cholesky: torch.Tensor | None = None
    if H.ndim == 2:
        cholesky, info = torch.linalg.cholesky_ex(H)
        if int(info) != 0:
            raise ValueError("the posterior precision G + A is not positive definite (Cholesky failed)")
    return LaplacePosterior(
        mean=theta.to(torch.float64), precision=H, cholesky=cholesky, hessian=structure.value,
        prior_scale=float(prior_scale), noise=None if model.noise is not None else sigma,
        sites=tuple((s.name, s.n_units, s.group_size) for s in model.sites),
        prior_precision=(prior_scale * d).to(torch.float64),
    )
