"""``device=`` through the library (issue 11, item 5).

On the CPU: ``device="cpu"`` gives bit for bit what the default gives (fits, evidence,
a comparison); a device that is no torch device, or CUDA where there is none, is a
``ValueError`` naming it before any step; minibatch training moves each minibatch (a spy
on :func:`bayesguide.model.device.take_batch` counts them) and never the whole data set;
results come back on the CPU; experiment files validate ``[fit] device``. The tests at the
end compare the CPU and CUDA results to float tolerance and run only where CUDA is.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
import bayesguide.infer.map as map_module
import bayesguide.infer.svi as svi_module
from bayesguide.experiment import Experiment, ExperimentError, load_experiment
from bayesguide.model.device import (
    available_devices,
    check_device,
    module_on,
    place_data,
    resolve_device,
    take_batch,
)
from bayesguide.pipeline import fit_model

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
CPU = torch.device("cpu")


def _net(n_in: int = 4, width: int = 8, n_out: int = 3) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out))


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()


def _model(prior: bg.UnitPrior | None = None) -> bg.GuidedModel:
    return bg.GuidedModel(_net(), bg.GuidedGroupLasso(0.5) if prior is None else prior)


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _same_fit(a: bg.FitResult, b: bg.FitResult) -> None:
    np.testing.assert_array_equal(a.losses, b.losses)
    for (name, p), q in zip(a.module.state_dict().items(), b.module.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    for k in a.unit_norms:
        np.testing.assert_array_equal(a.unit_norms[k], b.unit_norms[k])


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


# ---------------------------------------------------------------------- resolving a device


def test_none_is_the_device_of_the_networks_parameters() -> None:
    assert resolve_device(None, nn.Linear(2, 2)) == CPU
    assert resolve_device(None, nn.ReLU()) == CPU  # no parameters: the CPU
    assert resolve_device("cpu", nn.Linear(2, 2)) == CPU
    assert resolve_device(torch.device("cpu"), nn.Linear(2, 2)) == CPU
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "cpu cuda"])
def test_a_string_that_is_no_torch_device_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"^device={bad!r} is not a torch device; use \"cpu\", \"cuda\" or "
                                         rf"\"cuda:N\" \(available here: cpu"):
        resolve_device(bad, nn.Linear(2, 2))


def test_cuda_without_cuda_is_refused_naming_what_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    with pytest.raises(ValueError, match=r"^device='cuda': no CUDA device is available here .*; available: cpu$"):
        check_device("cuda")
    with pytest.raises(ValueError, match=r"^device='cuda:1': no CUDA device"):
        check_device(torch.device("cuda:1"))


def test_a_cuda_index_beyond_the_machines_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"^device='cuda:2': this machine has 2 CUDA device\(s\); available: cpu, "
                                         r"cuda:0, cuda:1"):
        check_device("cuda:2")
    assert check_device("cuda:1") == torch.device("cuda:1")


def test_a_device_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^device='meta' is not a device bayesguide can run on here"):
        check_device("meta")
    with pytest.raises(TypeError, match=r"^device must be a string such as 'cuda', a torch.device or None, got int$"):
        check_device(0)  # type: ignore[arg-type]


def test_module_on_copies_only_when_the_module_is_elsewhere() -> None:
    net = nn.Linear(2, 2)
    assert module_on(net, CPU) is net


# ---------------------------------------------------------------------- device="cpu" is the default, bit for bit


@pytest.mark.parametrize("batch_size", [None, 16])
def test_fit_map_on_cpu_is_the_default_bit_for_bit(batch_size: int | None) -> None:
    X, y = _data()
    model = _model()
    default = bg.fit_map(model, X, y, steps=25, lr=0.02, batch_size=batch_size, progress=False)
    on_cpu = bg.fit_map(model, X, y, steps=25, lr=0.02, batch_size=batch_size, progress=False, device="cpu")
    _same_fit(default, on_cpu)
    assert on_cpu.settings["device"] == "cpu" and "device" not in default.settings


def test_resume_fit_and_fit_model_take_the_device() -> None:
    X, y = _data()
    model = _model()
    fit = bg.fit_map(model, X, y, steps=5, progress=False, device="cpu")
    other = fit_model(model, X, y, steps=5, progress=False, device="cpu")
    _same_fit(other, fit)
    resumed = bg.resume_fit(fit, X, y, 5)  # the fit's own device
    assert resumed.settings["device"] == "cpu" and resumed.steps == 10
    # resumed from `other`, not `fit`: a second resume of `fit` would start from the Adam state the first left
    _same_fit(bg.resume_fit(other, X, y, 5, device=None), resumed)


@pytest.mark.parametrize("guide", ["normal", "lowrank"])
def test_fit_svi_on_cpu_is_the_default_bit_for_bit(guide: str) -> None:
    X, y = _data()
    model = _model(bg.GuidedNormal(0.5))
    torch.manual_seed(0)  # the low-rank factor starts at random, from the global generator
    default = bg.fit_svi(model, X, y, steps=15, lr=0.01, guide=guide, batch_size=20, progress=False)
    torch.manual_seed(0)
    on_cpu = bg.fit_svi(model, X, y, steps=15, lr=0.01, guide=guide, batch_size=20, progress=False,
                        device=torch.device("cpu"))
    _same_fit(default, on_cpu)
    for p, q in zip(default.guide.parameters(), on_cpu.guide.parameters(), strict=True):
        assert torch.equal(p, q)


def test_other_fitters_on_cpu_are_the_default_bit_for_bit() -> None:
    X, y = _data()
    l0 = bg.GuidedModel(_net(), bg.HardConcreteGates(1.0))
    _same_fit(bg.fit_l0(l0, X, y, steps=10, progress=False),
              bg.fit_l0(l0, X, y, steps=10, progress=False, device="cpu"))
    rel = bg.GuidedModel(_net(), bg.GuidedNormal(1.0, bg.guidance.relevance(every=4)))
    a, b = bg.fit_relevance(rel, X, y, steps=10, lr=0.01), bg.fit_relevance(rel, X, y, steps=10, lr=0.01, device="cpu")
    _same_fit(a, b)
    assert torch.equal(a.model.coefficients["0.units"], b.model.coefficients["0.units"])
    ml = bg.GuidedModel(_net(), bg.GuidedNormal(1.0, bg.guidance.marglik(every=5, burn_in=5)))
    a, b = bg.fit_marglik(ml, X, y, steps=12, lr=0.01), bg.fit_marglik(ml, X, y, steps=12, lr=0.01, device="cpu")
    _same_fit(a, b)
    assert torch.equal(a.model.coefficients["0.units"], b.model.coefficients["0.units"])


@pytest.mark.parametrize("hessian", ["full", "kron", "diag", "ekfac"])
def test_evidence_on_cpu_is_the_default_bit_for_bit(hessian: str) -> None:
    X, y = _data()
    fit = bg.fit_map(_model(), X, y, steps=30, lr=0.02, progress=False)
    default = bg.evidence(fit, X, y, hessian=hessian, optimize_prior=True)
    assert bg.evidence(fit, X, y, hessian=hessian, optimize_prior=True, device="cpu") == default


def test_a_comparison_on_cpu_is_the_default_bit_for_bit() -> None:
    X, y = _data()
    fit = bg.fit_map(_model(), X, y, steps=30, lr=0.02, progress=False)
    path = bg.pruning_path(fit, X, y, n_candidates=3, fine_tune=5, device="cpu")
    a = bg.compare(path, X, y, progress=False)
    b = bg.compare(path, X, y, progress=False, device="cpu")
    assert a.table.equals(b.table)
    sel = bg.Selection(n_candidates=3, fine_tune=5, bisect=0, progress=False)
    c = bg.select_architecture(fit, X, y, sel)
    d = bg.select_architecture(fit, X, y, bg.Selection(n_candidates=3, fine_tune=5, bisect=0, progress=False,
                                                       device="cpu"))
    assert c.table.equals(d.table)


# ---------------------------------------------------------------------- refused before any work


def _refused_before_any_step(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object], match: str) -> None:
    def no_step(*args: object, **kwargs: object) -> None:
        raise AssertionError("a step ran")

    monkeypatch.setattr(map_module, "optimize", no_step)
    monkeypatch.setattr(svi_module, "optimize", no_step)
    with pytest.raises(ValueError, match=match):
        run()


@pytest.mark.parametrize("fitter", [bg.fit_map, bg.fit_svi])
def test_fitters_refuse_cuda_without_cuda_before_any_step(monkeypatch: pytest.MonkeyPatch,
                                                         fitter: Callable[..., bg.FitResult]) -> None:
    _no_cuda(monkeypatch)
    X, y = _data()
    model = _model(bg.GuidedNormal(0.5))
    _refused_before_any_step(monkeypatch, lambda: fitter(model, X, y, steps=3, device="cuda"),
                             r"^device='cuda': no CUDA device is available here")
    _refused_before_any_step(monkeypatch, lambda: fitter(model, X, y, steps=3, device="tpu:0"),
                             r"^device='tpu:0' is not a torch device")


def test_optim_settings_check_the_device_on_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    with pytest.raises(ValueError, match=r"^device='cuda:0': no CUDA device"):
        bg.OptimSettings(device="cuda:0")
    assert bg.OptimSettings(device=torch.device("cpu")).device == "cpu"
    assert "device" not in bg.OptimSettings().as_dict()


def test_evidence_compare_and_selection_refuse_a_bad_device_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    X, y = _data()
    fit = bg.fit_map(_model(), X, y, steps=5, progress=False)
    with pytest.raises(ValueError, match=r"^device='cuda': no CUDA device"):  # before the (wrong) data are checked
        bg.evidence(fit, X[:10], y[:10], device="cuda")
    with pytest.raises(ValueError, match=r"^device='gpu' is not a torch device"):
        bg.evidence(fit, X, y, method="elbo", device="gpu")
    with pytest.raises(ValueError, match=r"^device='cuda': no CUDA device"):
        bg.compare([bg.prune(fit, keep=2)], X[:10], y[:10], device="cuda", progress=False)
    with pytest.raises(ValueError, match=r"^device='gpu' is not a torch device"):
        bg.Selection(device="gpu")
    with pytest.raises(ValueError, match=r"^device='cuda': no CUDA device"):
        bg.pruning_path(fit, X, y, fine_tune=3, device="cuda")


# ---------------------------------------------------------------------- data moved per batch, results on the CPU


def test_minibatch_training_moves_one_batch_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data(60)
    calls: list[tuple[int, torch.device]] = []

    def spy(Xd: torch.Tensor, yd: torch.Tensor, idx: torch.Tensor | None,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        assert idx is not None and Xd.shape[0] == 60  # the data are not moved whole
        xb, yb = take_batch(Xd, yd, idx, device)
        calls.append((xb.shape[0], xb.device))
        return xb, yb

    monkeypatch.setattr(map_module, "take_batch", spy)
    fit = bg.fit_map(_model(), X, y, steps=7, batch_size=16, progress=False, device="cpu")
    assert calls == [(16, CPU)] * 7 and fit.steps == 7
    calls.clear()
    monkeypatch.setattr(svi_module, "take_batch", spy)
    bg.fit_svi(_model(bg.GuidedNormal(0.5)), X, y, steps=5, batch_size=20, progress=False)
    assert calls == [(20, CPU)] * 5


def test_full_batch_training_places_the_data_once(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data(30)
    placed: list[bool] = []
    seen: list[torch.Tensor] = []

    def place_spy(Xt: torch.Tensor, yt: torch.Tensor, device: torch.device,
                  full_batch: bool) -> tuple[torch.Tensor, torch.Tensor]:
        placed.append(full_batch)
        return place_data(Xt, yt, device, full_batch)

    def batch_spy(Xd: torch.Tensor, yd: torch.Tensor, idx: torch.Tensor | None,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        assert idx is None
        seen.append(Xd)
        return take_batch(Xd, yd, idx, device)

    monkeypatch.setattr(map_module, "place_data", place_spy)
    monkeypatch.setattr(map_module, "take_batch", batch_spy)
    bg.fit_map(_model(), X, y, steps=4, progress=False)
    assert placed == [True] and len(seen) == 4 and all(t is seen[0] for t in seen)  # one tensor, no copies


def test_batches_are_gathered_where_the_data_are() -> None:
    X, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    assert place_data(X, y, CPU, full_batch=False) == (X, y)
    assert take_batch(X, y, None, CPU) == (X, y)
    xb, yb = take_batch(X, y, torch.tensor([4, 1]), CPU)
    assert xb.tolist() == [[8.0, 9.0], [2.0, 3.0]] and yb.tolist() == [4, 1]


def test_results_come_back_on_the_cpu() -> None:
    X, y = _data()
    fit = bg.fit_map(_model(), X, y, steps=5, progress=False, device="cpu")
    assert {t.device for t in _tensors(fit.optimizer_state)} == {CPU}
    assert {p.device for p in fit.module.parameters()} == {CPU}
    assert isinstance(bg.evidence(fit, X, y, device="cpu").log_evidence, float)


# ---------------------------------------------------------------------- priors on a device


def test_priors_are_cached_per_device_and_updated_together() -> None:
    model = _model(bg.GuidedNormal(0.5))
    site = model.prunable_sites[0]
    prior = model.site_distribution(site, device=CPU)
    assert model.site_distribution(site) is prior  # the default device is the CPU
    moved = prior.to("cpu")
    assert moved is not prior and torch.equal(moved.rate, prior.rate)
    value = torch.randn(site.n_units, site.group_size, dtype=model.dtype)
    assert torch.equal(moved.log_prob(value), prior.log_prob(value))
    as64 = model.site_distribution(site, torch.float64)
    model.set_site_rate(site, torch.full((site.n_units,), 2.0))
    assert prior.rate.tolist() == as64.rate.tolist() == [2.0] * site.n_units


# ---------------------------------------------------------------------- experiment files


def _load(tmp_path: Path, text: str) -> Experiment:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return load_experiment(path)


def test_fit_device_defaults_to_the_cpu_and_keeps_the_identity(tmp_path: Path) -> None:
    exp = _load(tmp_path, "[fit]\nsteps = 10\n")
    assert exp.fit.device == "" and exp.optim().device is None and exp.selection().device is None
    assert "device" not in exp.to_dict()["fit"]
    exp = _load(tmp_path, '[fit]\ndevice = "cpu"\n')
    assert exp.optim().device == "cpu" and exp.selection().device == "cpu"
    assert exp.to_dict()["fit"]["device"] == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "cuda:one", "mps", " cpu"])
def test_fit_device_accepts_only_its_forms(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ExperimentError, match=r'^\[fit\] device = .* is not accepted; use "" \(the default: the '
                                              r'CPU\), "cpu", "cuda" or "cuda:N"'):
        _load(tmp_path, f'[fit]\ndevice = "{bad}"\n')
    with pytest.raises(ExperimentError, match=r"^\[fit\] device must be a string, got 1$"):
        _load(tmp_path, "[fit]\ndevice = 1\n")


def test_fit_device_cuda_without_cuda_is_refused_at_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    with pytest.raises(ExperimentError, match=r"^\[fit\] device = 'cuda' cannot be used: no CUDA device is "
                                              r"available here .*; available: cpu$"):
        _load(tmp_path, '[fit]\ndevice = "cuda"\n')


# ---------------------------------------------------------------------- CPU against CUDA (only where CUDA is)


@needs_cuda
@pytest.mark.parametrize("batch_size", [None, 16])
def test_fit_map_on_cuda_matches_the_cpu(batch_size: int | None) -> None:
    X, y = _data()
    model = bg.GuidedModel(_net().double(), bg.GuidedGroupLasso(0.5))
    cpu = bg.fit_map(model, X, y, steps=40, lr=0.02, batch_size=batch_size, progress=False)
    gpu = bg.fit_map(model, X, y, steps=40, lr=0.02, batch_size=batch_size, progress=False, device="cuda")
    np.testing.assert_allclose(gpu.losses, cpu.losses, rtol=1e-9, atol=1e-9)
    assert {p.device for p in gpu.module.parameters()} == {CPU}
    assert {t.device for t in _tensors(gpu.optimizer_state)} == {CPU}
    for p, q in zip(cpu.module.parameters(), gpu.module.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-10)
    resumed = bg.resume_fit(gpu, X, y, 5)  # the saved device is used again
    assert resumed.steps == 45 and resumed.settings["device"] == "cuda"


@needs_cuda
@pytest.mark.parametrize("hessian", ["full", "kron", "diag", "ekfac"])
def test_evidence_on_cuda_matches_the_cpu(hessian: str) -> None:
    X, y = _data()
    fit = bg.fit_map(bg.GuidedModel(_net().double(), bg.GuidedGroupLasso(0.5)), X, y, steps=40, lr=0.02,
                     progress=False)
    cpu = bg.evidence(fit, X, y, hessian=hessian, optimize_prior=True)
    gpu = bg.evidence(fit, X, y, hessian=hessian, optimize_prior=True, device="cuda")
    assert gpu.log_evidence == pytest.approx(cpu.log_evidence, rel=1e-8, abs=1e-8)
    assert gpu.prior_scale == pytest.approx(cpu.prior_scale, rel=1e-6)


@needs_cuda
def test_the_other_fitters_and_estimators_run_on_cuda() -> None:
    X, y = _data()
    gpu = bg.fit_svi(_model(bg.GuidedNormal(0.5)), X, y, steps=10, batch_size=20, progress=False, device="cuda")
    assert {p.device for p in gpu.guide.parameters()} == {CPU}
    assert np.isfinite(bg.evidence(gpu, X, y, method="elbo", particles=20, device="cuda").log_evidence)
    l0 = bg.fit_l0(bg.GuidedModel(_net(), bg.HardConcreteGates(1.0)), X, y, steps=10, progress=False, device="cuda")
    assert {p.device for p in l0.module.parameters()} == {CPU}
    rel = bg.GuidedModel(_net().double(), bg.GuidedNormal(1.0, bg.guidance.relevance(every=4)))
    a, b = bg.fit_relevance(rel, X, y, steps=12, lr=0.01), bg.fit_relevance(rel, X, y, steps=12, lr=0.01, device="cuda")
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-8)
    ml = bg.GuidedModel(_net().double(), bg.GuidedNormal(1.0, bg.guidance.marglik(every=5, burn_in=5)))
    a, b = bg.fit_marglik(ml, X, y, steps=12, lr=0.01), bg.fit_marglik(ml, X, y, steps=12, lr=0.01, device="cuda")
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-8)
    fit = bg.fit_map(bg.GuidedModel(_net().double(), bg.GuidedGroupLasso(0.5)), X, y, steps=30, lr=0.02,
                     progress=False)
    clml = bg.evidence(fit, X, y, method="clml", steps=5, draws=20, device="cuda")
    assert np.isfinite(clml.log_evidence)


@needs_cuda
def test_a_selection_on_cuda_matches_the_cpu(tmp_path: Path) -> None:
    X, y = _data()
    fit = bg.fit_map(bg.GuidedModel(_net().double(), bg.GuidedGroupLasso(0.5)), X, y, steps=40, lr=0.02,
                     progress=False)
    sel = bg.Selection(n_candidates=3, fine_tune=10, bisect=0, progress=False)
    cpu = bg.select_architecture(fit, X, y, sel)
    gpu = bg.select_architecture(fit, X, y, dataclasses.replace(sel, device="cuda"))
    np.testing.assert_allclose(gpu.table["log_evidence"], cpu.table["log_evidence"], rtol=1e-7)
    exp = _load(tmp_path, '[fit]\ndevice = "cuda"\n')
    assert exp.optim().device == "cuda" and exp.selection().device == "cuda"


@needs_cuda
def test_data_on_cuda_and_a_network_on_cuda() -> None:
    X, y = _data()
    net = copy.deepcopy(_net()).cuda()
    fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedGroupLasso(0.5)), X.cuda(), y.cuda(), steps=5, batch_size=16,
                     progress=False)
    assert {p.device for p in fit.module.parameters()} == {CPU} and fit.settings.get("device") is None


# ---------------------------------------------------------------------- the GPU benchmark


def test_gpu_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/gpu.py --smoke``: on a machine without CUDA it says so and exits 0; with CUDA it runs."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    if CUDA:
        assert "OK: every relative difference" in out and "median ratio bayesguide/reference" in out
    else:
        assert "needs a GPU" in out
