"""Sweep files: the grid's points, their names and identities, and errors before any work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bayesguide.experiment import Experiment
from bayesguide.runner import config_hash
from bayesguide.sweeps import SweepError, SweepSettings, load_sweep, parse_sweep
from bayesguide.sweeps.spec import MAX_POINTS, point_name


def test_the_grid_is_every_combination_in_file_order(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_sweep(sweep_file(tmp_path))
    assert [p.overrides for p in spec.points] == [
        {"prior.strength": 0.5, "fit.seed": 0}, {"prior.strength": 0.5, "fit.seed": 1},
        {"prior.strength": 2.0, "fit.seed": 0}, {"prior.strength": 2.0, "fit.seed": 1}]
    assert [p.name for p in spec.points] == ["strength=0.5,seed=0", "strength=0.5,seed=1", "strength=2.0,seed=0",
                                             "strength=2.0,seed=1"]
    first = spec.points[0].experiment
    assert (first.prior.strength, first.fit.seed, first.network.hidden) == (0.5, 0, [5])
    assert first.output.dir == str(tmp_path / "out" / "points" / "strength=0.5,seed=0")
    assert spec.points[0].config_hash == config_hash(first)
    # the relative data file is the one beside the sweep file, wherever the sweep runs from
    assert first.data.source == str((tmp_path / "d.npz").resolve())


def test_nested_grid_tables_and_extra_points(sweep_file: Callable[..., Path], tmp_path: Path) -> None:
    grid = '[grid.prior]\nstrength = [0.5, 1.0]\n\n[[point]]\n"prior.kind" = "l1"\n"prior.strength" = 0.1\n' \
           '[[point]]\n"prior.strength" = 0.5'  # the second extra point is in the grid already: run once
    spec = load_sweep(sweep_file(tmp_path, grid=grid))
    assert [p.name for p in spec.points] == ["strength=0.5", "strength=1.0", "kind=l1,strength=0.1"]
    assert spec.points[2].experiment.prior.kind == "l1"
    assert len({p.config_hash for p in spec.points}) == 3


def test_point_names_are_unique_and_safe() -> None:
    assert point_name({"network.hidden": [64, 64], "network.activation": "tanh"}) == "hidden=64x64,activation=tanh"
    assert point_name({"data.source": "a/b c.npz"}) == "source=a_b_c.npz"
    assert point_name({"fit.seed": 1, "data.seed": 2}) == "fit.seed=1,data.seed=2"
    spec = parse_sweep({"network": {"hidden": [8]}, "grid": {"data.source": ["x/a.csv", "x_a.csv"]},
                        "data": {"task": "classification"}})
    names = [p.name for p in spec.points]
    assert names[0] == "source=x_a.csv" and names[1].startswith("source=x_a.csv-") and len(set(names)) == 2


@pytest.mark.parametrize(("grid", "message"), [
    ('"prior.kind" = ["group", "nope"]', r"point kind=nope: \[prior\] kind = 'nope' is not accepted"),
    ('"prior.strength" = [1.0, -1.0]', r"point strength=-1.0: \[prior\] strength must be > 0"),
    ('"fit.stepz" = [1]', r"point stepz=1: .*stepz"),
    ('"prior.strength" = 0.3', r"\[grid\] prior.strength must list its values"),
    ('"prior.strength" = []', r"\[grid\] prior.strength must list its values"),
    ('"strength" = [1.0]', r"key 'strength' must be \"table.key\""),
    ('"output.dir" = ["a"]', r"'output.dir' cannot vary"),
    ('"model.width" = [1]', r"'model.width' names no experiment table"),
    ('"fit.method" = ["svi"]\n"prior.kind" = ["l0"]', r"point method=svi,kind=l0: .*l0"),
])
def test_a_bad_point_is_refused_naming_the_point_and_the_key(
        sweep_file: Callable[..., Path], tmp_path: Path, grid: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        load_sweep(sweep_file(tmp_path, grid=grid))
    assert not (tmp_path / "out").exists()  # nothing was written


@pytest.mark.parametrize(("raw", "message"), [
    ({"grid": {}}, "needs a \\[grid\\] table of lists or \\[\\[point\\]\\] entries"),
    ({"output": {"dir": "x"}, "grid": {"fit.seed": [0]}}, r"\[output\] is not part of a sweep file"),
    ({"grids": {}}, r"unknown table \[grids\]"),
    ({"sweep": {"executor": "slurm"}, "grid": {"fit.seed": [0]}}, r"executor = 'slurm' is not accepted"),
    ({"sweep": {"workers": -1}, "grid": {"fit.seed": [0]}}, r"\[sweep\] workers must be an integer in 0"),
    ({"sweep": {"dir": " "}, "grid": {"fit.seed": [0]}}, r"\[sweep\] dir must name a directory"),
    ({"sweep": {"scheduler": "host:1"}, "grid": {"fit.seed": [0]}}, r"scheduler must be \"local\" or an address"),
    ({"sweep": {"scheduler": "local", "executor": "serial"}, "grid": {"fit.seed": [0]}}, "needs executor"),
    ({"sweep": {"wokers": 2}, "grid": {"fit.seed": [0]}}, r"\[sweep\] has no key 'wokers'"),
    ({"grid": {"fit.seed": list(range(400)), "fit.steps": list(range(1, 400))}}, "more than 100,000"),
])
def test_bad_sweep_tables_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        parse_sweep(raw)
    assert MAX_POINTS == 100_000


def test_a_scheduler_address_means_dask_and_zero_workers_means_one_per_core() -> None:
    assert SweepSettings(scheduler="tcp://127.0.0.1:8786").engine == "dask"
    assert SweepSettings().engine == "local" and SweepSettings(workers=0).n_workers >= 1
    assert SweepSettings(workers=3).n_workers == 3


def test_the_base_is_an_ordinary_experiment(tmp_path: Path) -> None:
    spec = parse_sweep({"network": {"hidden": [7]}, "grid": {"fit.seed": [3]}, "sweep": {"dir": str(tmp_path)}})
    expected = Experiment.from_dict({"network": {"hidden": [7]}, "fit": {"seed": 3}})
    assert config_hash(spec.points[0].experiment) == config_hash(expected)


def test_missing_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")
    with pytest.raises(IsADirectoryError):
        load_sweep(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\n")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_sweep(bad)
