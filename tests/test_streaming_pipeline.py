"""The whole selection from a data loader: fit_marglik → path → fine-tune → evidence → compare.

References: the same pipeline on the tensors (a loader of one batch gives the same
candidates, weights and numbers), and, for a loader of several batches, the quantities
that are sums over the examples (curvature, gradient, evidence at fixed weights, PSIS-LOO)
computed on the tensors.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg
from bayesguide.infer.marglik import update_precisions
from bayesguide.marglik import EvidenceEstimator, register_estimator, unregister_estimator
from bayesguide.model.batches import Batches, BatchStream
from bayesguide.pipeline import Selection, select_architecture
from bayesguide.pruning import check_convergence, pruning_path

N = 120


def regression(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, :1] - X[:, 1:2]) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return X, y


def loader(X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle)


def net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()


def marglik_model() -> bg.GuidedModel:
    prior = bg.GuidedNormal(strength=1.0, guidance=bg.guidance.marglik(every=20, burn_in=20))
    return bg.GuidedModel(net(), prior, "gaussian", noise=0.1)


def lasso_model() -> bg.GuidedModel:
    return bg.GuidedModel(net(), bg.GuidedGroupLasso(1.0), "gaussian", noise=0.1)


def _in_memory_only(fitted: object, X: torch.Tensor, y: torch.Tensor) -> bg.Evidence:
    raise AssertionError("not reached: a loader is refused before the estimator is called")


@contextlib.contextmanager
def in_memory_estimator() -> Iterator[None]:
    """A registered estimator that does not read loaders (every built-in one does)."""
    register_estimator(EvidenceEstimator("toy_in_memory", _in_memory_only, "reads tensors only"))
    try:
        yield
    finally:
        unregister_estimator("toy_in_memory")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 1e-10) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=rtol, atol=1e-12, msg=name)


# ------------------------------------------------------------------ fit_marglik


def test_fit_marglik_on_a_one_batch_loader_equals_the_tensor_fit() -> None:
    X, y = regression()
    model = marglik_model()
    a = bg.fit_marglik(model, X, y, steps=70, lr=0.01)
    b = bg.fit_marglik(model, loader(X, y, N), steps=70, lr=0.01)
    assert (b.fitter, b.settings["data"], b.steps, b.n_data) == ("marglik", "loader", 70, N)
    assert_same_weights(a.module, b.module)
    assert b.extras["precisions"].steps == a.extras["precisions"].steps == (20, 40, 60)
    assert b.extras["precisions"].effective == pytest.approx(a.extras["precisions"].effective, rel=1e-10)
    for name, g in a.model.coefficients.items():
        torch.testing.assert_close(b.model.coefficients[name], g, rtol=1e-10, atol=0.0)
    assert b.losses == pytest.approx(a.losses, rel=1e-10)


def test_fit_marglik_on_a_loader_resumes_as_one_fit_on_its_loader_only() -> None:
    X, y = regression()
    model = marglik_model()
    whole = bg.fit_marglik(model, loader(X, y, 40), steps=50, lr=0.01)
    first = bg.fit_marglik(model, loader(X, y, 40), steps=30, lr=0.01)
    resumed = bg.resume_fit(first, loader(X, y, 40), None, 20, seed=None)
    assert resumed.steps == 50 and resumed.extras["precisions"].steps == (20, 40)
    assert resumed.losses[:30].tolist() == first.losses.tolist()  # the histories carry over
    assert resumed.optimizer_state is not None and whole.extras["precisions"].steps == (20, 40)
    with pytest.raises(ValueError, match="fitted on other data"):
        bg.resume_fit(first, Batches(loader(X, y, 40), key="other"), None, 5)
    with pytest.raises(ValueError, match="batch_size=8 cannot be used with a data loader"):
        bg.fit_marglik(model, loader(X, y, 40), steps=5, batch_size=8)


@pytest.mark.parametrize("hessian", ["kron", "diag"])
def test_type_ii_update_sums_the_curvature_over_the_batches(hessian: str) -> None:
    X, y = regression()
    prior = bg.GuidedNormal(strength=1.0, guidance=bg.guidance.marglik(every=20, burn_in=20, hessian=hessian))
    fit = bg.fit_marglik(bg.GuidedModel(net(), prior, "gaussian", noise=0.1), X, y, steps=30, lr=0.01)
    s = fit.model.prior.guidance
    results = []
    for data in (X, BatchStream(Batches(loader(X, y, 25)), fit.model.net, fit.model.likelihood, fit.model.dtype)):
        model = bg.GuidedModel(fit.model.net, bg.GuidedNormal(1.0, s), "gaussian", noise=0.1)
        for name, g in fit.model.coefficients.items():
            model.coefficients[name].copy_(g)
        effective, capped = update_precisions(model, fit, data, s)
        results.append((effective, capped, {k: v.clone() for k, v in model.coefficients.items()}))
    (e_ref, c_ref, g_ref), (e, c, g) = results
    assert e == pytest.approx(e_ref, rel=1e-10) and c == c_ref
    assert any(not torch.equal(g_ref[k], fit.model.coefficients[k]) for k in g_ref)  # the update moved them
    for k in g_ref:
        torch.testing.assert_close(g[k], g_ref[k], rtol=1e-9, atol=0.0)


# ------------------------------------------------------------------ path, fine-tuning, convergence


def test_pruning_path_fine_tuned_on_a_one_batch_loader_equals_tensors() -> None:
    X, y = regression()
    fit = bg.fit_map(lasso_model(), X, y, steps=100, lr=0.02, progress=False)
    a = pruning_path(fit, X, y, n_candidates=3, fine_tune=25, lr=0.01)
    b = pruning_path(fit, loader(X, y, N), n_candidates=3, fine_tune=25, lr=0.01)  # a tensor fit, checked by content
    assert [c.widths for c in b] == [c.widths for c in a] and [c.kept for c in b] == [c.kept for c in a]
    for ca, cb in zip(a, b, strict=True):
        assert cb.tuned is not None and cb.tuned.settings["data"] == "loader"
        assert cb.tuned.data_fingerprint == cb.data_fingerprint == fit.data_fingerprint
        assert_same_weights(ca.module, cb.module)
    with pytest.raises(ValueError, match="does not yield the data MAP fit was trained on"):
        pruning_path(fit, loader(X, y, 40, shuffle=True), n_candidates=3, fine_tune=5)


def test_streamed_convergence_gradient_sums_the_batches() -> None:
    X, y = regression()
    fit = bg.fit_map(lasso_model(), X, y, steps=60, lr=0.02, progress=False)
    ref = check_convergence(fit, X, y)
    got = check_convergence(fit, loader(X, y, 25))
    assert ref.grad_rms > 0 and got.grad_rms == pytest.approx(ref.grad_rms, rel=1e-10)
    assert (got.converged, got.loss_change) == (ref.converged, ref.loss_change)


# ------------------------------------------------------------------ compare and select_architecture


def test_compare_from_a_loader_equals_compare_on_tensors() -> None:
    X, y = regression()
    fit = bg.fit_map(lasso_model(), X, y, steps=150, lr=0.02, progress=False)
    path = pruning_path(fit, X, y, n_candidates=3)
    options = {"hessian": "kron", "loo": True, "loo_draws": 40, "progress": False}
    ref = bg.compare(path, X, y, **options)
    got = bg.compare(path, loader(X, y, 35), X_test=loader(X, y, 50), **options)  # sums over 4 batches
    for column in ("log_evidence", "train_metric", "elpd_loo", "elpd_se", "posterior_prob"):
        assert got.table[column].tolist() == pytest.approx(ref.table[column].tolist(), rel=1e-8), column
    # Pareto k: a fit to the largest weights, which moves with the rounding of the batched sums
    assert got.table["pareto_k_max"].tolist() == pytest.approx(ref.table["pareto_k_max"].tolist(), rel=1e-6)
    assert got.table["test_metric"].tolist() == pytest.approx(ref.table["train_metric"].tolist(), rel=1e-10)
    assert got.best is not None and ref.best is not None and got.best.name == ref.best.name
    assert "stacking_weight" in ref.table and "stacking_weight" not in got.table  # no draws kept from a loader
    with in_memory_estimator(), pytest.raises(ValueError, match="evidence='toy_in_memory' needs the data in memory"):
        bg.compare(path, loader(X, y, 35), evidence="toy_in_memory", progress=False)
    with pytest.raises(ValueError, match="does not yield the data the candidates' fit was trained on"):
        bg.compare(path, loader(X, y, 35, shuffle=True), progress=False)


SELECTION = Selection(n_candidates=3, fine_tune=40, fine_tune_patience=None, bisect=1, loo=True, loo_draws=40,
                      progress=False)
COLUMNS = ("log_evidence", "train_metric", "grad_rms", "loss_change", "posterior_prob", "elpd_loo", "prior_scale")


def test_select_architecture_on_a_one_batch_loader_equals_tensors() -> None:
    X, y = regression()
    model = lasso_model()
    fit = bg.fit_map(model, X, y, steps=150, lr=0.02, progress=False)
    fit_l = bg.fit_map(model, loader(X, y, N), steps=150, lr=0.02, progress=False)
    ref = select_architecture(fit, X, y, SELECTION)
    for f in (fit_l, fit):  # a loader fit (checked by fingerprint), a tensor fit (by content)
        got = select_architecture(f, loader(X, y, N), selection=SELECTION)
        assert got.table["name"].tolist() == ref.table["name"].tolist()
        for column in COLUMNS:
            assert got.table[column].tolist() == pytest.approx(ref.table[column].tolist(), rel=1e-10), column
        assert got.best is not None and ref.best is not None and got.best.name == ref.best.name
        for ca, cb in zip(ref.candidates, got.candidates, strict=True):
            assert_same_weights(ca.module, cb.module)


def test_select_architecture_on_a_multi_batch_loader_is_sane() -> None:
    X, y = regression(n=240)
    model = lasso_model()
    fit = bg.fit_map(model, loader(X, y, 48, shuffle=True), steps=300, lr=0.02, progress=False)
    data = loader(X, y, 48, shuffle=True)
    got = select_architecture(fit, data, selection=SELECTION)
    table = got.table
    assert table["status"].eq("ok").all() and table["log_evidence"].notna().all()
    assert table["posterior_prob"].sum() == pytest.approx(1.0, rel=1e-12)
    assert got.best is not None and got.best.widths != (1,)  # the one-unit network cannot fit tanh(x0 - x1)
    assert table["train_metric"].min() < 0.2 < table["train_metric"].max()  # noise 0.1; the smallest under-fits
    for cand in got.candidates:  # the fine-tuning read the loader's batches, each scaled by N / B
        assert cand.tuned is not None and cand.tuned.n_data == 240 and cand.tuned.settings["data"] == "loader"
    # the pick's row is its evidence, scored again from another loader of the same data
    ev_l = bg.evidence(got.best, loader(X, y, 48), hessian=got.settings["hessian"], optimize_prior=True,
                       progress=False)
    assert ev_l.log_evidence == pytest.approx(float(table.set_index("name").loc[got.best.name, "log_evidence"]),
                                              rel=1e-8)


def test_select_architecture_refuses_what_cannot_read_a_loader_before_any_work() -> None:
    X, y = regression()
    fit = bg.fit_map(lasso_model(), loader(X, y, 40), steps=20, lr=0.02, progress=False)
    with pytest.raises(ValueError, match=r"Selection.batch_size=16 cannot be used with a data loader"):
        select_architecture(fit, loader(X, y, 40), selection=Selection(batch_size=16, progress=False))
    with in_memory_estimator(), pytest.raises(ValueError, match="evidence='toy_in_memory' needs the data in memory"):
        select_architecture(fit, loader(X, y, 40), selection=Selection(evidence="toy_in_memory", progress=False))
    with pytest.raises(ValueError, match="not the one MAP fit was trained on"):
        select_architecture(fit, Batches(loader(X, y, 40), key="v2"), selection=Selection(progress=False))


# ------------------------------------------------------------------ 300,000 rows, bounded memory, the whole selection

SCRIPT = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import numpy as np, torch
    from torch.utils.data import DataLoader, IterableDataset
    import bayesguide as bg
    from bayesguide.model.batches import Batches

    N, F, B = 300_000, 10, 4096
    W = np.linspace(-1.0, 1.0, F)

    class Rows(IterableDataset):
        # generated batch by batch (numpy, seeded per batch): the set is never held
        def __iter__(self):
            for start in range(0, N, B):
                rng = np.random.default_rng(start)
                x = rng.standard_normal((min(B, N - start), F))
                y = np.tanh(x @ W / 2) + 0.1 * rng.standard_normal(x.shape[0])
                yield torch.from_numpy(x), torch.from_numpy(y)

    def run(n_rows, steps, fine_tune):
        global N
        N = n_rows
        data = Batches(DataLoader(Rows(), batch_size=None), n=N)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(F, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
        model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0), likelihood="gaussian", noise=0.1)
        fit = bg.fit_map(model, data, steps=steps, lr=0.02, progress=False)
        sel = bg.Selection(n_candidates=3, bisect=0, fine_tune=fine_tune, fine_tune_patience=None,
                           hessian="kron", progress=False)
        cmp = bg.select_architecture(fit, data, selection=sel)
        return cmp.table["log_evidence"].tolist(), cmp.table["train_metric"].tolist(), cmp.best.widths

    run(3 * B, 3, 2)  # warm-up: imports and first-call allocations are not counted
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    log_ev, rmse, best = run(300_000, 148, 74)  # two passes to fit, one pass of fine-tuning per candidate
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump({"log_ev": log_ev, "rmse": rmse, "best": list(best), "traced_peak": traced,
               "rss_growth": rss1 - rss0}, sys.stdout)
""")


@pytest.mark.slow
def test_300k_rows_select_architecture_in_bounded_memory() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(out)
    one_tensor = 300_000 * 10 * 8  # X alone as one float64 tensor: 24 MB
    assert out["traced_peak"] < one_tensor / 8  # Python/numpy allocations: a few batches at most
    assert out["rss_growth"] < one_tensor / 2  # the process's peak grew by far less than one X
    assert all(math.isfinite(v) for v in out["log_ev"]) and len(out["log_ev"]) == 3
    assert max(out["rmse"]) > min(out["rmse"]) and min(out["rmse"]) < 0.2  # noise 0.1: the best fits well
