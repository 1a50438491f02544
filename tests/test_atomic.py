"""Atomic writes leave files with the permissions of ordinary new files (the umask decides)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bayesguide.atomic import write_atomic, write_json_atomic


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_an_ordinary_files_permissions(tmp_path: Path, umask: int) -> None:
    ordinary = tmp_path / "plain.txt"
    ordinary.write_text("x")  # the reference: what open() makes under this umask

    def writer(tmp: str) -> None:  # like torch.save(obj, tmp)
        Path(tmp).write_bytes(b"abc")

    written = [
        write_atomic(tmp_path / "a.txt", "text"),
        write_atomic(tmp_path / "b.bin", b"\x00\x01"),
        write_atomic(tmp_path / "c.bin", writer),
        write_json_atomic(tmp_path / "d.json", {"x": 1}),
    ]
    for path in written:
        assert _mode(path) == _mode(ordinary) == 0o666 & ~umask, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.bin", "d.json", "plain.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "a.txt", "old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
