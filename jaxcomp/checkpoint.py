"""Orbax checkpoints of training state (any pytree of arrays).

A checkpoint folder holds one sub-folder per saved step (orbax ``CheckpointManager`` layout);
orbax writes each step to a temporary folder and renames it when complete, so an interrupted save
never leaves a step that restores half-written.

The whole compression training state round-trips exactly (:class:`CompressionTrainState`, or any
pytree holding the same things): params, masks with ``None`` at untouched leaves, codebooks,
codes (uint8/uint16), optax states (NamedTuples, ``EmptyState``), the step, and RNG keys -- both
raw ``uint32`` keys and typed ``jax.random.key`` arrays (stored as their key data and re-wrapped
with the target's PRNG implementation). Restoring needs a ``target`` with the structure, shapes and
dtypes (its values are never used); each leaf comes back as the target leaf's kind (``jax.Array``,
NumPy array or Python scalar), so training resumed from a checkpoint is bit-identical to training
that never stopped.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CompressionTrainState", "latest_step", "restore_checkpoint", "save_checkpoint"]


class CompressionTrainState(NamedTuple):
    """Everything a compression run needs to resume exactly (a pytree; fields may be None).

    Attributes:
      params: the params pytree (float32 arrays).
      opt_state: the optax state (masks/codebooks of jaxcomp's optax wrappers live in it too).
      step: int32 scalar, optimizer steps taken.
      key: the RNG key (typed ``jax.random.key`` or raw uint32 ``(2,)``).
      masks: params-shaped bool pytree, ``None`` at untouched leaves (or None).
      codebooks: ``{path: (2**bits,) float32}`` or params-shaped pytree with None (or None).
      codes: matching uint8/uint16 codes (or None).
    """

    params: Any
    opt_state: Any
    step: Any
    key: Any
    masks: Any = None
    codebooks: Any = None
    codes: Any = None


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(tree: Any) -> Any:
    """Typed PRNG keys become their uint32 key data, NumPy scalars 0-d arrays (orbax stores
    plain arrays and Python scalars)."""

    def one(x):
        if _is_key(x):
            return jax.random.key_data(x)
        return np.asarray(x) if isinstance(x, np.number) else x

    return jax.tree.map(one, tree)


def _abstract(x):
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, int | float | bool):
        return x
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype)


def _like(restored, target):
    if _is_key(target):
        return jax.random.wrap_key_data(restored, impl=jax.random.key_impl(target))
    if isinstance(target, np.number):
        return target.dtype.type(restored)
    if isinstance(target, np.ndarray):
        return np.asarray(restored, dtype=target.dtype)
    if isinstance(target, bool | int | float):
        return type(target)(restored)
    return restored


def _manager(directory: str | os.PathLike, *, create: bool, max_to_keep: int | None = None):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save_checkpoint(
    directory: str | os.PathLike, tree: Any, *, step: int, max_to_keep: int | None = None
) -> None:
    """Save ``tree`` (a pytree of arrays) as step ``step`` under ``directory``.

    Args:
      directory: checkpoint folder (created if missing).
      tree: pytree of arrays (jax or numpy, typed PRNG keys included), Python scalars and
        ``None`` (an empty subtree, e.g. an untouched leaf of a mask pytree).
      step: non-negative int, after every step already saved there; saving an existing (or
        an earlier) step replaces nothing and raises.
      max_to_keep: keep only the newest ``max_to_keep`` steps (default: keep all).

    Raises:
      FileExistsError: ``step`` is already saved under ``directory``, or is not after the
        newest saved step (orbax would skip it silently); the saved data is left as it was.
      ValueError: ``step`` is not a non-negative int.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> d = tempfile.mkdtemp()
      >>> save_checkpoint(d, {"w": jnp.ones(2)}, step=0)
      >>> save_checkpoint(d, {"w": jnp.zeros(2)}, step=0)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      FileExistsError: step 0 is already saved under ...; save under a new step (> 0) ...
    """
    if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    step = int(step)
    with _manager(directory, create=True, max_to_keep=max_to_keep) as mgr:
        steps = mgr.all_steps()
        newest = max(steps, default=None)
        if newest is not None and step <= newest:
            what = "is already saved" if step in steps else f"is before the newest step {newest}"
            raise FileExistsError(
                f"step {step} {what} under {os.fspath(directory)!r}; save under a new step "
                f"(> {newest}) or into another folder"
            )
        if not mgr.save(step, args=ocp.args.StandardSave(_storable(tree))):
            raise FileExistsError(f"orbax refused to save step {step} under {directory!r}")
        mgr.wait_until_finished()


def latest_step(directory: str | os.PathLike) -> int | None:
    """Newest saved step under ``directory``, or None when there is none.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> d = tempfile.mkdtemp()
      >>> latest_step(d) is None
      True
      >>> save_checkpoint(d, {"w": jnp.ones(2)}, step=3)
      >>> latest_step(d)
      3
    """
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
      The restored pytree, structured like ``target``; each leaf of the target leaf's kind
      (``jax.Array``, NumPy array, Python scalar, typed PRNG key) and dtype.

    Example:
      >>> import tempfile, jax, jax.numpy as jnp
      >>> state = {"w": jnp.arange(3.0), "mask": None, "key": jax.random.key(0)}
      >>> d = tempfile.mkdtemp()
      >>> save_checkpoint(d, state, step=1)
      >>> back = restore_checkpoint(d, {"w": jnp.zeros(3), "mask": None, "key": jax.random.key(7)})
      >>> back["w"].tolist(), back["mask"], bool((jax.random.key_data(back["key"])
      ...     == jax.random.key_data(state["key"])).all())
      ([0.0, 1.0, 2.0], None, True)

    Raises:
      FileNotFoundError: no checkpoint (or not that step) under ``directory``.
    """
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {os.fspath(directory)!r}")
    abstract = jax.tree.map(_abstract, target)
    with _manager(directory, create=False) as mgr:
        if step not in mgr.all_steps():
            raise FileNotFoundError(
                f"no step {step} under {os.fspath(directory)!r}; saved steps: {mgr.all_steps()}"
            )
        restored = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    return jax.tree.map(_like, restored, target)
