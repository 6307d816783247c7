"""The fast EIE cycle model: DESIGN §4.4 as a ``lax.scan`` over broadcast events.

The authors' C++ simulator ticks every register of every PE once a cycle. This model steps once
per *broadcast event* (a non-zero activation, then the bias) and keeps the PE state as arrays with
a leading PE axis, so a whole layer is ``K`` scan steps of ``O(max_pes)`` vector work, and
thousands of configurations are one ``jax.vmap`` over that scan (see :mod:`eie_model.sweep`).

Pipeline of one configuration (every stage jittable, PE count and index bits are *traced*):

1. :func:`prepare_layer` (host, NumPy, once per layer): the non-zero coordinates of the codes
   (bias as column ``n``) and which columns are broadcast.
2. :func:`pe_work` (device): for ``(n_pes, index_bits)`` the per-PE, per-event work table:
   entries (fillers included), non-zeros, the CSC address of each slice, and the LNZD latch gaps.
   Rows are interleaved (row ``i`` in PE ``i % N`` at local row ``i // N``); fillers come from
   the gaps between consecutive non-zero local rows of a (PE, column) slice after one sort.
   With ``acc_regs`` A (DESIGN §4.4's optional accumulator limit), output rows
   ``[p N A, (p + 1) N A)`` run as pass ``p``, a layer of its own: ``pe_work(...,
   acc_regs=A, pass_index=p)`` gives its table, and every counter is the sum over passes.
3. :func:`timing` (device): the event recurrence, one ``lax.scan`` step per broadcast::

       ready[k] = e[k-1] + c[k]                        (LNZD: latch / one per cycle rules)
       e[k]     = max(ready[k], R[k - max(D-1, 1)])    (slot room; R = -inf before event 0)
       s[i,k]   = max(e[k] + 2, s[i,k-1] + d[i,k-1])   (PE i starts column k)
       R[k]     = max_i s[i,k]          if D >= 2      (the slot frees when the column starts)
                = max_i s[i,k] + d[i,k] if D == 1      (no queue: every PE must be idle)

   ``d[i,k] = max(1, entries)`` (``0`` on padding PEs ``i >= N``); ``c[0] = 1 + g0`` (first
   group latched at cycle 1, each empty group before the first broadcast costs one cycle);
   ``c[k] = 1`` inside a group; across groups ``c[k] = (1 if lane[k-1] == N-1 else 2) + q``
   with ``q`` the empty groups skipped. Entry ``m`` (code != 0) of a column is written at
   ``s + m + 5``; the layer ends one cycle after the last write.
4. :func:`sram_line_reads` (device, no scan): line reads for a W-bit line from the addresses.

Counters (all ``int32`` unless said; per-PE arrays have length ``max_pes``, zero past ``N``):

* ``cycles``: ``1 + max`` accumulator write cycle. With no write at all (as the reference
  simulator decides): the cycle the LNZD would latch the group after the last one.
* ``busy`` (per PE): entries PE ``i`` reads (fillers included; an empty slice's one cycle is
  not busy).
* ``useful_macs``: entries with code != 0 in broadcast columns (bias included), all PEs.
* ``fillers``: filler entries in broadcast columns (they take a cycle, are never written).
* ``stall_cycles``: broadcast stall cycles, ``sum_k (e[k] - ready[k])``: cycles in which the
  LNZD unit holds an activation it could broadcast but some PE's queue has no free slot.
* ``starvation_cycles``: summed over real PEs, ``sum_{k>=1} (s[i,k] - s[i,k-1] - d[i,k-1])``:
  cycles a PE sits idle with an empty queue between its first and its last column start (the
  wait before the first column and after the last are not counted). It telescopes to
  ``f[i] - s[i,0] - sum_k d[i,k]`` with ``f`` the final free time, so the scan carries no
  counter for it.
* ``pointer_reads``: ``N * K`` (every PE reads its column pointers for every broadcast;
  padding events are no broadcast).
* ``spm_line_reads``: per PE walk the broadcast columns' entries in CSC address order; an entry
  at address ``p`` is on line ``p // entries_per_line``; a read whenever the line changes,
  starting from no line; summed over PEs.
* ``mac_efficiency = useful_macs / (cycles * N)``, ``load_efficiency = busy / (cycles * N)``
  (``float32``).

Example:
    >>> import numpy as np
    >>> from eie_model.cycles import simulate_layer
    >>> codes = np.array([[1, 0, 2], [0, 3, 0]], np.uint8)
    >>> act = np.array([1.0, 0.0, 2.0], np.float32)
    >>> out = simulate_layer({"codes": codes, "act": act}, n_pes=2, fifo_depth=2)
    >>> int(out["useful_macs"]), int(out["pointer_reads"])
    (2, 4)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "LayerEvents",
    "PEWork",
    "ScanTables",
    "SliceGaps",
    "Timing",
    "counters",
    "pe_work",
    "prepare_layer",
    "scan_tables",
    "simulate_layer",
    "slice_gaps",
    "sram_line_reads",
    "timing",
]

#: "Minus infinity" for int32 cycle arithmetic (far from overflow when a few cycles are added).
NEG = -(1 << 29)


def _layer_fields(layer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(codes (m, n), act (n,), bias_codes (m,) or None)`` from a mapping, npz or object."""
    if isinstance(layer, Mapping) or hasattr(layer, "files"):  # dict or np.load result

        def get(k):
            return layer[k] if k in layer else None

    else:

        def get(k):
            return getattr(layer, k, None)

    codes = get("codes")
    act = get("act")
    if act is None:
        act = get("activations")
    bias = get("bias_codes")
    if codes is None or act is None:
        raise TypeError(
            "layer must provide 'codes' (m, n) and 'act' (n,) (a dict, an npz with the keys of "
            f"shared/data/eie-layer, or an object with those attributes), got {type(layer)!r}"
        )
    codes = np.asarray(codes)
    act = np.asarray(act)
    if codes.ndim != 2:
        raise ValueError(f"layer codes must be 2-D (m outputs, n inputs), got shape {codes.shape}")
    if act.shape != (codes.shape[1],):
        raise ValueError(
            f"layer act must have shape ({codes.shape[1]},) to match codes {codes.shape}, "
            f"got {act.shape}"
        )
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (codes.shape[0],):
            raise ValueError(
                f"layer bias_codes must have shape ({codes.shape[0]},), got {bias.shape}"
            )
    return codes, act, bias


class LayerEvents(NamedTuple):
    """Host-side description of a layer's non-zeros and broadcasts (NumPy, static shapes).

    ``Z`` = non-zero codes (bias included), ``K`` = broadcast events (non-zero activations in
    index order, then the bias when present).

    Attributes:
        rows: ``(Z,) int32`` output row of each non-zero, sorted by (column, row).
        cols: ``(Z,) int32`` input column (the bias is column ``n``).
        col_bucket: ``(n + 2,) int32`` for each column, the first event whose column is >= it
            (``K`` past the last broadcast; column ``n + 1`` holds padding).
        col_is_bcast: ``(n + 2,) bool`` whether the column is broadcast.
        ev_col: ``(K,) int32`` the column of each event (``n`` for the bias, ``n + 1`` for a
            padding event: see ``prepare_layer(pad_events=)``).
        ev_is_bias: ``(K,) bool``.
        m: outputs. n: inputs (Python ints; traced when the tuple is a jit argument).
    """

    rows: np.ndarray
    cols: np.ndarray
    col_bucket: np.ndarray
    col_is_bcast: np.ndarray
    ev_col: np.ndarray
    ev_is_bias: np.ndarray
    m: int
    n: int

    @property
    def num_events(self) -> int:
        """``K``, the length of the event axis (static; padding events included)."""
        return int(self.ev_col.shape[0])

    @property
    def num_broadcasts(self) -> int:
        """Broadcasts actually made: ``K`` less the padding events (host-side tuples only)."""
        return int(np.count_nonzero(np.asarray(self.ev_col) <= self.n))

    @property
    def padded(self) -> bool:
        """Whether the event axis holds padding events (host-side tuples only)."""
        return self.num_broadcasts < self.num_events


def prepare_layer(
    layer: Any, *, pad_nnz: int | None = None, pad_events: int | None = None
) -> LayerEvents:
    """Extract the non-zeros and broadcast events of a layer (host side, once per layer).

    Args:
        layer: mapping / ``np.load`` result / object with ``codes`` ``(m, n)`` uint (0 =
            pruned), ``act`` ``(n,)`` float and optional ``bias_codes`` ``(m,)``.
        pad_nnz: keyword-only; pad the non-zero list to this length with dummy entries in a
            never-broadcast column ``n + 1`` (so layers of equal ``n`` and ``K`` share one
            compiled program; ``m`` and ``n`` are traced). ``None``: no padding.
        pad_events: keyword-only; pad the event axis to this length with no-op events (column
            ``n + 1``: no work, no time, no pointer read; the timing scan skips them), so layers
            whose inputs have different numbers of non-zero activations share one compiled
            program (``eie_model.network`` pads every layer of a network this way). ``None``:
            no padding. Counters are identical with and without padding.

    Returns:
        :class:`LayerEvents`. A bias (when given) is always broadcast, as in the authors'
        simulator; activations broadcast where ``act != 0``.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.eye(2, dtype=np.uint8), "act": np.ones(2)})
        >>> ev.num_events, ev.rows.tolist()
        (2, [0, 1])
    """
    codes, act, bias = _layer_fields(layer)
    m, n = codes.shape
    # non-zeros sorted by (col, row): a row-major scan and one sort of the column-major keys
    # (1.7x faster than np.nonzero of the transposed view for Alex-7)
    idx = np.flatnonzero(codes != 0)
    key = np.sort((idx % n) * m + idx // n)
    cols, rows = np.divmod(key, m)
    if bias is not None:  # the bias is column n, after every other
        b_rows = np.flatnonzero(bias != 0)
        cols = np.concatenate([cols, np.full(b_rows.size, n, cols.dtype)])
        rows = np.concatenate([rows, b_rows.astype(rows.dtype)])
    if pad_nnz is not None:
        if pad_nnz < cols.size:
            raise ValueError(f"pad_nnz={pad_nnz} is below the layer's {cols.size} non-zeros")
        extra = pad_nnz - cols.size
        cols = np.concatenate([cols, np.full(extra, n + 1)])
        rows = np.concatenate([rows, np.zeros(extra, rows.dtype)])
    bcast = np.zeros(n + 2, bool)  # column n = bias, n + 1 = padding
    bcast[:n] = act.astype(np.float32) != 0  # the activation SRAM holds float32
    bcast[n] = bias is not None
    ev_col = np.flatnonzero(bcast).astype(np.int32)
    if pad_events is not None:
        if pad_events < ev_col.size:
            raise ValueError(f"pad_events={pad_events} is below the layer's {ev_col.size} events")
        ev_col = np.concatenate([ev_col, np.full(pad_events - ev_col.size, n + 1, np.int32)])
    col_bucket = np.searchsorted(ev_col, np.arange(n + 2), side="left").astype(np.int32)
    col_bucket[n + 1] = ev_col.size  # padding non-zeros: past the last event (dropped)
    ev_is_bias = ev_col == n
    return LayerEvents(
        rows=rows.astype(np.int32),
        cols=cols.astype(np.int32),
        col_bucket=col_bucket,
        col_is_bcast=bcast,
        ev_col=ev_col,
        ev_is_bias=ev_is_bias,
        m=int(m),
        n=int(n),
    )


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


def slice_gaps(ev: LayerEvents, n_pes: Any, *, acc_regs: Any = None) -> SliceGaps:
    """Sort the non-zeros by (column, PE, local row) for N PEs and read off their gaps.

    The only sort of the model (``O(Z log Z)``; NumPy's on CPU, see :func:`_sort_keys`); shared
    by every ``index_bits`` of one N.

    Args:
        ev: :func:`prepare_layer` result (may be a traced pytree); ``ev.cols`` sorted ascending
            (as :func:`prepare_layer` returns it).
        n_pes: ``() int`` N (traced OK).
        acc_regs: keyword-only ``() int`` accumulators per PE A (traced OK), or ``None``. With
            A, output rows ``[p N A, (p + 1) N A)`` run as pass ``p`` (DESIGN §4.4, as in
            :func:`eie_model.reference.simulate`): a PE's local rows ``[p A, (p + 1) A)``, whose
            zero runs restart at local row ``p A``.

    Returns:
        :class:`SliceGaps`.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.array([[1], [0], [0], [2]], np.uint8),
        ...                     "act": np.ones(1)})
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
    ev: LayerEvents,
    n_pes: Any,
    index_bits: Any,
    *,
    max_pes: int,
    gaps: SliceGaps | None = None,
    acc_regs: Any = None,
    pass_index: Any = 0,
) -> PEWork:
    """Per-PE, per-event work for ``n_pes`` PEs and ``index_bits`` relative-index bits.

    Computed on device from the non-zero coordinates: one sort by (column, PE, local row)
    (:func:`slice_gaps`), fillers ``z >> index_bits`` from the zero run ``z`` before each
    non-zero, segment sums. ``n_pes`` and ``index_bits`` may be traced (vmappable); ``max_pes``
    is the static bound.

    Args:
        ev: :func:`prepare_layer` result.
        n_pes: ``() int`` PE count N, ``1 <= N <= max_pes``.
        index_bits: ``() int`` relative-index bits r (a run of g zeros costs ``g >> r`` fillers).
        max_pes: keyword-only static upper bound of N (sets the PE axis).
        gaps: keyword-only :func:`slice_gaps` ``(ev, n_pes, acc_regs=acc_regs)`` when
            already computed.
        acc_regs: keyword-only ``() int`` accumulators per PE A (traced OK), or ``None`` (one
            pass over every row, the default of DESIGN §4.4).
        pass_index: keyword-only ``() int`` (traced OK): with ``acc_regs``, the pass ``p``
            whose work to return: output rows ``[p N A, (p + 1) N A)`` as a layer of their own
            (its counters add up over the ``ceil(m / (N A))`` passes).

    Returns:
        :class:`PEWork` with ``(max_pes, K)`` tables.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.array([[1], [0], [0], [2]], np.uint8),
        ...                     "act": np.ones(1)})
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
    group = ev_col // n_pes
    lane = ev_col % n_pes
    live = raw_col <= ev.n  # padding events (column n + 1) come last
    n_groups = (ev.n + n_pes - 1) // n_pes + jnp.any(jnp.asarray(ev.ev_is_bias)).astype(jnp.int32)
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


class Timing(NamedTuple):
    """Result of :func:`timing` for one configuration.

    Attributes:
        cycles: ``() int32``.
        busy: ``(max_pes,) int32`` per-PE busy cycles.
        stall_cycles: ``() int32`` broadcast stall cycles.
        starvation_cycles: ``() int32`` (summed over PEs).
        last_broadcast: ``() int32`` cycle of the last broadcast (``0`` when none).
    """

    cycles: jax.Array
    busy: jax.Array
    stall_cycles: jax.Array
    starvation_cycles: jax.Array
    last_broadcast: jax.Array


class ScanTables(NamedTuple):
    """Event-major tables of ``P`` work tables, the scan's read-only input.

    Attributes:
        d: ``(K, P, max_pes) int32`` cycles of each slice, ``max(1, entries)`` (0 on padding).
        w: ``(K, P, max_pes) int32`` ``entries + write_latency`` (end of layer if this slice
            holds the last write), ``NEG`` for empty slices.
        c: ``(K, P) int32`` LNZD ready gaps.
        busy: ``(P, max_pes) int32`` entries per PE. dsum: ``(P, max_pes)`` ``sum_k d``.
        tail: ``(P,) int32`` tail gaps. n_pes: ``(P,) int32``.
    """

    d: jax.Array
    w: jax.Array
    c: jax.Array
    busy: jax.Array
    dsum: jax.Array
    tail: jax.Array
    n_pes: jax.Array


def scan_tables(work: PEWork, *, write_latency: int = 5) -> ScanTables:
    """Turn a :class:`PEWork` (or one batched over a leading ``P`` axis) into scan tables.

    Args:
        work: :func:`pe_work` result, unbatched or with a leading pair axis ``P``.
        write_latency: keyword-only static pipeline depth to the accumulator write (5).

    Returns:
        :class:`ScanTables` with a pair axis (``P = 1`` for an unbatched ``work``).

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((2, 2), np.uint8), "act": np.ones(2)})
        >>> scan_tables(pe_work(ev, 2, 4, max_pes=2)).d.shape
        (2, 1, 2)
    """
    if work.entries.ndim == 2:
        work = jax.tree.map(lambda x: x[None], work)
    ent = work.entries  # (P, max_pes, K)
    valid = jnp.arange(ent.shape[1])[None, :, None] < work.n_pes[:, None, None]
    valid = valid & (work.ready_gap >= 0)[:, None, :]  # padding events take no time
    d = jnp.where(valid, jnp.maximum(ent, 1), 0)
    w = jnp.where(ent > 0, ent + write_latency, NEG)
    return ScanTables(
        d=jnp.transpose(d, (2, 0, 1)),
        w=jnp.transpose(w, (2, 0, 1)),
        c=work.ready_gap.T,
        busy=ent.sum(-1).astype(jnp.int32),
        dsum=d.sum(-1).astype(jnp.int32),
        tail=work.tail_gap,
        n_pes=work.n_pes,
    )


def _timing_core(
    tab: ScanTables, pair, fifo_depth, *, max_fifo, bcast_latency, unroll=1, padded=True
):
    """The scan for one config reading row ``pair`` of the tables.

    A ``jax.vmap`` over configs (``pair``, ``fifo_depth`` batched, ``tab`` not) then gathers a
    ``(configs, max_pes)`` slab per step instead of materializing a table per configuration.
    ``padded`` (static): the tables may hold padding events (``c == -1``), which leave the
    state unchanged; ``False`` skips those selects when the caller knows there are none.
    """
    k_ev, _, max_pes = tab.d.shape
    ring_len = max(int(max_fifo), 2)
    fifo_depth = jnp.asarray(fifo_depth, jnp.int32)
    lookback = jnp.maximum(fifo_depth - 1, 1)
    is_d1 = fifo_depth == 1

    def step(carry, x):
        f, ring, e_prev, g, stall = carry
        d_k, w_k, c_k, k = x
        d = d_k[pair]
        ready = e_prev + c_k[pair]
        e = jnp.maximum(ready, ring[(k - lookback) % ring_len])
        s = jnp.maximum(e + bcast_latency, f)
        f_new = s + d
        ring = ring.at[k % ring_len].set(jnp.max(jnp.where(is_d1, f_new, s)))
        g_new = jnp.maximum(g, s + w_k[pair])
        stall_new = stall + (e - ready)
        if padded:  # a padding event changes nothing
            live = c_k[pair] >= 0
            f_new = jnp.where(live, f_new, f)
            ring = jnp.where(live, ring, carry[1])
            e = jnp.where(live, e, e_prev)
            g_new = jnp.where(live, g_new, g)
            stall_new = jnp.where(live, stall_new, stall)
        return (f_new, ring, e, g_new, stall_new), None

    init = (
        jnp.full(max_pes, NEG, jnp.int32),
        jnp.full(ring_len, NEG, jnp.int32),
        jnp.int32(0),
        jnp.full(max_pes, NEG, jnp.int32),
        jnp.int32(0),
    )
    ks = jnp.arange(k_ev, dtype=jnp.int32)
    (f, _, e_last, g, stall), _ = lax.scan(step, init, (tab.d, tab.w, tab.c, ks), unroll=unroll)
    valid = jnp.arange(max_pes) < tab.n_pes[pair]
    busy = jnp.where(valid, tab.busy[pair], 0)
    last = jnp.max(g)
    cycles = jnp.where(last > NEG // 2, last, e_last + tab.tail[pair])
    if k_ev:
        s0 = tab.c[0, pair] + bcast_latency  # e[0] = c[0] (no stall possible), s[i,0] = e0 + 2
        starv = jnp.where(valid & (tab.c[0, pair] >= 0), f - s0 - tab.dsum[pair], 0).sum()
    else:
        starv = jnp.int32(0)
    return Timing(
        cycles=cycles.astype(jnp.int32),
        busy=busy.astype(jnp.int32),
        stall_cycles=stall,
        starvation_cycles=starv.astype(jnp.int32),
        last_broadcast=e_last,
    )


def timing(
    work: PEWork,
    fifo_depth: Any,
    *,
    max_fifo: int,
    bcast_latency: int = 2,
    write_latency: int = 5,
    unroll: int = 1,
) -> Timing:
    """Run the event recurrence of DESIGN §4.4 for one configuration (``lax.scan`` over K).

    Args:
        work: :func:`pe_work` result (tables with a leading PE axis).
        fifo_depth: ``() int`` D >= 1 (traced OK), at most ``max_fifo``.
        max_fifo: keyword-only static bound of D (ring length of the slot-room history).
        bcast_latency: cycles from broadcast to earliest column start (2).
        write_latency: cycles from an entry's read to its accumulator write (5).
        unroll: ``lax.scan`` unroll factor (speed only).

    Returns:
        :class:`Timing`.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((2, 2), np.uint8), "act": np.ones(2)})
        >>> t = timing(pe_work(ev, 2, 4, max_pes=2), 2, max_fifo=2)
        >>> int(t.cycles), t.busy.tolist()  # e = 1, 3 (slot room); s = 3, 5; last write 10
        (11, [2, 2])
    """
    tab = scan_tables(work, write_latency=write_latency)
    return _timing_core(
        tab, 0, fifo_depth, max_fifo=max_fifo, bcast_latency=bcast_latency, unroll=unroll
    )


def sram_line_reads(work: PEWork, entries_per_line: Any) -> jax.Array:
    """Sparse-matrix SRAM line reads per PE (no scan: addresses are known up front).

    Per PE, the broadcast slices are visited in event order; their entries occupy CSC addresses
    ``base .. base + entries - 1``; line ``p // entries_per_line``; a read whenever the line
    differs from the previous entry's, starting from no line.

    Args:
        work: :func:`pe_work` result.
        entries_per_line: ``() int`` entries per SRAM line (``W // entry_bits``), >= 1.

    Returns:
        ``(max_pes,) int32`` line reads per PE.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((1, 3), np.uint8), "act": np.ones(3)})
        >>> sram_line_reads(pe_work(ev, 1, 4, max_pes=1), 2).tolist()  # addrs 0,1 | 2
        [2]
    """
    return _line_reads_from_walk(work, _line_walk(work), entries_per_line)


def _line_walk(work: PEWork) -> jax.Array:
    """The width-independent part of the SRAM line reads: the end of the previous walk.

    Per PE, for each event ``k``: the CSC address of the last entry of the last non-empty
    broadcast slice before ``k`` (``-1`` when none). Addresses grow along the walk, so the
    previous entry's line is ``prev // entries_per_line`` for every line width
    (:func:`_line_reads_from_walk`).

    Args:
        work: :func:`pe_work` result (tables ``(..., max_pes, K)``).

    Returns:
        ``(..., max_pes, K) int32``.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((1, 3), np.uint8), "act": np.ones(3)})
        >>> _line_walk(pe_work(ev, 1, 4, max_pes=1)).tolist()
        [[-1, 0, 1]]
    """
    ent = work.entries
    last = jnp.where(ent > 0, work.base + ent - 1, -1)
    if not ent.shape[-1]:
        return last
    prev = _cumulative(jnp.maximum, last)
    pad = jnp.full((*prev.shape[:-1], 1), -1, prev.dtype)
    return jnp.concatenate([pad, prev[..., :-1]], -1).astype(jnp.int32)


def _line_reads_from_walk(work: PEWork, prev: jax.Array, entries_per_line: Any) -> jax.Array:
    """Line reads per PE from :func:`_line_walk`'s ``prev`` (two divisions per slice).

    A non-empty slice at addresses ``base .. base + entries - 1`` reads its lines
    ``base // L .. (base + entries - 1) // L`` (``L`` = entries per line), less the first one
    when the previous walked entry ``prev`` (``< base``) sits on it: ``prev >= (base // L) * L``.

    Args:
        work: :func:`pe_work` result. prev: its :func:`_line_walk`.
        entries_per_line: ``() int`` entries per SRAM line, >= 1.

    Returns:
        ``(..., max_pes) int32`` line reads per PE.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((1, 3), np.uint8), "act": np.ones(3)})
        >>> w = pe_work(ev, 1, 4, max_pes=1)
        >>> _line_reads_from_walk(w, _line_walk(w), 2).tolist()  # addrs 0,1 | 2
        [2]
    """
    epl = jnp.maximum(jnp.asarray(entries_per_line, jnp.int32), 1)
    ent = work.entries
    # addresses are >= 0, so truncating lax.div is floor division (jnp's // adds a remainder
    # and sign fix-ups: three times the integer divisions, the bulk of this function on CPU)
    first = lax.div(work.base, epl)
    last = lax.div(jnp.maximum(work.base + ent - 1, 0), epl)
    new = last - first + 1 - (prev >= first * epl).astype(jnp.int32)
    return jnp.sum(jnp.where(ent > 0, new, 0), axis=-1).astype(jnp.int32)


def counters(work: PEWork, t: Timing, entries_per_line: Any) -> dict[str, jax.Array]:
    """All §4.4 counters of one configuration from its work tables and timing.

    Args:
        work: :func:`pe_work` result.
        t: :func:`timing` result.
        entries_per_line: ``() int`` SRAM entries per line.

    Returns:
        dict of scalars (``int32``; efficiencies ``float32``) plus ``busy`` ``(max_pes,)``:
        ``cycles, useful_macs, fillers, pointer_reads, spm_line_reads, stall_cycles,
        starvation_cycles, busy_total, busy_max, mac_efficiency, load_efficiency``.

    Example:
        >>> import numpy as np
        >>> ev = prepare_layer({"codes": np.ones((2, 2), np.uint8), "act": np.ones(2)})
        >>> w = pe_work(ev, 2, 4, max_pes=2)
        >>> int(counters(w, timing(w, 2, max_fifo=2), 8)["spm_line_reads"])
        2
    """
    k_ev = jnp.sum((work.ready_gap >= 0).astype(jnp.int32))  # broadcasts (padding excluded)
    n = work.n_pes
    useful = jnp.sum(work.nnz)
    fillers = jnp.sum(work.entries) - useful
    cyc = jnp.maximum(t.cycles, 1).astype(jnp.float32)
    nf = n.astype(jnp.float32)
    busy_total = jnp.sum(t.busy)
    return {
        "cycles": t.cycles,
        "useful_macs": useful.astype(jnp.int32),
        "fillers": fillers.astype(jnp.int32),
        "pointer_reads": (n * k_ev).astype(jnp.int32),
        "spm_line_reads": jnp.sum(sram_line_reads(work, entries_per_line)),
        "stall_cycles": t.stall_cycles,
        "starvation_cycles": t.starvation_cycles,
        "busy_total": busy_total.astype(jnp.int32),
        "busy_max": jnp.max(t.busy),
        "mac_efficiency": useful.astype(jnp.float32) / (cyc * nf),
        "load_efficiency": busy_total.astype(jnp.float32) / (cyc * nf),
        "busy": t.busy,
    }


def simulate_layer(
    layer: Any,
    *,
    n_pes: int = 64,
    fifo_depth: int = 8,
    index_bits: int = 4,
    sram_width: int = 64,
    code_bits: int = 4,
    bcast_latency: int = 2,
    write_latency: int = 5,
) -> dict[str, Any]:
    """Counters of one layer on one configuration (convenience wrapper, NumPy out).

    Args:
        layer: see :func:`prepare_layer` (or a :class:`LayerEvents`).
        n_pes: N. fifo_depth: D. index_bits: r. sram_width: W bits; ``entries_per_line =
            W // (code_bits + index_bits)``. code_bits: weight-code bits.
        bcast_latency, write_latency: pipeline latencies (2 and 5 in DESIGN §4.4).

    Returns:
        dict of NumPy scalars (``busy`` a ``(n_pes,)`` array), keys of :func:`counters`.

    Example:
        >>> import numpy as np
        >>> out = simulate_layer({"codes": np.ones((2, 2), np.uint8), "act": np.ones(2)}, n_pes=2)
        >>> int(out["cycles"]), out["busy"].tolist()  # e = 1, 2; s = 3, 4; last write 9
        (10, [2, 2])
    """
    for name, v, lo in (
        ("n_pes", n_pes, 1),
        ("fifo_depth", fifo_depth, 1),
        ("index_bits", index_bits, 1),
        ("code_bits", code_bits, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    epl = int(sram_width) // (code_bits + index_bits)
    if epl < 1:
        raise ValueError(
            f"sram_width must hold one entry (>= code_bits + index_bits = "
            f"{code_bits + index_bits} bits), got {sram_width}"
        )
    ev = layer if isinstance(layer, LayerEvents) else prepare_layer(layer)
    max_fifo = 1 << max(int(fifo_depth) - 1, 1).bit_length()  # power-of-two bucket
    out = _simulate_jit(
        ev,
        jnp.int32(n_pes),
        jnp.int32(index_bits),
        jnp.int32(fifo_depth),
        jnp.int32(epl),
        max_pes=int(n_pes),
        max_fifo=max_fifo,
        bcast_latency=int(bcast_latency),
        write_latency=int(write_latency),
    )
    out = jax.tree.map(np.asarray, out)
    out["busy"] = out["busy"][:n_pes]
    return out


@functools.partial(
    jax.jit, static_argnames=("max_pes", "max_fifo", "bcast_latency", "write_latency")
)
def _simulate_jit(ev, n, r, dd, epl, *, max_pes, max_fifo, bcast_latency, write_latency):
    w = pe_work(ev, n, r, max_pes=max_pes)
    t = timing(w, dd, max_fifo=max_fifo, bcast_latency=bcast_latency, write_latency=write_latency)
    return counters(w, t, epl)
