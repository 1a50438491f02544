"""Laplace evidence with generalized Gauss–Newton curvature.

For an architecture ``M`` with MAP weights ``θ*`` (``P`` of them) and a Gaussian prior
``N(0, A⁻¹)`` with diagonal precision ``A = c · D`` (``D`` from the guidance, ``c`` a
global scale),

.. math::

    \\log p(\\mathcal D \\mid M) \\approx \\log p(\\mathcal D \\mid θ^*) + \\log p(θ^* \\mid M)
        + \\tfrac P2 \\log 2π - \\tfrac12 \\log\\det H, \\qquad H = G + A,

with ``G = Σ_i J_iᵀ Λ_i J_i`` the GGN of the negative log-likelihood (``J_i`` the
Jacobian of the network output for example ``i``; ``Λ_i`` the Hessian of the NLL in the
output: ``diag(p) − ppᵀ`` categorical, ``I/σ²`` Gaussian, ``diag(p(1−p))``
Bernoulli). Writing ``e_k`` for the eigenvalues of ``D^{-1/2} G₁ D^{-1/2}`` (``G₁``
the GGN at ``σ = 1``) the expression collapses to

.. math::

    \\log p(\\mathcal D \\mid M) = \\log p(\\mathcal D \\mid θ^*, σ) - \\tfrac c2 θ^{*⊤} D θ^*
        - \\tfrac12 \\sum_k \\log\\big(1 + e_k / (σ^2 c)\\big),

which is what type-II maximum likelihood (``optimize_prior=True``) maximises over
``c`` (and ``σ`` for a Gaussian likelihood with learned noise), at fixed ``θ*``
(MacKay 1992). ``hessian="diag"`` keeps only the diagonal of ``G``
(``e_k = G_kk / D_k``); ``hessian="kron"`` replaces each layer's block of ``G`` by its
Kronecker factorisation ``G_l ⊗ A_l`` (KFAC; ``BatchNorm`` layers keep their diagonal)
and drops the blocks between layers, for which the ``e_k`` are products of the factors'
eigenvalues (:mod:`bayesguide.marglik.kron`, where the normalisation is documented).

The Gaussian prior (which one was used is ``Evidence.prior_used``, a
:class:`EvidencePrior` value; ``substituted`` is ``prior_used != "own"``), decided
separately for the prunable layers' prior and the plain prior of the others, and
reported as the strongest substitution of the two:

* ``"own"`` — a ``GuidedNormal`` with every guidance coefficient positive is the
  model's own prior: precision ``2 λ g_j`` on every weight of unit ``j``.
* ``"counterpart"`` — candidates fitted under a sparse unit prior with a density
  (``GuidedLaplace``, ``GuidedGroupLasso``, sparse group lasso, …) and positive
  coefficients are scored under their *Gaussian counterpart*, ``GuidedNormal`` with
  the same ``λ`` and guidance.
* ``"uniform"`` — where the Gaussian counterpart does not exist, the evidence uses
  ``GuidedNormal(λ, guidance.uniform())``, precision ``2 λ`` on every weight: when some
  guidance coefficient is 0 (``partial`` guidance, ``relevance`` estimates — an
  improper flat prior, for which the evidence is undefined), and for priors that are
  no density over the weights (``HardConcreteGates``: its ``λ`` is the cost of an open
  gate, not a rate) or only a conditional one (``GroupHorseshoe``, whose marginal has
  no closed form).

Substituted priors only fix the *shape* of the prior precision; use
``optimize_prior=True`` (the default of ``bg.compare``) so that type-II maximum
likelihood sets its scale ``c`` from the data.

References: MacKay, "A practical Bayesian framework for backpropagation networks"
(1992); Immer et al., "Scalable marginal likelihood estimation for model selection in
deep learning" (ICML 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg.blas
import scipy.optimize
import torch

from bayesguide._options import Option
from bayesguide.horseshoe import HierarchicalUnitPrior
from bayesguide.l0 import HardConcreteGates
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik.kron import _hessian_sqrt, kron_factors, kron_scaled_eigenvalues
from bayesguide.model import GuidedModel
from bayesguide.network import functional_forward
from bayesguide.priors import GuidedNormal, UnitPrior

__all__ = ["Evidence", "EvidencePrior", "HessianStructure", "laplace_evidence"]


class HessianStructure(Option):
    """Curvature approximations for the Laplace evidence."""

    #: the full ``P × P`` GGN (exact; for networks up to ~20k parameters)
    FULL = "full"
    #: the diagonal of the GGN
    DIAG = "diag"
    #: layer-wise Kronecker-factored GGN (KFAC) for Linear/Conv2d, diagonal for BatchNorm
    KRON = "kron"

    @property
    def description(self) -> str:
        return {
            "full": "full GGN, P×P",
            "diag": "diagonal of the GGN",
            "kron": "block-diagonal KFAC GGN, G_l ⊗ A_l per layer (diagonal for BatchNorm)",
        }[self.value]


class EvidencePrior(Option):
    """Which Gaussian prior a Laplace evidence was computed under (see the module docstring)."""

    #: the model's own ``GuidedNormal`` prior
    OWN = "own"
    #: ``GuidedNormal`` with the same ``λ`` and guidance as a sparse unit prior
    COUNTERPART = "counterpart"
    #: ``GuidedNormal`` with the same ``λ`` and uniform guidance (zero coefficients, L0 gates, horseshoe)
    UNIFORM = "uniform"

    @property
    def description(self) -> str:
        return {
            "own": "the model's own GuidedNormal prior",
            "counterpart": "Gaussian counterpart of a sparse prior (same λ and guidance)",
            "uniform": "GuidedNormal with uniform guidance (the prior has no proper Gaussian counterpart)",
        }[self.value]


@dataclass(frozen=True)
class Evidence:
    """A log-evidence estimate and its decomposition (all in nats).

    ``log_evidence = log_likelihood + log_prior + occam`` where ``occam =
    P/2 log 2π − ½ log det H``. ``prior_used`` names the Gaussian prior
    (:class:`EvidencePrior`: ``"own"``, ``"counterpart"`` or ``"uniform"``);
    ``substituted`` is ``prior_used != "own"``.
    """

    log_evidence: float
    log_likelihood: float
    log_prior: float
    occam: float
    n_params: int
    method: str
    hessian: str
    prior_scale: float
    noise: float | None
    substituted: bool
    prior_used: str = EvidencePrior.OWN.value

    def __str__(self) -> str:
        noise = "" if self.noise is None else f", σ={self.noise:.4g}"
        sub = "" if not self.substituted else (
            f" ({EvidencePrior.resolve(self.prior_used, 'evidence prior').description})"
            if self.prior_used in EvidencePrior.choices() else " (substituted prior)")
        return (
            f"Evidence({self.method}/{self.hessian}: log p(D|M) = {self.log_evidence:.6g} = "
            f"log-lik {self.log_likelihood:.6g} + log-prior {self.log_prior:.6g} + "
            f"Occam {self.occam:.6g}; P={self.n_params}, prior scale c={self.prior_scale:.4g}{noise}){sub}"
        )


def _gaussian_family(family: UnitPrior, coefficients: list[torch.Tensor]) -> EvidencePrior:
    """Which Gaussian prior stands in for ``family`` (coefficients of all its sites)."""
    if any(bool((g <= 0).any()) for g in coefficients):
        return EvidencePrior.UNIFORM  # a coefficient 0 is an improper flat prior
    if isinstance(family, (HardConcreteGates, HierarchicalUnitPrior)):
        return EvidencePrior.UNIFORM  # not a density over the weights: no Gaussian counterpart
    return EvidencePrior.OWN if isinstance(family, GuidedNormal) else EvidencePrior.COUNTERPART


def _precisions(model: GuidedModel, dtype: torch.dtype) -> tuple[torch.Tensor, EvidencePrior]:
    """Per-weight Gaussian prior precision ``2 λ g`` in site order, flattened, and which prior it is.

    ``g`` is the model's guidance for ``"own"`` and ``"counterpart"``, and 1 for
    ``"uniform"`` (see the module docstring); the returned :class:`EvidencePrior` is
    the strongest substitution over the prunable and the plain prior.
    """
    used: dict[bool, EvidencePrior] = {}
    for prunable in (True, False):
        family = model.prior if prunable else model.plain_prior
        coeffs = [model.coefficients[s.name] for s in model.sites if s.prunable is prunable]
        if coeffs:
            used[prunable] = _gaussian_family(family, coeffs)
    parts = []
    for site in model.sites:
        family = model.prior if site.prunable else model.plain_prior
        g = model.coefficients[site.name].to(dtype)
        if used[site.prunable] is EvidencePrior.UNIFORM:
            g = torch.ones_like(g)
        rate = 2.0 * family.strength * g
        parts.append(rate.unsqueeze(-1).expand(site.n_units, site.group_size).reshape(-1))
    order = list(EvidencePrior)
    return torch.cat(parts), max(used.values(), key=order.index)


def _ggn(
    model: GuidedModel, module: torch.nn.Module, theta: torch.Tensor, X: torch.Tensor,
    structure: HessianStructure, chunk_elements: int = 2**24,
) -> torch.Tensor:
    """GGN at ``σ = 1`` (full ``P × P`` or its diagonal), accumulated in float64 in chunks.

    ``G = Σ_i J̃_iᵀ J̃_i`` with ``J̃_i = M_iᵀ J_i`` and ``M_i M_iᵀ = Λ_i`` (see
    :func:`bayesguide.marglik.kron._hessian_sqrt`). Per-example Jacobians come from
    ``vmap(jacrev)`` over single examples (``C`` backward passes per example; a
    ``jacrev`` over the batch would backpropagate every output through the whole
    batch), and the full matrix from a symmetric rank-k update (BLAS ``dsyrk``: half the
    flops of a matrix product).
    """
    chain = model.chain(module)
    sizes = [s.n_units * s.group_size for s in model.sites]

    def forward(flat: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        values = {s.name: v.reshape(s.n_units, s.group_size) for s, v in zip(model.sites, flat.split(sizes))}
        return functional_forward(chain, model.sites, values, xb)

    def single(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return forward(flat, x.unsqueeze(0))[0]

    jacobians = torch.func.vmap(torch.func.jacrev(single), in_dims=(None, 0))
    P = theta.numel()
    with torch.no_grad():
        n_out = forward(theta, X[:1]).shape[1]
    chunk = max(1, chunk_elements // (n_out * P))
    full = structure is HessianStructure.FULL
    upper = np.zeros((P, P), dtype=np.float64, order="F") if full else None
    diag = torch.zeros(P, dtype=torch.float64)
    for start in range(0, X.shape[0], chunk):
        xb = X[start : start + chunk]
        J = jacobians(theta, xb).to(torch.float64)  # (B, C, P)
        with torch.no_grad():
            M = _hessian_sqrt(model.likelihood, forward(theta, xb).to(torch.float64))
        Jt = torch.einsum("bcd,bcp->bdp", M, J).reshape(-1, P)  # rows: (M_iᵀ J_i)
        if upper is not None:
            # C := Jtᵀ Jt + C on the upper triangle; Jt.numpy().T is Fortran-ordered (no copy)
            upper = scipy.linalg.blas.dsyrk(1.0, Jt.numpy().T, beta=1.0, c=upper, trans=0, overwrite_c=1)
        else:
            diag += Jt.pow(2).sum(0)
    if upper is None:
        return diag
    return torch.from_numpy(np.triu(upper) + np.triu(upper, 1).T)


def laplace_evidence(
    model: GuidedModel,
    module: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    hessian: str | HessianStructure = "full",
    optimize_prior: bool = False,
    noise: float | None = None,
    max_params: int = 20_000,
) -> Evidence:
    """Laplace log evidence of ``model`` with weights ``module`` (see the module docstring).

    ``X``, ``y`` must already be prepared (``model.prepare_data``). ``noise`` is the
    Gaussian ``σ`` when the model learns it (the fit's value); with
    ``optimize_prior=True`` it is re-estimated jointly with the prior scale.
    """
    structure = HessianStructure.resolve(hessian, "hessian structure")
    module = module.eval()
    params = dict(module.named_parameters())
    with torch.no_grad():
        theta = torch.cat([s.pack(params).reshape(-1) for s in model.sites]).detach()
    P = theta.numel()
    if structure is HessianStructure.FULL and P > max_params:
        raise ValueError(
            f"hessian='full' needs a {P}×{P} matrix ({P} parameters > max_params={max_params}); "
            f"use hessian='kron' or 'diag', or prune the network first"
        )
    d, prior_used = _precisions(model, torch.float64)
    theta64 = theta.to(torch.float64)
    quad = float((d * theta64.pow(2)).sum())

    with torch.no_grad():
        out = module(X)
    gaussian = model.likelihood is Likelihood.GAUSSIAN
    if gaussian:
        rss = float((y - out).pow(2).sum())
        n_obs = y.numel()
        sigma0 = model.noise if model.noise is not None else noise
        if sigma0 is None:
            raise ValueError("this model learns the noise σ: pass noise=fit.noise")
    else:
        loglik_fixed = float(model.likelihood.log_prob_sum(out, y, None))

    # e: eigenvalues of D^{-1/2} G₁ D^{-1/2}. For the full GGN they are only needed by
    # type-II ML; the reported log det comes from a Cholesky factor either way.
    e: torch.Tensor | None
    if structure is HessianStructure.KRON:
        G1 = torch.empty(0, dtype=torch.float64)
        e = kron_scaled_eigenvalues(kron_factors(model, module, X), d)
    elif structure is HessianStructure.FULL:
        G1 = _ggn(model, module, theta, X, structure)
        e = torch.linalg.eigvalsh(G1 / (d.sqrt().unsqueeze(-1) * d.sqrt())) if optimize_prior else None
    else:
        G1 = _ggn(model, module, theta, X, structure)
        e = G1 / d
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
    # Reported decomposition, with log det H from a Cholesky factor (fails loudly if not PD).
    prec = c * d
    if structure is HessianStructure.KRON:
        # exact for the KFAC precision (see kron.py): log det(G⊗A + cD) = Σ log cd + Σ log(1 + e/c)
        logdet = float(torch.log(prec).sum()) + float(np.log1p(e_np / (sigma**2 * c)).sum())
    elif structure is HessianStructure.FULL:
        H = G1 / sigma**2 if gaussian else G1
        L, info = torch.linalg.cholesky_ex(H + torch.diag(prec))
        if int(info) != 0:
            raise ValueError("the posterior precision G + A is not positive definite (Cholesky failed)")
        logdet = 2.0 * float(torch.log(torch.diagonal(L)).sum())
    else:
        logdet = float(torch.log((G1 / sigma**2 if gaussian else G1) + prec).sum())
    log_prior = float(0.5 * torch.log(prec / (2 * math.pi)).sum()) - 0.5 * c * quad
    occam = 0.5 * P * math.log(2 * math.pi) - 0.5 * logdet
    ll = loglik(sigma)
    return Evidence(
        log_evidence=ll + log_prior + occam,
        log_likelihood=ll,
        log_prior=log_prior,
        occam=occam,
        n_params=P,
        method="laplace",
        hessian=structure.value,
        prior_scale=c,
        noise=sigma if gaussian else None,
        substituted=prior_used is not EvidencePrior.OWN,
        prior_used=prior_used.value,
    )
