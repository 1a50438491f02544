"""ArviZ interoperability: a comparison's ``InferenceData`` go straight into ``arviz.compare``,
its ``loo_table`` is what ``arviz.compare`` returns for them and ``arviz.plot_compare`` draws it."""

from __future__ import annotations

import warnings

import matplotlib
import matplotlib.pyplot
import numpy as np
import pandas as pd
import pytest
import torch

import bayesguide as bg
from bayesguide._arviz import arviz
from bayesguide.comparison import Comparison

matplotlib.use("Agg")

#: the columns of ``arviz.compare`` in ArviZ 0.x, with ``ic="loo"``
AZ_COLUMNS = ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning", "scale"]


def _az_compare(idata: dict[str, object]) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own high-k warnings
        return arviz().compare(idata, ic="loo", method="stacking")


@pytest.fixture(scope="module")
def loo_comparison() -> tuple[Comparison, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)) + 0.1 * torch.randn(
        60, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.linear()), likelihood="gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=200, lr=0.02, progress=False)
    path = bg.pruning_path(fit, X, y, n_candidates=3)
    cmp = bg.compare(path, X, y, loo=True, loo_draws=60, progress=False)
    return cmp, X, y


def test_loo_table_is_arviz_compare_of_the_inference_data(loo_comparison: tuple[Comparison, torch.Tensor,
                                                                                 torch.Tensor]) -> None:
    cmp, X, y = loo_comparison
    idata = cmp.inference_data()
    names = [c.name for c in cmp.candidates]
    assert list(idata) == names
    ours = cmp.loo_table
    assert ours is not None
    theirs = _az_compare(idata)
    assert list(ours.columns) == list(theirs.columns) == AZ_COLUMNS
    assert sorted(ours.index) == sorted(names)
    pd.testing.assert_frame_equal(ours.sort_index(), theirs.sort_index(), rtol=1e-9)
    assert cmp.arviz_compare() is ours
    # elpd_loo per candidate: ArviZ's loo of that candidate alone
    for name, data in idata.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone = arviz().loo(data, reff=1.0)
        assert ours.loc[name, "elpd_loo"] == pytest.approx(alone.elpd_loo, rel=1e-12)
    # uncorrected rows agree with the comparison's own elpd_loo column
    t = cmp.table.set_index("name")
    plain = ~t["loo_corrected"].astype(bool)
    np.testing.assert_allclose(ours.loc[t.index[plain], "elpd_loo"], t.loc[plain, "elpd_loo"], rtol=1e-10)
    # fresh draws with the same count are the same draws (same seed and options)
    fresh = cmp.inference_data(X, y)
    for name in names:
        np.testing.assert_array_equal(fresh[name].log_likelihood["obs"].values,
                                      idata[name].log_likelihood["obs"].values)
    pd.testing.assert_frame_equal(cmp.arviz_compare(X, y).sort_index(), theirs.sort_index(), rtol=1e-9)


# ArviZ 0.x sorts with `inplace=True`, which pandas 3.1 deprecates: ArviZ's business, not ours
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.sort_values is deprecated")
def test_plot_compare_draws_the_loo_table(loo_comparison: tuple[Comparison, torch.Tensor, torch.Tensor]) -> None:
    import matplotlib.pyplot as plt

    cmp, _, _ = loo_comparison
    assert cmp.loo_table is not None
    ax = arviz().plot_compare(cmp.loo_table, show=False)
    labels = {t.get_text() for t in ax.get_yticklabels()}
    assert {c.name for c in cmp.candidates} <= labels
    plt.close("all")


def test_inference_data_groups_dims_and_names(loo_comparison: tuple[Comparison, torch.Tensor,
                                                                    torch.Tensor]) -> None:
    cmp, X, _ = loo_comparison
    for cand, data in zip(cmp.candidates, cmp.inference_data().values()):
        assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(data.groups())
        assert data.log_likelihood["obs"].dims == ("chain", "draw", "example")
        assert data.log_likelihood["obs"].shape == (1, 60, X.shape[0])
        assert data.observed_data["obs"].dims[0] == "example"
        assert data.sample_stats["log_importance_ratio"].dims == ("chain", "draw")
        assert len(data.posterior.data_vars) == len(cand.model.sites)
        for var in data.posterior.data_vars.values():
            assert var.dims[:2] == ("chain", "draw")


def test_inference_data_errors(loo_comparison: tuple[Comparison, torch.Tensor, torch.Tensor]) -> None:
    cmp, X, y = loo_comparison
    with pytest.raises(ValueError, match="give both X and y"):
        cmp.inference_data(X)
    with pytest.raises(ValueError, match="draws= needs the training data"):
        cmp.inference_data(draws=10)
    plain = Comparison(table=cmp.table, candidates=cmp.candidates, best=cmp.best, flags=cmp.flags)
    with pytest.raises(ValueError, match="loo=False"):
        plain.inference_data()
    with pytest.raises(ValueError, match="at least two candidates"):
        Comparison(table=cmp.table.iloc[:1], candidates=cmp.candidates[:1], best=cmp.best,
                   flags=()).arviz_compare(X, y, draws=5)


def test_inference_data_names_and_posterior_predictive() -> None:
    """Variable and dimension names carry no dots, and the replicated targets are draws of
    ``y | x, θ_s``: for a Gaussian linear model, ``(ỹ − x θ_s) / σ`` is standard normal."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(80, 2, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -0.5], dtype=torch.float64) + 0.3 * torch.randn(80, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(2, 1)).double()
    model = bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood="gaussian", noise=0.3)
    fit = bg.fit_map(model, X, y, steps=300, lr=0.05, progress=False)
    idata = fit.to_inference_data(X, y, draws=400, seed=4)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data", "sample_stats"):
        data = getattr(idata, group)
        assert all("." not in str(name) for name in [*data.data_vars, *data.dims]), group
    rep = idata.posterior_predictive["obs"]
    obs = idata.observed_data["obs"]
    assert rep.dims == ("chain", "draw", *obs.dims) and rep.shape == (1, 400, *obs.shape)
    w = idata.posterior["0_units"].values[0, :, 0, :]  # (S, 3): two weights and the bias per draw
    mean = w[:, :2] @ X.numpy().T + w[:, 2:]  # (S, N): the network under each draw, by hand
    z = (rep.values[0].reshape(400, 80) - mean) / 0.3
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.02
    # the same seed gives the same replicates; another seed other ones
    again = fit.to_inference_data(X, y, draws=400, seed=4)
    np.testing.assert_array_equal(again.posterior_predictive["obs"].values, rep.values)
    other = fit.to_inference_data(X, y, draws=400, seed=5)
    assert not np.array_equal(other.posterior_predictive["obs"].values, rep.values)
    with warnings.catch_warnings():
        # ArviZ 0.x calls a matplotlib helper that matplotlib 3.11 deprecates (normalize_kwargs with a dict)
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping",
                                category=matplotlib.MatplotlibDeprecationWarning)
        arviz().plot_ppc(idata, num_pp_samples=20)
    matplotlib.pyplot.close("all")


def test_posterior_predictive_of_a_classifier_is_labels() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(50, 3, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(1.0)), X, y, steps=100, lr=0.05, progress=False)
    idata = fit.to_inference_data(X, y, draws=30, seed=0)
    rep = idata.posterior_predictive["obs"].values
    assert rep.shape == (1, 30, 50) and rep.dtype == idata.observed_data["obs"].values.dtype
    assert set(np.unique(rep)) <= {0, 1, 2}
