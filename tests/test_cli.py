"""The ``jaxcomp`` command line: flag parsing, clear errors, the console-script entry."""

from __future__ import annotations

import errno
import gzip
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxcomp import cli
from jaxcomp.fileformat import save_compressed
from jaxcomp.zoo.data import MNIST_FILES

LAYERS = ["fc1/kernel", "fc2/kernel", "fc3/kernel"]
# the module (``jaxcomp.compress`` is also the name of the function the package exports)
driver = importlib.import_module("jaxcomp.compress")
presets = importlib.import_module("jaxcomp.zoo.presets")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None


@pytest.mark.parametrize(
    "text, kind, want",
    [
        ("6", int, {p: 6 for p in LAYERS}),
        ("fc1=5", int, {"fc1/kernel": 5}),
        ("fc1/kernel=0.9, fc3=0.5", float, {"fc1/kernel": 0.9, "fc3/kernel": 0.5}),
    ],
)
def test_parse_layer_values(text, kind, want):
    assert cli.parse_layer_values(text, kind, layers=LAYERS, name="--x") == want


@pytest.mark.parametrize("text, match", [("fc9=3", "unknown layer 'fc9'"), ("fc1=a", "parse")])
def test_parse_layer_values_errors_name_the_flag(text, match):
    with pytest.raises(ValueError, match=match) as e:
        cli.parse_layer_values(text, int, layers=LAYERS, name="--bits")
    assert str(e.value).startswith("--bits")


#: Flag values refused after parsing (layer lists, cross-field rules): ``main`` returns 2.
BAD_VALUES = [
    (["--bits", "fc9=4"], "--bits: unknown layer"),
    (["--bits", "17"], "--bits: fc1/kernel must be an int in 1..16"),
    (["--bits", "fc1=0"], "--bits: fc1/kernel must be an int in 1..16"),
    (["--index-bits", "fc2=40"], "--index-bits: fc2/kernel must be an int in 1..16"),
    (["--sparsity", "fc1=1.5"], "--sparsity: fc1/kernel must be a fraction in [0, 1)"),
    (["--sparsity", "nan"], "--sparsity: fc1/kernel must be a fraction"),
    (["--prune-epochs", "2"], "--prune-epochs must be >= "),
    (["--prune-fractions", "0.5,x"], "--prune-fractions"),
    (["--prune-fractions", "0.5,nan,1"], "--prune-fractions must increase"),
    (["--load-balance-pes", "0"], "--load-balance-pes: fc1/kernel must be an int >= 1"),
    (["--load-balance-pes", "x"], "--load-balance-pes"),
    (["--load-balance-pes", "fc9=4"], "--load-balance-pes: unknown layer"),
    (["--load-balance-pes", "100000"], "more than fc1/kernel has outputs (300)"),
    (["--load-balance-pes", "fc3=11"], "more than fc3/kernel has outputs (10)"),
    (["--load-balance-pes", "301"], "more than fc1/kernel has outputs (300)"),
    (["--train-limit", "10"], "--train-limit must be >= batch_size"),
    (["--baseline", "no/such/folder"], "--baseline 'no/such/folder' holds no params/"),
]

#: Flag values refused by argparse itself (``type=``): SystemExit(2), the flag named.
BAD_FLAGS = [
    (["--seed", "1180591620717411303424"], "argument --seed: must be an integer in 0..4294967295"),
    (["--seed", "-1"], "argument --seed"),
    (["--seed", "1.5"], "argument --seed: expected an integer"),
    (["--finetune-lr", "inf"], "argument --finetune-lr: must be a finite number > 0"),
    (["--finetune-lr", "0"], "argument --finetune-lr"),
    (["--prune-lr", "nan"], "argument --prune-lr: must be a finite number > 0"),
    (["--prune-lr", "-0.1"], "argument --prune-lr"),
    (["--prune-weight-decay", "-1"], "argument --prune-weight-decay: must be a finite number >= 0"),
    (["--dense-epochs", "-1"], "argument --dense-epochs: must be an integer >= 0"),
    (["--finetune-epochs", "-1"], "argument --finetune-epochs: must be an integer >= 0"),
    (["--kmeans-iters", "-3"], "argument --kmeans-iters"),
    (["--epochs-per-step", "0"], "argument --epochs-per-step"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--train-limit", "-5"], "argument --train-limit"),
    (["--share-init", "best"], "argument --share-init: invalid choice"),
    (["--data-dir", "no/such/folder"], "argument --data-dir: 'no/such/folder' is not a folder"),
    (["--data-dir", ""], "argument --data-dir: empty path"),
    (["--data-dir", "d" * 300], "argument --data-dir: " + "d" * 300 + ": File name too long"),
]  # fmt: skip


@pytest.mark.parametrize(
    "extra, match", BAD_VALUES, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_compress_bad_flags_exit_2_with_a_message(extra, match, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compress", "--model", "lenet-300-100", "--out", str(out), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxcomp compress: error:") and match in err, err
    assert err.count("\n") == 1
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize(
    "extra, match", BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_numeric_flags_are_checked_at_parse_time(extra, match, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        cli.main(["compress", "--model", "lenet-300-100", "--out", str(out), *extra])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxcomp compress: error: ") and match in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_one_pe_count_may_exceed_a_narrow_layers_outputs():
    """--load-balance-pes 64: fc3 (10 outputs) leaves PEs idle, as on EIE; only a count above
    the widest layer's outputs is refused."""
    from jaxcomp.zoo import make_model

    params = cli._params_of(make_model("lenet-300-100"))
    args = cli._Parser().parse_args([])  # an empty namespace to fill
    vars(args).update({f: None for f in cli._FIELDS}, model="lenet-300-100")
    args.load_balance_pes = ["64"]
    assert cli._config_from_args(args, params).load_balance_pes == 64
    args.load_balance_pes = ["fc1=64", "fc3=10"]
    assert dict(cli._config_from_args(args, params).load_balance_pes) == {
        "fc1/kernel": 64,
        "fc3/kernel": 10,
    }


def test_evaluate_rejects_a_damaged_or_foreign_file(tmp_path, capsys):
    f = tmp_path / "m.dcz"
    save_compressed(f, {"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "lenet-300-100"})
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    assert cli.main(["evaluate", str(f)]) == 2
    assert "CRC32" in capsys.readouterr().err
    g = tmp_path / "n.dcz"
    save_compressed(g, {"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "lenet-300-100"})
    assert cli.main(["evaluate", str(g)]) == 2  # leaves are not lenet-300-100's
    assert "do not match" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "missing.dcz")]) == 1  # an OS error
    assert "No such file or directory" in capsys.readouterr().err


def test_console_script_entry_point():
    if tomllib is None:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["jaxcomp"] == "jaxcomp.cli:main"
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0


@pytest.mark.parametrize("module", ["jaxcomp.cli", "jaxcomp.compress", "jaxcomp.zoo.presets"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ OS errors, lock, resume

ROOT = Path(__file__).resolve().parents[1]


def _one_error_line(err: str, prefix: str) -> str:
    """The error output is exactly one line starting with ``prefix``."""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data folder with a small random MNIST in the IDX format (256 train / 64 test images),
    so that the commands get past data loading in a second without the real set."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in MNIST_FILES:
        n = 256 if name.startswith("train") else 64
        if "images" in name:
            arr, magic = rng.integers(0, 256, (n, 28, 28)), 2051
        else:
            arr, magic = rng.integers(0, 10, n), 2049
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (folder / name).write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return root


def _argv(out, data_dir, *extra):
    return [
        "compress", "--model", "lenet-300-100", "--out", str(out), "--data-dir", str(data_dir),
        "--baseline", "none", "--no-progress", "--no-plots", *extra,
    ]  # fmt: skip


@pytest.fixture
def interrupt_after_setup(monkeypatch):
    """Ctrl-C at the first stage, i.e. after the checks, lock, cleanup and settings."""

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver._Stage, "done", stop)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: "", "argument --out: must name a folder"),
        (lambda d: d / "file", "argument --out: "),
        (lambda d: d / "file" / "run", "lies below the file"),
        (lambda d: d / "loop" / "run", "looping symbolic link"),
        (lambda d: d / ("x" * 300), "File name too long; shorten the path"),
        (lambda d: d / ("x" * 300) / "run", "File name too long"),
    ],
    ids=[
        "empty",
        "existing-file",
        "below-a-file",
        "below-a-symlink-loop",
        "name-too-long",
        "below-a-name-too-long",
    ],
)
def test_bad_out_is_refused_before_any_work(make, match, tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(SystemExit) as e:
        cli.main(["compress", "--model", "lenet-300-100", "--out", str(make(tmp_path))])
    assert e.value.code == 2
    assert match in _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.parametrize(
    "make, exit_code, match",
    [
        (lambda d: d, 2, "is a folder; give a .dcz file"),
        (lambda d: d / "missing.dcz", 1, "No such file or directory"),
        (lambda d: d / "loop.dcz", 1, "Too many levels of symbolic links; a symbolic link"),
        (lambda d: d / ("x" * 300 + ".dcz"), 1, "File name too long; shorten the path"),
        (lambda d: d / "file" / "m.dcz", 1, "Not a directory; a part of the path is a file"),
    ],
    ids=["folder", "missing", "symlink-loop", "name-too-long", "below-a-file"],
)
def test_evaluate_os_errors_are_one_line(make, exit_code, match, tmp_path, capsys):
    os.symlink(tmp_path / "loop.dcz", tmp_path / "loop.dcz")
    (tmp_path / "file").write_text("x")
    assert cli.main(["evaluate", str(make(tmp_path))]) == exit_code
    assert match in _one_error_line(capsys.readouterr().err, "jaxcomp evaluate: error: ")


def test_data_dir_without_mnist_is_an_error_not_the_subset(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(_argv(tmp_path / "a", empty)) == 1
    line = _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert "data_dir (--data-dir)" in line and "holds no MNIST" in line
    monkeypatch.setenv("JAXCOMP_DATA_DIR", str(empty))
    argv = [a for a in _argv(tmp_path / "b", empty) if a not in ("--data-dir", str(empty))]
    assert cli.main(argv) == 1
    assert "$JAXCOMP_DATA_DIR" in _one_error_line(capsys.readouterr().err, "jaxcomp compress")
    # the subset only when no folder is given at all
    calls = []
    monkeypatch.delenv("JAXCOMP_DATA_DIR")
    monkeypatch.setattr(presets, "load_mnist", lambda d, fallback: calls.append((d, fallback)))
    presets._load_data(None)
    assert calls == [(None, True)]


def test_interrupt_exits_130_with_one_line_and_frees_the_lock(
    tmp_path, tiny_mnist, capsys, interrupt_after_setup
):
    out = tmp_path / "run"
    assert cli.main(_argv(out, tiny_mnist)) == 130
    assert capsys.readouterr().err == cli.INTERRUPTED + "\n"
    assert not (out / driver._LOCK_NAME).exists()
    assert (out / driver._SETTINGS_NAME).exists()


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(
    tmp_path, tiny_mnist, capsys, interrupt_after_setup
):
    out = tmp_path / "run"
    out.mkdir()
    lock = out / driver._LOCK_NAME
    import socket

    lock.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live process: this one
    assert cli.main(_argv(out, tiny_mnist)) == 1
    line = _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert f"in use by another jaxcomp run (pid {os.getpid()}" in line and str(lock) in line
    assert lock.exists()  # not ours: left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{socket.gethostname()} {dead.pid}\n")  # its process is gone
    assert cli.main(_argv(out, tiny_mnist)) == 130  # got past the lock
    assert not lock.exists()
    lock.write_text("garbage")  # unreadable: taken over too
    assert cli.main(_argv(out, tiny_mnist)) == 130


def test_lock_is_exclusive_between_two_holders(tmp_path):
    with driver._OutLock(tmp_path):
        with pytest.raises(FileExistsError, match="in use by another jaxcomp run"):
            with driver._OutLock(tmp_path):
                pass
    assert not (tmp_path / driver._LOCK_NAME).exists()


def test_other_settings_on_the_same_out_are_refused(
    tmp_path, tiny_mnist, capsys, interrupt_after_setup
):
    out = tmp_path / "run"
    assert cli.main(_argv(out, tiny_mnist, "--seed", "1")) == 130
    capsys.readouterr()
    assert cli.main(_argv(out, tiny_mnist, "--seed", "2", "--bits", "4")) == 2
    line = _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert "was written with other settings" in line and "seed: 1 -> 2" in line
    assert "'fc1/kernel': 5" in line and "--redo-changed" in line
    assert cli.main(_argv(out, tiny_mnist, "--seed", "1")) == 130  # the same: resumes
    capsys.readouterr()
    assert cli.main(_argv(out, tiny_mnist, "--seed", "2", "--redo-changed")) == 130
    assert '"seed": 2' in (out / driver._SETTINGS_NAME).read_text()


def test_orphaned_temporaries_are_removed_on_the_next_run(
    tmp_path, tiny_mnist, capsys, interrupt_after_setup
):
    out = tmp_path / "run"
    (out / "stages" / "dense" / "0.orbax-checkpoint-tmp-1733").mkdir(parents=True)
    (out / "stages" / "dense" / "0.orbax-checkpoint-tmp-1733" / "x").write_text("half")
    (out / ".report.md.k3j_x9a2.tmp").write_text("half")
    (out / "report.md").write_text("a finished report")
    (out / ".hidden").write_text("not ours")
    assert cli.main(_argv(out, tiny_mnist)) == 130
    assert "removed 2 temporary file(s)" in capsys.readouterr().out
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [".hidden", "report.md", "settings.json", "stages", "stages/dense"]


def _fail_like_orbax(err: BaseException):
    """A save that fails as orbax does on a full disk: background threads log and raise first."""

    def save(*a, **k):
        def worker():
            logging.getLogger("absl").error("thread failed", exc_info=err)
            raise err

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        raise RuntimeError("checkpoint save failed") from err

    return save


def _fail_like_tensorstore(*a, **k):
    """What a real full disk gave (a 300 KB tmpfs): native callbacks print tracebacks through
    ``sys.excepthook``, then a ValueError that carries the OS error code in its text."""
    try:
        raise RuntimeError("Event loop is closed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    raise ValueError(
        'RESOURCE_EXHAUSTED: Error writing "fc1.kernel/0.0" in OCDBT database: Failed to write '
        "724022 bytes to file 4: No space left on device [os_error_code='28']"
    )


@pytest.mark.parametrize("how", ["direct", "wrapped-by-orbax", "tensorstore", "report"])
def test_a_full_disk_is_one_line(how, tmp_path, tiny_mnist, capsys, monkeypatch):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "stages"))
    if how == "direct":

        def save(*a, **k):
            raise full

        monkeypatch.setattr(driver, "save_checkpoint", save)
    elif how == "wrapped-by-orbax":
        monkeypatch.setattr(driver, "save_checkpoint", _fail_like_orbax(full))
    elif how == "tensorstore":
        monkeypatch.setattr(driver, "save_checkpoint", _fail_like_tensorstore)
    else:  # the first atomic write: a stage record

        def write(path, text):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(driver, "_write_text", write)
    extra = ["--dense-epochs", "1", "--batch-size", "128", "--train-limit", "128"]
    hooks = sys.excepthook, threading.excepthook
    assert cli.main(_argv(tmp_path / "run", tiny_mnist, *extra)) == 1
    assert (sys.excepthook, threading.excepthook) == hooks  # restored
    line = _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert "No space left on device; free some space, then rerun the same command" in line
    assert not (tmp_path / "run" / driver._LOCK_NAME).exists()


def test_read_only_out_is_one_line(tmp_path, tiny_mnist, capsys, monkeypatch):
    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

    monkeypatch.setattr(driver._OutLock, "__enter__", lambda self: refuse(self.path))
    assert cli.main(_argv(tmp_path / "run", tiny_mnist)) == 1
    line = _one_error_line(capsys.readouterr().err, "jaxcomp compress: error: ")
    assert "Read-only file system; choose a writable location" in line


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "jaxcomp.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kw,
    )


@pytest.mark.parametrize(
    "args, code, match",
    [
        (["evaluate", "."], 2, "jaxcomp evaluate: error: . is a folder"),
        (["compress", "--model", "lenet-5", "--out", "o", "--seed", "2" + "0" * 21], 2,
         "jaxcomp compress: error: argument --seed"),
    ],
)  # fmt: skip
def test_console_errors_in_a_subprocess(args, code, match, tmp_path):
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == code
    assert r.stderr.strip().split("\n")[-1].startswith(match), r.stderr
    assert "Traceback" not in r.stderr


def test_sigint_in_a_subprocess_exits_130_with_one_line(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = _argv(out, tiny_mnist, "--dense-epochs", "100000", "--batch-size", "32")
    p = subprocess.Popen(
        [sys.executable, "-u", "-m", "jaxcomp.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in p.stdout:  # wait until it is working
            if line.startswith("data:"):
                break
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert err.strip().split("\n")[-1] == cli.INTERRUPTED and "Traceback" not in err
    assert not (out / driver._LOCK_NAME).exists()
