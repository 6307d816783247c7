"""Pytree helpers shared by every jaxcomp transform.

Works on any pytree of arrays: Flax NNX ``State`` (``nnx.state(model, nnx.Param)``), its pure-dict
form (``nnx.to_pure_dict``), Linen ``{"params": ...}`` dicts, tuples, lists, NamedTuples.

A leaf's *path string* joins its keys with ``/``: ``"fc1/kernel"`` for an NNX pure dict or an NNX
``State`` (the trailing ``.value`` attribute of a Variable is dropped so both agree),
``"params/Dense_0/kernel"`` for Linen, ``"0/1"`` for nested sequences.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

PyTree = Any
Path = tuple[Any, ...]

__all__ = [
    "align_leaves",
    "check_masks",
    "default_predicate",
    "full_masks",
    "leaves_with_paths",
    "map_with_path_str",
    "mask_leaves",
    "path_to_str",
    "selected_paths",
    "selection_tree",
    "tree_map_masked",
    "unbox",
]


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


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def unbox(tree: PyTree) -> PyTree:
    """Replace every Flax NNX ``Variable`` (``Param``, ``OptVariable``, ...) by its value.

    ``nnx.Optimizer`` holds its ``opt_state`` with every array wrapped in an ``OptVariable`` and
    ``nnx.state(model, nnx.Param)`` wraps them in ``Param``; both unbox to the same arrays, so a
    mask or codebook tree taken from ``optimizer.opt_state`` matches the params it was made for.
    Other leaves and ``None`` are returned as they are.

    Args:
      tree: any pytree, possibly holding NNX Variables.

    Returns:
      the same tree with each Variable replaced by its value (pure dicts stay pure dicts, an
      NNX ``State`` stays a ``State``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> unbox({"w": nnx.Param(jnp.ones(2)), "b": None})["w"].tolist()
      [1.0, 1.0]
    """
    return jax.tree.map(
        lambda x: x.get_value() if _is_variable(x) else x, tree, is_leaf=_is_variable
    )


def align_leaves(params: PyTree, tree: PyTree, name: str = "tree") -> list[Any]:
    """The leaves of ``tree`` (``None`` allowed) in the flattening order of ``params``' leaves.

    Leaves are matched by path string (:func:`path_to_str`), so the two trees may be held
    differently: an NNX ``State`` of ``Param`` against the ``OptVariable`` nodes of
    ``optimizer.opt_state``, or against a pure dict. NNX Variables in ``tree`` are unboxed.

    Args:
      params: the reference pytree of arrays.
      tree: a pytree with one leaf (or ``None``) per leaf of ``params``.
      name: the argument name used in error messages.

    Returns:
      a list with one entry per leaf of ``params``.

    Raises:
      ValueError: if a leaf of ``params`` has no counterpart in ``tree`` or ``tree`` has leaves
        that ``params`` lacks, naming them.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> params = nnx.State({"w": nnx.Param(jnp.ones(2))})
      >>> align_leaves(params, {"w": jnp.zeros(2, bool)}, "masks")[0].tolist()
      [False, False]
    """
    p_leaves = leaves_with_paths(params)
    try:
        flat = jax.tree.structure(params).flatten_up_to(tree)
        return [_untouched(x) for x in flat]
    except (ValueError, TypeError):
        pass
    t_leaves = leaves_with_paths(unbox(tree), is_leaf=_none_leaf)
    t_map = dict(t_leaves)
    p_paths = [p for p, _ in p_leaves]
    missing = [p for p in p_paths if p not in t_map]
    extra = [p for p in t_map if p not in set(p_paths)]
    if missing or extra or len(t_map) != len(t_leaves):
        raise ValueError(
            f"{name} does not match params leaf by leaf: params leaves missing from {name}: "
            f"{missing[:8]}; {name} leaves not in params: {extra[:8]}. Pass the {name} made "
            "for these params (e.g. the state tx.init(params) returned, as it is or as "
            "nnx.Optimizer holds it)"
        )
    return [_untouched(t_map[p]) for p in p_paths]


def _untouched(x: Any) -> Any:
    # an optax.masked / multi_transform state holds an empty MaskedNode for leaves it leaves out
    if x is not None and type(x).__name__ == "MaskedNode" and not jax.tree.leaves(x):
        return None
    return x.get_value() if _is_variable(x) else x


# --------------------------------------------------------------------------------------------
# Leaf selection
# --------------------------------------------------------------------------------------------

Predicate = Callable[[str, Any], bool]


def _is_array(leaf: Any) -> bool:
    return hasattr(leaf, "shape") and hasattr(leaf, "dtype")


def default_predicate(path: str, leaf: Any) -> bool:
    """The default leaf selection: every array with ``ndim >= 2`` (kernels), not biases.

    Args:
      path: the leaf's path string (unused; part of the predicate signature).
      leaf: the leaf.

    Returns:
      ``True`` for arrays of rank 2 or more.

    Example:
      >>> import jax.numpy as jnp
      >>> default_predicate("fc1/kernel", jnp.ones((3, 4)))
      True
      >>> default_predicate("fc1/bias", jnp.ones(4))
      False
    """
    del path
    return _is_array(leaf) and len(leaf.shape) >= 2


def _as_patterns(name: str, patterns: Any) -> list[Any]:
    if patterns is None:
        return []
    if isinstance(patterns, (str, re.Pattern)):
        return [patterns]
    try:
        out = list(patterns)
    except TypeError:
        raise TypeError(
            f"{name} must be a glob string, a compiled re.Pattern or a list of them, "
            f"got {type(patterns).__name__}"
        ) from None
    for p in out:
        if not isinstance(p, (str, re.Pattern)):
            raise TypeError(
                f"{name} must hold glob strings or compiled re.Pattern objects, "
                f"got {type(p).__name__}"
            )
    return out


def _matches(path: str, pattern: Any) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(path) is not None
    return fnmatch.fnmatchcase(path, pattern)


def selected_paths(
    tree: PyTree,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Predicate | None = None,
) -> list[str]:
    """Path strings of the leaves a compression transform acts on, in flattening order.

    A leaf is selected when it is an array, ``predicate(path, leaf)`` holds (default: ``ndim >=
    2``, i.e. kernels and not biases), it matches one of ``include`` (when given) and none of
    ``exclude``. A pattern is either a string, matched as a shell glob against the whole path
    (``"fc*/kernel"``, ``"*conv*"``), or a compiled ``re.Pattern``, matched with ``search``
    (``re.compile(r"^fc[12]/")``).

    Works on NNX ``State`` objects, their pure dicts, Linen ``{"params": ...}`` dicts and any other
    pytree (see :func:`path_to_str`).

    Args:
      tree: any pytree of arrays.
      include: a pattern or a list of patterns; ``None`` = every leaf passing ``predicate``.
      exclude: a pattern or a list of patterns removed from the selection.
      predicate: ``(path_str, leaf) -> bool``; ``None`` = :func:`default_predicate`.

    Returns:
      the selected path strings, e.g. ``["fc1/kernel", "fc2/kernel"]``.

    Raises:
      TypeError: if a pattern is neither a string nor a compiled regex.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"fc1": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
      ...      "fc2": {"kernel": jnp.ones((4, 2))}}
      >>> selected_paths(p)
      ['fc1/kernel', 'fc2/kernel']
      >>> selected_paths(p, exclude="fc2/*")
      ['fc1/kernel']
    """
    inc = _as_patterns("include", include)
    exc = _as_patterns("exclude", exclude)
    pred = default_predicate if predicate is None else predicate
    if not callable(pred):
        raise TypeError(f"predicate must be callable (path, leaf) -> bool, got {type(pred)!r}")
    out = []
    for path, leaf in leaves_with_paths(tree):
        if not _is_array(leaf) or not pred(path, leaf):
            continue
        if inc and not any(_matches(path, p) for p in inc):
            continue
        if any(_matches(path, p) for p in exc):
            continue
        out.append(path)
    return out


def map_with_path_str(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """``jax.tree.map`` whose function also receives the leaf's path string first.

    ``rest`` trees may hold ``None`` where ``tree`` has a leaf (mask pytrees); ``fn`` then gets
    ``None`` for them.

    Args:
      fn: ``fn(path_str, leaf, *rest_leaves) -> new_leaf`` (return ``None`` for "untouched").
      tree: the pytree that sets the structure.
      *rest: pytrees with the structure of ``tree`` (``None`` allowed in place of a leaf).

    Returns:
      a pytree with the structure of ``tree``.

    Example:
      >>> map_with_path_str(lambda p, x: p, {"a": {"b": 1}})
      {'a': {'b': 'a/b'}}
    """
    return jax.tree_util.tree_map_with_path(lambda p, x, *r: fn(path_to_str(p), x, *r), tree, *rest)


def selection_tree(
    tree: PyTree,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Predicate | None = None,
) -> PyTree:
    """A pytree of Python bools with the structure of ``tree``: True for selected leaves.

    Args:
      tree: any pytree of arrays.
      include, exclude, predicate: as in :func:`selected_paths`.

    Returns:
      the same structure as ``tree`` with ``True``/``False`` leaves (static, host-side).

    Example:
      >>> import jax.numpy as jnp
      >>> selection_tree({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
      {'b': False, 'w': True}
    """
    sel = set(selected_paths(tree, include=include, exclude=exclude, predicate=predicate))
    return map_with_path_str(lambda p, x: p in sel, tree)


# --------------------------------------------------------------------------------------------
# Mask pytrees: bool arrays for selected leaves, None for untouched ones
# --------------------------------------------------------------------------------------------


def _none_leaf(x: Any) -> bool:
    return x is None


def full_masks(
    tree: PyTree,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Predicate | None = None,
) -> PyTree:
    """An all-kept mask pytree: ``jnp.ones(shape, bool)`` for selected leaves, ``None`` otherwise.

    Args:
      tree: any pytree of arrays (NNX ``State``, pure dict, Linen dict, ...).
      include, exclude, predicate: as in :func:`selected_paths`.

    Returns:
      a mask pytree with the structure of ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> full_masks({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})["b"] is None
      True
    """
    sel = set(selected_paths(tree, include=include, exclude=exclude, predicate=predicate))
    return map_with_path_str(
        lambda p, x: jnp.ones(jnp.shape(x), jnp.bool_) if p in sel else None, tree
    )


def check_masks(params: PyTree, masks: PyTree, name: str = "masks") -> list[Any]:
    """Raise ``ValueError`` unless ``masks`` is a mask pytree for ``params``; return its leaves.

    ``masks`` must hold, for every leaf of ``params``, either ``None`` or an array of the leaf's
    shape whose dtype is ``bool`` or an integer type (jaxpruner's ``uint8`` masks; non-zero =
    kept). It may be held differently from ``params`` (see :func:`align_leaves`): the masks of
    ``optimizer.opt_state`` (``OptVariable`` nodes) check against ``nnx.state(model, nnx.Param)``.

    Args:
      params: the parameter pytree.
      masks: the candidate mask pytree.
      name: the argument name used in error messages.

    Returns:
      the mask leaves aligned with ``params``' leaves: ``bool`` arrays or ``None``.

    Raises:
      ValueError: naming the first offending path and the fix.

    Example:
      >>> import jax.numpy as jnp
      >>> m = check_masks({"w": jnp.ones((2, 2))}, {"w": jnp.ones((2, 2), jnp.uint8)})
      >>> m[0].dtype
      dtype('bool')
    """
    m_leaves = align_leaves(params, masks, name)
    out = []
    for (path, leaf), m in zip(leaves_with_paths(params), m_leaves, strict=True):
        if m is None:
            out.append(None)
            continue
        if not _is_array(m):
            raise ValueError(
                f"{name}[{path!r}] must be a bool array or None, got {type(m).__name__}"
            )
        if tuple(m.shape) != tuple(jnp.shape(leaf)):
            raise ValueError(
                f"{name}[{path!r}] has shape {tuple(m.shape)} but the param has shape "
                f"{tuple(jnp.shape(leaf))}; masks must match the params leaf by leaf"
            )
        if m.dtype == jnp.bool_:
            out.append(m)
        elif jnp.issubdtype(m.dtype, jnp.integer):
            out.append(jnp.asarray(m) != 0)
        else:
            raise ValueError(
                f"{name}[{path!r}] has dtype {m.dtype}; masks must be bool or integer "
                "(True / non-zero = kept)"
            )
    return out


def tree_map_masked(fn: Callable[..., Any], params: PyTree, masks: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``fn(leaf, mask, *rest_leaves)`` where the mask is not ``None``; keep other leaves.

    Args:
      fn: the function for masked leaves.
      params: the pytree that sets the structure.
      masks: a mask pytree for ``params`` (``None`` = untouched leaf, returned as is).
      *rest: further pytrees with the structure of ``params``.

    Returns:
      a pytree with the structure of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> out = tree_map_masked(lambda x, m: x * m, {"w": jnp.ones(2), "b": jnp.ones(1)},
      ...                       {"w": jnp.array([True, False]), "b": None})
      >>> out["w"].tolist(), out["b"].tolist()
      ([1.0, 0.0], [1.0])
    """
    return jax.tree.map(lambda x, m, *r: x if m is None else fn(x, m, *r), params, masks, *rest)


def mask_leaves(masks: PyTree) -> list[Any]:
    """The non-``None`` mask arrays of a mask pytree, in flattening order.

    Example:
      >>> import jax.numpy as jnp
      >>> len(mask_leaves({"w": jnp.ones(2, bool), "b": None}))
      1
    """
    return [m for m in jax.tree.leaves(masks, is_leaf=_none_leaf) if m is not None]
