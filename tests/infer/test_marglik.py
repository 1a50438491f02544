"""Evidence-driven fitting (``bg.fit_marglik``): the effective numbers of parameters against
dense inverses, the type-II fixed point against a naive loop over the exact GGN, and
pruning by the evidence on teacher–student data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.curvature import KronBlock, effective_parameters_diag, effective_parameters_kron, ggn, site_blocks
from bayesguide.curvature.base import flat_weights
from bayesguide.infer.marglik import update_precisions
from bayesguide.model import GuidedModel


def _gamma_dense(H: torch.Tensor, alpha_per_weight: torch.Tensor, n: int, p: int) -> torch.Tensor:
    """γ_j = p − α_j tr[(H⁻¹)_jj] from a dense inverse (site order: unit-major)."""
    inv_diag = torch.linalg.inv(H).diagonal().reshape(n, p)
    return p - alpha_per_weight.reshape(n, p)[:, 0] * inv_diag.sum(1)


@pytest.mark.parametrize("sigma2", [1.0, 0.04])
def test_kron_effective_parameters_match_a_dense_inverse(sigma2: float) -> None:
    gen = torch.Generator().manual_seed(0)
    n, p = 4, 3
    Gh = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    Ah = torch.randn(p, 5, generator=gen, dtype=torch.float64)
    G, A = Gh @ Gh.T, Ah @ Ah.T / 5
    alpha = torch.tensor([0.5, 2.0, 10.0, 1e4], dtype=torch.float64)
    block = KronBlock("0.units", A=A, G=G)
    d = alpha.repeat_interleave(p)
    H = torch.kron(G, A) / sigma2 + torch.diag(d)
    torch.testing.assert_close(effective_parameters_kron(block, alpha, sigma2), _gamma_dense(H, d, n, p))


def test_diag_effective_parameters_match_a_dense_inverse() -> None:
    gen = torch.Generator().manual_seed(1)
    n, p = 3, 4
    h = torch.rand(n, p, generator=gen, dtype=torch.float64) * 5
    alpha = torch.tensor([0.1, 1.0, 100.0], dtype=torch.float64)
    d = alpha.repeat_interleave(p)
    H = torch.diag(h.reshape(-1) / 0.5 + d)
    torch.testing.assert_close(effective_parameters_diag(h, alpha, 0.5), _gamma_dense(H, d, n, p))
    # a diagonal KronBlock takes the same route
    torch.testing.assert_close(effective_parameters_kron(KronBlock("s", diag=h.reshape(-1)), alpha, 0.5),
                               effective_parameters_diag(h, alpha, 0.5))


def _small_fit(hessian: str, iterations: int) -> tuple[bg.FitResult, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = torch.tanh(X[:, :1]) + 0.1 * torch.randn(40, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    prior = bg.GuidedNormal(0.7, bg.guidance.marglik(hessian=hessian, iterations=iterations, every=1000,
                                                     burn_in=1000, confidence=0.5))
    fit = bg.fit_marglik(bg.GuidedModel(net, prior, "gaussian", noise=0.3), X, y, steps=30, lr=0.02)
    assert fit.extras.get("precisions", bg.infer.PrecisionTrace()).steps == ()  # no update yet
    return fit, X, y


def test_diag_update_is_the_fixed_point_of_a_naive_loop_over_the_exact_ggn() -> None:
    """MacKay's fixed point from the exact GGN diagonal (dense ``ggn``), iterated by hand."""
    fit, X, _ = _small_fit("diag", iterations=6)
    model = fit.model
    s = model.prior.guidance
    theta = flat_weights(model, fit.module).to(torch.float64)
    G = ggn(model, fit.module.eval(), theta, X, diagonal=False)  # P × P at σ = 1
    h = G.diagonal() / 0.3**2
    # naive: one precision per prunable unit (its p weights), one for the output layer
    alpha_w = torch.cat([2 * 0.7 * model.coefficients[site.name].repeat_interleave(site.group_size)
                         for site in model.sites])
    groups, start = [], 0
    for site in model.sites:
        for j in range(site.n_units):
            groups.append((site, j, slice(start + j * site.group_size, start + (j + 1) * site.group_size)))
        start += site.n_units * site.group_size
    for _ in range(6):
        new = alpha_w.clone()
        out_gamma, out_sq = 0.0, 0.0
        for site, j, sl in groups:
            gamma = float((h[sl] / (h[sl] + alpha_w[sl])).sum())
            sq = float(theta[sl].pow(2).sum())
            if site.prunable:
                new[sl] = (gamma + 2 * 0.5 * float(s.base(site.n_units)[j])) / sq
            else:
                out_gamma, out_sq = out_gamma + gamma, out_sq + sq
        out = [sl for site, _, sl in groups if not site.prunable]
        for sl in out:
            new[sl] = out_gamma / out_sq
        alpha_w = new
    update_precisions(model, fit, X, s)
    got = torch.cat([2 * 0.7 * model.coefficients[site.name].repeat_interleave(site.group_size)
                     for site in model.sites])
    torch.testing.assert_close(got, alpha_w, rtol=1e-8, atol=0)
    # and the prior the MAP objective sees was rewritten in place: rate = α / 2
    site = model.prunable_sites[0]
    torch.testing.assert_close(model.site_distribution(site, X.dtype).rate,
                               0.7 * model.coefficients[site.name])


def test_site_blocks_diag_is_the_exact_ggn_diagonal() -> None:
    fit, X, _ = _small_fit("diag", iterations=1)
    blocks = site_blocks(fit.model, fit.module.eval(), X, "diag")
    theta = flat_weights(fit.model, fit.module).to(torch.float64)
    G = ggn(fit.model, fit.module, theta, X, diagonal=False)
    torch.testing.assert_close(torch.cat([b.diag for b in blocks]), G.diagonal())


@pytest.mark.slow
def test_the_evidence_prunes_the_units_a_teacher_does_not_have() -> None:
    """A 3-unit tanh teacher, a 12-unit student: ARD drives 9 precisions to the cap."""
    data = bg.datasets.teacher_student(n=400, n_features=5, width=3, noise=0.1, seed=1, dtype=torch.float64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 1)).double()
    prior = bg.GuidedNormal(1.0, bg.guidance.marglik())
    fit = bg.fit_marglik(bg.GuidedModel(net, prior, "gaussian"), data.X_train, data.y_train, steps=3000, lr=1e-2)
    norms = fit.model.unit_norms(fit.module)["0"]
    alive = norms > 1e-2
    assert int(alive.sum()) == 3
    assert fit.noise == pytest.approx(0.1, rel=0.25)
    alpha = 2 * fit.model.coefficients["0.units"]
    assert bool((alpha[~alive] > 1e5).all()) and bool((alpha[alive] < 100).all())
    assert fit.extras["precisions"].capped[-1] >= 6
    # the selection path starts at the alive units, and the evidence picks them
    cmp = bg.select_architecture(fit, data.X_train, data.y_train, bg.Selection(n_candidates=4, progress=False))
    assert cmp.candidates[0].widths == (3,)
    assert cmp.best.widths == (3,)


def test_classification_learns_per_layer_and_per_unit_precisions() -> None:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(120, 4, generator=gen)
    y = (X[:, 0] > 0).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    prior = bg.GuidedNormal(1.0, bg.guidance.marglik(every=20, burn_in=20))
    fit = bg.fit_marglik(bg.GuidedModel(net, prior, "categorical"), X, y, steps=100, lr=0.02)
    g_out = fit.model.coefficients["2.units"]
    assert torch.allclose(g_out, g_out[0].expand_as(g_out)) and float(g_out[0]) != 1.0  # one precision per layer
    assert fit.extras["precisions"].steps == (20, 40, 60, 80, 100)
    assert np.isfinite(fit.extras["precisions"].effective).all()


def test_bad_settings_and_models_are_refused() -> None:
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        bg.guidance.marglik(every=0)
    with pytest.raises(ValueError, match="confidence"):
        bg.guidance.marglik(confidence=-1.0)
    with pytest.raises(ValueError, match="hessian must be one of kron, diag"):
        bg.guidance.marglik(hessian="full")
    with pytest.raises(ValueError, match="not an adaptive one"):
        bg.guidance.marglik(bg.guidance.relevance())
    with pytest.raises(ValueError, match="max_precision must be a finite number > 0, got inf"):
        bg.guidance.marglik(max_precision=float("inf"))
    with pytest.raises(TypeError, match="base must be a guidance profile, got int"):
        bg.guidance.marglik(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hessian must be 'kron' or 'diag', got 'full'"):
        site_blocks(GuidedModel(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)), bg.GuidedNormal(1.0)),
                    nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)), torch.randn(4, 3), "full")
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    with pytest.raises(ValueError, match=r"Gaussian prior.*GuidedLaplace"):
        bg.fit_marglik(GuidedModel(net, bg.GuidedLaplace(1.0, bg.guidance.marglik()), "gaussian"), X, y, steps=2)
    with pytest.raises(ValueError, match=r"plain_prior must be bg\.GuidedNormal"):
        bg.fit_marglik(GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.marglik()), "gaussian",
                                   plain_prior=bg.GuidedLaplace(1.0)), X, y, steps=2)
    with pytest.raises(ValueError, match=r"not bg\.guidance\.marglik"):
        bg.fit_marglik(GuidedModel(net, bg.GuidedNormal(1.0), "gaussian"), X, y, steps=2)
    other = bg.fit_map(GuidedModel(net, bg.GuidedNormal(1.0), "gaussian"), X, y, steps=2, progress=False)
    with pytest.raises(ValueError, match="init is a 'map' fit; fit_marglik continues only marglik fits"):
        bg.fit_marglik(other.model, X, y, steps=2, init=other)


def test_experiment_files_choose_it_by_guidance() -> None:
    from bayesguide.experiment import Experiment, ExperimentError

    exp = Experiment.from_dict({"data": {"source": "teacher", "task": "regression"},
                                "prior": {"kind": "l2", "guidance": "marglik"}})
    assert exp.fitter().name == "marglik"  # a regression: it learns σ
    with pytest.raises(ExperimentError, match='kind = "l2"'):
        Experiment.from_dict({"prior": {"kind": "group", "guidance": "marglik"}})
