"""The training loop's speed options: the one-sum group norm, the fused Adam, ``compile=``.

Each is checked against an independent answer: the group norm against the norm of the
concatenated blocks, the fused loop against torch's default Adam, the compiled fit
against the eager one.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.infer.compile import CompileReport
from bayesguide.infer.loop import make_adam, optimize
from bayesguide.infer.settings import OptimSettings
from bayesguide.priors.base import group_norm


def _naive_norm(parts: list[torch.Tensor]) -> torch.Tensor:
    """``‖θ‖₂`` of the concatenated blocks, built by concatenating them."""
    return torch.linalg.vector_norm(torch.cat(parts, dim=-1), dim=-1)


def _value_and_grads(fn, w: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    value = (fn([w, b[:, None]]) * g).sum()
    gw, gb = torch.autograd.grad(value, [w, b])
    return value.detach(), gw, gb


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_norm_equals_the_norm_of_the_concatenated_blocks_near_and_at_zero(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, generator=gen, dtype=dtype)
    b = torch.randn(7, generator=gen, dtype=dtype)
    # groups of norm ~1, 1e-3, 1e-8, 1e-15, and two exactly zero (a dead unit, subgradient 0)
    scales = torch.tensor([1.0, 1e-3, 1e-8, 1e-15, 1.0, 0.0, 0.0], dtype=dtype)
    w, b = w * scales[:, None], b * scales
    w[4].zero_()  # weights zero, bias not
    g = torch.rand(7, generator=gen, dtype=dtype) + 0.5
    got, want = _value_and_grads(group_norm, w, b, g), _value_and_grads(_naive_norm, w, b, g)
    rtol = 1e-6 if dtype == torch.float32 else 1e-14
    for a, e in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, e, rtol=rtol, atol=0)
    norms = group_norm([w, b[:, None]])
    torch.testing.assert_close(norms, _naive_norm([w, b[:, None]]), rtol=rtol, atol=0)
    assert norms[5] == 0 and norms[6] == 0  # exactly
    assert (got[1][5:] == 0).all() and (got[2][5:] == 0).all()  # the subgradient 0 of the dead units


def test_group_norm_of_a_single_block_and_of_a_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)  # (draws, units, p)
    torch.testing.assert_close(group_norm([x]), _naive_norm([x]), rtol=1e-14, atol=0)
    torch.testing.assert_close(group_norm([x[..., :2], x[..., 2:]]), _naive_norm([x]), rtol=1e-14, atol=0)


def test_make_adam_is_fused_for_real_parameters_and_falls_back_for_others() -> None:
    real = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    assert make_adam(real, 0.1).defaults["fused"] is True
    cplx = nn.Parameter(torch.ones(2, dtype=torch.complex64))
    fallback = make_adam([cplx], 0.1)
    assert not fallback.defaults["fused"]
    cplx.abs().sum().backward()
    fallback.step()  # steps (a fused Adam would refuse complex parameters here)
    assert torch.isfinite(torch.view_as_real(cplx.detach())).all()


def _rosenbrock(v: torch.Tensor) -> torch.Tensor:
    return (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2


def test_loop_resumes_a_state_saved_by_torchs_default_adam() -> None:
    """A state from an unfused Adam continues in the fused loop on the same trajectory."""
    start = torch.tensor([-1.0, 1.5], dtype=torch.float64)
    v = nn.Parameter(start.clone())
    adam = torch.optim.Adam([v], lr=0.05)
    expected = []
    for _ in range(30):
        adam.zero_grad()
        _rosenbrock(v).backward()
        adam.step()
        expected.append(v.detach().clone())
        if len(expected) == 10:
            saved, resumed_from = copy.deepcopy(adam.state_dict()), v.detach().clone()
    assert not saved["param_groups"][0]["fused"]
    w = nn.Parameter(resumed_from)
    out = optimize(lambda idx: _rosenbrock(w), [w], 1, OptimSettings(steps=20, lr=0.05, progress=False,
                                                                    record_every=1),
                   record=lambda: {"w": w}, diagnose=lambda idx: "", optimizer_state=saved)
    assert out.optimizer_state["param_groups"][0]["fused"] is True
    for rec, want in zip(out.records, expected[10:]):
        torch.testing.assert_close(rec["w"], want, rtol=1e-12, atol=1e-14)


def _tiny_problem() -> tuple[bg.GuidedModel, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(48, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=gen)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return bg.GuidedModel(net, bg.GuidedGroupLasso(0.5, bg.guidance.linear())), X, y


def test_bad_compile_options_are_refused_before_any_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model, X, y = _tiny_problem()
    with pytest.raises(TypeError, match=r"compile must be True or False, got 'yes'"):
        bg.fit_map(model, X, y, steps=2, progress=False, compile="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"compile=True needs engine='fast': engine='pyro'"):
        bg.fit_map(model, X, y, steps=2, progress=False, engine="pyro", compile=True)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler to be found
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler .* none of g\+\+, clang\+\+, c\+\+ was found"):
        bg.fit_map(model, X, y, steps=2, progress=False, compile=True)
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(RuntimeError, match=r"none of no-such-compiler-here was found"):
        bg.fit_map(model, X, y, steps=2, progress=False, compile=True)


@pytest.mark.slow
def test_compiled_fit_follows_the_eager_trajectory(tmp_path: Path) -> None:
    """Compiling changes how the objective is evaluated, not what it is (minibatches, N/B scale)."""
    model, X, y = _tiny_problem()
    eager = bg.fit_map(model, X, y, steps=30, lr=0.05, batch_size=16, progress=False)
    compiled = bg.fit_map(model, X, y, steps=30, lr=0.05, batch_size=16, progress=False, compile=True)
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-9, atol=0)
    for name in ("nll", "penalty"):
        np.testing.assert_allclose(compiled.loss_terms[name], eager.loss_terms[name], rtol=1e-9, atol=0)
    for a, b in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    report = compiled.extras["compile"]
    assert isinstance(report, CompileReport)
    assert math.isfinite(report.first_step_seconds) and report.first_step_seconds > 0
    assert math.isfinite(report.setup_seconds) and report.setup_seconds >= 0
    assert report.seconds == report.setup_seconds + report.first_step_seconds
    assert compiled.settings["compile"] is True and "compile" not in eager.settings
    assert "compile" not in eager.extras
    compiled.save(tmp_path / "fit")
    assert bg.FitResult.load(tmp_path / "fit", model).extras["compile"] == report
