"""The sparse-group-lasso density's normaliser and sampler: a 1-D Lévy-mixture integral.

``Z(a, b) = ∫_{R^p} exp(−a ‖θ‖₂ − b ‖θ‖₁) dθ`` has no textbook closed form for
``a, b > 0``. The subordination identity (a Lévy mixture of Gaussians)

``exp(−a r) = ∫_0^∞ a / (2√π) t^{−3/2} exp(−a² / 4t) exp(−t r²) dt``

makes the integrand factorise over coordinates, leaving one dimension, which is
evaluated by the trapezoid rule in ``u = log t`` in float64
([`sparse_group_log_integral`][bayesguide.priors.sparse_group_math.sparse_group_log_integral]).
Sampling uses the same mixture: ``t`` from its marginal on the quadrature grid
([`sample_log_linear`][bayesguide.priors.sparse_group_math.sample_log_linear]), then every coordinate exactly from
``∝ exp(−t x² − |x|)``
([`sample_exp_gauss`][bayesguide.priors.sparse_group_math.sample_exp_gauss]). Used by
[`bayesguide.priors.sparse_group`][].
"""

from __future__ import annotations

import math

import torch

__all__ = ["log_integrand", "quadrature_grid", "sample_exp_gauss", "sample_log_linear", "sparse_group_log_integral"]


def log_integrand(u: torch.Tensor, a: float, b: float, p: int) -> torch.Tensor:
    """``log`` of the integrand of ``Z(a, b)`` in ``u = log t`` (``dt = t du``), float64."""
    t_inv = torch.exp(-u)
    log_mix = math.log(a / (2.0 * math.sqrt(math.pi))) - 0.5 * u - 0.25 * a * a * t_inv
    log_coord = 0.5 * math.log(math.pi) - 0.5 * u + torch.log(torch.special.erfcx(0.5 * b * t_inv.sqrt()))
    return log_mix + p * log_coord


def quadrature_grid(a: float, b: float, p: int) -> tuple[torch.Tensor, torch.Tensor]:
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
        f = log_integrand(u, a, b, p)
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
    return u, log_w + log_integrand(u, a, b, p)


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
    nodes (see ``quadrature_grid``).

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
    _, log_terms = quadrature_grid(a / s, b / s, p)
    return float(torch.logsumexp(log_terms, 0)) - p * math.log(s)


def sample_log_linear(u: torch.Tensor, log_f: torch.Tensor, shape: torch.Size) -> torch.Tensor:
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


def sample_exp_gauss(t: torch.Tensor) -> torch.Tensor:
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
