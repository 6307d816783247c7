"""optax factories for compression-aware training (DESIGN §3).

Each factory returns an ``optax.GradientTransformationExtraArgs`` whose NamedTuple state holds
its data-dependent masks / codebooks. The updates they return already keep pruned weights at
exactly zero (shared weights on their centroids): no extra hook to call after
``optax.apply_updates``. They compose with ``optax.chain`` and ``optax.inject_hyperparams``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp import schedules as _schedules
from jaxcomp.prune import global_magnitude_masks, magnitude_mask, random_mask, threshold_mask
from jaxcomp.quantize import (
    INITS,
    _check_bits,
    centroid_grads,
    kmeans_fit,
    nearest_codes,
    shared_weight,
    uniform_fit,
)
from jaxcomp.tree import (
    PyTree,
    check_masks,
    full_masks,
    leaves_with_paths,
    map_with_path_str,
    path_to_str,
    selected_paths,
    tree_map_masked,
)

__all__ = [
    # pruning (issue 3)
    "LeafSparsity",
    "PruneState",
    "SparsitySummary",
    "add_l1_regularization",
    "add_l2_regularization",
    "apply_masks",
    "l1_penalty",
    "l2_penalty",
    "prune",
    "sparsity_summary",
    # weight sharing (issue 4)
    "ShareState",
    "share_weights",
    "shared_params",
    # DSD (issue 7)
    "DSDState",
    "dsd",
]

# ============================================================================================
# Pruning (issue 3)
# ============================================================================================


class PruneState(NamedTuple):
    """State of :func:`prune`.

    Attributes:
      count: int32 scalar, update steps taken so far.
      target: float32 ``(L,)``, the target each of the ``L`` selected leaves was last pruned to
        (in flattening order; NaN before the first update). Masks are recomputed whenever the
        schedule's value differs from it.
      masks: mask pytree with the structure of the params: bool arrays (True = kept) of each
        selected leaf's shape, ``None`` for untouched leaves.
      inner_state: the inner optimizer's state.
    """

    count: jax.Array
    target: jax.Array
    masks: PyTree
    inner_state: optax.OptState


_CRITERIA = ("magnitude", "threshold", "global")


def _as_schedule(value: Any, name: str, is_sparsity: bool) -> Callable[[Any], jax.Array]:
    if callable(value):
        return value
    if is_sparsity and not isinstance(value, jax.core.Tracer):
        v = np.asarray(value, np.float64)
        if not (np.all(np.isfinite(v)) and np.all(v >= 0) and np.all(v <= 1)):
            raise ValueError(f"{name}: a sparsity must lie in [0, 1], got {value!r}")
    try:
        arr = jnp.asarray(value, jnp.float32)
    except TypeError:
        raise TypeError(
            f"{name} must be a schedule (count -> value), a number or an array, "
            f"got {type(value).__name__}"
        ) from None
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar target, got shape {arr.shape}")
    return lambda count: arr


def _selected_from_masks(masks: PyTree) -> list[str]:
    return [p for p, _ in leaves_with_paths(masks)]


def prune(
    inner: optax.GradientTransformation,
    schedule: Any,
    criterion: Any = "magnitude",
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
    mask_gradients: bool = True,
) -> optax.GradientTransformationExtraArgs:
    """Wrap ``inner`` so that training prunes the params and keeps pruned weights at zero.

    At every update the target ``schedule(count)`` is evaluated for each selected leaf; when it
    differs from the target the current masks were computed for, the masks are recomputed from
    the current params (``lax.cond``: one trace, no recompilation). The incoming gradients are
    masked (``mask_gradients``), ``inner`` runs, and the returned update of every pruned entry
    is exactly ``-param``, so ``optax.apply_updates`` leaves exact zeros whatever ``inner`` does
    (momentum, Adam, weight decay). Entries kept by the mask get ``inner``'s update unchanged:
    with a target of 0 the wrapper adds no arithmetic, and op by op its updates are
    bit-identical to ``inner``'s. (Under ``jit`` XLA compiles every program's arithmetic on its
    own — on CPU even ``jit(optax.adam(...).update)`` and the eager ``update`` differ in the last
    bit — so two different compiled programs agree to float32 rounding, not bit for bit.)

    Masks are recomputed from the current weights, which already hold zeros where pruned, so
    with a non-decreasing magnitude schedule pruned weights stay pruned; a lower target (e.g.
    0, DSD's dense phase) lets them train again from zero.

    Args:
      inner: the optimizer to wrap (any ``optax.GradientTransformation``).
      schedule: the target per step: a ``count -> value`` function (see
        :mod:`jaxcomp.schedules`), a number / scalar array (constant; this form lets
        ``optax.inject_hyperparams(prune, static_args=...)`` drive it), or a mapping from leaf
        path string (``"fc1/kernel"``) to either, one entry per selected leaf (per-layer
        targets). The target is a sparsity in ``[0, 1]`` for ``"magnitude"`` / ``"global"``
        and the quality for ``"threshold"``.
      criterion: ``"magnitude"`` (per-layer exact sparsity, :func:`jaxcomp.magnitude_mask`),
        ``"global"`` (one ranking over all selected leaves), ``"threshold"`` (Han's
        ``|w| < quality * std``), or a function ``(w, target) -> bool mask`` such as
        ``functools.partial(jaxcomp.load_balanced_mask, num_pes=64)``; or a mapping from leaf
        path to any of those but ``"global"``, one entry per selected leaf (e.g. balance
        ``fc1`` and ``fc2`` for EIE and prune ``fc3`` by plain magnitude). When wrapping
        ``prune`` in ``optax.inject_hyperparams`` a callable criterion must be listed in
        ``static_args``.
      include, exclude, predicate: leaf selection (:func:`jaxcomp.tree.selected_paths`;
        default: every array with ``ndim >= 2``, biases untouched).
      mask_gradients: zero the gradients of pruned entries before ``inner`` sees them, so its
        moments do not accumulate for them.

    Returns:
      an ``optax.GradientTransformationExtraArgs`` with state :class:`PruneState`. Its
      ``update`` needs ``params``; extra keyword arguments are passed on to ``inner``.

    Raises:
      ValueError / TypeError: on an unknown criterion, a per-layer mapping that misses or adds
        leaves, a ``"global"`` criterion with per-layer targets, or no selected leaf.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxcomp import schedules
      >>> params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4), "b": jnp.ones(4)}
      >>> tx = prune(optax.adam(1e-2), schedules.constant(0.5))
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> int((params["w"] == 0).sum())
      4
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            f"inner must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(inner).__name__}"
        )

    def check_criterion(c: Any, name: str) -> None:
        if isinstance(c, str):
            if c not in _CRITERIA:
                raise ValueError(
                    f"{name} must be one of {_CRITERIA} or a callable (w, target) -> mask, "
                    f"got {c!r}"
                )
        elif not callable(c):
            raise TypeError(f"{name} must be a string or a callable, got {type(c)!r}")

    per_leaf_criterion = isinstance(criterion, Mapping)
    if per_leaf_criterion:
        criteria = {str(k): v for k, v in criterion.items()}
        for k, v in criteria.items():
            check_criterion(v, f"criterion[{k!r}]")
            if isinstance(v, str) and v == "global":
                raise ValueError(
                    f"criterion[{k!r}]: 'global' ranks all layers together; give it as the "
                    "one criterion, not per layer"
                )
    else:
        check_criterion(criterion, "criterion")
    per_layer = isinstance(schedule, Mapping)
    if per_layer and criterion == "global":
        raise ValueError(
            "criterion='global' ranks all layers together and needs one scalar schedule, "
            "not a per-layer mapping"
        )

    def is_sparsity_for(c: Any) -> bool:
        return isinstance(c, str) and c in ("magnitude", "global")

    # one scalar schedule shared by a criterion mapping is a sparsity as soon as one leaf
    # reads it as one ("magnitude"), so it is checked as a sparsity then
    is_sparsity = (
        any(is_sparsity_for(v) for v in criteria.values())
        if per_leaf_criterion
        else is_sparsity_for(criterion)
    )
    if per_layer:
        schedules = {
            str(k): _as_schedule(
                v,
                f"schedule[{k!r}]",
                is_sparsity_for(criteria.get(str(k))) if per_leaf_criterion else is_sparsity,
            )
            for k, v in schedule.items()
        }
    else:
        one = _as_schedule(schedule, "schedule", is_sparsity)
    inner_x = optax.with_extra_args_support(inner)

    def select(params: PyTree) -> list[str]:
        sel = selected_paths(params, include=include, exclude=exclude, predicate=predicate)
        if not sel:
            raise ValueError(
                "prune: no leaf of params is selected; check include/exclude/predicate "
                "(default: arrays with ndim >= 2)"
            )
        if per_layer:
            missing = [p for p in sel if p not in schedules]
            extra = [k for k in schedules if k not in sel]
            if missing or extra:
                raise ValueError(
                    f"schedule mapping must have one entry per selected leaf; missing "
                    f"{missing}, not selected {extra}"
                )
        if per_leaf_criterion:
            missing = [p for p in sel if p not in criteria]
            extra = [k for k in criteria if k not in sel]
            if missing or extra:
                raise ValueError(
                    f"criterion mapping must have one entry per selected leaf; missing "
                    f"{missing}, not selected {extra}"
                )
        return sel

    def targets(sel: list[str], count: jax.Array) -> jax.Array:
        if per_layer:
            vals = [jnp.asarray(schedules[p](count), jnp.float32).reshape(()) for p in sel]
        else:
            v = jnp.asarray(one(count), jnp.float32).reshape(())
            vals = [v] * len(sel)
        return jnp.stack(vals)

    def compute_masks(params: PyTree, masks: PyTree, sel: list[str], t: jax.Array) -> PyTree:
        if criterion == "global":
            sel_set = set(sel)
            return global_magnitude_masks(params, t[0], predicate=lambda p, x: p in sel_set)
        index = {p: i for i, p in enumerate(sel)}

        def kernel(c: Any) -> Callable:
            if isinstance(c, str):
                return magnitude_mask if c == "magnitude" else threshold_mask
            return c

        def one_leaf(path: str, x: jax.Array, m: Any) -> Any:
            if m is None:
                return None
            fn = kernel(criteria[path] if per_leaf_criterion else criterion)
            out = jnp.asarray(fn(x, t[index[path]]))
            if out.shape != m.shape:
                raise ValueError(
                    f"criterion returned a mask of shape {out.shape} for {path!r}, expected "
                    f"{m.shape}"
                )
            return out.astype(jnp.bool_)

        return map_with_path_str(one_leaf, params, masks)

    def init_fn(params: PyTree) -> PruneState:
        sel = select(params)
        masks = full_masks(params, predicate=lambda p, x: p in set(sel))
        return PruneState(
            count=jnp.zeros((), jnp.int32),
            target=jnp.full((len(sel),), jnp.nan, jnp.float32),
            masks=masks,
            inner_state=inner.init(params),
        )

    def update_fn(
        updates: PyTree, state: PruneState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PruneState]:
        if params is None:
            raise ValueError(
                "prune needs the params: call update(grads, state, params) (optax.chain "
                "passes them on)"
            )
        sel = _selected_from_masks(state.masks)
        t = targets(sel, state.count)
        recompute = jnp.any(t != state.target)
        masks = jax.lax.cond(
            recompute,
            lambda: compute_masks(params, state.masks, sel, t),
            lambda: state.masks,
        )
        grads = updates
        if mask_gradients:
            grads = tree_map_masked(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), grads, masks)
        new_updates, inner_state = inner_x.update(grads, state.inner_state, params, **extra_args)
        new_updates = tree_map_masked(
            lambda u, m, p: jnp.where(m, u, (-p).astype(u.dtype)), new_updates, masks, params
        )
        new_state = PruneState(
            count=optax.safe_increment(state.count),
            target=t,
            masks=masks,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
    """Zero the pruned entries: ``where(mask, param, 0)``; ``None`` masks leave a leaf as is.

    Args:
      params: any pytree of arrays.
      masks: a mask pytree for ``params`` (bool arrays of each leaf's shape, or ``None``).

    Returns:
      params with the same structure and dtypes.

    Raises:
      ValueError: if ``masks`` does not match ``params`` (structure, shapes, or bool dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> out = apply_masks({"w": jnp.array([1.0, 2.0]), "b": jnp.ones(1)},
      ...                   {"w": jnp.array([False, True]), "b": None})
      >>> out["w"].tolist()
      [0.0, 2.0]
    """
    check_masks(params, masks)
    return tree_map_masked(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), params, masks)


class LeafSparsity(NamedTuple):
    """Non-zero count of one leaf (or of a total).

    Attributes:
      nonzero: int32 scalar array, entries != 0.
      size: int32 scalar array, all entries.
    """

    nonzero: jax.Array
    size: jax.Array

    @property
    def density(self) -> jax.Array:
        """Fraction of entries kept (float32)."""
        return self.nonzero.astype(jnp.float32) / jnp.maximum(self.size, 1).astype(jnp.float32)

    @property
    def sparsity(self) -> jax.Array:
        """Fraction of entries that are zero (float32)."""
        return 1.0 - self.density


class SparsitySummary(NamedTuple):
    """Per-leaf and total non-zero counts (see :func:`sparsity_summary`).

    Attributes:
      layers: ``{path string: LeafSparsity}`` in flattening order.
      total: ``LeafSparsity`` summed over ``layers``.
    """

    layers: dict[str, LeafSparsity]
    total: LeafSparsity

    def table(self) -> str:
        """A plain-text table (host side): path, size, non-zeros, kept %."""
        rows = [f"{'leaf':<32} {'weights':>10} {'nonzero':>10} {'kept %':>7}"]
        items = list(self.layers.items()) + [("total", self.total)]
        for name, s in items:
            rows.append(
                f"{name:<32} {int(s.size):>10d} {int(s.nonzero):>10d} "
                f"{100.0 * float(s.density):>7.2f}"
            )
        return "\n".join(rows)


def sparsity_summary(
    params: PyTree,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
) -> SparsitySummary:
    """Count the non-zeros of the selected leaves (default: kernels, ``ndim >= 2``) and in total.

    Jittable (counts are arrays); :meth:`SparsitySummary.table` formats it on the host. Pass
    ``predicate=lambda path, leaf: True`` to count biases as well.

    Args:
      params: any pytree of arrays.
      include, exclude, predicate: leaf selection (:func:`jaxcomp.tree.selected_paths`).

    Returns:
      a :class:`SparsitySummary`.

    Example:
      >>> import jax.numpy as jnp
      >>> s = sparsity_summary({"w": jnp.array([[0.0, 1.0], [2.0, 0.0]]), "b": jnp.ones(2)})
      >>> int(s.layers["w"].nonzero), int(s.total.size), float(s.total.density)
      (2, 4, 0.5)
    """
    sel = set(selected_paths(params, include=include, exclude=exclude, predicate=predicate))
    layers = {}
    for path, leaf in leaves_with_paths(params):
        if path in sel:
            layers[path] = LeafSparsity(
                nonzero=jnp.count_nonzero(leaf).astype(jnp.int32),
                size=jnp.asarray(int(np.prod(jnp.shape(leaf), dtype=np.int64)), jnp.int32),
            )
    if layers:
        total = LeafSparsity(
            nonzero=sum(s.nonzero for s in layers.values()),
            size=sum(s.size for s in layers.values()),
        )
    else:
        total = LeafSparsity(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    return SparsitySummary(layers=layers, total=total)


# --------------------------------------------------------------------------------------------
# Retraining aids: L1 / L2 regularization (thesis §3.2)
# --------------------------------------------------------------------------------------------


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


# --- weight sharing (issue 4) ---

SHARE_INITS = (*INITS, "uniform")


class ShareState(NamedTuple):
    """State of :func:`share_weights`; every tree below has the structure of the params.

    Attributes:
      count: ``()`` int32, update steps taken so far.
      codebooks: per shared leaf ``(2**bits,)`` float32 (``codebooks[0] == 0.0``), ``None`` for
        leaves that are not shared.
      codes: per shared leaf the leaf's shape, ``uint8`` (``bits <= 8``) or ``uint16``; 0 where
        the weight is pruned. ``None`` for leaves that are not shared.
      latent: with ``reassign_every > 0``, per shared leaf the dense float32 latent weights of
        the leaf's shape (trained with the weight gradients, used only to reassign codes);
        otherwise ``None`` everywhere.
      inner_state: state of the inner optimizer, which sees the params with every shared leaf
        replaced by its codebook (by ``(codebook, latent)`` with ``reassign_every > 0``).
    """

    count: jax.Array
    codebooks: Any
    codes: Any
    latent: Any
    inner_state: Any


def _leaf_bits(bits: Any, path: str, leaf: Any) -> int | None:
    if not hasattr(leaf, "ndim") or not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
        return None
    if isinstance(bits, Mapping):
        b = bits.get(path)
    elif callable(bits):
        b = bits(path, leaf)
    else:
        b = bits if leaf.ndim >= 2 else None
    return None if b is None else _check_bits(b)


def shared_params(params: Any, state: ShareState) -> Any:
    """Return ``params`` with every shared leaf replaced by exactly ``codebook[codes]``.

    Use it to evaluate or export the shared model bit-exactly, or to start fine-tuning from
    weights that already sit on their centroids:
    ``params = shared_params(params, tx.init(params))`` (then the updates of
    :func:`share_weights` land exactly on the centroids, see there).

    Args:
      params: the params pytree the state was made for.
      state: a :class:`ShareState` (e.g. ``state`` or ``state[i]`` inside ``optax.chain``).

    Returns:
      a pytree like ``params``; shared leaves in the leaf's dtype, other leaves unchanged.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([[0.0, 1.0], [2.0, 3.0]])}
      >>> state = share_weights(optax.sgd(0.1), bits=1).init(params)
      >>> shared_params(params, state)["w"].tolist()
      [[0.0, 2.0], [2.0, 2.0]]
    """
    if not isinstance(state, ShareState):
        raise TypeError(f"state must be a ShareState, got {type(state).__name__}")
    flat_p, treedef = jax.tree_util.tree_flatten(params)
    cbs = treedef.flatten_up_to(state.codebooks)
    cds = treedef.flatten_up_to(state.codes)
    out = [
        p if cb is None else shared_weight(cb, cd).astype(jnp.asarray(p).dtype)
        for p, cb, cd in zip(flat_p, cbs, cds, strict=True)
    ]
    return treedef.unflatten(out)


def _landing_centroids(old: jax.Array, target: jax.Array) -> jax.Array:
    # New centroids next to ``target`` (the inner optimizer's step) on which a weight sitting on
    # its old centroid lands bit for bit: ``old + (new - old) == new`` in float, the sum
    # ``optax.apply_updates`` computes with the update ``new - w`` of a weight ``w == old``.
    # ``n = old + (target - old)`` is within half an ulp of ``target`` but not always such a
    # fixed point (e.g. a centroid near 0 that moves across a power of two); one more round trip
    # ``old + (n - old)`` was one in every case tried (16.5M random and binade-edge float32
    # pairs). The check keeps it exact regardless: a centroid whose round trip still misses
    # keeps its old value for this step (NaN passes through, so divergence stays visible).
    new = old + (target - old)
    new = old + (new - old)
    lands = (old + (new - old) == new) | jnp.isnan(new)
    return jnp.where(lands, new, old)


def share_weights(
    inner: optax.GradientTransformation,
    bits: int | Mapping[str, int] | Callable[[str, Any], int | None] = 5,
    *,
    init: str = "linear",
    iters: int = 50,
    tol: float = 0.0,
    seed: int = 0,
    train_centroids: bool = True,
    reassign_every: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Weight sharing with centroid fine-tuning (trained quantization, thesis §4.2) for optax.

    ``init`` fits a codebook per shared leaf (:func:`jaxcomp.kmeans_fit`, or
    :func:`jaxcomp.uniform_fit` for ``init="uniform"``) over its non-zero weights: exact zeros
    are pruned weights (code 0, codebook entry 0 == 0.0), so the transform composes with pruning.
    Each ``update``:

    1. sums the weight gradients per code (Deep Compression eq. 3,
       :func:`jaxcomp.centroid_grads`);
    2. runs ``inner`` (any optax optimizer: SGD, momentum, Adam, weight decay ...) on the params
       with each shared leaf replaced by its codebook (entry 0 is kept at 0.0), so the inner
       state is per centroid; leaves that are not shared get ``inner``'s ordinary update;
    3. returns, for a shared leaf, updates that put every kept weight exactly on its new
       centroid and pruned weights at exactly 0 after ``optax.apply_updates``: every weight
       gets ``codebook_new[code] - w``. Each new centroid ``c'_k`` is the float next to
       ``c_k + inner step`` (within an ulp) for which ``c_k + (c'_k - c_k) == c'_k``, so a
       weight sitting on centroid k lands on the new one bit for bit whatever the sizes (a
       centroid with no such float, never seen, would keep its value for that step).
       A weight not on its centroid (the very first update, which snaps the dense weights;
       a reassigned code) lands exactly whenever ``t / 2 <= w <= 2 t`` (Sterbenz); a weight
       far from a centroid close to 0 can end one rounding step (below ``ulp(w - t)``) off it,
       and no float32 update could do better. Start from :func:`shared_params` for a
       bit-exact first step.

    Codes stay fixed (the thesis' default). With ``reassign_every = R > 0`` (the "-c+l"
    variant of Table 4.9) dense latent weights are trained alongside (by ``inner``, on the raw
    weight gradients) and every R steps each kept weight's code becomes the one of the centroid
    nearest to its latent weight.

    Compose with pruning by putting the pruning transform outside or before this one:
    ``jaxcomp.prune(share_weights(optax.sgd(lr)), ...)`` or
    ``optax.chain(prune_transform, share_weights(...))`` (the inner optimizer here sees
    codebooks, not params, so pruning must not be *inside* it).

    Args:
      inner: the optimizer applied to the codebooks (and to leaves that are not shared).
      bits: Python int in 1..16 for every array leaf with ``ndim >= 2`` (biases untouched), or a
        mapping from leaf path string (``jaxcomp.tree.path_to_str``, e.g. ``"fc1/kernel"``) to
        bits (other leaves untouched; every key must name a leaf), or a function
        ``(path, leaf) -> bits | None`` (None: not shared), e.g.
        ``lambda p, x: 8 if x.ndim == 4 else 5 if x.ndim == 2 else None``.
      init: ``"linear"``, ``"density"``, ``"random"``, ``"kmeans++"`` (k-means initialisation)
        or ``"uniform"`` (uniform quantization grid, no k-means).
      iters: Python int, maximum Lloyd iterations of the k-means.
      tol: early-stop tolerance of the k-means (see :func:`jaxcomp.kmeans_fit`).
      seed: Python int, seeds ``"random"`` / ``"kmeans++"`` (folded with the leaf index).
      train_centroids: False freezes the codebooks (post-training quantization); non-shared
        leaves still train.
      reassign_every: Python int >= 0; 0 keeps codes fixed.

    Returns:
      an ``optax.GradientTransformationExtraArgs`` with state :class:`ShareState`. Its ``update``
      needs ``params``; extra keyword arguments go to ``inner``.

    Raises:
      ValueError / TypeError: bad ``bits`` (outside 1..16, a mapping key that names no leaf, no
        shared leaf at all), unknown ``init``, negative ``reassign_every``, missing ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([[0.0, 1.0], [1.1, -2.0]]), "b": jnp.ones(2)}
      >>> tx = share_weights(optax.sgd(0.1), bits=2)
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> bool(jnp.all(params["w"] == state.codebooks["w"][state.codes["w"]]))
      True
    """
    if init not in SHARE_INITS:
        raise ValueError(f"init must be one of {SHARE_INITS}, got {init!r}")
    if isinstance(reassign_every, bool) or not isinstance(reassign_every, (int, np.integer)):
        raise TypeError(f"reassign_every must be a Python int >= 0, got {reassign_every!r}")
    if reassign_every < 0:
        raise ValueError(f"reassign_every must be >= 0 (0 = codes fixed), got {reassign_every}")
    if not (isinstance(bits, (Mapping, int, np.integer)) or callable(bits)) or isinstance(
        bits, bool
    ):
        raise TypeError(f"bits must be an int, a mapping path -> int or a callable, got {bits!r}")
    if isinstance(bits, (int, np.integer)):
        _check_bits(bits)
    reassign_every = int(reassign_every)

    def _view(flat_p, cbs, lts):
        return [
            p if cb is None else (cb if lt is None else (cb, lt))
            for p, cb, lt in zip(flat_p, cbs, lts, strict=True)
        ]

    def init_fn(params):
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_to_str(p) for p, _ in flat]
        if isinstance(bits, Mapping):
            unknown = sorted(set(bits) - set(paths))
            if unknown:
                raise ValueError(f"bits names leaves {unknown} that are not in params {paths}")
        cbs, cds, lts = [], [], []
        for i, (path, (_, leaf)) in enumerate(zip(paths, flat, strict=True)):
            b = _leaf_bits(bits, path, leaf)
            if b is None:
                cbs.append(None)
                cds.append(None)
                lts.append(None)
                continue
            if init == "uniform":
                cb, cd = uniform_fit(leaf, b)
            else:
                key = jax.random.fold_in(jax.random.key(seed), i)
                cb, cd = kmeans_fit(leaf, b, init=init, iters=iters, tol=tol, key=key)
            cbs.append(cb)
            cds.append(cd)
            lts.append(
                jnp.where(cd != 0, jnp.asarray(leaf, jnp.float32), 0.0) if reassign_every else None
            )
        if all(cb is None for cb in cbs):
            raise ValueError(f"share_weights: bits={bits!r} selects no leaf of params {paths}")
        flat_p = [leaf for _, leaf in flat]
        view = treedef.unflatten(_view(flat_p, cbs, lts))
        return ShareState(
            count=jnp.zeros((), jnp.int32),
            codebooks=treedef.unflatten(cbs),
            codes=treedef.unflatten(cds),
            latent=treedef.unflatten(lts),
            inner_state=inner.init(view),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("share_weights needs params: call tx.update(grads, state, params)")
        flat_p, treedef = jax.tree_util.tree_flatten(params)
        flat_g = treedef.flatten_up_to(updates)
        cbs = treedef.flatten_up_to(state.codebooks)
        cds = treedef.flatten_up_to(state.codes)
        lts = treedef.flatten_up_to(state.latent)
        view_g = []
        for g, cb, cd, lt in zip(flat_g, cbs, cds, lts, strict=True):
            if cb is None:
                view_g.append(g)
                continue
            cg = centroid_grads(g, cd, cb.shape[0]).astype(cb.dtype).at[0].set(0.0)
            if lt is None:
                view_g.append(cg)
            else:
                view_g.append((cg, jnp.where(cd != 0, g, 0.0).astype(lt.dtype)))
        inner_u, inner_state = inner.update(
            treedef.unflatten(view_g),
            state.inner_state,
            treedef.unflatten(_view(flat_p, cbs, lts)),
            **extra_args,
        )
        flat_u = treedef.flatten_up_to(inner_u)
        count = state.count + 1
        out_u, new_cbs, new_cds, new_lts = [], [], [], []
        for p, u, cb, cd, lt in zip(flat_p, flat_u, cbs, cds, lts, strict=True):
            if cb is None:
                out_u.append(u)
                new_cbs.append(None)
                new_cds.append(None)
                new_lts.append(None)
                continue
            u_c, u_l = (u, None) if lt is None else u
            old = cb.astype(p.dtype)
            if train_centroids:
                target = (cb + u_c.astype(cb.dtype)).at[0].set(0.0).astype(p.dtype)
                new = _landing_centroids(old, target)
            else:
                new = old
            if lt is not None:
                kept = cd != 0
                lt = jnp.where(kept, lt + u_l.astype(lt.dtype), 0.0)
                cd = jax.lax.cond(
                    count % reassign_every == 0,
                    lambda lt=lt, new=new, cd=cd, kept=kept: nearest_codes(lt, new, mask=kept),
                    lambda cd=cd: cd,
                )
            # Every weight gets codebook_new[code] - w: exact on its centroid (old + (new - old)
            # == new by the choice of new), elsewhere (dense start, reassigned codes) exact when
            # new / 2 <= w <= 2 new. One gather from a (2**bits,) table per weight.
            out_u.append(new[cd] - p)
            cb = new.astype(cb.dtype)
            new_cbs.append(cb)
            new_cds.append(cd)
            new_lts.append(lt)
        new_state = ShareState(
            count=count,
            codebooks=treedef.unflatten(new_cbs),
            codes=treedef.unflatten(new_cds),
            latent=treedef.unflatten(new_lts),
            inner_state=inner_state,
        )
        return treedef.unflatten(out_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ============================================================================================
# Dense-Sparse-Dense training (issue 7, thesis chapter 5)
# ============================================================================================


class DSDState(NamedTuple):
    """State of :func:`dsd`.

    Attributes:
      prune_state: the :class:`PruneState` of the pruning wrapper DSD drives; its ``count``
        (int32 scalar) is the step, its ``masks`` the current masks (all True in dense phases),
        and its ``inner_state`` holds ``optax.chain(inner, scale_by_schedule(lr_scale))``'s state.
    """

    prune_state: PruneState


_CUTS = ("keepmax", "random")


def _first_conv_path(params: PyTree) -> str | None:
    for path, leaf in leaves_with_paths(params):
        if hasattr(leaf, "ndim") and leaf.ndim == 4:
            return path
    return None


def dsd(
    inner: optax.GradientTransformation,
    dense_steps: int,
    sparse_steps: int,
    redense_steps: int,
    sparsity: float,
    *,
    cycles: int = 1,
    lr_drop: float = 0.1,
    cut: str = "keepmax",
    seed: int = 0,
    first_conv_dense: bool = True,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Dense-Sparse-Dense training (Han et al., ICLR 2017) inside one ordinary training loop.

    Phases, by optimizer step: dense for ``dense_steps``; then ``cycles`` times: sparse for
    ``sparse_steps`` (every selected layer pruned to the same ``sparsity`` by magnitude, pruned
    weights held at exactly 0), then re-dense for ``redense_steps`` (masks released, pruned
    weights restart from 0, the learning rate multiplied by ``lr_drop``; each further re-dense
    phase multiplies it again). No branching on the user side: call ``update`` every step.

    It composes :func:`prune` (the masks), :func:`jaxcomp.schedules.dsd_sparsity` (the target)
    and ``optax.scale_by_schedule`` with :func:`jaxcomp.schedules.dsd_lr_scale` (the learning
    rate drop; scaling the update is scaling the learning rate for SGD, momentum and Adam).

    Args:
      inner: the optimizer (any ``optax.GradientTransformation``), at the dense learning rate.
      dense_steps: Python int >= 0, steps before the first pruning.
      sparse_steps: Python int > 0, steps of each sparse phase.
      redense_steps: Python int >= 0, steps of each re-dense phase.
      sparsity: fraction of each selected layer pruned in the sparse phases, in ``[0, 1]``.
      cycles: number of S-D cycles (repeated DSD).
      lr_drop: learning-rate multiplier applied at each re-dense phase, in ``(0, 1]``.
      cut: ``"keepmax"`` (prune the smallest weights; the thesis' method) or ``"random"``
        (Random-Cut: prune the same number of weights at random, its control experiment).
      seed: seed of the random cut.
      first_conv_dense: leave the first convolution kernel (first 4-D leaf in flattening order)
        dense, as the thesis does.
      include, exclude, predicate: leaf selection (default: arrays with ``ndim >= 2``).

    Returns:
      ``optax.GradientTransformationExtraArgs`` with state :class:`DSDState`; ``update`` needs
      ``params``.

    Raises:
      ValueError: on bad phase lengths, a sparsity outside [0, 1], an unknown ``cut``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4)}
      >>> tx = dsd(optax.sgd(0.1), dense_steps=1, sparse_steps=1, redense_steps=1, sparsity=0.5)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.ones((2, 4))}
      >>> for _ in range(2):
      ...     u, state = tx.update(g, state, params)
      ...     params = optax.apply_updates(params, u)
      >>> int((params["w"] == 0).sum())  # after the sparse step
      4
    """
    if cut not in _CUTS:
        raise ValueError(f"cut must be one of {_CUTS}, got {cut!r}")
    target = _schedules.dsd_sparsity(
        sparsity, dense_steps, sparse_steps, redense_steps, cycles=cycles
    )
    lr_scale = _schedules.dsd_lr_scale(
        lr_drop, dense_steps, sparse_steps, redense_steps, cycles=cycles
    )
    scaled = optax.chain(inner, optax.scale_by_schedule(lr_scale))
    if cut == "keepmax":
        criterion: Any = "magnitude"
    else:

        def criterion(w: jax.Array, s: jax.Array) -> jax.Array:
            return random_mask(w, s, seed=seed)

    def build(params: PyTree) -> optax.GradientTransformationExtraArgs:
        excl = exclude
        first = _first_conv_path(params) if first_conv_dense else None
        if first is not None:
            extra = re.compile("^" + re.escape(first) + "$")
            if excl is None:
                excl = [extra]
            elif isinstance(excl, (str, re.Pattern)):
                excl = [excl, extra]
            else:
                excl = [*excl, extra]
        return prune(scaled, target, criterion, include=include, exclude=excl, predicate=predicate)

    def init_fn(params: PyTree) -> DSDState:
        return DSDState(build(params).init(params))

    def update_fn(
        updates: PyTree, state: DSDState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, DSDState]:
        if params is None:
            raise ValueError("dsd needs the params: call update(grads, state, params)")
        new_updates, ps = build(params).update(updates, state.prune_state, params, **extra_args)
        return new_updates, DSDState(ps)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
