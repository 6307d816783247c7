"""Orbax checkpoints of training state (any pytree of arrays).

A checkpoint folder holds one sub-folder per saved step (orbax ``CheckpointManager`` layout);
orbax writes each step to a temporary folder and renames it when complete, so an interrupted save
never leaves a step that restores half-written.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["latest_step", "restore_checkpoint", "save_checkpoint"]


def _manager(directory: str | os.PathLike, *, create: bool, max_to_keep: int | None = None):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save_checkpoint(
    directory: str | os.PathLike, tree: Any, *, step: int, max_to_keep: int | None = None
) -> None:
    """Save ``tree`` (a pytree of arrays) as step ``step`` under ``directory``.

    Args:
      directory: checkpoint folder (created if missing).
      tree: pytree of arrays (jax or numpy) and Python scalars.
      step: non-negative step number; saving an existing step replaces nothing and raises.
      max_to_keep: keep only the newest ``max_to_keep`` steps (default: keep all).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    with _manager(directory, create=True, max_to_keep=max_to_keep) as mgr:
        mgr.save(step, args=ocp.args.StandardSave(tree))
        mgr.wait_until_finished()


def latest_step(directory: str | os.PathLike) -> int | None:
    """Newest saved step under ``directory``, or None when there is none."""
    if not os.path.isdir(directory):
        return None
    with _manager(directory, create=False) as mgr:
        return mgr.latest_step()


def restore_checkpoint(
    directory: str | os.PathLike, target: Any, *, step: int | None = None
) -> Any:
    """Restore a pytree saved by :func:`save_checkpoint`.

    Args:
      directory: checkpoint folder.
      target: a pytree with the structure, shapes and dtypes to restore into (values unused).
      step: which step; default the newest.

    Returns:
      The restored pytree (numpy arrays), structured like ``target``.

    Raises:
      FileNotFoundError: no checkpoint (or not that step) under ``directory``.
    """
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {os.fspath(directory)!r}")
    abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), target)
    with _manager(directory, create=False) as mgr:
        if step not in mgr.all_steps():
            raise FileNotFoundError(
                f"no step {step} under {os.fspath(directory)!r}; saved steps: {mgr.all_steps()}"
            )
        return mgr.restore(step, args=ocp.args.StandardRestore(abstract))
