"""Carrying a fit's prior and approximate posterior over to a pruned network.

The pruned network gets a [`GuidedModel`][bayesguide.GuidedModel] of its own with the same
prior family, strength and likelihood, and the guidance coefficients of the kept
units (``bg.guidance.custom`` per layer, keyed by layer name), so the candidate is
scored and fine-tuned under the prior it was found with.

An SVI guide is *marginalised* onto the kept weights: for a Gaussian guide this is
exact — keep the kept entries of the location, of the mean-field scales, and the kept
rows of the low-rank factor ``F`` and of the diagonal ``d`` (the marginal of
``N(μ, FFᵀ + D²)`` on a subset ``S`` is ``N(μ_S, F_S F_Sᵀ + D_S²)``). Folded constants
shift the location of the next layer's bias by the same amount as the network's bias
(evaluated at the posterior mean), so the guide's mean is the pruned network.
"""

from __future__ import annotations

import torch
from torch import nn

from bayesguide.guidance import Profile, custom
from bayesguide.model import GuidedModel
from bayesguide.network import Site
from bayesguide.posterior import DeltaGuide, Guide, LowRankGuide, MeanFieldGuide, site_key
from bayesguide.pruning.surgery import SurgeryPlan

__all__ = ["pruned_model", "site_selection", "slice_guide"]


def pruned_model(model: GuidedModel, module: nn.Module, plan: SurgeryPlan) -> GuidedModel:
    """A ``GuidedModel`` around ``module`` with ``model``'s prior and sliced guidance."""
    guided: dict[str | int, Profile] = {}
    plain: dict[str | int, Profile] = {}
    for site in model.sites:
        g = model.coefficients[site.name]
        rows = plan.rows.get(site.layer.name)
        (guided if site.prunable else plain)[site.layer.name] = custom(g if rows is None else g[rows])
    return GuidedModel(
        module,
        model.prior.with_guidance(guided),
        model.likelihood,
        noise=model.noise,
        plain_prior=model.plain_prior.with_guidance(plain),
    )


def site_selection(site: Site, plan: SurgeryPlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(rows, cols, bias_shift)`` of ``site``'s unit matrix kept by ``plan``.

    ``bias_shift`` is added to the bias column (all rows) before slicing, or ``None``.
    """
    name = site.layer.name
    m = site.layer.module
    rows = plan.rows.get(name, torch.arange(site.n_units))
    p = site.group_size
    cols = torch.arange(p)
    shift = None
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        fan_in = m.weight[0].numel()
        sel = plan.cols.get(name)
        if sel is not None:
            per = fan_in // m.weight.shape[1]  # kernel size (1 for Linear)
            w_cols = (sel[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
            cols = torch.cat([w_cols, torch.arange(fan_in, p)])
        shift = plan.bias_delta.get(name)
    return rows, cols, shift


def _slice(value: torch.Tensor, site: Site, plan: SurgeryPlan, shift_loc: bool) -> torch.Tensor:
    rows, cols, shift = site_selection(site, plan)
    v = value.detach()
    if shift_loc and shift is not None:
        v = v.clone()
        v[:, -1] = (v[:, -1].to(torch.float64) + shift).to(v.dtype)
    return v.index_select(0, rows).index_select(1, cols).clone()


def slice_guide(
    guide: Guide, old: GuidedModel, new: GuidedModel, module: nn.Module, plan: SurgeryPlan
) -> Guide:
    """The guide of ``new`` (the pruned model around ``module``) marginalised from ``guide``."""
    out: Guide
    if isinstance(guide, DeltaGuide):
        out = DeltaGuide(new, module)
    elif isinstance(guide, MeanFieldGuide):
        out = MeanFieldGuide(new, module)
        with torch.no_grad():
            for site in old.sites:
                k = site_key(site.name)
                out.locs[k].data = _slice(guide.locs[k], site, plan, True)
                out.scales_unconstrained[k].data = _slice(guide.scales_unconstrained[k], site, plan, False)
    elif isinstance(guide, LowRankGuide):
        out = LowRankGuide(new, module, rank=guide.cov_factor.shape[1])
        idx: list[torch.Tensor] = []
        offset = 0
        for site in old.sites:
            rows, cols, _ = site_selection(site, plan)
            idx.append(offset + (rows[:, None] * site.group_size + cols[None, :]).reshape(-1))
            offset += site.n_units * site.group_size
        flat = torch.cat(idx)
        loc = torch.cat([_slice(v, s, plan, True).reshape(-1) for s, v in
                         zip(old.sites, guide._unflatten(guide.loc).values())])
        with torch.no_grad():
            out.loc.data = loc
            out.cov_factor.data = guide.cov_factor.detach()[flat].clone()
            out.diag_unconstrained.data = guide.diag_unconstrained.detach()[flat].clone()
    else:
        raise TypeError(f"cannot prune the posterior of a {type(guide).__name__}")
    _slice_latent_factors(guide, out, old, plan)
    if new.learns_noise and hasattr(guide, "noise_unconstrained"):
        with torch.no_grad():
            out.noise_unconstrained.data = guide.noise_unconstrained.detach().clone()
    return out


def _slice_latent_factors(guide: Guide, out: Guide, old: GuidedModel, plan: SurgeryPlan) -> None:
    """Carry a hierarchical prior's fitted scale factors over: global scales as they are,
    per-unit scales (one per row of the site) restricted to the kept units."""
    src, dst = getattr(guide, "latent_factors", None), getattr(out, "latent_factors", None)
    if src is None or dst is None:
        return
    sites = {s.name: s for s in old.sites}
    with torch.no_grad():
        for lat in old.latent_sites:
            rows, _, _ = site_selection(sites[lat.site], plan)
            key = site_key(lat.name)
            for a, b in ((src.locs, dst.locs), (src.scales_unconstrained, dst.scales_unconstrained)):
                v = a[key].detach()
                b[key].data = (v if v.ndim == 0 else v.index_select(0, rows)).clone()
