"""Trained quantization: 1-D k-means weight sharing and its straight-through gradient.

Thesis chapter 4.2 / Deep Compression section 3; semantics in ``docs/design.md``, conventions in
``docs/conventions.md``:

* A shared layer is a ``codebook`` (float32, ``(2**bits,)``) and ``codes`` (the weight's shape,
  ``uint8`` for ``bits <= 8`` else ``uint16``); the weight is ``codebook[codes]``.
* ``codebook[0] == 0.0`` and ``codes == 0`` exactly where the weight is pruned, so k-means trains
  ``2**bits - 1`` centroids over the kept weights only (codes ``1 .. 2**bits - 1``).

The k-means is an exact 1-D Lloyd iteration that exploits sorting: the kept weights are sorted
once; a cluster is then a contiguous run of the sorted array, its boundaries are the midpoints
between consecutive (sorted) centroids found by ``searchsorted``, and its sum comes from block
sums with a double-float (compensated) prefix over the blocks plus two partial blocks summed
directly. One iteration costs ``O(K * block)`` instead of ``O(n * K)``, and there is no float32
prefix-sum drift on millions of weights (no ``jax_enable_x64`` needed).

On CPU the one sort goes through NumPy (``jax.pure_callback``; XLA:CPU's float sort is ~40x
slower); on other backends it is ``lax.sort``. Everything else is plain XLA.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcomp.atomic import atomic_open

__all__ = [
    "INITS",
    "KMeansInfo",
    "centroid_grads",
    "codes_dtype",
    "kmeans_fit",
    "kmeans_inertia",
    "nearest_codes",
    "plot_codebook",
    "shared_weight",
    "uniform_fit",
]

INITS = ("linear", "density", "random", "kmeans++")


class KMeansInfo(NamedTuple):
    """Diagnostics of :func:`kmeans_fit` (``return_info=True``).

    Attributes:
      n_iter: ``()`` int32, Lloyd iterations run (fewer than ``iters`` if ``tol`` stopped it or
        it reached a fixed point; 0 for the lossless / all-zero cases).
      inertia: ``(iters + 1,)`` float32, sum of squared distances of the kept weights to their
        nearest centroid after 0, 1, ... iterations; NaN after ``n_iter``.
    """

    n_iter: jax.Array
    inertia: jax.Array


# ----------------------------------------------------------------------------- validation


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be a Python int in 1..16, got {bits!r} ({type(bits).__name__})")
    bits = int(bits)
    if not 1 <= bits <= 16:
        raise ValueError(
            f"bits must be in 1..16 (codes are uint8/uint16 with code 0 reserved), got {bits}"
        )
    return bits


def codes_dtype(bits: int) -> jnp.dtype:
    """Return the code dtype for ``bits``: ``uint8`` for ``bits <= 8``, else ``uint16``.

    Example:
      >>> codes_dtype(5), codes_dtype(12)
      (dtype('uint8'), dtype('uint16'))
    """
    return jnp.dtype(jnp.uint8) if _check_bits(bits) <= 8 else jnp.dtype(jnp.uint16)


def _prepare(w: Any, mask: Any, name: str = "w") -> tuple[jax.Array, jax.Array]:
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {w.dtype}")
    if mask is None:
        kept = w != 0
    else:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"mask must be a bool array (True = kept), got dtype {mask.dtype}")
        if mask.shape != w.shape:
            raise ValueError(f"mask shape {mask.shape} must equal the weight shape {w.shape}")
        kept = mask
    if not isinstance(w, jax.core.Tracer) and not isinstance(kept, jax.core.Tracer):
        wn, kn = np.asarray(w), np.asarray(kept)
        if not np.isfinite(wn[kn]).all():
            raise ValueError(
                f"{name} has NaN or Inf among the kept weights; clean them (or mask them out) "
                "before weight sharing"
            )
    return w.astype(jnp.float32), kept


# ----------------------------------------------------------------------------- sorting


def _numpy_sort(x: jax.Array) -> jax.Array:
    return jax.pure_callback(
        lambda a: np.sort(np.asarray(a), axis=-1),
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        x,
        vmap_method="expand_dims",
    )


def _xla_sort(x: jax.Array) -> jax.Array:
    # XLA sorts int32 much faster than float32 (no NaN-aware comparator): use the order-preserving
    # map of IEEE floats onto int32 and back.
    b = lax.bitcast_convert_type(x, jnp.int32)
    key = jnp.where(b < 0, b ^ jnp.int32(0x7FFFFFFF), b)
    key = lax.sort(key, is_stable=False)
    b = jnp.where(key < 0, key ^ jnp.int32(0x7FFFFFFF), key)
    return lax.bitcast_convert_type(b, jnp.float32)


def _sort_impl() -> str:
    # JAXCOMP_XLA_SORT=1 forces lax.sort on CPU too (no host callback, e.g. for export).
    return "xla" if os.environ.get("JAXCOMP_XLA_SORT") else "auto"


def _sort(x: jax.Array, impl: str = "auto") -> jax.Array:
    if impl == "xla":
        return _xla_sort(x)
    return lax.platform_dependent(x, cpu=_numpy_sort, default=_xla_sort)


# ----------------------------------------------------------------------------- double-float


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _df_add(x, y):
    s, e = _two_sum(x[0], y[0])
    e = e + (x[1] + y[1])
    hi = s + e
    return hi, e - (hi - s)


# ----------------------------------------------------------------------------- assignment


def _mids(c: jax.Array) -> jax.Array:
    return 0.5 * c[:-1] + 0.5 * c[1:]


def _assign_sorted(x: jax.Array, c: jax.Array) -> jax.Array:
    """Index (0-based) of the nearest of sorted centroids ``c``; ties go to the lower one."""
    mids = _mids(c)
    if mids.shape[0] == 0:
        return jnp.zeros(x.shape, jnp.int32)
    if mids.shape[0] <= 32:
        return jnp.sum(x[..., None] > mids.reshape((1,) * x.ndim + (-1,)), axis=-1, dtype=jnp.int32)
    return jnp.searchsorted(mids, x, side="left", method="scan_unrolled").astype(jnp.int32)


def nearest_codes(w: Any, codebook: Any, *, mask: Any = None) -> jax.Array:
    """Assign each kept weight the code of its nearest non-zero codebook entry.

    Args:
      w: weights, any shape, floating.
      codebook: ``(2**bits,)`` float; entry 0 (the pruned code) is never chosen for a kept
        weight. The entries need not be sorted. Ties go to the lower code (among sorted entries).
      mask: optional bool array of ``w``'s shape (True = kept); default ``w != 0``.

    Returns:
      codes, ``w.shape``, uint8 (``bits <= 8``) or uint16; 0 where not kept.

    Example:
      >>> import jax.numpy as jnp
      >>> nearest_codes(jnp.array([0.0, 0.9, -1.2]), jnp.array([0.0, -1.0, 1.0, 2.0]))
      Array([0, 2, 1], dtype=uint8)
    """
    codebook = jnp.asarray(codebook, jnp.float32)
    size = codebook.shape[0] if codebook.ndim == 1 else -1
    if size < 2 or size & (size - 1):
        raise ValueError(f"codebook must be 1-D of length 2**bits (2..65536), got {codebook.shape}")
    bits = size.bit_length() - 1
    w, kept = _prepare(w, mask)
    order = jnp.argsort(codebook[1:])
    c = codebook[1:][order]
    idx = order[_assign_sorted(w, c)] + 1
    return jnp.where(kept, idx, 0).astype(codes_dtype(bits))


# ----------------------------------------------------------------------------- k-means


def _block_size(k: int) -> int:
    return 512 if k <= 1024 else 64


def _init_centroids(xs, n, k, init, key):
    nf = n.astype(jnp.float32)
    last = jnp.maximum(n - 1, 0)
    lo, hi = xs[0], xs[last]
    ar = jnp.arange(k, dtype=jnp.float32)
    if init == "linear":
        if k == 1:
            return jnp.reshape(0.5 * lo + 0.5 * hi, (1,))
        return lo + (hi - lo) * (ar / (k - 1))
    if init == "density":
        idx = jnp.floor((ar + 0.5) / k * nf).astype(jnp.int32)
        return xs[jnp.clip(idx, 0, last)]
    valid = jnp.arange(xs.shape[0]) < n
    if init == "random":
        scores = jnp.where(valid, jax.random.uniform(key, xs.shape), -1.0)
        _, idx = lax.top_k(scores, k)
        return jnp.sort(xs[jnp.minimum(idx, last)])
    # k-means++ (Arthur & Vassilvitskii): D^2 sampling, O(k n).
    keys = jax.random.split(key, k)
    first = jnp.minimum(jax.random.randint(keys[0], (), 0, jnp.maximum(n, 1)), last)
    c0 = jnp.zeros((k,), jnp.float32).at[0].set(xs[first])
    d2 = jnp.where(valid, jnp.inf, 0.0)

    def body(i, carry):
        c, d2 = carry
        d2 = jnp.minimum(d2, jnp.where(valid, jnp.square(xs - c[i - 1]), 0.0))
        logits = jnp.where(valid & (d2 > 0), jnp.log(jnp.maximum(d2, 1e-45)), -jnp.inf)
        j = jax.random.categorical(keys[i], logits)
        return c.at[i].set(xs[jnp.minimum(j, last)]), d2

    c, _ = lax.fori_loop(1, k, body, (c0, d2))
    return jnp.sort(c)


def _scaled(m, piv):
    """``m * piv`` exactly, as a double-float, for integer ``0 <= m <= 1024``."""
    bits = lax.bitcast_convert_type(piv, jnp.int32) & jnp.int32(-4096)  # keep 12 significant bits
    p_hi = lax.bitcast_convert_type(bits, jnp.float32)
    m = m.astype(jnp.float32)
    return _two_sum(m * p_hi, m * (piv - p_hi))  # both products fit in 24 bits: exact


def _lloyd_setup(xs, n, k):
    """Pivoted blocks of the sorted, +inf-padded ``xs`` and a double-float prefix over blocks.

    Returns ``dev`` ``(nb, bsz)`` (each valid entry minus its block's first entry, 0 elsewhere),
    ``piv`` ``(nb,)`` (the block's first entry, 0 for empty blocks) and the exclusive prefix sums
    of the block totals as a double-float pair of ``(nb + 1,)`` arrays.
    """
    bsz = _block_size(k)
    nb = xs.shape[0] // bsz
    x2 = xs.reshape(nb, bsz)
    valid = (jnp.arange(nb * bsz) < n).reshape(nb, bsz)
    piv = jnp.where(valid[:, 0], x2[:, 0], 0.0)
    dev = jnp.where(valid, x2 - piv[:, None], 0.0)  # small and >= 0: summed accurately
    tot = _df_add(_scaled(jnp.sum(valid, axis=1), piv), (jnp.sum(dev, axis=1), jnp.zeros_like(piv)))
    hi, lo = lax.associative_scan(_df_add, tot)
    zero = jnp.zeros((1,), jnp.float32)
    return dev, piv, (jnp.concatenate([zero, hi]), jnp.concatenate([zero, lo]))


def _segment_means(xs, n, c, dev, piv, prefix):
    """One Lloyd update of sorted centroids ``c``; returns the new centroids, sorted.

    Cluster j is the run ``[s_j, e_j)`` of the sorted weights: whole blocks come from the
    double-float prefix, the partial first and last blocks from their pivoted deviations.
    """
    bsz = dev.shape[1]
    inner = jnp.searchsorted(xs, _mids(c), side="right", method="scan_unrolled").astype(jnp.int32)
    inner = jnp.minimum(inner, n)
    s = jnp.concatenate([jnp.zeros((1,), jnp.int32), inner])
    e = jnp.concatenate([inner, jnp.reshape(n, (1,)).astype(jnp.int32)])
    bs, rs, be, re = s // bsz, s % bsz, e // bsz, e % bsz
    same = bs == be
    ar = jnp.arange(bsz)[None, :]
    head_mask = (ar >= rs[:, None]) & (~same[:, None] | (ar < re[:, None]))
    tail_mask = (ar < re[:, None]) & ~same[:, None]
    zeros = jnp.zeros_like(c)
    head = _df_add(
        _scaled(jnp.sum(head_mask, axis=1), piv[bs]),
        (jnp.sum(jnp.where(head_mask, dev[bs], 0.0), axis=1), zeros),
    )
    tail = _df_add(
        _scaled(jnp.sum(tail_mask, axis=1), piv[be]),
        (jnp.sum(jnp.where(tail_mask, dev[be], 0.0), axis=1), zeros),
    )
    phi, plo = prefix
    b1 = jnp.minimum(bs + 1, phi.shape[0] - 1)
    full = _df_add((phi[be], plo[be]), (-phi[b1], -plo[b1]))
    full = (jnp.where(same, 0.0, full[0]), jnp.where(same, 0.0, full[1]))
    tot = _df_add(_df_add(full, head), tail)
    cnt = e - s
    empty = cnt == 0
    valid_k = jnp.arange(c.shape[0]) < n  # fewer points than clusters: nothing to relocate

    def relocate(args):
        # scikit-learn's rule: the j-th empty cluster takes the j-th farthest point from its
        # (old) centroid, which leaves its donor cluster. In 1-D the k farthest points of a
        # cluster are among its k outermost on either side: 2 k^2 candidates instead of n.
        tot, cnt = args
        k = c.shape[0]
        if 2 * k * k < xs.shape[0]:
            t = jnp.arange(k)[None, :]
            left = s[:, None] + t
            right = e[:, None] - 1 - t
            ok_l = left < e[:, None]
            ok_r = right >= jnp.maximum(s[:, None] + k, s[:, None])
            idx = jnp.concatenate([left, right], axis=1).reshape(-1)
            ok = jnp.concatenate([ok_l, ok_r], axis=1).reshape(-1)
            owner = jnp.broadcast_to(jnp.arange(k)[:, None], (k, 2 * k)).reshape(-1)
            xc = xs[jnp.clip(idx, 0, xs.shape[0] - 1)]
            d = jnp.where(ok, jnp.abs(xc - c[owner]), -1.0)
            _, far = lax.top_k(d, k)
            far_x, far_a = xc[far], owner[far]
        else:
            valid = jnp.arange(xs.shape[0]) < n
            a = _assign_sorted(jnp.where(valid, xs, 0.0), c)
            d = jnp.where(valid, jnp.abs(xs - c[a]), -1.0)
            _, far = lax.top_k(d, k)
            far_x, far_a = xs[far], a[far]
        rank = jnp.clip(jnp.cumsum(empty) - 1, 0, k - 1)  # j-th empty cluster -> far[j]
        take = empty & valid_k[rank]
        donor = jnp.where(take, far_a[rank], k)
        xv = jnp.where(take, far_x[rank], 0.0)
        minus = jnp.zeros_like(c).at[donor].add(-xv, mode="drop")
        lost = jnp.zeros_like(cnt).at[donor].add(1, mode="drop")
        tot = _df_add(tot, (minus, jnp.zeros_like(minus)))
        tot = (jnp.where(take, xv, tot[0]), jnp.where(take, 0.0, tot[1]))
        return tot, jnp.where(take, 1, cnt - lost)

    tot, cnt = lax.cond(jnp.any(empty & (n > c.shape[0])), relocate, lambda a: a, (tot, cnt))
    mean = (tot[0] + tot[1]) / jnp.maximum(cnt, 1).astype(jnp.float32)
    return jnp.sort(jnp.where(cnt > 0, mean, c))


def _inertia_sorted(xs, n, c):
    valid = jnp.arange(xs.shape[0]) < n
    d = jnp.where(valid, xs - c[_assign_sorted(jnp.where(valid, xs, 0.0), c)], 0.0)
    return jnp.sum(jnp.square(d))


def kmeans_fit(
    w: Any,
    bits: int,
    *,
    init: str = "linear",
    mask: Any = None,
    iters: int = 50,
    tol: Any = 0.0,
    key: Any = None,
    return_info: bool = False,
) -> tuple[jax.Array, jax.Array] | tuple[jax.Array, jax.Array, KMeansInfo]:
    """Fit a weight-sharing codebook to one layer by exact 1-D k-means (Lloyd).

    Trains ``K = 2**bits - 1`` centroids over the kept weights (code 0 is the pruned weight,
    ``codebook[0] == 0.0``). Lloyd iterations are exact (every kept weight goes to its nearest
    centroid, ties to the lower one; each centroid becomes the mean of its weights; as in
    scikit-learn, the j-th empty cluster is moved onto the j-th farthest weight from its own
    centroid, which leaves its cluster); they run until ``iters`` or until no centroid moves by
    more than ``tol * (max - min)`` of the kept weights (``tol = 0``: until a fixed point).

    Documented edge cases:
      * at most ``K`` distinct kept values (e.g. more clusters than weights): lossless, the
        codebook holds each distinct value once, sorted, and its remaining entries repeat the
        largest one (those codes are unused); ``n_iter = 0``.
      * no kept weight (all-zero layer): codebook all 0.0, codes all 0.
      * NaN/Inf among the kept weights: ``ValueError`` when called eagerly; under ``jit`` (where
        values are unknown at trace time) the codebook entries ``1:`` are NaN.

    Args:
      w: weights, any shape, floating (computed in float32).
      bits: Python int in 1..16.
      init: ``"linear"`` (even spacing between min and max; the midpoint when ``K == 1``),
        ``"density"`` (even spacing of the CDF: the ``(k + 0.5) / K`` quantiles),
        ``"random"`` (``K`` distinct kept weights sampled with ``key``) or ``"kmeans++"``
        (D^2 sampling with ``key``; ``O(K n)``, meant for ``bits <= 8``).
      mask: optional bool array of ``w``'s shape, True = kept; default ``w != 0``. Weights outside
        the mask get code 0 whatever their value.
      iters: Python int >= 0, the maximum number of Lloyd iterations.
      tol: float (array-like, traced): relative early-stop tolerance, see above.
      key: a ``jax.random`` key; required for ``"random"`` and ``"kmeans++"``.
      return_info: also return a :class:`KMeansInfo` (computes the inertia after every iteration,
        an extra ``O(n)`` pass each).

    Returns:
      ``(codebook, codes)``: codebook ``(2**bits,)`` float32 with ``codebook[0] == 0`` and
      ``codebook[1:]`` sorted ascending; codes ``w.shape`` uint8/uint16. With ``return_info``,
      a third element ``KMeansInfo``.

    Example:
      >>> import jax.numpy as jnp
      >>> cb, codes = kmeans_fit(jnp.array([0.0, 1.0, 1.5, -2.0, -2.5, 0.5]), 2)
      >>> cb.tolist(), codes.tolist()
      ([0.0, -2.25, 0.5, 1.25], [0, 3, 3, 1, 1, 2])
    """
    bits = _check_bits(bits)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise ValueError(f"iters must be a Python int >= 0, got {iters!r}")
    if init in ("random", "kmeans++") and key is None:
        raise ValueError(f"init={init!r} needs key=, e.g. key=jax.random.key(0)")
    w, kept = _prepare(w, mask)
    if key is None:
        key = jax.random.key(0)  # unused by the deterministic inits
    tol = jnp.asarray(tol, jnp.float32)
    out = _kmeans_jit(w, kept, tol, key, bits, init, int(iters), return_info, _sort_impl())
    return out if return_info else out[:2]


@partial(jax.jit, static_argnums=(4, 5, 6, 7, 8))
def _kmeans_jit(w, kept, tol, key, bits, init, iters, return_info, sort_impl):
    k = 2**bits - 1
    shape = w.shape
    wf, kf = w.reshape(-1), kept.reshape(-1)
    bad = jnp.any(kf & ~jnp.isfinite(wf))
    n = jnp.sum(kf, dtype=jnp.int32)

    bsz = _block_size(k)
    total = (wf.shape[0] // bsz + 1) * bsz
    xs = (
        jnp.full((total,), jnp.inf, jnp.float32)
        .at[: wf.shape[0]]
        .set(jnp.where(kf & jnp.isfinite(wf), wf, jnp.inf))
    )
    xs = _sort(xs, sort_impl)
    idx = jnp.arange(total)
    valid = idx < n
    is_start = valid & jnp.concatenate([jnp.ones((1,), bool), xs[1:] != xs[:-1]])
    n_distinct = jnp.sum(is_start, dtype=jnp.int32)
    lossless = n_distinct <= k

    # Lossless case: the sorted distinct values (walked with searchsorted, n_distinct <= k
    # steps; no step at all otherwise), padded with the largest; Lloyd is then skipped.
    def dcond(carry):
        j, _, _ = carry
        return lossless & (j < n_distinct)

    def dbody(carry):
        j, pos, c = carry
        v = xs[pos]
        return j + 1, jnp.searchsorted(xs, v, side="right").astype(jnp.int32), c.at[j].set(v)

    _, _, distinct = lax.while_loop(
        dcond, dbody, (jnp.int32(0), jnp.int32(0), jnp.zeros((k,), jnp.float32))
    )
    fill = jnp.where(n_distinct > 0, distinct[jnp.maximum(n_distinct - 1, 0)], 0.0)
    distinct = jnp.where(jnp.arange(k) < n_distinct, distinct, fill)

    c0 = jnp.where(lossless, distinct, _init_centroids(xs, n, k, init, key))
    dev, piv, prefix = _lloyd_setup(xs, n, k)
    scale = tol * (xs[jnp.maximum(n - 1, 0)] - xs[0])
    hist = jnp.full((iters + 1,), jnp.nan, jnp.float32)
    if return_info:
        hist = hist.at[0].set(_inertia_sorted(xs, n, c0))

    def cond(carry):
        it, _, shift, _ = carry
        return (it < iters) & (shift > scale) & ~lossless

    def body(carry):
        it, c, _, hist = carry
        c_new = _segment_means(xs, n, c, dev, piv, prefix)
        if return_info:
            hist = hist.at[it + 1].set(_inertia_sorted(xs, n, c_new))
        return it + 1, c_new, jnp.max(jnp.abs(c_new - c)), hist

    n_iter, c, _, hist = lax.while_loop(cond, body, (jnp.int32(0), c0, jnp.float32(jnp.inf), hist))
    c = jnp.where(bad, jnp.nan, c)
    codebook = jnp.concatenate([jnp.zeros((1,), jnp.float32), c])
    codes = jnp.where(kf, _assign_sorted(wf, c) + 1, 0).astype(codes_dtype(bits)).reshape(shape)
    return codebook, codes, KMeansInfo(n_iter, hist)


def uniform_fit(w: Any, bits: int, *, mask: Any = None) -> tuple[jax.Array, jax.Array]:
    """Uniform (linear) quantization baseline with :func:`kmeans_fit`'s interface.

    ``K = 2**bits - 1`` levels evenly spaced between the min and max of the kept weights (the
    midpoint when ``K == 1``), each kept weight rounded to the nearest level, no Lloyd iteration.
    Pruned weights get code 0; an all-zero layer gives an all-zero codebook.

    Args:
      w: weights, any shape, floating.
      bits: Python int in 1..16.
      mask: optional bool array of ``w``'s shape, True = kept; default ``w != 0``.

    Returns:
      ``(codebook (2**bits,) float32, codes w.shape uint8/uint16)``.

    Example:
      >>> import jax.numpy as jnp
      >>> cb, codes = uniform_fit(jnp.array([0.0, -1.0, 0.4, 2.0]), 2)
      >>> cb.tolist(), codes.tolist()
      ([0.0, -1.0, 0.5, 2.0], [0, 1, 2, 3])
    """
    bits = _check_bits(bits)
    w, kept = _prepare(w, mask)
    return _uniform_jit(w, kept, bits)


@partial(jax.jit, static_argnums=2)
def _uniform_jit(w, kept, bits):
    k = 2**bits - 1
    bad = jnp.any(kept & ~jnp.isfinite(w))
    any_kept = jnp.any(kept)
    lo = jnp.where(any_kept, jnp.min(jnp.where(kept, w, jnp.inf)), 0.0)
    hi = jnp.where(any_kept, jnp.max(jnp.where(kept, w, -jnp.inf)), 0.0)
    if k == 1:
        c = jnp.reshape(0.5 * lo + 0.5 * hi, (1,))
    else:
        c = lo + (hi - lo) * (jnp.arange(k, dtype=jnp.float32) / (k - 1))
    c = jnp.where(bad, jnp.nan, c)
    codebook = jnp.concatenate([jnp.zeros((1,), jnp.float32), c])
    codes = jnp.where(kept, _assign_sorted(w, c) + 1, 0).astype(codes_dtype(bits))
    return codebook, codes


def kmeans_inertia(w: Any, codebook: Any, codes: Any) -> jax.Array:
    """Sum of squared quantization errors over the kept weights (``codes != 0``).

    Args:
      w: weights, any shape.
      codebook: ``(2**bits,)``.
      codes: ``w.shape`` integer codes.

    Returns:
      ``()`` float32, ``sum((w - codebook[codes])**2)`` where ``codes != 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(kmeans_inertia(jnp.array([1.0, 3.0]), jnp.array([0.0, 2.0]), jnp.array([1, 1])))
      2.0
    """
    w = jnp.asarray(w, jnp.float32)
    codes = jnp.asarray(codes)
    d = jnp.where(codes != 0, w - jnp.asarray(codebook, jnp.float32)[codes], 0.0)
    return jnp.sum(jnp.square(d))


# ----------------------------------------------------------------------------- straight-through


def shared_weight(codebook: Any, codes: Any) -> jax.Array:
    """The shared weight ``codebook[codes]``, differentiable in the codebook.

    Its autodiff is the straight-through centroid gradient of Deep Compression eq. 3:
    ``dL/dC_k = sum of dL/dW_ij over the weights with code k`` (= :func:`centroid_grads`).

    Args:
      codebook: ``(2**bits,)`` float.
      codes: integer array, any shape, values in ``0 .. 2**bits - 1``.

    Returns:
      array of ``codes.shape`` and the codebook's dtype.

    Raises:
      ValueError: if concrete ``codes`` hold a value outside ``0 .. len(codebook) - 1``. Under a
        trace (``jit``, ``grad``) no exception can be raised: such a code gives NaN, never
        another centroid.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> codes = jnp.array([1, 1, 2], jnp.uint8)
      >>> jax.grad(lambda cb: shared_weight(cb, codes).sum())(jnp.zeros(4)).tolist()
      [0.0, 2.0, 1.0, 0.0]
    """
    codebook = jnp.asarray(codebook)
    codes = jnp.asarray(codes)
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be an integer array, got dtype {codes.dtype}")
    k = codebook.shape[0]
    if not isinstance(codes, jax.core.Tracer) and codes.size:
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"codes hold {hi if hi >= k else lo}, outside 0 .. {k - 1} of the {k}-entry "
                "codebook; codes and codebook must come from the same fit"
            )
    return jnp.take(codebook, codes.astype(jnp.int32), mode="fill", fill_value=jnp.nan)


def centroid_grads(grads: Any, codes: Any, k: int) -> jax.Array:
    """Per-code sums of weight gradients: ``out[c] = sum(grads[codes == c])``.

    Entry 0 collects the gradients of pruned weights (optimizers ignore it: ``codebook[0]`` stays
    0). Equal to ``jax.grad`` of a loss through :func:`shared_weight`, computed as one
    scatter-add: the sums of ``jax.ops.segment_sum`` (codes outside ``0 .. k - 1`` are dropped),
    but integer codes index the scatter as they are (no ``int32`` copy of ``uint8`` codes) and
    the flat ``(n, 1)`` operands are XLA's canonical scatter form, so XLA:CPU does not copy the
    gradient into that layout first (``segment_sum`` does).

    Args:
      grads: the weight gradient, any shape.
      codes: integer codes of ``grads``' shape (other dtypes are cast to ``int32``).
      k: Python int, codebook size (``2**bits``).

    Returns:
      ``(k,)`` array of ``grads``' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> centroid_grads(jnp.array([1.0, 2.0, 4.0]), jnp.array([1, 1, 3]), 4).tolist()
      [0.0, 3.0, 0.0, 4.0]
    """
    grads = jnp.asarray(grads)
    codes = jnp.asarray(codes)
    if codes.shape != grads.shape:
        raise ValueError(f"codes shape {codes.shape} must equal the grads shape {grads.shape}")
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        codes = codes.astype(jnp.int32)
    return lax.scatter_add(
        jnp.zeros((int(k),), grads.dtype),
        codes.reshape(-1, 1),
        grads.reshape(-1, 1),
        _CENTROID_SCATTER,
        mode=lax.GatherScatterMode.FILL_OR_DROP,
    )


# out[codes[i, 0]] += grads[i, 0]: a size-1 update window over the operand's only dimension.
_CENTROID_SCATTER = lax.ScatterDimensionNumbers(
    update_window_dims=(1,), inserted_window_dims=(), scatter_dims_to_operand_dims=(0,)
)


# ----------------------------------------------------------------------------- plotting


def plot_codebook(
    w: Any,
    codebook_before: Any,
    codebook_after: Any = None,
    *,
    bins: int = 100,
    title: str | None = None,
    path: str | os.PathLike | None = None,
):
    """Draw a layer's weight histogram with its centroids before/after fine-tuning (Fig. 4.4).

    Pruned (exactly zero) weights are left out of the histogram; code 0 (the pruned entry) is left
    out of the centroids.

    Args:
      w: the layer's weights (any shape).
      codebook_before: ``(2**bits,)`` centroids after k-means, before fine-tuning.
      codebook_after: optional ``(2**bits,)`` centroids after fine-tuning.
      bins: histogram bins.
      title: optional axes title.
      path: optional PNG path, written atomically (temp file + fsync + rename).

    Returns:
      the ``matplotlib.figure.Figure`` (Agg canvas; no pyplot state touched).

    Example:
      >>> import numpy as np
      >>> fig = plot_codebook(np.random.randn(100), np.array([0.0, -1.0, 1.0, 2.0]))
      >>> len(fig.axes)
      1
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    wn = np.asarray(w, np.float32).reshape(-1)
    wn = wn[wn != 0]
    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    counts, _, _ = ax.hist(wn, bins=bins, color="0.7", label="weights")
    top = float(counts.max()) if counts.size else 1.0
    before = np.asarray(codebook_before, np.float32)[1:]
    ax.plot(before, np.full_like(before, 0.04 * top), "x", color="tab:green", label="k-means")
    if codebook_after is not None:
        after = np.asarray(codebook_after, np.float32)[1:]
        ax.plot(
            after,
            np.full_like(after, 0.10 * top),
            "o",
            mfc="none",
            color="tab:red",
            label="fine-tuned",
        )
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        with atomic_open(path) as f:
            fig.savefig(f, format="png")
    return fig
