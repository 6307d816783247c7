"""Pytree helpers shared by every jaxcomp transform.

Works on any pytree of arrays: Flax NNX ``State`` (``nnx.state(model, nnx.Param)``), its pure-dict
form (``nnx.to_pure_dict``), Linen ``{"params": ...}`` dicts, tuples, lists, NamedTuples.

A leaf's *path string* joins its keys with ``/``: ``"fc1/kernel"`` for an NNX pure dict or an NNX
``State`` (the trailing ``.value`` attribute of a Variable is dropped so both agree),
``"params/Dense_0/kernel"`` for Linen, ``"0/1"`` for nested sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any
Path = tuple[Any, ...]

__all__ = ["path_to_str", "leaves_with_paths"]


def _key_to_str(key: Any) -> str | None:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        # An NNX Variable stores its array under ``.value``; drop it so State and pure dicts agree.
        return None if key.name == "value" else key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_to_str(path: Path) -> str:
    """Return the ``/``-joined string of a ``jax.tree_util`` key path.

    Args:
      path: a key path as yielded by ``jax.tree_util.tree_flatten_with_path``.

    Returns:
      e.g. ``"fc1/kernel"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> (p, _), = jax.tree_util.tree_flatten_with_path({"fc1": {"kernel": jnp.ones(2)}})[0]
      >>> path_to_str(p)
      'fc1/kernel'
    """
    parts = [s for s in (_key_to_str(k) for k in path) if s is not None]
    return "/".join(parts)


def leaves_with_paths(
    tree: PyTree, is_leaf: Callable[[Any], bool] | None = None
) -> list[tuple[str, Any]]:
    """List ``(path string, leaf)`` pairs of ``tree`` in flattening order.

    Args:
      tree: any pytree.
      is_leaf: optional predicate passed to ``jax.tree_util.tree_flatten_with_path``.

    Returns:
      ``[(path_str, leaf), ...]`` in the same order as ``jax.tree.leaves(tree)``.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [(path_to_str(p), leaf) for p, leaf in flat]
