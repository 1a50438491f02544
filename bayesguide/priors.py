"""Guided unit priors: proper Pyro distributions over a layer's unit weight groups.

A prunable layer with ``n`` units owns an ``(n, p)`` matrix of unit groups: row ``j``
is unit ``j``'s incoming weights (flattened filter for ``Conv2d``) followed by its
bias. A *unit prior* is a distribution over that matrix whose rows are independent and
whose row ``j`` has strength ``λ g_j``, with ``g_j`` the guidance coefficient.

================================  ==========================================  ==========================================
prior                             density of one unit group θ ∈ R^p           negative log = penalty (+ const)
================================  ==========================================  ==========================================
:class:`GuidedNormal`             Normal, precision ``2 λ g_j`` per element   guided L2: ``λ g_j ‖θ‖₂²``
:class:`GuidedLaplace`            Laplace, scale ``1 / (λ g_j)`` per element  guided L1: ``λ g_j ‖θ‖₁``
:class:`GuidedGroupLasso`         ``c(α) exp(−α ‖θ‖₂)``,                      guided group lasso:
                                  ``α = λ g_j √p``,                           ``λ g_j √p ‖θ‖₂``
                                  ``c(α) = α^p Γ(p/2) / (2 π^{p/2} Γ(p))``
:class:`GuidedSparseGroupLasso`   ``c(a, b) exp(−a ‖θ‖₂ − b ‖θ‖₁)``,          guided sparse group lasso:
                                  ``a = λ g_j (1−α) √p``, ``b = λ g_j α``,    ``λ g_j [(1−α) √p ‖θ‖₂ + α ‖θ‖₁]``
                                  ``c`` by a 1-D quadrature
================================  ==========================================  ==========================================

``strength`` is ``λ`` in the Bayesian convention: the rate of the prior, the same
whatever the batch size, with the negative log-likelihood *summed* over the ``N``
training examples. The deep-learning convention "mean loss + λ' R(θ)" is the same
problem with ``λ = N λ'``: see :func:`strength_from_mean_loss` and the
``from_mean_loss`` constructors.

A coefficient ``g_j = 0`` makes unit ``j``'s prior an improper flat density: it adds
nothing to ``log_prob`` (fine for MAP), it cannot be sampled, and evidence code must
refuse it or substitute a proper prior (``UnitGroupDistribution.is_proper``).

References: Rafid & Sandu, arXiv 2305.18448 (guided regularization); E & Gao, arXiv
2009.01395 (partial regularization, coefficient 0 on protected units); Yuan & Lin 2006
(group lasso, the ``√p`` group-size factor); Simon, Friedman, Hastie & Tibshirani 2013
(sparse group lasso).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from bayesguide._options import Option
from bayesguide.guidance import GuidanceSpec, linear

__all__ = [
    "GuidedGroupLasso",
    "GuidedLaplace",
    "GuidedNormal",
    "GuidedSparseGroupLasso",
    "PriorKind",
    "UnitGroupDistribution",
    "UnitGroupLaplace",
    "UnitLaplace",
    "UnitNormal",
    "UnitPrior",
    "UnitSparseGroupLaplace",
    "make_prior",
    "sparse_group_log_integral",
    "strength_from_mean_loss",
]


# --------------------------------------------------------------------------- distributions


class UnitGroupDistribution(TorchDistribution, ABC):
    """Independent rows of an ``(n, p)`` unit matrix, row ``j`` with rate ``λ g_j``.

    Contract: ``log_prob(value)`` takes ``value`` of shape ``(..., n, p)`` and returns
    shape ``(...)``; units with ``g_j = 0`` contribute 0 (improper flat prior). The
    normalising constants are computed once, at construction.

    Parameters
    ----------
    rate
        ``λ g_j`` per unit, shape ``(n,)``, non-negative.
    group_size
        ``p``, the number of weights in one unit group.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(self, rate: torch.Tensor, group_size: int, validate_args: bool | None = None):
        if rate.ndim != 1:
            raise ValueError(f"rate must be 1-D (one per unit), got shape {tuple(rate.shape)}")
        if (rate < 0).any() or not torch.isfinite(rate).all():
            raise ValueError("rates must be finite and >= 0")
        self.rate = rate
        self.group_size = int(group_size)
        self.proper_mask = rate > 0
        self._log_norm = self._log_normaliser(rate[self.proper_mask]).sum()
        super().__init__(
            batch_shape=torch.Size(),
            event_shape=torch.Size((rate.shape[0], self.group_size)),
            validate_args=validate_args,
        )

    def set_rate(self, rate: torch.Tensor) -> None:
        """Replace the per-unit rates ``λ g_j`` in place (empirical-Bayes updates).

        ``rate`` must have this distribution's shape ``(n,)`` and be finite and ``>= 0``.
        The stored ``rate`` tensor is overwritten with ``copy_`` — not rebound — so code
        that holds a reference to it (the ``"fast"`` MAP objective) sees the new values;
        ``proper_mask`` and the cached log normaliser are recomputed, so ``log_prob``,
        ``penalty``, ``log_normaliser`` and ``is_proper`` all describe the new prior.

        Examples
        --------
        >>> d = UnitNormal(torch.ones(2, dtype=torch.float64), 3)
        >>> d.set_rate(torch.tensor([2.0, 0.0]))
        >>> d.proper_mask.tolist(), round(float(d.log_normaliser), 6) == round(1.5 * math.log(2 / math.pi), 6)
        ([True, False], True)
        """
        new = torch.as_tensor(rate).detach()
        if new.shape != self.rate.shape:
            raise ValueError(
                f"set_rate needs shape {tuple(self.rate.shape)} (one rate per unit), got {tuple(new.shape)}"
            )
        if not torch.isfinite(new).all() or (new < 0).any():
            raise ValueError("rates must be finite and >= 0")
        with torch.no_grad():
            self.rate.copy_(new.to(self.rate.dtype))
            self.proper_mask = self.rate > 0
            self._log_norm = self._log_normaliser(self.rate[self.proper_mask]).sum()

    @property
    def is_proper(self) -> bool:
        """Whether every unit has a proper (normalisable) prior, i.e. all ``g_j > 0``."""
        return bool(self.proper_mask.all())

    @abstractmethod
    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        """Log normalising constant of one unit group per (positive) rate."""

    @abstractmethod
    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        """Per-unit statistic ``s_j(θ)`` (shape ``(..., n)``) that the penalty is linear in."""

    @abstractmethod
    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        """Draws of shape ``shape + (n, p)`` (all units proper)."""

    @property
    def log_normaliser(self) -> torch.Tensor:
        """``Σ_j log c_j`` over the proper units: the part of ``log_prob`` free of θ."""
        return self._log_norm

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """``s_j`` from the column blocks of the unit matrix (e.g. ``[W_rows, b[:, None]]``).

        Equal to ``unit_statistic(torch.cat(parts, -1))``; subclasses combine the blocks'
        statistics without building the concatenated matrix (no copy in the hot path).
        """
        return self.unit_statistic(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))

    def penalty_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`penalty` from the column blocks of the unit matrix (see :meth:`unit_statistic_parts`)."""
        return (self.unit_statistic_parts(parts) * self.rate).sum(-1)

    def penalty(self, value: torch.Tensor) -> torch.Tensor:
        """``Σ_j rate_j s_j(θ)``: the regularizer, so ``log_prob = log_normaliser − penalty``."""
        return (self.unit_statistic(value) * self.rate).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._log_norm - self.penalty(value)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        if not self.is_proper:
            bad = int((~self.proper_mask).nonzero()[0])
            raise ValueError(
                f"cannot sample an improper prior: unit {bad} has guidance coefficient 0 "
                f"(flat prior); use positive coefficients to sample"
            )
        with torch.no_grad():
            return self._sample_proper(torch.Size(sample_shape))


class UnitNormal(UnitGroupDistribution):
    """Guided L2: every element of unit ``j`` is ``Normal(0, 1/√(2 λ g_j))``.

    ``log_prob = Σ_j [ (p/2) log(λ g_j / π) − λ g_j ‖θ_j‖₂² ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.group_size * torch.log(rate / math.pi)

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return value.pow(2).sum(-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitNormal.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        stat = parts[0].pow(2).sum(-1)
        for p in parts[1:]:
            stat = stat + p.pow(2).sum(-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        std = (2.0 * self.rate).rsqrt().unsqueeze(-1)
        eps = torch.randn(shape + self.event_shape, dtype=self.rate.dtype, device=self.rate.device)
        return eps * std


class UnitLaplace(UnitGroupDistribution):
    """Guided L1: every element of unit ``j`` is ``Laplace(0, 1/(λ g_j))``.

    ``log_prob = Σ_j [ p log(λ g_j / 2) − λ g_j ‖θ_j‖₁ ]``.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        return self.group_size * torch.log(rate / 2.0)

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return value.abs().sum(-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitLaplace.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        stat = parts[0].abs().sum(-1)
        for p in parts[1:]:
            stat = stat + p.abs().sum(-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        scale = self.rate.reciprocal().unsqueeze(-1).expand(self.event_shape)
        return torch.distributions.Laplace(torch.zeros_like(scale), scale).sample(shape)


class UnitGroupLaplace(UnitGroupDistribution):
    """Guided group lasso: unit ``j`` has density ``c(α_j) exp(−α_j ‖θ_j‖₂)`` on ``R^p``.

    Here ``rate`` is ``α_j = λ g_j √p`` (the √p group-size factor is applied by
    :class:`GuidedGroupLasso`). The normaliser is exact: integrating in spherical
    coordinates, ``∫ exp(−α‖θ‖) dθ = (2 π^{p/2} / Γ(p/2)) Γ(p) / α^p``, hence
    ``log c(α) = p log α + log Γ(p/2) − log 2 − (p/2) log π − log Γ(p)``.
    Sampling draws a uniform direction and a ``Gamma(p, α)`` radius.
    """

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        p = self.group_size
        const = math.lgamma(p / 2) - math.log(2.0) - 0.5 * p * math.log(math.pi) - math.lgamma(p)
        return p * torch.log(rate) + const

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(value, dim=-1)

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if type(self).unit_statistic is not UnitGroupLaplace.unit_statistic:  # a subclass's own statistic
            return super().unit_statistic_parts(parts)
        # ‖θ_j‖₂ = ‖(‖W_j‖₂, ‖b_j‖₂)‖₂, with subgradient 0 at 0 (vector_norm's backward)
        stat = torch.linalg.vector_norm(parts[0], dim=-1)
        if len(parts) > 1:
            norms = [stat, *(torch.linalg.vector_norm(p, dim=-1) for p in parts[1:])]
            stat = torch.linalg.vector_norm(torch.stack(norms, -1), dim=-1)
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        n, p = self.event_shape
        direction = torch.randn(shape + self.event_shape, dtype=self.rate.dtype)
        direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        conc = torch.full((n,), float(p), dtype=self.rate.dtype)
        radius = torch.distributions.Gamma(conc, self.rate).sample(shape)
        return direction * radius.unsqueeze(-1)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, (bool, str)) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    value = float(alpha)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"alpha must lie in [0, 1] (0: group lasso, 1: L1, in between: sparse group lasso), got {alpha!r}"
        )
    return value


def _sparse_group_log_integrand(u: torch.Tensor, a: float, b: float, p: int) -> torch.Tensor:
    """``log`` of the integrand of ``Z(a, b)`` in ``u = log t`` (``dt = t du``), float64."""
    t_inv = torch.exp(-u)
    log_mix = math.log(a / (2.0 * math.sqrt(math.pi))) - 0.5 * u - 0.25 * a * a * t_inv
    log_coord = 0.5 * math.log(math.pi) - 0.5 * u + torch.log(torch.special.erfcx(0.5 * b * t_inv.sqrt()))
    return log_mix + p * log_coord


def _sparse_group_grid(a: float, b: float, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes ``u`` and log weights ``log(w_k f(u_k))`` with ``Z = Σ_k w_k f(u_k)``.

    ``a, b > 0``. The integrand in ``u`` is increasing left of ``c₀ = log(a² / 2(p+1))``
    (its derivative there exceeds ``−(p+1)/2 + a² e^{−u}/4 > 0``) and falls by more than
    ``70 (p+1)`` nats from ``c₀`` to ``c₀ − 5``, so the grid starts at ``c₀ − 5``. A coarse
    pass locates the region within 60 nats of the peak (extending to the right until the
    integrand has dropped that far); a fine trapezoid grid (step ``≤ 0.02`` and ``≤ 1/4``
    of the peak's width ``√(2/(p+1))``) covers it. For a smooth, rapidly decaying
    integrand the trapezoid rule converges geometrically in the step, so the result is
    accurate to rounding (about 1e-12 relative in ``log Z``).
    """
    c0 = math.log(a * a / (2.0 * (p + 1)))
    lo, hi, coarse = c0 - 5.0, max(c0, 2.0 * math.log(b)) + 10.0, 0.05
    while True:
        u = torch.arange(lo, hi + coarse, coarse, dtype=torch.float64)
        f = _sparse_group_log_integrand(u, a, b, p)
        peak = float(f.max())
        if float(f[-1]) < peak - 60.0:
            break
        hi += 40.0
    keep = (f >= peak - 60.0).nonzero().squeeze(-1)
    lo, hi = float(u[max(int(keep[0]) - 1, 0)]), float(u[min(int(keep[-1]) + 1, u.shape[0] - 1)])
    step = min(0.02, 0.25 * math.sqrt(2.0 / (p + 1)))
    n = max(math.ceil((hi - lo) / step), 64) + 1
    u = torch.linspace(lo, hi, n, dtype=torch.float64)
    log_w = torch.full_like(u, math.log((hi - lo) / (n - 1)))
    log_w[0] -= math.log(2.0)
    log_w[-1] -= math.log(2.0)
    return u, log_w + _sparse_group_log_integrand(u, a, b, p)


def sparse_group_log_integral(a: float, b: float, p: int) -> float:
    """``log Z(a, b) = log ∫_{R^p} exp(−a ‖θ‖₂ − b ‖θ‖₁) dθ`` in float64.

    The normaliser of the sparse-group-lasso density (``log c = −log Z``). Closed forms
    at the ends: ``b = 0`` is the group-Laplace integral ``2 π^{p/2} Γ(p) / (Γ(p/2) a^p)``,
    ``a = 0`` is ``(2 / b)^p``. Otherwise the subordination identity (a Lévy mixture of
    Gaussians)

    ``exp(−a r) = ∫_0^∞ a / (2√π) t^{−3/2} exp(−a² / 4t) exp(−t r²) dt``, ``r = ‖θ‖₂``,

    makes the integral over θ factorise over coordinates, each
    ``∫_R exp(−t x² − b|x|) dx = √(π/t) erfcx(b / 2√t)``, which leaves one dimension:

    ``Z(a, b) = ∫_0^∞ a / (2√π) t^{−3/2} e^{−a²/4t} [√(π/t) erfcx(b / 2√t)]^p dt``.

    Since ``Z(a, b) = s^{−p} Z(a/s, b/s)`` (substitute ``θ = φ / s``), it is evaluated at
    ``s = a + b``, by the trapezoid rule in ``u = log t`` and a log-sum-exp over the
    nodes (see ``_sparse_group_grid``).

    Examples
    --------
    >>> round(sparse_group_log_integral(1.0, 2.0, 1), 12) == round(math.log(2 / 3), 12)  # 2 / (a + b)
    True
    """
    p = int(p)
    a, b = float(a), float(b)
    if p < 1 or not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0 or a + b == 0:
        raise ValueError(f"need p >= 1, finite a, b >= 0 and a + b > 0; got a={a!r}, b={b!r}, p={p!r}")
    if b == 0:
        return math.log(2.0) + 0.5 * p * math.log(math.pi) + math.lgamma(p) - math.lgamma(p / 2) - p * math.log(a)
    if a == 0:
        return p * math.log(2.0 / b)
    s = a + b
    _, log_terms = _sparse_group_grid(a / s, b / s, p)
    return float(torch.logsumexp(log_terms, 0)) - p * math.log(s)


class UnitSparseGroupLaplace(UnitGroupDistribution):
    """Guided sparse group lasso: unit ``j`` has density ``c_j exp(−rate_j s(θ_j))`` on ``R^p``,

    ``s(θ) = (1−α) √p ‖θ‖₂ + α ‖θ‖₁``, i.e. ``a_j = rate_j (1−α) √p`` on the group norm and
    ``b_j = rate_j α`` on the L1 norm (``rate_j = λ g_j``). ``α = 0`` is
    :class:`UnitGroupLaplace` with rate ``λ g_j √p``, ``α = 1`` is :class:`UnitLaplace`.

    Normaliser: ``log c_j = −log Z(a_j, b_j)`` (:func:`sparse_group_log_integral`); ``a_j``
    and ``b_j`` share the ratio ``(1−α)√p / α``, so ``log Z(a_j, b_j) = −p log(rate_j σ) +
    log Z(A, B)`` with ``σ = (1−α)√p + α``, ``(A, B) = ((1−α)√p, α) / σ``: one quadrature per
    layer, cached.

    Sampling uses the same Lévy mixture: ``t`` from its marginal density
    ``∝ a/(2√π) t^{−3/2} e^{−a²/4t} [√(π/t) erfcx(b/2√t)]^p`` (inverse CDF on the quadrature
    grid, log-linear between nodes, so accurate to the grid's resolution rather than
    exact), then each coordinate independently from ``∝ exp(−t x² − b|x|)`` by exact
    rejection: |x| from an ``Exponential(b)`` proposal accepted with ``exp(−t x²)`` when
    ``b / 2√t ≥ 1/√π``, otherwise from a half-normal ``|N(0, 1/2t)|`` proposal accepted with
    ``exp(−b x)`` (acceptance ≥ 0.58 either way), and a random sign.
    """

    def __init__(
        self, rate: torch.Tensor, group_size: int, alpha: float = 0.5, validate_args: bool | None = None
    ):
        self.alpha = _check_alpha(alpha)
        self._unit_log_z: float | None = None
        super().__init__(rate, group_size, validate_args=validate_args)

    @property
    def _weights(self) -> tuple[float, float]:
        """``((1−α) √p, α)``: the coefficients of ``‖θ‖₂`` and ``‖θ‖₁`` in the statistic."""
        return (1.0 - self.alpha) * math.sqrt(self.group_size), self.alpha

    def _log_normaliser(self, rate: torch.Tensor) -> torch.Tensor:
        wa, wb = self._weights
        sigma = wa + wb
        if self._unit_log_z is None:
            self._unit_log_z = sparse_group_log_integral(wa / sigma, wb / sigma, self.group_size)
        return self.group_size * torch.log(rate * sigma) - self._unit_log_z

    def unit_statistic(self, value: torch.Tensor) -> torch.Tensor:
        return self.unit_statistic_parts([value])

    def unit_statistic_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        wa, wb = self._weights
        stat: torch.Tensor | None = None
        if wa > 0:  # (1−α) √p ‖θ‖₂, the norm from the blocks' norms (subgradient 0 at 0)
            norm = torch.linalg.vector_norm(parts[0], dim=-1)
            if len(parts) > 1:
                norms = [norm, *(torch.linalg.vector_norm(p, dim=-1) for p in parts[1:])]
                norm = torch.linalg.vector_norm(torch.stack(norms, -1), dim=-1)
            stat = wa * norm
        if wb > 0:  # α ‖θ‖₁
            l1 = parts[0].abs().sum(-1)
            for p in parts[1:]:
                l1 = l1 + p.abs().sum(-1)
            stat = wb * l1 if stat is None else stat + wb * l1
        assert stat is not None
        return stat

    def _sample_proper(self, shape: torch.Size) -> torch.Tensor:
        n, p = self.event_shape
        wa, wb = self._weights
        dtype = self.rate.dtype
        if wb == 0:
            return UnitGroupLaplace(self.rate * wa, p)._sample_proper(shape)
        if wa == 0:
            return UnitLaplace(self.rate * wb, p)._sample_proper(shape)
        # draw φ for (a, b) = (wa / wb, 1), then θ = φ / (rate_j wb)
        a = wa / wb
        u, log_terms = _sparse_group_grid(a, 1.0, p)
        t = _sample_log_linear(u, log_terms, torch.Size((*shape, n))).exp()
        phi = _sample_exp_gauss(t.unsqueeze(-1).expand((*shape, n, p)))
        return (phi / (self.rate * wb).to(torch.float64).unsqueeze(-1)).to(dtype)


def _sample_log_linear(u: torch.Tensor, log_f: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Draws from the density on ``[u_0, u_K]`` whose log is linear between the nodes."""
    du = u[1:] - u[:-1]
    slope = (log_f[1:] - log_f[:-1]) / du
    # mass of cell k: ∫ exp(log_f_k + slope (v − u_k)) dv = e^{log_f_k} du · (e^{slope du} − 1) / (slope du)
    x = slope * du
    log_rel = torch.where(x.abs() < 1e-8, x / 2, torch.log(torch.expm1(x).abs() / x.abs()))
    log_mass = log_f[:-1] + torch.log(du) + log_rel
    cell = torch.multinomial(torch.softmax(log_mass, 0), int(torch.Size(shape).numel()), replacement=True)
    cell = cell.reshape(shape)
    v = torch.rand(shape, dtype=torch.float64)
    s, h = slope[cell], du[cell]
    # inverse CDF within the cell: (e^{s w} − 1) / (e^{s h} − 1) = v
    sh = s * h
    w = torch.where(sh.abs() < 1e-8, v * h, torch.log1p(v * torch.expm1(sh)) / s)
    return u[cell] + w.clamp(min=0.0).minimum(h)


def _sample_exp_gauss(t: torch.Tensor) -> torch.Tensor:
    """Exact draws from ``∝ exp(−t x² − |x|)`` elementwise (``t > 0``, float64), by rejection."""
    flat_t = t.reshape(-1)
    z0 = 0.5 * flat_t.rsqrt()  # b / 2√t with b = 1
    use_exp = z0 >= 1.0 / math.sqrt(math.pi)
    out = torch.empty_like(flat_t)
    pending = torch.arange(flat_t.shape[0])
    while pending.numel() > 0:  # each round keeps at most 42 % of the pending draws
        tp, ep = flat_t[pending], use_exp[pending]
        expo = torch.empty_like(tp).exponential_(1.0)
        half_normal = torch.randn_like(tp).abs() * (2.0 * tp).rsqrt()
        x = torch.where(ep, expo, half_normal)
        log_accept = torch.where(ep, -tp * x * x, -x)
        accept = torch.rand_like(tp).log() < log_accept
        out[pending[accept]] = x[accept]
        pending = pending[~accept]
    out = out.reshape(t.shape)
    sign = torch.randint(0, 2, t.shape, dtype=t.dtype) * 2 - 1
    return out * sign


# --------------------------------------------------------------------------- prior families


def _check_strength(strength: float) -> float:
    if isinstance(strength, (bool, str)) or not isinstance(strength, numbers.Real):
        raise TypeError(f"strength must be a number, got {type(strength).__name__}")
    value = float(strength)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"strength must be a positive finite number (the prior's rate λ), got {strength!r}")
    return value


def strength_from_mean_loss(strength: float, n_data: int) -> float:
    """Convert a mean-loss penalty weight ``λ'`` to bayesguide's Bayesian ``λ = N λ'``.

    Training on ``mean NLL + λ' R(θ)`` has the same minimiser as ``sum NLL + N λ' R(θ)``
    because the second objective is ``N`` times the first.

    Examples
    --------
    >>> strength_from_mean_loss(1e-4, 1000)
    0.1
    """
    if isinstance(n_data, bool) or not isinstance(n_data, int) or n_data < 1:
        raise ValueError(f"n_data must be a positive int, got {n_data!r}")
    return _check_strength(strength) * n_data


@dataclass(frozen=True)
class UnitPrior(ABC):
    """A family of guided unit priors: a strength ``λ`` and a guidance specification.

    Contract: :meth:`unit_distribution` takes one layer's coefficients ``g`` (shape
    ``(n,)``) and group size ``p`` and returns a :class:`UnitGroupDistribution` over
    the layer's ``(n, p)`` unit matrix.
    """

    strength: float
    guidance: GuidanceSpec = field(default_factory=linear)

    #: short name used in reports and experiment files
    kind: str = field(init=False, default="", repr=False)
    #: the penalty it equals, for reports
    penalty: str = field(init=False, default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", _check_strength(self.strength))

    @classmethod
    def from_mean_loss(
        cls, strength: float, n_data: int, guidance: GuidanceSpec | None = None
    ) -> UnitPrior:
        """The prior whose MAP equals training on ``mean NLL + strength · R(θ)``."""
        lam = strength_from_mean_loss(strength, n_data)
        return cls(lam) if guidance is None else cls(lam, guidance)

    def with_guidance(self, guidance: GuidanceSpec) -> UnitPrior:
        """The same family and strength with another guidance."""
        return type(self)(self.strength, guidance)

    def unit_distribution(self, g: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return self._distribution(self.strength * g, group_size)

    @abstractmethod
    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution: ...

    def __str__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength:g}, guidance={self.guidance!r})"


@dataclass(frozen=True)
class GuidedNormal(UnitPrior):
    """Guided L2 prior: ``Normal(0, 1/√(2 λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₂²``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedNormal(strength=1e-3, guidance=bg.guidance.linear())
    """

    kind: str = field(init=False, default="l2", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j ‖θ_j‖₂²", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitNormal(rate, group_size)


@dataclass(frozen=True)
class GuidedLaplace(UnitPrior):
    """Guided L1 prior: ``Laplace(0, 1/(λ g_j))`` on every weight of unit ``j``.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j ‖θ_j‖₁``.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())
    """

    kind: str = field(init=False, default="l1", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j ‖θ_j‖₁", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitLaplace(rate, group_size)


@dataclass(frozen=True)
class GuidedGroupLasso(UnitPrior):
    """Guided group-lasso prior: density ``∝ exp(−λ g_j √p ‖θ_j‖₂)`` per unit group.

    MAP training under it is training on ``sum NLL + λ Σ_j g_j √p ‖θ_j‖₂``; the
    normalising constant is exact (see :class:`UnitGroupLaplace`).

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedGroupLasso(strength=1e-2, guidance=bg.guidance.partial())
    """

    kind: str = field(init=False, default="group", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j √p ‖θ_j‖₂", repr=False)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitGroupLaplace(rate * math.sqrt(group_size), group_size)


@dataclass(frozen=True)
class GuidedSparseGroupLasso(UnitPrior):
    """Guided sparse-group-lasso prior: density ``∝ exp(−λ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁])``.

    MAP training under it is training on
    ``sum NLL + λ Σ_j g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]``, the sparse group lasso of
    Simon, Friedman, Hastie & Tibshirani (2013) with guidance; E & Gao (arXiv 2009.01395)
    use it with partial guidance. ``alpha = 0`` is :class:`GuidedGroupLasso` and
    ``alpha = 1`` is :class:`GuidedLaplace` (the same ``log_prob``, normaliser included).
    The normaliser has no closed form; it is a 1-D integral evaluated by quadrature in
    float64 (see :func:`sparse_group_log_integral` and :class:`UnitSparseGroupLaplace`).

    Parameters
    ----------
    strength
        ``λ``, the prior's rate (Bayesian convention, see :func:`strength_from_mean_loss`).
    guidance
        Guidance profile giving ``g_j``.
    alpha
        Mix of the two penalties, in ``[0, 1]``: weight of the L1 part.

    Examples
    --------
    >>> import bayesguide as bg
    >>> prior = bg.GuidedSparseGroupLasso(1e-2, bg.guidance.partial(), alpha=0.5)
    >>> prior.with_guidance(bg.guidance.uniform()).alpha
    0.5
    """

    alpha: float = 0.5

    kind: str = field(init=False, default="sparse_group", repr=False)
    penalty: str = field(init=False, default="λ Σ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]", repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "alpha", _check_alpha(self.alpha))

    @classmethod
    def from_mean_loss(
        cls, strength: float, n_data: int, guidance: GuidanceSpec | None = None, alpha: float = 0.5
    ) -> GuidedSparseGroupLasso:
        """The prior whose MAP equals training on ``mean NLL + strength · R(θ)``."""
        lam = strength_from_mean_loss(strength, n_data)
        return cls(lam, linear() if guidance is None else guidance, alpha)

    def with_guidance(self, guidance: GuidanceSpec) -> GuidedSparseGroupLasso:
        """The same family, strength and ``alpha`` with another guidance."""
        return type(self)(self.strength, guidance, self.alpha)

    def _distribution(self, rate: torch.Tensor, group_size: int) -> UnitGroupDistribution:
        return UnitSparseGroupLaplace(rate, group_size, self.alpha)

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}(strength={self.strength:g}, guidance={self.guidance!r}, "
            f"alpha={self.alpha:g})"
        )


class PriorKind(Option):
    """Names of the unit-prior families, for experiment files and the CLI."""

    L1 = "l1"
    L2 = "l2"
    GROUP = "group"
    SPARSE_GROUP = "sparse_group"

    @property
    def description(self) -> str:
        return {
            "l1": "GuidedLaplace: guided L1, λ Σ g_j ‖θ_j‖₁",
            "l2": "GuidedNormal: guided L2, λ Σ g_j ‖θ_j‖₂²",
            "group": "GuidedGroupLasso: guided group lasso, λ Σ g_j √p ‖θ_j‖₂",
            "sparse_group": "GuidedSparseGroupLasso: guided sparse group lasso, "
            "λ Σ g_j [(1−α) √p ‖θ_j‖₂ + α ‖θ_j‖₁]",
        }[self.value]


def make_prior(
    kind: str | PriorKind,
    strength: float,
    guidance: GuidanceSpec | None = None,
    *,
    alpha: float | None = None,
) -> UnitPrior:
    """Build a prior family by name (``"l1"``, ``"l2"``, ``"group"`` or ``"sparse_group"``).

    ``alpha`` (default 0.5) is the L1 share of the sparse group lasso; it is an error to
    pass it for another kind.

    Examples
    --------
    >>> make_prior("group", 0.1)
    GuidedGroupLasso(strength=0.1, guidance=linear())
    >>> make_prior("sparse_group", 0.1, alpha=0.25)
    GuidedSparseGroupLasso(strength=0.1, guidance=linear(), alpha=0.25)
    """
    member = PriorKind.resolve(kind, "prior kind")
    if member is PriorKind.SPARSE_GROUP:
        g = linear() if guidance is None else guidance
        return GuidedSparseGroupLasso(strength, g, 0.5 if alpha is None else alpha)
    if alpha is not None:
        raise ValueError(
            f"alpha is only meaningful for prior kind 'sparse_group', not {member.value!r}"
        )
    cls: Callable[..., UnitPrior] = {
        PriorKind.L1: GuidedLaplace,
        PriorKind.L2: GuidedNormal,
        PriorKind.GROUP: GuidedGroupLasso,
    }[member]
    return cls(strength) if guidance is None else cls(strength, guidance)
