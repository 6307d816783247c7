"""The output folder of a :func:`jaxcomp.compress` run (``OUT``).

Checked before any work, locked while a run writes it (``OUT/.jaxcomp.lock``), cleaned of the
temporaries an interrupted run left, and holding ``settings.json``, the stage checkpoints
(``OUT/stages/NAME`` + ``NAME.json``) and the JSON / text outputs, all written atomically.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

from jaxcomp.atomic import atomic_open
from jaxcomp.checkpoint import restore_checkpoint, save_checkpoint

__all__: list[str] = []  # the driver's internals; nothing here is public


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w", make_parents=True) as f:
        f.write(text)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


#: Names under OUT that only :func:`jaxcomp.compress` writes (besides the outputs themselves).
_LOCK_NAME = ".jaxcomp.lock"
_SETTINGS_NAME = "settings.json"
#: An interrupted :func:`jaxcomp.atomic.atomic_open` leaves ``.NAME.XXXXXXXX.tmp`` behind, an
#: interrupted orbax save a ``*.orbax-checkpoint-tmp*`` folder.
_ORPHAN_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_ORPHAN_DIR = re.compile(r"\.orbax-checkpoint-tmp")


def _check_out_dir(out: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be one, before any work: ``''``, an existing file,
    or a path below an existing file. Returns it as a :class:`~pathlib.Path` (not created).

    Raises:
      ValueError: the path is empty, names a file, or lies below a file.

    Example:
      >>> import tempfile, pathlib
      >>> f = pathlib.Path(tempfile.mkdtemp()) / "report.md"
      >>> _ = f.write_text("x")
      >>> _check_out_dir(f / "run")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: out ...report.md/run lies below the file ...report.md; give a folder path
    """
    text = os.fspath(out)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"out must name a folder (e.g. runs/lenet300), got {text!r}; an empty path would "
            "write into the working folder"
        )
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out {text} is an existing file, not a folder; give a folder path")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"out {text} is a broken or looping symbolic link; give a folder path")
    for parent in path.parents:
        if parent.is_symlink() and not parent.exists():
            raise ValueError(f"out {text} lies below the broken or looping symbolic link {parent}")
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"out {text} lies below the file {parent}; give a folder path")
            break
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):
        return False
    return True


class _OutLock:
    """An exclusive lock on an output folder: ``OUT/.jaxcomp.lock`` holding ``host pid``.

    Taken with ``O_CREAT | O_EXCL``; a lock left by a process that no longer runs (same host,
    dead PID, or an unreadable lock file) is taken over. Released (deleted) on exit if it is
    still ours.

    Raises:
      FileExistsError: on enter, another live process holds the lock (the message names it).

    Example:
      >>> import tempfile
      >>> d = tempfile.mkdtemp()
      >>> with _OutLock(d):  # doctest: +ELLIPSIS
      ...     _OutLock(d).__enter__()
      Traceback (most recent call last):
      ...
      FileExistsError: [Errno 17] the output folder is in use by another jaxcomp run (pid ...
    """

    def __init__(self, out: str | os.PathLike):
        self.path = Path(out) / _LOCK_NAME
        self.token = f"{socket.gethostname()} {os.getpid()}"

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None

    def __enter__(self) -> _OutLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = self._holder()
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if holder is not None:
                    host, pid = holder
                    if host != socket.gethostname() or _pid_alive(pid):
                        raise FileExistsError(
                            errno.EEXIST,
                            f"the output folder is in use by another jaxcomp run (pid {pid} on "
                            f"{host}); wait for it to finish, or delete this lock file if no "
                            "such run exists",
                            os.fspath(self.path),
                        ) from None
                with contextlib.suppress(FileNotFoundError):  # stale: its process is gone
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
            return self
        raise RuntimeError(f"could not take the lock {self.path}; retry")

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == self.token:
                self.path.unlink()


def _remove_orphans(out: str | os.PathLike) -> list[Path]:
    """Delete temporary files and folders that interrupted atomic writes left under ``out``.

    Only names that :func:`jaxcomp.atomic.atomic_open` (``.NAME.XXXXXXXX.tmp``) or orbax
    (``*.orbax-checkpoint-tmp*``) give their temporaries are touched; call it only while holding
    :class:`_OutLock` (a running writer's temporaries look the same).

    Returns:
      the paths removed.

    Example:
      >>> import tempfile, pathlib
      >>> d = pathlib.Path(tempfile.mkdtemp())
      >>> _ = (d / ".report.md.ab12cd34.tmp").write_text("half")
      >>> _ = (d / "report.md").write_text("whole")
      >>> [p.name for p in _remove_orphans(d)], sorted(p.name for p in d.iterdir())
      (['.report.md.ab12cd34.tmp'], ['report.md'])
    """
    removed = []
    for root, dirs, files in os.walk(out):
        for d in list(dirs):
            if _ORPHAN_DIR.search(d):
                shutil.rmtree(Path(root) / d, ignore_errors=True)
                dirs.remove(d)
                removed.append(Path(root) / d)
        for f in files:
            if _ORPHAN_FILE.match(f):
                with contextlib.suppress(FileNotFoundError):
                    (Path(root) / f).unlink()
                removed.append(Path(root) / f)
    return removed


def _settings_diff(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


class _Stage:
    """A stage's orbax checkpoint (``OUT/stages/NAME``) and its record (``NAME.json``): the
    signature of the settings it was made with, its test error and time."""

    def __init__(self, out: Path, name: str, signature: dict):
        self.dir = out / "stages" / name
        self.record_path = out / "stages" / f"{name}.json"
        self.signature = signature

    def done(self) -> dict | None:
        rec = _read_json(self.record_path)
        if rec and rec.get("signature") == self.signature and self.dir.exists():
            return rec
        return None

    def save(self, tree: Any, record: dict) -> dict:
        if self.record_path.exists():
            self.record_path.unlink()  # stale: the settings changed
        if self.dir.exists():
            shutil.rmtree(self.dir)
        save_checkpoint(self.dir, tree, step=0)
        record = {"signature": self.signature, **record}
        _write_json(self.record_path, record)  # written last: marks the stage finished
        return record

    def restore(self, target: Any) -> Any:
        return restore_checkpoint(self.dir, target)
