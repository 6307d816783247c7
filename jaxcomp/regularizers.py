"""L1 / L2 regularization for retraining after pruning (thesis section 3.2).

Two optax transforms that add the penalty's gradient to the updates
(:func:`add_l1_regularization`, :func:`add_l2_regularization`) and the matching loss terms
(:func:`l1_penalty`, :func:`l2_penalty`). All select kernels (``ndim >= 2``) by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.tree import PyTree, leaves_with_paths, map_with_path_str, selected_paths

__all__ = [
    "add_l1_regularization",
    "add_l2_regularization",
    "l1_penalty",
    "l2_penalty",
]


def _regularizer(
    strength: Any, grad_fn: Callable[[jax.Array], jax.Array], name: str, sel_kwargs: dict
) -> optax.GradientTransformation:
    if not isinstance(strength, jax.core.Tracer) and np.any(np.asarray(strength) < 0):
        raise ValueError(f"strength must be >= 0, got {strength!r}")

    def init_fn(params: PyTree) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(
        updates: PyTree, state: optax.EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, optax.EmptyState]:
        if params is None:
            raise ValueError(f"{name} needs the params: call update(grads, state, params)")
        sel = set(selected_paths(params, **sel_kwargs))
        s = jnp.asarray(strength)
        out = map_with_path_str(
            lambda p, u, w: u + (s * grad_fn(w)).astype(u.dtype) if p in sel else u,
            updates,
            params,
        )
        return out, state

    return optax.GradientTransformation(init_fn, update_fn)


def add_l1_regularization(
    strength: Any, *, include: Any = None, exclude: Any = None, predicate: Any = None
) -> optax.GradientTransformation:
    """Add the gradient of ``strength * sum|w|`` (``strength * sign(w)``) to the updates.

    Put it before the optimizer (``optax.chain(add_l1_regularization(1e-5), optax.sgd(...))``)
    or inside :func:`prune`'s inner chain. The thesis found L1 better right after pruning,
    L2 better after retraining.

    Args:
      strength: non-negative scalar (may be injected with ``optax.inject_hyperparams``).
      include, exclude, predicate: leaves regularized (default: ``ndim >= 2``, not biases).

    Returns:
      an ``optax.GradientTransformation`` (stateless).

    Raises:
      ValueError: if a concrete ``strength`` is negative.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = add_l1_regularization(0.1)
      >>> p = {"w": jnp.array([[2.0, -3.0]])}
      >>> tx.update({"w": jnp.zeros((1, 2))}, tx.init(p), p)[0]["w"].tolist()
      [[0.10000000149011612, -0.10000000149011612]]
    """
    kw = {"include": include, "exclude": exclude, "predicate": predicate}
    return _regularizer(strength, jnp.sign, "add_l1_regularization", kw)


def add_l2_regularization(
    strength: Any, *, include: Any = None, exclude: Any = None, predicate: Any = None
) -> optax.GradientTransformation:
    """Add the gradient of ``strength / 2 * sum w**2`` (``strength * w``) to the updates.

    Unlike ``optax.add_decayed_weights`` it selects kernels only by default (biases untouched).

    Args:
      strength: non-negative scalar (may be injected with ``optax.inject_hyperparams``).
      include, exclude, predicate: leaves regularized (default: ``ndim >= 2``).

    Returns:
      an ``optax.GradientTransformation`` (stateless).

    Raises:
      ValueError: if a concrete ``strength`` is negative.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = add_l2_regularization(0.5)
      >>> p = {"w": jnp.array([[2.0, -4.0]])}
      >>> tx.update({"w": jnp.zeros((1, 2))}, tx.init(p), p)[0]["w"].tolist()
      [[1.0, -2.0]]
    """
    kw = {"include": include, "exclude": exclude, "predicate": predicate}
    return _regularizer(strength, lambda w: w, "add_l2_regularization", kw)


def _penalty(params: PyTree, fn: Callable, include: Any, exclude: Any, predicate: Any):
    """``sum fn(w)`` over the selected leaves, as a float32 scalar."""
    sel = set(selected_paths(params, include=include, exclude=exclude, predicate=predicate))
    terms = [jnp.sum(fn(x)).astype(jnp.float32) for p, x in leaves_with_paths(params) if p in sel]
    return sum(terms, jnp.zeros((), jnp.float32))


def l1_penalty(
    params: PyTree, *, include: Any = None, exclude: Any = None, predicate: Any = None
) -> jax.Array:
    """``sum |w|`` over the selected leaves (default kernels): a loss term for L1 retraining.

    Args:
      params: any pytree of arrays.
      include, exclude, predicate: leaf selection (default ``ndim >= 2``).

    Returns:
      float32 scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(l1_penalty({"w": jnp.array([[1.0, -2.0]]), "b": jnp.ones(3)}))
      3.0
    """
    return _penalty(params, jnp.abs, include, exclude, predicate)


def l2_penalty(
    params: PyTree, *, include: Any = None, exclude: Any = None, predicate: Any = None
) -> jax.Array:
    """``0.5 * sum w**2`` over the selected leaves (default kernels); its gradient is ``w``.

    Args:
      params: any pytree of arrays.
      include, exclude, predicate: leaf selection (default ``ndim >= 2``).

    Returns:
      float32 scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(l2_penalty({"w": jnp.array([[1.0, -2.0]]), "b": jnp.ones(3)}))
      2.5
    """
    return 0.5 * _penalty(params, jnp.square, include, exclude, predicate)
