"""Data beyond memory: fits, evidence and metrics read from a data loader, batch by batch.

References: the same computation on the tensors (a loader of one batch gives the same
weights; the Laplace evidence from a loader equals the tensor evidence), the ``N / B``
scaling written by hand, and the memory of one full-data tensor (the 300,000-row test).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg
from bayesguide.curvature import base as curvature_base
from bayesguide.marglik import EvidenceEstimator, register_estimator, unregister_estimator
from bayesguide.model.batches import Batches, BatchStream, stream_metric

N = 120


def regression(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.sin(X[:, :1]) + 0.5 * X[:, 1:2] + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return X, y


def gaussian_model() -> bg.GuidedModel:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    return bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=0.1)


def categorical_model() -> bg.GuidedModel:
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    return bg.GuidedModel(net, bg.GuidedNormal(0.5), likelihood="categorical")


def loader(X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle)


class Counting:
    """A re-iterable of fixed batches that counts its passes."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches, self.passes = batches, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.passes += 1
        return iter(self.batches)


# ------------------------------------------------------------------ fits


@pytest.mark.parametrize("fitter", ["map", "svi"])
def test_one_batch_loader_fit_equals_tensor_fit(fitter: str) -> None:
    X, y = regression()
    model = gaussian_model()
    fit = bg.fit_map if fitter == "map" else bg.fit_svi
    a = fit(model, X, y, steps=60, lr=0.01, progress=False)
    b = fit(model, loader(X, y, batch_size=N), steps=60, lr=0.01, progress=False)
    assert b.n_data == N and b.settings["data"] == "loader"
    for (name, pa), pb in zip(a.module.state_dict().items(), b.module.state_dict().values(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=1e-10, atol=1e-12, msg=name)
    assert b.losses == pytest.approx(a.losses, rel=1e-10)


def test_minibatch_likelihood_is_scaled_by_n_over_b() -> None:
    X, y = regression()
    model = gaussian_model()
    fit = bg.fit_map(model, loader(X, y, batch_size=40), steps=1, lr=1e-3, progress=False)
    with torch.no_grad():  # the first step's data term, at the initial weights, by hand
        loglik = torch.distributions.Normal(model.net(X[:40]), 0.1).log_prob(y[:40]).sum()
    assert fit.loss_terms["nll"][0] == pytest.approx(-float(loglik) * N / 40, rel=1e-12)


def test_passes_restart_and_shuffled_order_is_seeded() -> None:
    X, y = regression()
    source = Counting([(X[i : i + 30], y[i : i + 30]) for i in range(0, N, 30)])  # 4 batches a pass
    bg.fit_map(gaussian_model(), Batches(source, n=N), steps=10, lr=0.01, progress=False)
    assert source.passes == 1 + 3  # the first batch read up front, then passes for steps 1-4, 5-8, 9-10
    model = gaussian_model()
    runs = [bg.fit_map(model, loader(X, y, 32, shuffle=True), steps=12, lr=0.01, progress=False) for _ in range(2)]
    assert runs[0].losses.tolist() == runs[1].losses.tolist()
    other = bg.fit_map(model, loader(X, y, 32, shuffle=True), steps=12, lr=0.01, seed=5, progress=False)
    assert other.losses.tolist() != runs[0].losses.tolist()


def test_loader_fit_continues_on_its_loader_only() -> None:
    X, y = regression()
    model = gaussian_model()
    whole = bg.fit_map(model, loader(X, y, 40), steps=20, lr=0.01, progress=False)
    first = bg.fit_map(model, loader(X, y, 40), steps=8, lr=0.01, progress=False)
    second = bg.fit_map(model, loader(X, y, 40), steps=12, lr=0.01, progress=False, init=first, seed=None)
    assert second.steps == 20 and second.losses[:8].tolist() == first.losses.tolist()
    assert whole.steps == 20
    resumed = bg.resume_fit(first, loader(X, y, 40), None, 12, seed=None)  # y is None: the loader has it
    assert resumed.steps == 20 and resumed.settings["data"] == "loader"
    with pytest.raises(ValueError, match="fitted on other data"):
        bg.fit_map(model, Batches(loader(X, y, 40), key="other"), steps=2, progress=False, init=first)


# ------------------------------------------------------------------ evidence


@pytest.mark.parametrize("hessian", ["kron", "diag", "ekfac", "full"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_loader_evidence_equals_tensor_evidence(hessian: str, kind: str) -> None:
    X, y = regression()
    if kind == "categorical":
        y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
        model = categorical_model()
    else:
        model = gaussian_model()
    fit = bg.fit_map(model, X, y, steps=80, lr=0.02, progress=False)
    fit_l = bg.fit_map(model, loader(X, y, N), steps=80, lr=0.02, progress=False)
    for optimize_prior in (False, True):
        ref = bg.evidence(fit, X, y, hessian=hessian, optimize_prior=optimize_prior, progress=False)
        for f in (fit, fit_l):  # a tensor fit (checked by content) and a loader fit (by fingerprint)
            ev = bg.evidence(f, loader(X, y, 35), hessian=hessian, optimize_prior=optimize_prior, progress=False)
            assert ev.log_evidence == pytest.approx(ref.log_evidence, rel=1e-8)
            assert ev.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-8)
            assert ev.prior_scale == pytest.approx(ref.prior_scale, rel=1e-6)


def test_full_ggn_refused_beyond_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = regression()
    fit = bg.fit_map(gaussian_model(), X, y, steps=5, progress=False)
    P = 4 * 6 + 6 + 6 + 1
    need = curvature_base.DENSE_COPIES * 8 * P * P
    message = rf"P={P} parameters: {need} bytes .* memory budget of 1000 bytes .* hessian='kron'"
    with pytest.raises(ValueError, match=message):
        bg.evidence(fit, X, y, hessian="full", memory_budget=1000, progress=False)
    with pytest.raises(ValueError, match=message):
        bg.evidence(fit, loader(X, y, 40), hessian="full", memory_budget=1000, progress=False)
    monkeypatch.setattr(curvature_base, "default_memory_budget", lambda: 1000)  # a machine with ~no memory
    with pytest.raises(ValueError, match=message):
        bg.evidence(fit, X, y, hessian="full", progress=False)
    assert bg.evidence(fit, X, y, hessian="kron", progress=False).n_params == P  # kron is not refused


def test_default_memory_budget_is_half_the_available_memory() -> None:
    if not hasattr(os, "sysconf"):
        pytest.skip("no sysconf")
    budget = curvature_base.default_memory_budget()
    expected = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    assert budget is not None and budget == pytest.approx(expected, rel=0.2)  # free memory moves a little


# ------------------------------------------------------------------ metrics


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_stream_metric_equals_metric_on_tensors(kind: str) -> None:
    X, y = regression()
    model = gaussian_model() if kind == "gaussian" else categorical_model()
    if kind == "categorical":
        y = (X[:, 0] > 0).long()
    Xt, yt = model.prepare_data(X, y)
    stream = BatchStream(Batches(loader(X, y, 25)), model.net, model.likelihood, model.dtype)
    with torch.no_grad():
        expected = model.likelihood.metric(model.net(Xt), yt)
    assert stream_metric(model.net, model.likelihood, stream) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ errors


def test_bad_loaders_are_named() -> None:
    X, y = regression()
    model = gaussian_model()
    batches = [(X[i : i + 40], y[i : i + 40]) for i in range(0, N, 40)]
    with pytest.raises(ValueError, match=r"yielded 120 examples in one pass, but n=150"):
        bg.fit_map(model, Batches(batches, n=150), steps=5, progress=False)
    with pytest.raises(ValueError, match=r"more than n=100 examples in one pass \(batch 2 brings it to 120\)"):
        bg.fit_map(model, Batches(batches, n=100), steps=5, progress=False)
    with pytest.raises(ValueError, match=r"n=100 but the loader's dataset has 120 examples"):
        Batches(loader(X, y, 40), n=100)
    shape = r"batch 1 has X of shape \(40, 3\), but the first batch's rows have shape \(4,\)"
    with pytest.raises(ValueError, match=shape):
        bg.fit_map(model, Batches([batches[0], (X[40:80, :3], y[40:80])], n=80), steps=5, progress=False)
    with pytest.raises(ValueError, match="batch 1 has 40 rows of X but 39 of y"):
        bg.fit_map(model, Batches([batches[0], (X[40:80], y[40:79])], n=79), steps=5, progress=False)
    with pytest.raises(ValueError, match="y of batch 1 contains NaN"):
        bg.fit_map(model, Batches([batches[0], (X[40:80], y[40:80] * math.nan)], n=80), steps=5, progress=False)
    with pytest.raises(ValueError, match="the data loader is empty"):
        bg.fit_map(model, Batches([], n=10), steps=5, progress=False)
    with pytest.raises(ValueError, match="every batch must be a pair"):
        bg.fit_map(model, Batches([(X, y, y)], n=N), steps=5, progress=False)
    with pytest.raises(ValueError, match="does not fit the network's input"):
        bg.fit_map(model, Batches([(X[:, :3], y)], n=N), steps=5, progress=False)
    with pytest.raises(TypeError, match="one-shot iterator"):
        Batches(iter(batches), n=N)
    with pytest.raises(TypeError, match="needs n="):
        Batches(batches)
    with pytest.raises(ValueError, match="n must be a positive int"):
        Batches(batches, n=0)


def _in_memory_only(fitted: object, X: torch.Tensor, y: torch.Tensor) -> bg.Evidence:
    raise AssertionError("not reached: a loader is refused before the estimator is called")


def test_what_a_loader_fit_cannot_do_is_refused_before_any_work() -> None:
    X, y = regression()
    model = gaussian_model()
    data = loader(X, y, 40)
    with pytest.raises(ValueError, match="engine='fast'"):
        bg.fit_map(model, data, engine="pyro", steps=5, progress=False)
    with pytest.raises(ValueError, match="batch_size=10 cannot be used with a data loader"):
        bg.fit_svi(model, data, batch_size=10, steps=5, progress=False)
    with pytest.raises(ValueError, match="without y"):
        bg.fit_map(model, data, y, steps=5, progress=False)
    with pytest.raises(TypeError, match="y is missing"):
        bg.fit_map(model, X, steps=5, progress=False)
    with pytest.raises(TypeError, match="X is a data loader"):
        model.prepare_data(data, y)  # what in-memory-only code (relevance_pruning, to_inference_data) runs first
    fit = bg.fit_map(model, data, steps=5, progress=False)
    register_estimator(EvidenceEstimator("toy_in_memory", _in_memory_only, "reads tensors only"))
    try:
        with pytest.raises(ValueError, match="method='toy_in_memory' needs the data in memory"):
            bg.evidence(fit, data, method="toy_in_memory")
    finally:
        unregister_estimator("toy_in_memory")
    with pytest.raises(TypeError, match=r"to_inference_data needs the data in memory.*bg.predictive.loo"):
        fit.to_inference_data(data, None)
    with pytest.raises(ValueError, match="not the one MAP fit was trained on"):
        bg.evidence(fit, Batches(data, key="v2"), hessian="kron", progress=False)
    tensor_fit = bg.fit_map(model, X, y, steps=5, progress=False)
    with pytest.raises(ValueError, match="does not yield the data MAP fit was trained on"):
        bg.evidence(tensor_fit, loader(X, y, 40, shuffle=True), hessian="kron", progress=False)


# ------------------------------------------------------------------ 300,000 rows, bounded memory

SCRIPT = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import numpy as np, torch
    from torch.utils.data import DataLoader, IterableDataset
    import bayesguide as bg
    from bayesguide.model.batches import Batches, BatchStream, stream_metric

    N, F, B = 300_000, 10, 4096
    W = np.linspace(-1.0, 1.0, F)

    class Rows(IterableDataset):
        # generated batch by batch (numpy, seeded per batch): the set is never held
        def __iter__(self):
            for start in range(0, N, B):
                rng = np.random.default_rng(start)
                x = rng.standard_normal((min(B, N - start), F))
                y = x @ W / 3 + np.sin(x[:, :1]).ravel() + 0.1 * rng.standard_normal(x.shape[0])
                yield torch.from_numpy(x), torch.from_numpy(y)

    def run(n_rows, steps):
        global N
        N = n_rows
        data = Batches(DataLoader(Rows(), batch_size=None), n=N)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(F, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
        model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=0.1)
        stream = BatchStream(data, model.net, model.likelihood, model.dtype)
        before = stream_metric(model.net, model.likelihood, stream)
        fit = bg.fit_map(model, data, steps=steps, lr=0.01, progress=False)
        ev = bg.evidence(fit, data, hessian="kron", progress=False)
        after = stream_metric(fit.module, model.likelihood, stream)
        return before, after, ev.log_evidence

    run(3 * B, 3)  # warm-up: imports and first-call allocations are not counted
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    before, after, log_ev = run(300_000, 2 * 74)  # two passes of 74 batches
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump({"before": before, "after": after, "log_ev": log_ev, "traced_peak": traced,
               "rss_growth": rss1 - rss0, "full_bytes": 300_000 * (F + 1) * 8}, sys.stdout)
""")


@pytest.mark.slow
def test_300k_rows_fit_and_score_in_bounded_memory() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(out)
    one_tensor = 300_000 * 10 * 8  # X alone as one float64 tensor: 24 MB
    assert out["traced_peak"] < one_tensor / 8  # Python/numpy allocations: a few batches at most
    assert out["rss_growth"] < one_tensor / 2  # the process's peak grew by far less than one X
    assert out["after"] < 0.5 * out["before"]  # it learned: the RMSE, streamed, more than halved
    assert math.isfinite(out["log_ev"])
