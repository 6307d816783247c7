"""Atomic file writes: the one place that turns "write a file" into "never half-written".

Every file the project writes (``.dcz`` files, downloads, reports, figures, CSV/JSON tables)
goes through :func:`atomic_open`: the data goes to a temporary file in the destination folder,
which is flushed, fsynced, given the usual file mode and renamed over the destination only when
the ``with`` block ends without an exception; otherwise it is deleted and the destination is
left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_open"]


def _file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would give (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    newline: str | None = None,
    make_parents: bool = False,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears complete or not at all.

    Args:
      path: the destination file (replaced if it exists).
      mode: ``"wb"`` (default) or ``"w"`` (text).
      newline: passed to ``open`` in text mode (``""`` for the ``csv`` module).
      make_parents: create missing parent folders first.

    Yields:
      the open temporary file; write to it inside the ``with`` block.

    Raises:
      ValueError: if ``mode`` is not a write mode.

    Example:
      >>> import pathlib, tempfile
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
      >>> with atomic_open(p, "w") as f:
      ...     _ = f.write("hello")
      >>> p.read_text()
      'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if make_parents:
        os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename; not every platform has dir fds
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
