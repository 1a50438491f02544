"""Issue 14, items 3 (labels that are really IDs), 4 (degenerate data) and 9 (messages that
point the wrong way) for user data files read by :func:`bayesguide.datasets.load_file`."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesguide.datasets import load, load_file


def _X(n: int = 40, d: int = 3) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d))


def _npz(tmp_path: Path, name: str = "data.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _refused(path: Path, pattern: str, **kwargs: object) -> None:
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + pattern):
        load_file(path, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- item 3: labels


def test_labels_that_are_ids_are_refused_naming_missing_and_extra(tmp_path: Path) -> None:
    path = _npz(tmp_path, X=_X(), y=np.array([0, 1, 2000] * 13 + [0]))
    _refused(path, r"classification labels must be the integers 0\.\.2 \(3 classes found\); missing: \[2\]; "
                   r"outside 0\.\.2: \[2000\]; map them to 0\.\.2 first, e\.g\. classes, y = "
                   r"np\.unique\(y, return_inverse=True\)$")


def test_negative_and_one_based_labels_are_refused(tmp_path: Path) -> None:
    _refused(_npz(tmp_path, "neg.npz", X=_X(), y=np.arange(40) % 3 - 1),
             r"classification labels must be the integers 0\.\.2 \(3 classes found\); missing: \[2\]; "
             r"outside 0\.\.2: \[-1\]; map them")
    _refused(_npz(tmp_path, "one.npz", X=_X(), y=np.arange(40) % 3 + 1),
             r"classification labels must be the integers 0\.\.2 \(3 classes found\); missing: \[0\]; "
             r"outside 0\.\.2: \[3\]; map them")


def test_a_long_list_of_missing_labels_is_shortened(tmp_path: Path) -> None:
    path = _npz(tmp_path, X=_X(), y=np.where(np.arange(40) % 2 == 0, 0, 50))
    _refused(path, r"classification labels must be the integers 0\.\.1 \(2 classes found\); missing: \[1\]; "
                   r"outside 0\.\.1: \[50\]; map them")
    path = _npz(tmp_path, "many.npz", X=_X(), y=np.arange(40) * 10)
    _refused(path, r"classification labels must be the integers 0\.\.39 \(40 classes found\); "
                   r"missing: \[1, 2, 3, 4, 5, 6, 7, 8, … \(36 in all\)\]; outside 0\.\.39: "
                   r"\[40, 50, 60, 70, 80, 90, 100, 110, … \(36 in all\)\]; map them")


def test_non_integer_float_labels_are_refused_with_their_row(tmp_path: Path) -> None:
    y = (np.arange(40) % 2).astype(float)
    y[7] = 0.5
    _refused(_npz(tmp_path, X=_X(), y=y),
             r"classification targets must be integer class labels; y is 0\.5 at row 7 \(0-based index\)$")
    rows = "".join(f"{i},{i % 2 if i != 4 else 1.25}\n" for i in range(10))
    (tmp_path / "d.csv").write_text("x,label\n" + rows)
    _refused(tmp_path / "d.csv", r"classification targets must be integer class labels; y is 1\.25 at data "
                                 r"row 5 \(rows count from 1 after the header\)$",
             target="label")


def test_integer_valued_float_labels_are_accepted(tmp_path: Path) -> None:
    data = load_file(_npz(tmp_path, X=_X(), y=(np.arange(40) % 3).astype(float)))
    assert data.y_train.dtype == torch.int64 and data.n_outputs == 3
    assert sorted(set(data.y_train.tolist())) == [0, 1, 2]


def test_a_class_only_in_the_held_out_split_is_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path, X=_X(), y=np.arange(40) % 2, X_test=_X(6), y_test=np.array([0, 1, 2, 2, 1, 0]))
    _refused(path, r"classes \[2\] have no example in the training split \(only in the held-out data\); "
                   r"every class needs training examples")


# --------------------------------------------------------------------------- item 4: degenerate data


def test_a_csv_with_only_the_target_column_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("label\n" + "".join(f"{i % 2}\n" for i in range(10)))
    _refused(tmp_path / "t.csv", r"no feature columns: the file holds only the target column 'label'$",
             target="label")


def test_an_npz_with_zero_feature_columns_is_refused(tmp_path: Path) -> None:
    _refused(_npz(tmp_path, X=np.zeros((10, 0)), y=np.arange(10) % 2),
             r"X has no feature columns \(shape \(10, 0\)\)$")


def test_single_class_data_is_refused(tmp_path: Path) -> None:
    _refused(_npz(tmp_path, X=_X(), y=np.zeros(40, dtype=int)),
             r"only one class \(label 0\) in the data; classification needs at least two classes$")
    _refused(_npz(tmp_path, "five.npz", X=_X(), y=np.full(40, 5)), r"only one class \(label 5\) in the data")


def test_single_class_in_the_training_split_is_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path, X=_X(), y=np.zeros(40, dtype=int), X_test=_X(4), y_test=np.array([0, 1, 0, 1]))
    _refused(path, r"classes \[1\] have no example in the training split \(only in the held-out data\)")


def test_a_column_of_labels_is_refused_with_the_fix(tmp_path: Path) -> None:
    _refused(_npz(tmp_path, X=_X(), y=(np.arange(40) % 2)[:, None]),
             r"classification targets y must be one label per row \(1-D\), got shape \(40, 1\); save y\.ravel\(\)$")


@pytest.mark.parametrize("which", ["X", "y"])
def test_complex_values_are_refused(tmp_path: Path, which: str) -> None:
    arrays = {"X": _X(), "y": np.arange(40) % 2 * 1.0}
    arrays[which] = arrays[which] + 1j
    _refused(_npz(tmp_path, **arrays), rf"{which} is complex-valued \(dtype complex128\); bayesguide needs real "
                                      rf"numbers$", task="regression")


# --------------------------------------------------------------------------- item 9: messages


def test_a_nan_in_a_csv_names_the_data_row_of_the_file(tmp_path: Path) -> None:
    rows = [f"{i},{2 * i},{i % 2}" for i in range(12)]
    rows[8] = "8,,0"  # an empty cell: data row 9, line 10 of the file
    (tmp_path / "n.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    _refused(tmp_path / "n.csv", r"X contains NaN or inf, first at data row 9 \(rows count from 1 after the "
                                 r"header\)$", target="label")


def test_a_nan_in_an_npz_names_the_array_index(tmp_path: Path) -> None:
    X = _X()
    X[17, 1] = np.inf
    _refused(_npz(tmp_path, X=X, y=np.arange(40) % 2), r"X contains NaN or inf, first at row 17 \(0-based index\)$")
    y = np.arange(40.0)
    y[33] = np.nan
    _refused(_npz(tmp_path, "y.npz", X=_X(), y=y), r"y contains NaN or inf, first at row 33 \(0-based index\)$",
             task="regression")
    X_test = _X(5)
    X_test[2, 0] = np.nan
    _refused(_npz(tmp_path, "t.npz", X=_X(), y=np.arange(40) % 2, X_test=X_test, y_test=np.arange(5) % 2),
             r"X_test contains NaN or inf, first at row 2 \(0-based index\)$")


@pytest.mark.parametrize(("rows", "fraction"), [(1, 0.25), (2, 0.25), (3, 0.1), (4, 0.9)])
def test_a_file_too_small_to_split_is_refused(tmp_path: Path, rows: int, fraction: float) -> None:
    (tmp_path / "s.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(rows)))
    _refused(tmp_path / "s.csv", rf"{rows} data rows are too few to hold out test_fraction={fraction:g} of them "
                                 rf"\(at least one row for training and one for testing\)",
             target="label", test_fraction=fraction)


def test_a_file_without_rows_is_refused(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,label\n")
    _refused(tmp_path / "h.csv", r"no data rows after the header$", target="label")
    _refused(_npz(tmp_path, X=np.zeros((0, 3)), y=np.zeros(0)), r"X has no rows \(shape \(0, 3\)\)$")


def test_a_text_file_named_npz_is_not_a_valid_npz(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_text("x,y\n1,2\n")
    _refused(tmp_path / "bad.npz", r"not a valid \.npz file \(expected a zip archive of arrays written by "
                                   r"np\.savez\)$")


def test_a_truncated_npz_is_not_a_valid_npz(tmp_path: Path) -> None:
    good = _npz(tmp_path, X=_X(400, 30), y=np.arange(400) % 2).read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    _refused(tmp_path / "cut.npz", r"not a valid \.npz file \(expected a zip archive")


def test_a_corrupt_member_of_an_npz_is_named(tmp_path: Path) -> None:
    path = _npz(tmp_path, X=_X(400, 30), y=np.arange(400) % 2)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        start = z.getinfo("X.npy").header_offset + 200  # inside X's stored bytes
    raw[start:start + 64] = b"\x00" * 64
    path.write_bytes(bytes(raw))
    _refused(path, r"not a valid \.npz file: array 'X' cannot be read \(BadZipFile: Bad CRC-32")


def test_an_npy_named_npz_and_object_arrays_are_named(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _X())
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    _refused(tmp_path / "a.npz", r"not a valid \.npz file: it holds a single \.npy array; write X and y with "
                                 r"np\.savez\(path, X=X, y=y\)$")
    path = _npz(tmp_path, "o.npz", X=np.array([[1, "a"]] * 4, dtype=object), y=np.arange(4) % 2)
    _refused(path, r"array 'X' holds Python objects \(dtype object\); save numeric arrays$")


def test_a_value_that_overflows_float32_is_named_not_reported_as_inf(tmp_path: Path) -> None:
    X = _X()
    X[11, 2] = -1e300
    path = _npz(tmp_path, X=X, y=np.arange(40) % 2)
    _refused(path, r"X value -1e\+300 at row 11 \(0-based index\) overflows float32 \(largest finite "
                   r"3\.4e\+38\); rescale the data \(or, from Python, load it with dtype=torch\.float64\)$")
    data = load_file(path, dtype=torch.float64)  # float64 holds it
    assert torch.isfinite(data.X_train).all() and torch.isfinite(data.X_test).all()
    assert -1e300 in torch.cat([data.X_train, data.X_test])[:, 2].tolist()
    y = np.arange(40.0)
    y[5] = 1e39
    _refused(_npz(tmp_path, "y.npz", X=_X(), y=y), r"y value 1e\+39 at row 5 \(0-based index\) overflows float32",
             task="regression")


def test_a_good_file_loads_every_row_once(tmp_path: Path) -> None:
    X = np.arange(40 * 3, dtype=float).reshape(40, 3)
    data = load(str(_npz(tmp_path, X=X, y=np.arange(40) % 4)), task="classification")
    assert (data.X_train.shape, data.X_test.shape, data.n_outputs) == ((30, 3), (10, 3), 4)
    rows = torch.cat([data.X_train, data.X_test])
    assert sorted(rows[:, 0].tolist()) == X[:, 0].tolist()
    labels = torch.cat([data.y_train, data.y_test])
    assert labels.tolist() == ((rows[:, 0] / 3).long() % 4).tolist()
