"""Issue 14, items 6, 7 and 8: every number of an experiment file is finite, sizes are
bounded, and ``[output] dir`` names a directory — refused at load time, naming the
table and the key (exit code 2, no run directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bayesguide.cli import main
from bayesguide.experiment import Experiment, ExperimentError, OutputConfig, load_experiment
from bayesguide.experiment.tables import AUTO_OR_NUMBER
from bayesguide.priors import families


def _float_keys() -> list[tuple[str, str]]:
    """Every number-valued key: the tables' float fields, the keys taking "auto" or a number, and
    every prior family's own keys."""
    keys = [(table, key) for table, values in Experiment().to_dict().items()
            for key, value in values.items() if isinstance(value, float)]
    keys += [key for key, default in AUTO_OR_NUMBER.items() if isinstance(default, float)]
    keys += [("prior", o.key) for family in families() for o in family.options]
    return sorted(set(keys))


FLOAT_KEYS = _float_keys()


def test_the_float_keys_include_those_named_in_the_issue() -> None:
    assert set(FLOAT_KEYS) >= {("data", "test_fraction"), ("prior", "strength"), ("prior", "alpha"),
                               ("prior", "tau0"), ("prior", "l0_weight_decay"), ("fit", "lr"),
                               ("select", "kappa"), ("select", "threshold")}


def _load(tmp_path: Path, text: str) -> Experiment:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return load_experiment(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize(("table", "key"), FLOAT_KEYS)
def test_non_finite_numbers_are_refused_naming_table_and_key(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    shown = {"nan": "nan", "+nan": "nan", "inf": "inf", "-inf": "-inf"}[value]
    with pytest.raises(ExperimentError, match=rf"^\[{table}\] {key} must be a finite number, got {shown}$"):
        _load(tmp_path, f"[{table}]\n{key} = {value}\n")


def test_a_non_finite_number_exits_2_before_the_run_directory_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(f'[select]\nkappa = nan\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err == (
        "bayesguide: invalid experiment: [select] kappa must be a finite number, got nan\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[select]\nn_candidates = 1000000000000\n",
         "[select] n_candidates = 1,000,000,000,000 is more than a pruning path can hold: [network] hidden = "
         "[128, 128] gives at most 257 distinct points (the sum of the hidden widths + 1)"),
        ("[network]\nhidden = [3, 2]\n[select]\nn_candidates = 7\n",
         "[select] n_candidates = 7 is more than a pruning path can hold: [network] hidden = [3, 2] gives at most "
         "6 distinct points (the sum of the hidden widths + 1)"),
        ("[network]\nhidden = [1000001]\n",
         "[network] hidden must list at most 1,000 widths of at most 1,000,000 units, "
         "got 1 width(s), the largest 1,000,001"),
        (f"[network]\nhidden = [{', '.join(['2'] * 1001)}]\n",
         "[network] hidden must list at most 1,000 widths of at most 1,000,000 units, "
         "got 1,001 width(s), the largest 2"),
        ("[fit]\nsteps = 1000000001\n", "[fit] steps must be at most 1,000,000,000, got 1000000001"),
        ("[fit]\nbatch_size = 1000000001\n", "[fit] batch_size must be at most 1,000,000,000, got 1000000001"),
        ("[select]\nfine_tune = 9223372036854775807\n",
         "[select] fine_tune must be at most 1,000,000,000, got 9223372036854775807"),
        ('[output]\ndir = ""\n', "[output] dir must name a directory, got ''"),
        ('[output]\ndir = "  "\n', "[output] dir must name a directory, got '  '"),
    ],
)
def test_absurd_sizes_and_an_empty_output_dir_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=f"^{re.escape(message)}$"):
        _load(tmp_path, text)


def test_sizes_at_their_bounds_are_accepted(tmp_path: Path) -> None:
    exp = _load(tmp_path, "[network]\nhidden = [3, 2]\n[select]\nn_candidates = 6\nfine_tune = 1000000000\n"
                          "[fit]\nsteps = 1000000000\nbatch_size = 1000000000\n")
    assert (exp.select.n_candidates, exp.fit.steps, exp.select.fine_tune) == (6, 10**9, 10**9)
    assert _load(tmp_path, "[network]\nhidden = [1000000]\n").network.hidden == [10**6]


def test_an_empty_output_dir_is_refused_from_python_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ExperimentError, match=r"^\[output\] dir must name a directory, got ''$"):
        OutputConfig(dir="")
    path = tmp_path / "exp.toml"
    path.write_text('[output]\ndir = ""\n')
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err == "bayesguide: invalid experiment: [output] dir must name a directory, got ''\n"
    path.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--out", ""])
    assert exit_.value.code == 2
    assert "argument --out: must name a directory, got ''" in capsys.readouterr().err


def test_an_explicit_full_hessian_too_large_for_the_network_exits_2_before_fitting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # digits (64 inputs, 10 classes) through [128, 128]: 26,122 parameters, beyond full's 20,000
    path = tmp_path / "exp.toml"
    path.write_text(f'[select]\nhessian = "full"\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert main(["run", str(path), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "bayesguide: invalid experiment: [select] hessian: hessian='full' needs a 26,122×26,122 matrix "
        "(26,122 parameters > 20,000); use 'kron' or 'diag', or 'auto'\n")
    assert not (tmp_path / "run" / "fit").exists()
