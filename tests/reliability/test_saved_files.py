"""Saved networks: a bare layer round-trips, and crafted or mismatched files are refused
with a message naming the file before anything is allocated or unpickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import bayesguide as bg
from bayesguide.architecture import load_module, save_module


def test_a_bare_layer_round_trips_and_its_fit_too(tmp_path: Path) -> None:
    layer = nn.Linear(3, 1).double()
    save_module(layer, tmp_path / "m")
    back = load_module(tmp_path / "m")
    assert isinstance(back, nn.Linear) and torch.equal(back.weight, layer.weight)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(30, generator=gen,
                                                                                       dtype=torch.float64)
    model = bg.GuidedModel(layer, bg.GuidedNormal(0.5), "gaussian", noise=0.1)
    fit = bg.fit_map(model, X, y, steps=50, lr=0.05, progress=False)
    fit.save(tmp_path / "fit")
    loaded = bg.FitResult.load(tmp_path / "fit", model)
    torch.testing.assert_close(loaded.predict(X), fit.predict(X))
    idata = fit.to_inference_data(X, y, draws=5)
    assert idata.posterior["units"].dims == ("chain", "draw", "unit_layer", "weight_layer")
    with pytest.raises(ValueError, match="nothing to prune"):
        bg.prune(fit, keep=1)
    with pytest.raises(ValueError, match="no hidden Linear or Conv2d layer"):
        bg.fit_relevance(bg.GuidedModel(nn.Linear(3, 1).double(), bg.GuidedNormal(1.0, bg.guidance.relevance()),
                                        "gaussian", noise=0.1), X, y, steps=2)


def _saved(tmp_path: Path) -> Path:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    save_module(net, tmp_path / "m")
    return tmp_path / "m"


def test_an_architecture_asking_for_more_than_the_weights_hold_is_refused_before_building(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    desc = json.loads((d / "architecture.json").read_text())
    desc["layers"][0]["out_features"] = 10**12  # a 4 TB layer
    (d / "architecture.json").write_text(json.dumps(desc))
    with pytest.raises(ValueError, match=r"describes 4,000,000,000,\d{3} parameter and buffer elements but .* "
                                         r"holds 21"):
        load_module(d)


def test_deeply_nested_or_malformed_descriptions_are_refused(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    nested: dict[str, object] = {"type": "Linear", "in_features": 3, "out_features": 4}
    for _ in range(200):
        nested = {"type": "Sequential", "layers": [nested]}
    (d / "architecture.json").write_text(json.dumps({"format": 1, "layers": [nested]}))
    with pytest.raises(ValueError, match="nests Sequential layers deeper than 32"):
        load_module(d)
    (d / "architecture.json").write_text('{"layers": [{"type": "Linear", "in_features": "x"}]}')
    with pytest.raises(ValueError, match="description of a Linear layer is malformed"):
        load_module(d)
    (d / "architecture.json").write_text("not json")
    with pytest.raises(ValueError, match="is not a valid architecture description"):
        load_module(d)
    d2 = _saved(tmp_path / "b")
    desc = json.loads((d2 / "architecture.json").read_text())
    (d2 / "architecture.json").write_text(json.dumps(desc | {"dtype": "load"}))
    with pytest.raises(ValueError, match="asks for dtype 'load'"):
        load_module(d2)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_a_crafted_weights_file_is_not_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _saved(tmp_path)
    (d / "weights.pt").write_bytes(pickle.dumps({"0.weight": _Evil()}))
    with pytest.raises(ValueError, match=r"weights\.pt is not a weights file saved by bayesguide"):
        load_module(d)
    assert "this must never run" not in capsys.readouterr().out
    (d / "weights.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="is not a weights file"):
        load_module(d)


def test_weights_of_another_network_are_refused(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    other = _saved(tmp_path / "o")
    torch.save(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).state_dict(), other / "weights.pt")
    (other / "architecture.json").write_text((d / "architecture.json").read_text())
    with pytest.raises(ValueError, match="does not fit"):
        load_module(other)
