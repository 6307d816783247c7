"""The ``prune`` optax factory: training that prunes the params and keeps pruned weights at zero.

:func:`prune` returns an ``optax.GradientTransformationExtraArgs`` whose :class:`PruneState`
holds the data-dependent masks. The updates it returns already keep pruned weights at exactly
zero: no extra hook to call after ``optax.apply_updates``. It composes with ``optax.chain`` and
``optax.inject_hyperparams``. :func:`apply_masks` and :func:`sparsity_summary` work on any
params pytree. The mask kernels it composes live in :mod:`jaxcomp.masks`.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.masks import global_magnitude_masks, magnitude_mask, threshold_mask
from jaxcomp.tree import (
    PyTree,
    align_leaves,
    check_masks,
    full_masks,
    leaves_with_paths,
    map_with_path_str,
    selected_paths,
    tree_map_masked,
)

__all__ = [
    "LeafSparsity",
    "PruneState",
    "SparsitySummary",
    "apply_masks",
    "prune",
    "sparsity_summary",
]


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

# True while share_weights initialises its inner optimizer, which sees codebooks, not params:
# pruning there would prune codebook entries, so prune refuses it and names the right order.
INSIDE_SHARE: contextvars.ContextVar[bool] = contextvars.ContextVar("INSIDE_SHARE", default=False)
# While prune runs its inner optimizer's update: {path string: bool mask} of the masks of this
# step, so that a share_weights inside gives every pruned weight code 0 in the same step.
OUTER_MASKS: contextvars.ContextVar[dict[str, jax.Array] | None] = contextvars.ContextVar(
    "OUTER_MASKS", default=None
)


def as_transformation(inner: Any, name: str = "inner") -> optax.GradientTransformationExtraArgs:
    """``inner`` as an ``optax.GradientTransformationExtraArgs``.

    Accepts what ``optax.chain`` accepts: any ``optax.GradientTransformation`` or any object with
    callable ``init`` and ``update`` (``optax.MultiSteps``, a user's class). Extra keyword
    arguments reach ``update`` only when it takes ``**kwargs``.
    """
    if isinstance(inner, optax.GradientTransformation):
        return optax.with_extra_args_support(inner)
    init = getattr(inner, "init", None)
    update = getattr(inner, "update", None)
    if not (callable(init) and callable(update)):
        raise TypeError(
            f"{name} must be an optax.GradientTransformation or an object with init and update "
            f"methods (e.g. optax.adam(1e-3), optax.MultiSteps(...)), got {type(inner).__name__}"
        )
    try:
        takes_kwargs = any(
            q.kind is inspect.Parameter.VAR_KEYWORD
            for q in inspect.signature(update).parameters.values()
        )
    except (TypeError, ValueError):
        takes_kwargs = False
    if takes_kwargs:
        return optax.GradientTransformationExtraArgs(init, update)
    return optax.with_extra_args_support(optax.GradientTransformation(init, update))


def raise_if(bad: Any, message: str) -> None:
    """Raise ``ValueError(message)`` when ``bad`` holds, eagerly or inside ``jit`` / ``vmap``.

    Under a trace the check runs on the device and calls back to the host only when ``bad``
    holds (``lax.cond``); the error then surfaces as the ``JaxRuntimeError`` of the jitted call,
    with ``message`` in it.
    """
    if not isinstance(bad, jax.core.Tracer):
        if bool(np.any(np.asarray(bad))):
            raise ValueError(message)
        return

    def fail(b: Any) -> None:
        if np.any(b):
            raise ValueError(message)

    jax.lax.cond(jnp.any(bad), lambda: jax.debug.callback(fail, bad), lambda: None)


def check_float_leaves(params: PyTree, paths: Any, who: str) -> None:
    """Raise ``TypeError`` naming the first selected leaf of ``params`` that is not floating."""
    sel = set(paths)
    for path, leaf in leaves_with_paths(params):
        if path in sel and not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
            raise TypeError(
                f"params[{path!r}] has dtype {jnp.asarray(leaf).dtype}: {who} needs "
                "floating-point params; leave integer leaves out of the selection "
                "(exclude=..., predicate=...)"
            )


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
    dependents: Mapping[str, Any] | None = None,
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
      dependents: channel pruning with its dependents, off by default. A mapping from a
        selected kernel's path to the paths of 1-D leaves indexed by its output channel (its
        last axis): its bias and the following BatchNorm's scale and bias, e.g.
        ``{"conv1/kernel": ["conv1/bias", "bn1/scale", "bn1/bias"]}``. Whenever every entry
        of output channel ``c`` of the kernel is pruned (as
        ``functools.partial(jaxcomp.structured_mask, axis=-1)`` prunes whole filters), entry
        ``c`` of each dependent is pruned too and held at exactly 0, so the channel outputs
        exactly 0 instead of ``relu(bias)``.

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
    inner_x = as_transformation(inner)
    if dependents is not None and not isinstance(dependents, Mapping):
        raise TypeError(
            "dependents must be a mapping kernel path -> [paths of its bias / BatchNorm "
            f"leaves], got {type(dependents).__name__}"
        )
    dep_map = {str(k): [str(d) for d in v] for k, v in (dependents or {}).items()}
    dep_set = {d for ds in dep_map.values() for d in ds}

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

    def select(params: PyTree) -> list[str]:
        sel = selected_paths(params, include=include, exclude=exclude, predicate=predicate)
        if not sel:
            raise ValueError(
                "prune: no leaf of params is selected; check include/exclude/predicate "
                "(default: arrays with ndim >= 2)"
            )
        check_float_leaves(params, sel, "prune")
        shapes = dict(leaves_with_paths(params))
        seen: set[str] = set()
        for k, deps in dep_map.items():
            if k not in sel:
                raise ValueError(f"dependents: {k!r} is not a selected kernel of params {sel}")
            for d in deps:
                if d not in shapes or d in sel or d in seen:
                    raise ValueError(
                        f"dependents[{k!r}]: {d!r} must name a leaf of params that is not "
                        "selected for pruning and depends on one kernel only"
                    )
                if tuple(jnp.shape(shapes[d])) != (jnp.shape(shapes[k])[-1],):
                    raise ValueError(
                        f"dependents[{k!r}]: {d!r} has shape {tuple(jnp.shape(shapes[d]))}, "
                        f"expected ({jnp.shape(shapes[k])[-1]},): one entry per output channel"
                    )
                seen.add(d)
        check_float_leaves(params, seen, "prune")
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
        out = kernel_masks(params, masks, sel, t)
        if not dep_map:
            return out
        kept = {
            k: jnp.any(jnp.reshape(m, (-1, m.shape[-1])), axis=0)
            for k, m in leaves_with_paths(out)
            if k in dep_map
        }
        owner = {d: k for k, deps in dep_map.items() for d in deps}
        # walk the state's masks (arrays for the dependents too); ``out`` has None there
        return map_with_path_str(
            lambda p, old, new: kept[owner[p]] if p in owner else new, masks, out
        )

    def kernel_masks(params: PyTree, masks: PyTree, sel: list[str], t: jax.Array) -> PyTree:
        if criterion == "global":
            sel_set = set(sel)
            return global_magnitude_masks(params, t[0], predicate=lambda p, x: p in sel_set)
        index = {p: i for i, p in enumerate(sel)}

        def kernel(c: Any) -> Callable:
            if isinstance(c, str):
                return magnitude_mask if c == "magnitude" else threshold_mask
            return c

        def one_leaf(path: str, x: jax.Array, m: Any) -> Any:
            if m is None or path not in index:
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
        if INSIDE_SHARE.get():
            raise ValueError(
                "prune (or dsd) inside share_weights: share_weights' inner optimizer sees the "
                "codebooks, not the params, so it cannot prune them. Put pruning outside: "
                "jaxcomp.prune(jaxcomp.share_weights(inner, bits=...), schedule)"
            )
        sel = select(params)
        deps = {d for ds in dep_map.values() for d in ds}
        masks = full_masks(params, predicate=lambda p, x: p in set(sel) | deps)
        return PruneState(
            count=jnp.zeros((), jnp.int32),
            target=jnp.full((len(sel),), jnp.nan, jnp.float32),
            masks=masks,
            inner_state=inner_x.init(params),
        )

    def update_fn(
        updates: PyTree, state: PruneState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PruneState]:
        if params is None:
            raise ValueError(
                "prune needs the params: call update(grads, state, params) (optax.chain "
                "passes them on)"
            )
        sel = [p for p in _selected_from_masks(state.masks) if p not in dep_set]
        # What the last update guaranteed: every entry it pruned is exactly 0. A transform
        # chained after prune that moves them (share_weights, weight decay) breaks it.
        moved = [
            jnp.any(~m & (p != 0))
            for p, m in zip(jax.tree.leaves(params), align_leaves(params, state.masks), strict=True)
            if m is not None
        ]
        raise_if(
            jnp.any(jnp.stack(moved)),
            "prune: weights it pruned at its last update are no longer 0: a transform after it "
            "changed its updates (e.g. optax.chain(jaxcomp.prune(...), jaxcomp.share_weights(...)) "
            "or weight decay chained after prune), or the params were changed between steps. "
            "Put the other transforms inside: jaxcomp.prune(jaxcomp.share_weights(inner), ...) "
            "or jaxcomp.prune(optax.chain(..., inner), ...)",
        )
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
        token = OUTER_MASKS.set({p: m for p, m in leaves_with_paths(masks)})
        try:
            new_updates, inner_state = inner_x.update(
                grads, state.inner_state, params, **extra_args
            )
        finally:
            OUTER_MASKS.reset(token)
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
      params: any pytree of arrays, e.g. ``nnx.state(model, nnx.Param)``.
      masks: a mask pytree for ``params``: per leaf ``None`` or an array of its shape, ``bool``
        or integer (jaxpruner's ``uint8``; non-zero = kept). It may be held as the optimizer
        holds it: ``optimizer.opt_state.masks`` of an ``nnx.Optimizer`` (``OptVariable``
        nodes) applies to ``nnx.state(model, nnx.Param)`` as it is.

    Returns:
      params with the same structure and dtypes.

    Raises:
      ValueError: if ``masks`` does not match ``params`` (leaves, shapes, or dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> out = apply_masks({"w": jnp.array([1.0, 2.0]), "b": jnp.ones(1)},
      ...                   {"w": jnp.array([False, True]), "b": None})
      >>> out["w"].tolist()
      [0.0, 2.0]
    """
    ms = check_masks(params, masks)
    flat, treedef = jax.tree.flatten(params)
    out = [
        x if m is None else jnp.where(m, x, jnp.zeros_like(x))
        for x, m in zip(flat, ms, strict=True)
    ]
    return treedef.unflatten(out)


class LeafSparsity(NamedTuple):
    """Non-zero count of one leaf (or of a total).

    Counts are exact at any size: Python ints when :func:`sparsity_summary` runs eagerly;
    under ``jit`` int64 arrays with ``jax_enable_x64``, else int32 arrays (a selection of
    ``2**31`` weights or more is then refused rather than wrapped).

    Attributes:
      nonzero: entries != 0 (Python int, or a scalar integer array under ``jit``).
      size: all entries (Python int; a scalar integer array when returned from ``jit``).
    """

    nonzero: Any
    size: Any

    @property
    def density(self) -> Any:
        """Fraction of entries kept (a Python float, or float32 under ``jit``)."""
        if isinstance(self.nonzero, int) and isinstance(self.size, int):
            return self.nonzero / max(self.size, 1)
        return jnp.asarray(self.nonzero, jnp.float32) / jnp.maximum(
            jnp.asarray(self.size, jnp.float32), 1.0
        )

    @property
    def sparsity(self) -> Any:
        """Fraction of entries that are zero."""
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


def _count_nonzero(x: Any) -> int:
    """Exact count of non-zeros as a Python int, in int32 chunks of fewer than 2**31 entries."""
    if isinstance(x, np.ndarray):
        return int(np.count_nonzero(x))
    flat = jnp.ravel(jnp.asarray(x))
    chunk = 2**30
    return sum(int(jnp.count_nonzero(flat[i : i + chunk])) for i in range(0, flat.size, chunk))


def sparsity_summary(
    params: PyTree,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
) -> SparsitySummary:
    """Count the non-zeros of the selected leaves (default: kernels, ``ndim >= 2``) and in total.

    Eagerly the counts are exact Python ints whatever the model's size; under ``jit`` they are
    integer arrays (see :class:`LeafSparsity`). :meth:`SparsitySummary.table` formats it on the
    host. Pass ``predicate=lambda path, leaf: True`` to count biases as well.

    Args:
      params: any pytree of arrays.
      include, exclude, predicate: leaf selection (:func:`jaxcomp.tree.selected_paths`).

    Returns:
      a :class:`SparsitySummary`.

    Example:
      >>> import jax.numpy as jnp
      >>> s = sparsity_summary({"w": jnp.array([[0.0, 1.0], [2.0, 0.0]]), "b": jnp.ones(2)})
      >>> s.layers["w"].nonzero, s.total.size, s.total.density
      (2, 4, 0.5)
    """
    sel = set(selected_paths(params, include=include, exclude=exclude, predicate=predicate))
    chosen = [(p, x) for p, x in leaves_with_paths(params) if p in sel]
    sizes = {p: int(np.prod(jnp.shape(x), dtype=np.int64)) for p, x in chosen}
    traced = any(isinstance(x, jax.core.Tracer) for _, x in chosen)
    if traced:
        wide = jax.config.jax_enable_x64
        if not wide and sum(sizes.values()) >= 2**31:
            raise ValueError(
                f"sparsity_summary under jit: {sum(sizes.values()):,} selected weights do not "
                "fit int32 counts; call it outside jit (exact Python ints) or enable "
                "jax_enable_x64"
            )
        dtype = jnp.int64 if wide else jnp.int32
        layers = {
            p: LeafSparsity(jnp.count_nonzero(x).astype(dtype), jnp.asarray(sizes[p], dtype))
            for p, x in chosen
        }
        zero = jnp.zeros((), dtype)
        total = LeafSparsity(
            sum((s.nonzero for s in layers.values()), zero),
            sum((s.size for s in layers.values()), zero),
        )
    else:
        layers = {p: LeafSparsity(_count_nonzero(x), sizes[p]) for p, x in chosen}
        total = LeafSparsity(
            sum(s.nonzero for s in layers.values()), sum(s.size for s in layers.values())
        )
    return SparsitySummary(layers=layers, total=total)
