"""Stage 2 of the fast model: per-PE work of each broadcast event (device, jittable).

For ``(n_pes, index_bits)`` (traced; vmappable) and a static PE bound, :func:`pe_work` gives the
per-PE, per-event work table: entries (fillers included), non-zeros, the CSC address of each
slice, and the LNZD latch gaps. Rows are interleaved (row ``i`` in PE ``i % N`` at local row
``i // N``); fillers come from the gaps between consecutive non-zero local rows of a (PE,
column) slice after one sort (:func:`slice_gaps`). With ``acc_regs`` A, output rows
``[p N A, (p + 1) N A)`` run as pass ``p``, a layer of its own: ``pe_work(..., acc_regs=A,
pass_index=p)`` gives its table, and every counter is the sum over passes. Activation batches
(``EIEStatic.act_regs`` B: ``N B`` inputs each) work the same way: ``pe_work(...,
batch_groups=B, batch_index=b, batches=nb)`` gives batch ``b``'s events as a fresh LNZD scan.

LNZD gaps (``ready[k] = e[k-1] + c[k]``): ``c[0] = 1 + g0`` (the first group is latched at cycle
1, each empty group before the first broadcast costs one cycle); ``c[k] = 1`` inside a group;
across groups ``c[k] = (1 if lane[k-1] == N-1 else 2) + q`` with ``q`` the empty groups skipped.

The only sort of the model runs through NumPy on CPU (``jax.pure_callback``, 15x faster than
XLA:CPU's sort) and through ``lax.sort`` on every other platform: ``lax.platform_dependent``
lowers only the branch of the platform compiled for, so a GPU/TPU program holds no host
callback (``tests/test_eie_sim.py`` exports one for CUDA to check).

Example:
    >>> import numpy as np
    >>> from eie_model.sim.events import layer_events
    >>> from eie_model.types import Layer
    >>> ev = layer_events(Layer(np.ones((2, 2), np.uint8), np.arange(16.0), np.ones(2)))
    >>> pe_work(ev, 2, 4, max_pes=2).entries.tolist()
    [[1, 1], [1, 1]]
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from eie_model.sim.events import Events

__all__ = ["PEWork", "SliceGaps", "pe_work", "slice_gaps"]


class PEWork(NamedTuple):
    """Per-PE work of one ``(n_pes, index_bits)`` pair; leading PE axis of length ``max_pes``.

    Attributes:
        entries: ``(max_pes, K) int32`` entries (fillers included) of PE i's slice of event k.
        nnz: ``(max_pes, K) int32`` non-zero entries of that slice.
        base: ``(max_pes, K) int32`` CSC address of the slice's first entry in PE i's array.
        ready_gap: ``(K,) int32`` ``c[k]`` of the LNZD schedule (see module docstring);
            ``-1`` for a padding event.
        tail_gap: ``() int32`` cycles from the last broadcast to the latch of the group after
            the last group (from cycle 0 when there is no broadcast): the end of a layer with
            no accumulator write.
        n_pes: ``() int32`` the PE count N (PEs ``>= N`` are padding, all zero).
    """

    entries: jax.Array
    nnz: jax.Array
    base: jax.Array
    ready_gap: jax.Array
    tail_gap: jax.Array
    n_pes: jax.Array


class SliceGaps(NamedTuple):
    """What the per-PE work needs from the PE count N alone (one sort), per non-zero.

    Attributes:
        seg: ``(Z,) int32`` ``pe * (K + 1) + bucket``: the (PE, event bucket) the non-zero's
            entries count toward (bucket ``K`` = after the last broadcast, dropped).
        gap: ``(Z,) int32`` zero local rows ``z`` skipped before it in its (column, PE) slice
            (of its pass, with ``acc_regs``).
        bcast: ``(Z,) int32`` 1 where its column is broadcast.
        block: ``(Z,) int32`` its ``acc_regs`` pass (local row ``// acc_regs``), or ``None``
            (no ``acc_regs``: one pass).
    """

    seg: jax.Array
    gap: jax.Array
    bcast: jax.Array
    block: jax.Array | None = None


def _cumulative(op: Any, x: jax.Array) -> jax.Array:
    """Inclusive prefix ``op`` (``jnp.add`` / ``jnp.maximum``) along the last axis, ``O(K log K)``.

    ``jnp.cumsum`` / ``lax.cummax`` lower to a ``reduce_window`` as wide as the axis on CPU,
    ``O(K^2)`` work: for Alex-7's ``(64, 1489)`` tables, 1.7 ms per ``cummax`` against
    0.27 ms for this ``associative_scan``.
    """
    if not x.shape[-1]:
        return x
    return lax.associative_scan(op, x, axis=x.ndim - 1)


def _numpy_sort(x: jax.Array) -> jax.Array:
    return jax.pure_callback(
        lambda a: np.sort(np.asarray(a), axis=-1),
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        x,
        vmap_method="expand_dims",
    )


def _sort_keys(x: jax.Array) -> jax.Array:
    """Ascending sort of an int32 key vector: NumPy on CPU, ``lax.sort`` elsewhere.

    XLA:CPU sorts 1.5 M int32 keys about 15x slower than NumPy (0.11 s against 7 ms), and this
    sort is most of a sweep's per-layer cost, so on CPU it goes through ``jax.pure_callback``
    (as ``jaxcomp.quantize`` does); ``JAXCOMP_XLA_SORT=1`` forces ``lax.sort`` on CPU too (no
    host callback, e.g. for export). Read at trace time.
    """
    if os.environ.get("JAXCOMP_XLA_SORT"):
        return jnp.sort(x)
    return lax.platform_dependent(x, cpu=_numpy_sort, default=jnp.sort)


def slice_gaps(ev: Events, n_pes: Any, *, acc_regs: Any = None) -> SliceGaps:
    """Sort the non-zeros by (column, PE, local row) for N PEs and read off their gaps.

    The only sort of the model (``O(Z log Z)``; NumPy's on CPU, see :func:`_sort_keys`); shared
    by every ``index_bits`` of one N.

    Args:
        ev: :func:`eie_model.sim.events.layer_events` result (may be a traced pytree);
            ``ev.cols`` sorted ascending (as it returns it).
        n_pes: ``() int`` N (traced OK).
        acc_regs: keyword-only ``() int`` accumulators per PE A (traced OK), or ``None``. With
            A, output rows ``[p N A, (p + 1) N A)`` run as pass ``p`` (as in
            :func:`eie_model.reference.simulate`): a PE's local rows ``[p A, (p + 1) A)``, whose
            zero runs restart at local row ``p A``.

    Returns:
        :class:`SliceGaps`.

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.array([[1], [0], [0], [2]], np.uint8), np.arange(4.0),
        ...                         np.ones(1)))
        >>> slice_gaps(ev, 1).gap.tolist(), slice_gaps(ev, 2).gap.tolist()  # rows 0, 3
        ([0, 2], [0, 1])
    """
    k_ev = ev.num_events
    n_pes = jnp.asarray(n_pes, jnp.int32)
    lr_count = (ev.m + n_pes - 1) // n_pes  # local rows per PE
    rows = jnp.asarray(ev.rows)
    cols = jnp.asarray(ev.cols)
    if not rows.shape[0]:
        z = jnp.zeros(0, jnp.int32)
        return SliceGaps(z, z, z, None if acc_regs is None else z)
    # rows, row_p >= 0 and N >= 1: truncating lax.div / lax.rem are floor division here (jnp's
    # // and % add a remainder and sign fix-ups: slow integer divisions on XLA:CPU)
    row_p = lax.rem(rows, n_pes) * lr_count + lax.div(rows, n_pes)  # PE-major within a column
    span = n_pes * lr_count
    # ev.cols is sorted and is the key's major part, so the sort leaves it in place: only the
    # PE-major row order within each column moves (no division of the sorted key to find it).
    row_p = _sort_keys(cols * span + row_p) - cols * span
    pe = lax.div(row_p, lr_count)
    start = pe * lr_count  # the PE's first local row in row_p order
    lr = row_p - start
    same = (row_p[:-1] >= start[1:]) & (cols[1:] == cols[:-1])  # same (column, PE) slice
    block = None
    if acc_regs is not None:  # a pass's zero runs start at its first local row
        a = jnp.asarray(acc_regs, jnp.int32)
        block = lax.div(lr, a)
        same = same & (block[1:] == block[:-1])
        lr = lr - block * a
    gap = jnp.concatenate([lr[:1], jnp.where(same, row_p[1:] - row_p[:-1] - 1, lr[1:])])
    bucket = jnp.asarray(ev.col_bucket)[cols]
    isb = jnp.asarray(ev.col_is_bcast)[cols].astype(jnp.int32)
    return SliceGaps(
        seg=(pe * (k_ev + 1) + bucket).astype(jnp.int32),
        gap=gap.astype(jnp.int32),
        bcast=isb,
        block=block,
    )


def pe_work(
    ev: Events,
    n_pes: Any,
    index_bits: Any,
    *,
    max_pes: int,
    gaps: SliceGaps | None = None,
    acc_regs: Any = None,
    pass_index: Any = 0,
    batch_groups: int = 0,
    batch_index: Any = 0,
    batches: Any = 1,
) -> PEWork:
    """Per-PE, per-event work for ``n_pes`` PEs and ``index_bits`` relative-index bits.

    Computed on device from the non-zero coordinates: one sort by (column, PE, local row)
    (:func:`slice_gaps`), fillers ``z >> index_bits`` from the zero run ``z`` before each
    non-zero, segment sums. ``n_pes`` and ``index_bits`` may be traced (vmappable); ``max_pes``
    is the static bound.

    Args:
        ev: :func:`eie_model.sim.events.layer_events` result.
        n_pes: ``() int`` PE count N, ``1 <= N <= max_pes``.
        index_bits: ``() int`` relative-index bits r (a run of g zeros costs ``g >> r`` fillers).
        max_pes: keyword-only static upper bound of N (sets the PE axis).
        gaps: keyword-only :func:`slice_gaps` ``(ev, n_pes, acc_regs=acc_regs)`` when
            already computed.
        acc_regs: keyword-only ``() int`` accumulators per PE A (traced OK), or ``None`` (one
            pass over every row, the default).
        pass_index: keyword-only ``() int`` (traced OK): with ``acc_regs``, the pass ``p``
            whose work to return: output rows ``[p N A, (p + 1) N A)`` as a layer of their own
            (its counters add up over the ``ceil(m / (N A))`` passes).
        batch_groups: keyword-only static ``EIEStatic.act_regs`` B (``0``: one batch): the
            LNZD groups of one activation batch (``N B`` input columns; the bias in the last).
        batch_index: keyword-only ``() int`` (traced OK): with ``batch_groups``, the batch
            ``b`` whose work to return: its events first (a fresh LNZD scan from its first
            group), the others as padding events; the SpMat addresses stay the layer's.
        batches: keyword-only ``() int`` (traced OK), the number of batches
            (:func:`eie_model.sim.n_batches`); the last one also scans the bias group.

    Returns:
        :class:`PEWork` with ``(max_pes, K)`` tables.

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.array([[1], [0], [0], [2]], np.uint8), np.arange(4.0),
        ...                         np.ones(1)))
        >>> w = pe_work(ev, 1, 1, max_pes=2)  # rows 0 and 3 in PE 0: a gap of 2 -> 1 filler
        >>> w.entries[:, 0].tolist(), w.nnz[:, 0].tolist()
        ([3, 0], [2, 0])
    """
    if not isinstance(max_pes, int) or max_pes < 1:
        raise ValueError(f"max_pes must be a positive Python int, got {max_pes!r}")
    if isinstance(ev.m, int) and (ev.n + 2) * (ev.m + max_pes) >= 2**31:
        raise ValueError(  # the sort key col * N * ceil(m / N) + row' is int32
            f"layer too large for the int32 event model: (n + 2) * (m + max_pes) must stay "
            f"below 2**31, got n={ev.n}, m={ev.m}, max_pes={max_pes}"
        )
    k_ev = ev.num_events
    n_pes = jnp.asarray(n_pes, jnp.int32)
    r = jnp.asarray(index_bits, jnp.int32)
    pe_idx = jnp.arange(max_pes, dtype=jnp.int32)

    if ev.rows.shape[0]:
        if gaps is None:
            gaps = slice_gaps(ev, n_pes, acc_regs=acc_regs)
        if (acc_regs is None) != (gaps.block is None):
            raise ValueError("pe_work: give acc_regs to slice_gaps and pe_work alike")
        ent = 1 + jnp.right_shift(gaps.gap, r)
        bcast = gaps.bcast
        if acc_regs is not None:  # only this pass's non-zeros
            mine = (gaps.block == jnp.asarray(pass_index, jnp.int32)).astype(jnp.int32)
            ent, bcast = ent * mine, bcast * mine
        data = jnp.stack([ent, ent * bcast, bcast], axis=1)
        sums = jax.ops.segment_sum(data, gaps.seg, num_segments=max_pes * (k_ev + 1))
        sums = sums.reshape(max_pes, k_ev + 1, 3)[:, :k_ev]
        total, entries, nnz = sums[..., 0], sums[..., 1], sums[..., 2]
        base = _cumulative(jnp.add, total) - entries
    else:
        entries = nnz = base = jnp.zeros((max_pes, k_ev), jnp.int32)

    # LNZD: group / lane of each event (the bias sits at column ceil(n/N)*N, lane 0).
    bias_col = (ev.n + n_pes - 1) // n_pes * n_pes
    raw_col = jnp.asarray(ev.ev_col)
    ev_col = jnp.where(jnp.asarray(ev.ev_is_bias), bias_col, raw_col)
    live = raw_col <= ev.n  # padding events (column n + 1) come last
    n_groups = (ev.n + n_pes - 1) // n_pes + jnp.any(jnp.asarray(ev.ev_is_bias)).astype(jnp.int32)
    if batch_groups:  # the groups of one activation batch (the last: up to the bias group)
        b = jnp.asarray(batch_index, jnp.int32)
        last_b = jnp.asarray(batches, jnp.int32) - 1
        n_groups = jnp.where(b == last_b, n_groups - b * batch_groups, batch_groups)
    if batch_groups and k_ev:  # one activation batch: its events first, the rest padding
        g_b = jnp.minimum(ev_col // n_pes // batch_groups, last_b)
        first = jnp.sum((live & (g_b < b)).astype(jnp.int32))
        count = jnp.sum((live & (g_b == b)).astype(jnp.int32))
        pos = jnp.arange(k_ev, dtype=jnp.int32)
        idx = jnp.minimum(first + pos, k_ev - 1)
        sel = pos < count
        entries, nnz = (jnp.where(sel, x[:, idx], 0) for x in (entries, nnz))
        base = jnp.where(sel, base[:, idx], 0)
        ev_col = jnp.where(sel, ev_col[idx] - b * batch_groups * n_pes, 0)
        live = sel
    group = ev_col // n_pes
    lane = ev_col % n_pes
    if k_ev:
        gprev = jnp.concatenate([jnp.full(1, -1, jnp.int32), group[:-1]])
        lprev = jnp.concatenate([jnp.full(1, -1, jnp.int32), lane[:-1]])
        cross = jnp.where(lprev == n_pes - 1, 1, 2) + group - gprev - 1
        gap = jnp.where(group == gprev, 1, cross)
        ready_gap = jnp.where(live, gap.at[0].set(1 + group[0]), -1)  # -1 marks padding
        last = jnp.maximum(jnp.sum(live.astype(jnp.int32)) - 1, 0)  # the last real event
        tail_gap = jnp.where(
            live[last],
            jnp.where(lane[last] == n_pes - 1, 1, 2) + n_groups - 1 - group[last],
            1 + n_groups,
        )
    else:
        ready_gap = jnp.zeros(0, jnp.int32)
        tail_gap = 1 + n_groups
    valid = (pe_idx < n_pes)[:, None]
    return PEWork(
        entries=jnp.where(valid, entries, 0).astype(jnp.int32),
        nnz=jnp.where(valid, nnz, 0).astype(jnp.int32),
        base=jnp.where(valid, base, 0).astype(jnp.int32),
        ready_gap=ready_gap.astype(jnp.int32),
        tail_gap=jnp.asarray(tail_gap, jnp.int32),
        n_pes=n_pes,
    )
