"""Pure, jittable pruning mask kernels (semantics: ``docs/design.md``, "Pruning").

Every kernel maps a weight array (and a target) to a ``bool`` mask of the same shape, True =
kept. Continuous targets (``sparsity``, ``quality``) are arrays or floats that may be traced
(``jit``, ``vmap``, ``inject_hyperparams``); shape-setting knobs (``n``, ``m``, ``num_pes``,
``block``, ``axis``) are keyword-only Python ints.

Exactness: for a sparsity ``s`` over ``n`` entries, exactly ``floor(s * n)`` entries are pruned,
the smallest ``|w|`` first, ties broken by flat (row-major) index — the lower index is pruned
first. The ordering is a stable ``argsort``, so eager and ``jit`` agree bit for bit.

For a traced sparsity the count is computed in float32 as ``floor(s * n)``, except that a
product within float32 representation error (relative ``2**-22``) of an integer snaps to that
integer: decimal sparsities such as ``0.7`` then give the count exact arithmetic gives, where
float32 rounding of ``0.7`` would fall one short. A Python ``float`` sparsity given eagerly is
counted the same way in double precision (so ``0.29 * 100`` gives 29, as in exact decimal
arithmetic, although the double product is 28.999...).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.tree import PyTree, map_with_path_str, selected_paths

__all__ = [
    "adjusted_dropout",
    "block_mask",
    "global_magnitude_masks",
    "load_balanced_mask",
    "magnitude_mask",
    "nm_mask",
    "num_pruned",
    "random_mask",
    "structured_mask",
    "threshold_mask",
]

Array = jax.Array

_TOL = 2.0**-22


def _check_sparsity_value(sparsity: Any, name: str = "sparsity") -> None:
    """Raise on a concrete sparsity outside [0, 1]; traced values are clipped instead."""
    if isinstance(sparsity, jax.core.Tracer):
        return
    try:
        v = np.asarray(sparsity, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array, got {type(sparsity)!r}") from None
    if not np.all(np.isfinite(v)) or np.any(v < 0.0) or np.any(v > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1] (fraction of entries pruned), got {sparsity!r}"
        )


def num_pruned(sparsity: Any, n: int) -> Array:
    """Number of entries pruned for a sparsity over ``n`` entries: ``floor(sparsity * n)``.

    Args:
      sparsity: scalar in ``[0, 1]`` (Python float or a possibly traced array).
      n: Python int, the number of entries.

    Returns:
      int32 scalar in ``[0, n]``.

    Raises:
      ValueError: if a concrete ``sparsity`` lies outside ``[0, 1]``.

    Example:
      >>> int(num_pruned(0.7, 10)), int(num_pruned(0.5, 7))
      (7, 3)
    """
    _check_sparsity_value(sparsity)
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool):
        p = float(sparsity) * n
        r = round(p)
        k = r if abs(p - r) <= max(p, 1.0) * _TOL else math.floor(p)
        return jnp.asarray(min(max(k, 0), n), jnp.int32)
    s = jnp.asarray(sparsity, jnp.float32)
    p = s * jnp.float32(n)
    r = jnp.round(p)
    # snap to the integer when p is within float32 representation error of it
    k = jnp.where(jnp.abs(p - r) <= jnp.maximum(p, 1.0) * jnp.float32(_TOL), r, jnp.floor(p))
    return jnp.clip(k, 0, n).astype(jnp.int32)


def _rank_ascending(score: Array) -> Array:
    """Rank of each entry of a 1-D ``score`` in stable ascending order (0 = smallest)."""
    n = score.shape[0]
    order = jnp.argsort(score, stable=True)
    return jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))


def magnitude_mask(w: Array, sparsity: Any) -> Array:
    """Prune exactly ``floor(sparsity * w.size)`` entries of smallest ``|w|`` (per layer).

    Ties are broken by flat index (lower index pruned first); eager and ``jit`` agree.

    Args:
      w: weight array, any shape, float dtype.
      sparsity: scalar in ``[0, 1]``, fraction of entries to prune (may be traced / vmapped).

    Returns:
      bool array of ``w.shape``, True = kept; exactly ``w.size - floor(sparsity * w.size)`` True.

    Raises:
      ValueError: if a concrete ``sparsity`` lies outside ``[0, 1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> magnitude_mask(jnp.array([0.3, -0.1, 0.2, 0.0]), 0.5).tolist()
      [True, False, True, False]
    """
    w = jnp.asarray(w)
    k = num_pruned(sparsity, w.size)
    rank = _rank_ascending(jnp.abs(w).reshape(-1).astype(jnp.float32))
    return (rank >= k).reshape(w.shape)


def global_magnitude_masks(
    params: PyTree,
    sparsity: Any,
    *,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
) -> PyTree:
    """Global magnitude pruning: one threshold over all selected leaves together.

    Exactly ``floor(sparsity * N)`` entries are pruned, ``N`` = total size of the selected
    leaves; ties are broken by position in the concatenation of the flattened leaves (in
    ``jax.tree.leaves`` order).

    Args:
      params: any pytree of arrays.
      sparsity: scalar in ``[0, 1]`` (may be traced).
      include, exclude, predicate: leaf selection (see :func:`jaxcomp.tree.selected_paths`;
        default: every array with ``ndim >= 2``).

    Returns:
      a mask pytree: bool arrays for selected leaves, ``None`` for the others.

    Raises:
      ValueError: if ``sparsity`` is outside ``[0, 1]`` or nothing is selected.

    Example:
      >>> import jax.numpy as jnp
      >>> m = global_magnitude_masks({"a": jnp.array([[1.0, 2.0]]), "b": jnp.array([[0.5, 3.0]])},
      ...                            0.5)
      >>> m["a"].tolist(), m["b"].tolist()
      ([[False, True]], [[False, True]])
    """
    sel = selected_paths(params, include=include, exclude=exclude, predicate=predicate)
    if not sel:
        raise ValueError(
            "global_magnitude_masks: no leaf selected; check include/exclude/predicate"
        )
    sel_set = set(sel)
    leaves = {}
    map_with_path_str(lambda p, x: leaves.__setitem__(p, x) if p in sel_set else None, params)
    flat = jnp.concatenate(
        [jnp.abs(jnp.asarray(leaves[p])).reshape(-1).astype(jnp.float32) for p in sel]
    )
    k = num_pruned(sparsity, flat.shape[0])
    keep = _rank_ascending(flat) >= k
    offsets = np.cumsum([0] + [int(np.prod(jnp.shape(leaves[p]))) for p in sel])
    out = {
        p: keep[offsets[i] : offsets[i + 1]].reshape(jnp.shape(leaves[p]))
        for i, p in enumerate(sel)
    }
    return map_with_path_str(lambda p, x: out.get(p), params)


def threshold_mask(w: Array, quality: Any, *, exclude_zeros: bool = False) -> Array:
    """Han's threshold: prune ``|w| < quality * std(w)`` (std of this layer, recomputed now).

    Args:
      w: weight array, any shape.
      quality: non-negative scalar (may be traced), the quality parameter of Han et al.
      exclude_zeros: compute the std over the non-zero entries only (entries already pruned
        do not shrink the threshold). Default False: the std of the whole array, as
        ``docs/design.md`` states.

    Returns:
      bool array of ``w.shape``, True = kept (``|w| >= quality * std``).

    Raises:
      ValueError: if a concrete ``quality`` is negative.

    Example:
      >>> import jax.numpy as jnp
      >>> threshold_mask(jnp.array([1.0, -1.0, 0.1, 0.0]), 1.0).tolist()
      [True, True, False, False]
    """
    if not isinstance(quality, jax.core.Tracer) and np.any(np.asarray(quality) < 0):
        raise ValueError(f"quality must be >= 0 (threshold = quality * std), got {quality!r}")
    w = jnp.asarray(w)
    a = jnp.abs(w).astype(jnp.float32)
    if exclude_zeros:
        nz = w != 0
        cnt = jnp.maximum(jnp.sum(nz), 1)
        mean = jnp.sum(jnp.where(nz, w, 0).astype(jnp.float32)) / cnt
        var = jnp.sum(jnp.where(nz, (w.astype(jnp.float32) - mean) ** 2, 0.0)) / cnt
        std = jnp.sqrt(var)
    else:
        std = jnp.std(w.astype(jnp.float32))
    return a >= jnp.asarray(quality, jnp.float32) * std


def _norm_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{name} must be a Python int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of rank {ndim}")
    return int(axis) % ndim


def _norm_of(x: Array, axes: tuple[int, ...], norm: str) -> Array:
    x = x.astype(jnp.float32)
    if norm == "l1":
        return jnp.sum(jnp.abs(x), axis=axes)
    if norm == "l2":
        return jnp.sqrt(jnp.sum(x * x, axis=axes))
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def structured_mask(w: Array, sparsity: Any, *, axis: int, norm: str = "l2") -> Array:
    """Prune whole slices along ``axis`` by their L1 or L2 norm.

    Slice ``i`` is ``w`` indexed with ``i`` on ``axis`` (all other axes kept); exactly
    ``floor(sparsity * w.shape[axis])`` slices of smallest norm are zeroed (ties by index).
    Granularities, for Flax layouts:

    * Dense kernel ``(in, out)``: output neurons = ``axis=-1`` (EIE rows), inputs = ``axis=0``.
    * Conv kernel ``(H, W, in, out)``: filters = ``axis=-1``, input channels = ``axis=-2``.
    * A matrix ``(m, n)``: rows = ``axis=0``, columns = ``axis=1``.

    Args:
      w: weight array of rank >= 1.
      sparsity: scalar in ``[0, 1]`` (may be traced), fraction of slices to prune.
      axis: Python int, the axis whose indices are pruned.
      norm: ``"l1"`` or ``"l2"``.

    Returns:
      bool array of ``w.shape``, constant along every axis but ``axis``.

    Raises:
      ValueError: bad ``sparsity``, ``axis`` or ``norm``.

    Example:
      >>> import jax.numpy as jnp
      >>> structured_mask(jnp.array([[1.0, 0.1], [2.0, 0.2]]), 0.5, axis=1).tolist()
      [[True, False], [True, False]]
    """
    w = jnp.asarray(w)
    ax = _norm_axis(axis, w.ndim)
    other = tuple(i for i in range(w.ndim) if i != ax)
    score = _norm_of(w, other, norm)
    keep = magnitude_mask(score, sparsity)
    shape = [1] * w.ndim
    shape[ax] = w.shape[ax]
    return jnp.broadcast_to(keep.reshape(shape), w.shape)


def block_mask(w: Array, sparsity: Any, *, block: tuple[int, ...], norm: str = "l2") -> Array:
    """Prune whole blocks of shape ``block`` by their L1 or L2 norm.

    ``w`` is tiled by non-overlapping blocks (``block`` has one Python int per axis of ``w``);
    where a block size does not divide its dimension the last block along it is smaller (as in
    jaxpruner, which pads the edge blocks), and blocks are then ranked per entry: by mean
    ``|w|`` (``"l1"``) or root mean square (``"l2"``) over their real entries, so an edge
    block is not pruned for being small. Exactly ``floor(sparsity * number_of_blocks)``
    blocks of smallest score are zeroed, ties by block index (row-major).

    Args:
      w: weight array.
      sparsity: scalar in ``[0, 1]`` (may be traced).
      block: positive Python ints, one per axis of ``w``.
      norm: ``"l1"`` or ``"l2"``.

    Returns:
      bool array of ``w.shape``, constant on every block.

    Raises:
      ValueError: if ``block`` has the wrong length or a non-positive entry.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[1.0, 1.0, 0.1, 0.1], [1.0, 1.0, 0.1, 0.1]])
      >>> block_mask(w, 0.5, block=(2, 2)).astype(int).tolist()
      [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    w = jnp.asarray(w)
    block = tuple(block)
    if len(block) != w.ndim or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b > 0 for b in block
    ):
        raise ValueError(
            f"block must hold one positive Python int per axis of w (rank {w.ndim}), got {block!r}"
        )
    # A block that does not divide a dimension leaves smaller edge blocks: pad with zeros (as
    # jaxpruner does), so an edge block's norm is the norm of its real entries.
    grid = tuple(-(-d // b) for d, b in zip(w.shape, block, strict=True))
    padded = tuple(g * b for g, b in zip(grid, block, strict=True))
    xw = jnp.pad(w, [(0, p - d) for p, d in zip(padded, w.shape, strict=True)])
    inter = []
    for g, b in zip(grid, block, strict=True):
        inter += [g, b]
    x = xw.reshape(inter)
    score = _norm_of(x, tuple(range(1, 2 * w.ndim, 2)), norm)  # shape grid
    if padded != tuple(w.shape):
        # per entry, so a smaller edge block competes on equal terms: mean |w| (l1) or root
        # mean square (l2) over its real entries, as jaxpruner averages
        counts = np.ones((), np.float32)
        for d, g, b in zip(w.shape, grid, block, strict=True):
            sizes = np.minimum(b, d - b * np.arange(g)).astype(np.float32)
            counts = np.multiply.outer(counts, sizes)
        score = score / (counts if norm == "l1" else np.sqrt(counts))
    keep = magnitude_mask(score, sparsity)
    keep = keep.reshape(tuple(v for g in grid for v in (g, 1)))
    keep = jnp.broadcast_to(keep, inter).reshape(padded)
    return keep[tuple(slice(0, d) for d in w.shape)]


def nm_mask(w: Array, *, n: int, m: int, axis: int = -1) -> Array:
    """N:M sparsity: in every group of ``m`` consecutive entries along ``axis``, keep ``n``.

    The ``n`` entries of largest ``|w|`` are kept in each group (ties: lower index kept).

    Args:
      w: weight array.
      n: Python int, entries kept per group (``0 <= n <= m``).
      m: Python int, group size; must divide ``w.shape[axis]``.
      axis: Python int, the axis the groups run along (for a Flax Dense kernel ``(in, out)``,
        ``axis=0`` groups inputs of one output neuron, as sparse tensor cores do).

    Returns:
      bool array of ``w.shape`` with exactly ``n`` True per group.

    Raises:
      ValueError: if ``n > m``, ``m < 1`` or ``m`` does not divide the axis length.

    Example:
      >>> import jax.numpy as jnp
      >>> nm_mask(jnp.array([0.1, -3.0, 2.0, 0.5]), n=2, m=4).tolist()
      [False, True, True, False]
    """
    for name, v in (("n", n), ("m", m)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be a Python int, got {type(v).__name__}")
    if m < 1 or n < 0:
        raise ValueError(f"N:M needs m >= 1 and n >= 0, got n={n}, m={m}")
    if n > m:
        raise ValueError(f"N:M needs n <= m (keep n of every m entries), got n={n} > m={m}")
    w = jnp.asarray(w)
    ax = _norm_axis(axis, w.ndim)
    if w.shape[ax] % m:
        raise ValueError(
            f"m={m} does not divide w.shape[{axis}]={w.shape[ax]}; pick m dividing that axis"
        )
    x = jnp.moveaxis(jnp.abs(w).astype(jnp.float32), ax, -1)
    lead = x.shape[:-1]
    g = x.reshape(lead + (x.shape[-1] // m, m))
    # rank within the group by descending |w|, ties -> lower index first (stable on -|w|)
    order = jnp.argsort(-g, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)
    keep = (rank < n).reshape(x.shape)
    return jnp.moveaxis(keep, -1, ax)


def _lba_quota(kept: Array, sizes: np.ndarray) -> Array:
    """Kept entries per PE group: equal (+-1) with the groups' capacities ``sizes``.

    ``sizes`` holds two values at most: ``big`` for the first ``r`` groups, ``small`` after.
    """
    num = sizes.shape[0]
    small = int(sizes[-1])
    big = int(sizes[0])
    r = int(np.sum(sizes == big)) if big != small else 0
    idx = jnp.arange(num, dtype=jnp.int32)
    even = kept // num + (idx < kept % num).astype(jnp.int32)
    if r == 0:
        return even
    rest = kept - (num - r) * small
    over = jnp.where(idx < r, rest // r + (idx < rest % r).astype(jnp.int32), jnp.int32(small))
    return jnp.where(kept <= num * small, even, over)


def load_balanced_mask(w: Array, sparsity: Any, *, num_pes: int, row_axis: int = -1) -> Array:
    """Load-balance-aware magnitude pruning for ``num_pes`` EIE processing elements.

    EIE row ``i`` (an output neuron) lives in PE ``i mod num_pes``. This prunes exactly
    ``floor(sparsity * w.size)`` entries in total, and leaves every PE group (rows with
    ``i mod num_pes == k``) the same number of non-zeros, plus or minus one (when the number
    of rows is not a multiple of ``num_pes`` a smaller group is capped at its size). Within a
    group the smallest ``|w|`` are pruned, ties by position in the group (local row, then the
    remaining axes, row-major).

    Args:
      w: weight array whose ``row_axis`` indexes EIE rows = outputs. For a Flax Dense kernel
        ``(in, out)`` the EIE row is the OUTPUT axis: ``row_axis=-1`` (default). For an EIE
        matrix ``(m, n)`` (outputs first) pass ``row_axis=0``.
      sparsity: scalar in ``[0, 1]`` (may be traced).
      num_pes: Python int >= 1, the number of PEs (more PEs than rows give the mask of
        ``num_pes = rows``: every row in a PE of its own).
      row_axis: Python int, the axis holding EIE rows.

    Returns:
      bool array of ``w.shape``, True = kept.

    Raises:
      ValueError: bad ``sparsity``, ``num_pes`` or ``row_axis``.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[9.0, 8.0], [7.0, 6.0], [0.1, 0.2], [0.3, 0.4]])  # (m=4 rows, n=2)
      >>> m = load_balanced_mask(w, 0.5, num_pes=2, row_axis=0)
      >>> m[0::2].sum().item(), m[1::2].sum().item()
      (2, 2)
    """
    if not isinstance(num_pes, (int, np.integer)) or isinstance(num_pes, bool) or num_pes < 1:
        raise ValueError(f"num_pes must be a Python int >= 1, got {num_pes!r}")
    w = jnp.asarray(w)
    ax = _norm_axis(row_axis, w.ndim, "row_axis")
    x = jnp.moveaxis(jnp.abs(w).astype(jnp.float32), ax, 0)
    rows = x.shape[0]
    cols = int(np.prod(x.shape[1:], dtype=np.int64))
    x = x.reshape(rows, cols)
    # PEs beyond the number of rows hold no row: each row is then a group of its own, which is
    # exactly the mask for num_pes == rows (EIE's 64 PEs on a 10-output layer); computing with
    # that many groups keeps the work bounded by the layer, not by num_pes
    num = min(int(num_pes), max(rows, 1))
    local = -(-rows // num)
    pad = local * num - rows
    xp = jnp.concatenate([x, jnp.full((pad, cols), -1.0, jnp.float32)], axis=0)
    # group k = rows k, k+N, ... -> (N, local * cols), flattened by (local row, col)
    gx = xp.reshape(local, num, cols).transpose(1, 0, 2).reshape(num, local * cols)
    rows_per_group = np.array([len(range(k, rows, num)) for k in range(num)])
    sizes = rows_per_group * cols
    kept = jnp.int32(w.size) - num_pruned(sparsity, w.size)
    quota = _lba_quota(kept, sizes)  # (N,)
    order = jnp.argsort(gx, axis=1, stable=True)
    rank = jnp.argsort(order, axis=1, stable=True)
    # prune the (local*cols - quota) smallest of each group (padding is smallest, -1)
    keep_g = rank >= (local * cols - quota)[:, None]
    keep = keep_g.reshape(num, local, cols).transpose(1, 0, 2).reshape(local * num, cols)[:rows]
    keep = keep.reshape((rows,) + tuple(jnp.moveaxis(w, ax, 0).shape[1:]))
    return jnp.moveaxis(keep, 0, ax)


def adjusted_dropout(rate: Any, kept: Any, original: Any) -> Array:
    """Dropout rate for retraining a pruned layer: ``D_r = D_o * sqrt(C_r / C_o)`` (Han et al.).

    Args:
      rate: the original dropout rate ``D_o`` in ``[0, 1)``.
      kept: ``C_r``, connections (non-zeros) left after pruning.
      original: ``C_o``, connections before pruning (> 0).

    Returns:
      float32 scalar, the retraining dropout rate (arrays broadcast).

    Raises:
      ValueError: if a concrete ``rate`` is outside ``[0, 1)`` or ``original`` is not > 0.

    Example:
      >>> round(float(adjusted_dropout(0.5, 25, 100)), 4)
      0.25
    """
    if not isinstance(rate, jax.core.Tracer) and np.any(
        (np.asarray(rate) < 0) | (np.asarray(rate) >= 1)
    ):
        raise ValueError(f"rate must lie in [0, 1), got {rate!r}")
    if not isinstance(original, jax.core.Tracer) and np.any(np.asarray(original) <= 0):
        raise ValueError(f"original (connections before pruning) must be > 0, got {original!r}")
    ratio = jnp.asarray(kept, jnp.float32) / jnp.asarray(original, jnp.float32)
    return jnp.asarray(rate, jnp.float32) * jnp.sqrt(ratio)


def random_mask(w: Array, sparsity: Any, *, seed: int = 0) -> Array:
    """Prune exactly ``floor(sparsity * w.size)`` entries chosen at random (DSD's Random-Cut).

    The baseline against magnitude pruning (Keepmax-Cut) in the thesis' DSD study: the same
    number of weights is removed, but which ones ignores their magnitude. The random stream is
    derived from ``seed`` and the bits of ``w`` (so two layers of one network get different
    patterns, and the same call always gives the same mask); jittable.

    Args:
      w: weight array, any shape, float dtype.
      sparsity: scalar in ``[0, 1]`` (may be traced).
      seed: Python int.

    Returns:
      bool array of ``w.shape``, True = kept; exactly ``w.size - floor(sparsity * w.size)`` True.

    Example:
      >>> import jax.numpy as jnp
      >>> int(random_mask(jnp.arange(1.0, 11.0), 0.3).sum())
      7
    """
    _check_sparsity_value(sparsity)
    w = jnp.asarray(w)
    bits = jax.lax.bitcast_convert_type(w.astype(jnp.float32), jnp.uint32)
    key = jax.random.fold_in(jax.random.key(seed), jnp.sum(bits, dtype=jnp.uint32))
    scores = jax.random.uniform(key, w.shape, jnp.float32)
    return magnitude_mask(scores, sparsity)
