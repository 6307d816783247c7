"""``eie-model``'s refusals: damaged layer files, bad flags, OS errors and Ctrl-C each end in one
line on stderr and a non-zero exit status (``docs/guides/cli-errors.md``), never a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eie_model import cli

ROOT = Path(__file__).resolve().parents[1]


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((12, 10)) < 0.3, rng.integers(1, 16, (12, 10)), 0)
    np.savez(
        path,
        codes=codes.astype(np.uint8),
        codebook=np.linspace(0, 1, 16, dtype=np.float32),
        act=rng.random(10).astype(np.float32),
    )
    return path


def _one_line(err: str, prefix: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


def _layer_files(d: Path) -> dict[str, Path]:
    good = _npz(d / "good.npz")
    raw = good.read_bytes()
    files = {
        "random-bytes": d / "random.npz",
        "truncated": d / "truncated.npz",
        "cut-member": d / "cut.npz",
        "npy-not-npz": d / "array.npz",
        "codes-only": d / "codes_only.npz",
        "empty": d / "empty.npz",
    }
    files["random-bytes"].write_bytes(np.random.default_rng(1).bytes(300))
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["cut-member"].write_bytes(raw[:-40])  # the zip directory is damaged
    with open(files["npy-not-npz"], "wb") as f:
        np.save(f, np.arange(3))
    np.savez(files["codes-only"], codes=np.array([{"a": 1}], dtype=object))
    files["empty"].write_bytes(b"")
    return files


@pytest.mark.parametrize(
    "case, match",
    [
        ("random-bytes", "not an .npz file (no zip header)"),
        ("truncated", "damaged .npz file"),
        ("cut-member", "damaged .npz file"),
        ("npy-not-npz", "not an .npz file"),
        ("codes-only", "lacks keys"),
        ("empty", "not an .npz file"),
    ],
)
def test_a_damaged_layer_file_is_one_line_naming_it(case, match, tmp_path, capsys):
    path = _layer_files(tmp_path)[case]
    assert cli.main(["simulate", "--layer", str(path)]) == 2
    line = _one_line(capsys.readouterr().err, "eie-model simulate: error: ")
    assert match in line and str(path) in line


def test_a_pickled_member_is_refused_without_the_pickle_hint(tmp_path, capsys):
    p = tmp_path / "obj.npz"
    np.savez(
        p,
        codes=np.array([{"a": 1}], dtype=object),
        codebook=np.zeros(16, np.float32),
        act=np.zeros(1, np.float32),
    )
    assert cli.main(["simulate", "--layer", str(p)]) == 2
    line = _one_line(capsys.readouterr().err, "eie-model simulate: error: ")
    assert "not a plain numeric array" in line and "allow_pickle" not in line


@pytest.mark.parametrize(
    "argv, code, match",
    [
        (["simulate", "--layer", "{d}"], 1, "is a folder; give an .npz layer file"),
        (["simulate", "--layer", "{d}/loop.npz"], 2, "neither a benchmark name"),
        (["simulate", "--layer", "nt-lstm", "--clock-hz", "nan"], 2, "--clock-hz must be"),
        (["table", "--layers", "nt-lstm", "--scale", "-1"], 2, "--scale must be a finite"),
        (["table", "--layers", "nt-lstm", "--seed", "-1"], 2, "--seed must be in"),
        (["table", "--layers", "nt-lstm", "--repeats", "0"], 2, "--repeats must be >= 1"),
        (["table", "--layers", "nt-lstm", "--seeds", "0"], 2, "--seeds must be >= 1"),
        (["table", "--layers", "nt-lstm", "--seed", str(2**32 - 2), "--seeds", "3"], 2,
         "--seed + --seeds must be <= 4294967296"),
        (["table", "--layers", "nt-lstm", "--real-layer", "{d}/none.npz"], 1, "none.npz"),
        (["sweep", "--layer", "nt-lstm", "--pes", "2", "--fifo", "2", "--out", ""], 2,
         "--out is empty"),
        (["sweep", "--layer", "nt-lstm", "--pes", "2", "--fifo", "2", "--out", "{d}"], 2,
         "exists and is not a file"),
        (["sweep", "--layer", "nt-lstm", "--pes", "2", "--fifo", "2", "--out", "{d}/f/x.csv"],
         2, "lies below the file"),
        (["sweep", "--layer", "nt-lstm", "--pes", "2", "--fifo", "2", "--chunk", "0",
          "--out", "{d}/x.csv"], 2, "--chunk must be >= 1"),
        (["figures", "--out", "{d}/f"], 2, "exists and is not a folder"),
    ],
)  # fmt: skip
def test_bad_flags_and_paths_are_one_line(argv, code, match, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "loop.npz", tmp_path / "loop.npz")
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == code
    assert match in _one_line(capsys.readouterr().err, f"eie-model {argv[0]}: error: ")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "err, hint",
    [
        (errno.ENOSPC, "No space left on device; free some space and rerun"),
        (errno.EROFS, "Read-only file system; choose a writable location"),
        (errno.EACCES, "Permission denied; check the permissions"),
    ],
)
def test_write_errors_are_one_line(err, hint, tmp_path, capsys, monkeypatch):
    import importlib

    sweep_mod = importlib.import_module("eie_model.sweep")  # (the package exports a function)

    def write(table, path):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(sweep_mod, "write_csv", write)
    out = tmp_path / "s.csv"
    argv = ["sweep", "--layer", "nt-lstm", "--pes", "16", "--fifo", "2", "--quiet"]
    assert cli.main([*argv, "--out", str(out)]) == 1
    line = _one_line(capsys.readouterr().err, "eie-model sweep: error: ")
    assert line.endswith(f"{out}: {hint}") or hint in line


def test_interrupt_is_one_line_and_exit_130(capsys, monkeypatch):
    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_simulate", stop)
    assert cli.main(["simulate", "--layer", "nt-lstm"]) == 130
    assert capsys.readouterr().err == "interrupted; rerun the same command to resume\n"


def test_random_bytes_layer_in_a_subprocess(tmp_path):
    p = tmp_path / "random.npz"
    p.write_bytes(np.random.default_rng(2).bytes(1000))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(
        [sys.executable, "-m", "eie_model.cli", "simulate", "--layer", str(p)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().split("\n")[-1].startswith(f"eie-model simulate: error: --layer {p}")
    assert "Traceback" not in r.stderr
