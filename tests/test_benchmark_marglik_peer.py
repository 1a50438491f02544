"""``benchmarks/marglik_peer.py``: the peer's network made a FitResult, and the smoke run, with and without the peer.

laplace-torch comes with the ``peers`` extra. Without it the comparison is *skipped*,
visibly — and CI (``BAYESGUIDE_REQUIRE_PEERS=1``) fails instead. Timings are never asserted.
"""

from __future__ import annotations

import builtins
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import bayesguide as bg

Loader = Callable[[str], ModuleType]
"""The ``load_benchmark`` fixture (tests/conftest.py): ``benchmarks/<file>`` as a fresh module."""


def _require_laplace_torch() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its dependencies use torch.jit.script
            import laplace.marglik_training  # noqa: F401
    except (ImportError, RuntimeError) as err:
        if os.environ.get("BAYESGUIDE_REQUIRE_PEERS"):
            raise AssertionError(f"laplace-torch is required here (BAYESGUIDE_REQUIRE_PEERS) but: {err}") from err
        pytest.skip(f"laplace-torch is not usable ({err}): pip install -c constraints.txt -e '.[peers]'")


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))


def test_unit_precisions_are_the_mean_over_each_units_row_and_bias(load_benchmark: Loader) -> None:
    bench = load_benchmark("marglik_peer.py")
    net = _net()
    model = bg.GuidedModel(net, bg.GuidedNormal(1.0, bg.guidance.uniform()), "gaussian")
    n = sum(p.numel() for p in net.parameters())
    precision = torch.rand(n, generator=torch.Generator().manual_seed(1)) + 0.5
    got = bench.unit_precisions(model, precision)
    # naive reference: walk the flat vector layer by layer, unit by unit
    at, expected = 0, {}
    for i, layer in enumerate(net):
        if not isinstance(layer, nn.Linear):
            continue
        w = precision[at:at + layer.weight.numel()].reshape(layer.weight.shape)
        at += layer.weight.numel()
        b = precision[at:at + layer.bias.numel()]
        at += layer.bias.numel()
        expected[i] = [float((w[j].sum() + b[j]) / (w.shape[1] + 1)) for j in range(w.shape[0])]
    assert sorted(got) == sorted(s.name for s in model.sites)
    for site in model.sites:
        index = int(site.layer.name)
        torch.testing.assert_close(got[site.name], torch.tensor(expected[index], dtype=torch.float64))
    # one precision per layer (laplace-torch's "layerwise") is expanded first
    layerwise = bench.unit_precisions(model, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    first = torch.full((4,), (3 * 1.0 + 2.0) / 4, dtype=torch.float64)  # 3 weights at 1, the bias at 2
    assert torch.equal(layerwise[model.sites[0].name], first)
    with pytest.raises(ValueError, match=f"precision has 7 entries; the network has {n} parameters"):
        bench.unit_precisions(model, torch.ones(7))


def test_peer_fit_keeps_the_weights_precisions_and_noise(load_benchmark: Loader) -> None:
    bench = load_benchmark("marglik_peer.py")
    net = _net()
    weights = [p.detach().clone() for p in net.parameters()]
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(2))
    y = torch.randn(20, 2, generator=torch.Generator().manual_seed(3))
    n = sum(p.numel() for p in net.parameters())
    precision = torch.linspace(0.5, 50.0, n)
    fit = bench.peer_fit(net, "gaussian", precision, 0.3, X, y, strength=0.5)
    for before, after in zip(weights, fit.module.parameters(), strict=True):
        torch.testing.assert_close(after.detach(), before, atol=1e-9, rtol=0)
    alphas = bench.unit_precisions(fit.model, precision)
    for name, alpha in alphas.items():  # precision 2 λ g = ᾱ
        torch.testing.assert_close(2 * 0.5 * fit.model.coefficients[name], alpha)
    noise = fit.guide.noise()
    assert noise is not None
    torch.testing.assert_close(noise.double(), torch.tensor(0.3, dtype=torch.float64), rtol=1e-6, atol=0)


def test_smoke_run_writes_both_picks_on_their_paths(
    capsys: pytest.CaptureFixture[str], load_benchmark: Loader, tmp_path: Path
) -> None:
    _require_laplace_torch()
    bench = load_benchmark("marglik_peer.py")
    out = tmp_path / "marglik_peer.json"
    records = bench.main(["--smoke", "--out", str(out)])
    printed = capsys.readouterr().out
    saved: dict[str, Any] = json.loads(out.read_text())
    assert saved["smoke"] is True and saved["records"] == records and len(records) == 1
    record = records[0]
    assert record["case"] == "tanh-w2" and record["true_width"] == 2 and record["steps"] == 200
    assert record["bayesguide"]["fitter"] == "marglik"
    assert record["peer_diag"]["prior_structure"] == "diag" and record["peer_diag"]["hessian"] == "full"
    for side in ("bayesguide", "peer_diag"):
        r = record[side]
        assert r["picked"] in r["path"], (side, r)
        widths = [w[0] for w in r["path"]]
        assert widths == sorted(widths, reverse=True) and widths[0] <= 6 and widths[-1] >= 1
        assert 0.0 <= r["posterior"] <= 1.0
        assert all(r[k] > 0 for k in ("fit_wall", "fit_cpu", "select_wall", "select_cpu"))
    assert record["peer_diag"]["sigma"] > 0 and record["peer_diag"]["best_epoch"] in (100, 200)
    assert all(record[side]["full_test_metric"] > 0 for side in ("bayesguide", "peer_diag"))
    assert "tanh-w2" in printed and "fit ratio = bayesguide fit_marglik / laplace-torch" in printed


def test_without_the_peer_it_says_so(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path, load_benchmark: Loader) -> None:
    real_import = builtins.__import__

    def no_laplace(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "laplace" or name.startswith("laplace."):
            raise ImportError("No module named 'laplace'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_laplace)
    bench = load_benchmark("marglik_peer.py")
    out = tmp_path / "never.json"
    assert bench.main(["--smoke", "--out", str(out)]) == []
    assert "laplace-torch is not usable here (ImportError" in capsys.readouterr().out
    assert not out.exists()
