"""atomic_open: complete file or none, nothing left behind, the usual file mode."""

from __future__ import annotations

import os
import stat

import pytest

from jaxcomp.atomic import atomic_open


def test_writes_binary_and_text(tmp_path):
    with atomic_open(tmp_path / "a.bin") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    with atomic_open(tmp_path / "b.csv", "w", newline="") as f:
        f.write("x\r\ny\n")
    assert (tmp_path / "b.csv").read_bytes() == b"x\r\ny\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.csv"]


def test_exception_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "keep.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(p, "w") as f:
        f.write("new, half")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["keep.txt"]


def test_mode_follows_umask_and_parents(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "d" / "e" / "f.bin", make_parents=True) as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "e" / "f.bin").stat().st_mode) == 0o644
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "missing" / "g.bin") as f:
        f.write(b"1")
    with pytest.raises(ValueError, match="mode must be"), atomic_open(tmp_path / "h", "a"):
        pass
