"""Today's EIE kernel as of the branch point of the typed-spine rewrite: the baseline of
``benchmarks/bench_eie_sweep.py``.

Copied from ``eie_model/cycles.py`` and ``eie_model/sweep.py`` (git ``dbfa75d``) into one module,
unchanged but for: one namespace (``cycles.X`` is this module's ``X``), no module docstrings,
and no energy columns (they need the removed ``EIEConfig``; the kernel, the timing scan and the
per-layer work, is what the benchmark compares). ``sweep(layer, configs)`` takes a mapping with
``codes``/``act``/``bias_codes`` and a dict of config columns, as it did.

Run as a script it is the old ``eie-model sweep`` on a benchmark layer (one process, timing
printed the same way)::

    python benchmarks/_baseline_eie_kernel.py --layer alex7 --pes 1:64 --fifo 1:256
"""

from __future__ import annotations

# ruff: noqa: E402  (two modules concatenated: the second one's imports sit mid-file)
import functools
import os
import sys as _sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all_cycles__ = [
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
            A, output rows ``[p N A, (p + 1) N A)`` run as pass ``p`` (design.md, as in
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
            pass over every row, the default of design.md).
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
    """Run the event recurrence of design.md for one configuration (``lax.scan`` over K).

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
        bcast_latency, write_latency: pipeline latencies (2 and 5 in design.md).

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


import csv
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.atomic import atomic_open

__all_sweep__ = [
    "CONFIG_FIELDS",
    "DEFAULTS",
    "ENERGY_COLUMNS",
    "PreparedLayer",
    "grid",
    "pareto_front",
    "prepare",
    "sweep",
    "to_records",
    "write_csv",
    "write_json",
]

#: The configuration columns of a sweep, in table order.
CONFIG_FIELDS: tuple[str, ...] = (
    "n_pes",
    "fifo_depth",
    "index_bits",
    "sram_width",
    "act_bits",
    "weight_bits",
    "acc_regs",
    "clock_hz",
)
#: Defaults of the configuration columns (EIE as built: 64 PEs, 8-deep FIFO, 4-bit index,
#: 64-bit SpMat line, 16-bit arithmetic, 800 MHz; ``acc_regs`` 0 = unlimited accumulators,
#: one pass, as the authors' simulator and design.md's default).
DEFAULTS: dict[str, float] = {
    "n_pes": 64,
    "fifo_depth": 8,
    "index_bits": 4,
    "sram_width": 64,
    "act_bits": 16,
    "weight_bits": 16,
    "acc_regs": 0,
    "clock_hz": 800e6,
}
_INT_FIELDS = tuple(k for k in CONFIG_FIELDS if k != "clock_hz")


def grid(**axes: Any) -> dict[str, np.ndarray]:
    """The full Cartesian grid of the given axes (others take :data:`DEFAULTS`).

    Args:
        **axes: field name -> value or sequence of values (fields of :data:`CONFIG_FIELDS`).

    Returns:
        dict of 1-D arrays of equal length (``int32``; ``clock_hz`` ``float64``), the last
        axis varying fastest.

    Example:
        >>> g = grid(n_pes=[1, 2], fifo_depth=[2, 4, 8])
        >>> g["n_pes"].tolist(), g["fifo_depth"].tolist()
        ([1, 1, 1, 2, 2, 2], [2, 4, 8, 2, 4, 8])
    """
    for k in axes:
        if k not in CONFIG_FIELDS:
            raise ValueError(f"grid: unknown field {k!r}; fields are {CONFIG_FIELDS}")
    lists = [np.atleast_1d(np.asarray(v)).ravel() for v in axes.values()]
    for k, v in zip(axes, lists, strict=True):
        if v.size == 0:
            raise ValueError(f"grid: axis {k!r} is empty; give at least one value")
    combos = list(itertools.product(*[v.tolist() for v in lists]))
    out = {k: np.array([c[i] for c in combos]) for i, k in enumerate(axes)}
    return _normalize(out)


def _normalize(configs: Any) -> dict[str, np.ndarray]:
    """Configs (mapping, EIEConfig or sequence of them) -> validated dict of 1-D columns."""
    if hasattr(configs, "static") and hasattr(configs, "arrays"):  # an EIEConfig (batched OK)
        configs = [configs]
    if isinstance(configs, Sequence) and not isinstance(configs, (str, bytes)):
        rows: dict[str, list] = {k: [] for k in CONFIG_FIELDS}
        for c in configs:
            if not (hasattr(c, "static") and hasattr(c, "arrays")):
                raise TypeError(f"configs: expected EIEConfig items, got {type(c).__name__}")
            if (c.bcast_latency, c.write_latency) != (2, 5):
                raise ValueError(
                    "configs: give non-default pipeline latencies as sweep(..., "
                    "bcast_latency=, write_latency=), not per EIEConfig"
                )
            shape = c.batch_shape
            for k in CONFIG_FIELDS:
                v = getattr(c, k)
                if k == "acc_regs" and v is None:
                    v = 0  # unlimited
                rows[k].append(np.broadcast_to(np.asarray(v), shape).ravel())
        configs = {k: np.concatenate(v) for k, v in rows.items()}
    if not isinstance(configs, Mapping):
        raise TypeError(
            "configs must be a mapping of field -> values (see grid()), an EIEConfig or a "
            f"sequence of EIEConfig, got {type(configs).__name__}"
        )
    for k in configs:
        if k not in CONFIG_FIELDS:
            raise ValueError(f"configs: unknown field {k!r}; fields are {CONFIG_FIELDS}")
    cols = {k: np.asarray(configs.get(k, DEFAULTS[k])) for k in CONFIG_FIELDS}
    try:
        cols = dict(zip(cols, np.broadcast_arrays(*cols.values()), strict=True))
    except ValueError:
        shapes = {k: v.shape for k, v in cols.items()}
        raise ValueError(f"configs: columns must broadcast to one length, got {shapes}") from None
    out = {}
    for k, v in cols.items():
        v = np.atleast_1d(v).ravel()
        if k in _INT_FIELDS:
            if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
                raise ValueError(f"configs: {k} must hold whole numbers, got {v[:5]}")
            v = v.astype(np.int64)
        else:
            v = v.astype(np.float64)
        out[k] = v
    checks = {
        "n_pes": (1, 1 << 14),
        "fifo_depth": (1, 1 << 14),
        "index_bits": (1, 16),
        "sram_width": (1, 1 << 16),
        "acc_regs": (0, 1 << 16),
    }
    for k, (lo, hi) in checks.items():
        bad = (out[k] < lo) | (out[k] > hi)
        if bad.any():
            raise ValueError(f"configs: {k} must lie in {lo}..{hi}, got {out[k][bad][:5].tolist()}")
    for k in ("act_bits", "weight_bits"):
        if not np.all(np.isin(out[k], (8, 16, 32))):
            raise ValueError(f"configs: {k} must be 8, 16 or 32, got {np.unique(out[k]).tolist()}")
    if np.any(out["clock_hz"] <= 0):
        raise ValueError("configs: clock_hz must be > 0")
    return {k: (v.astype(np.int32) if k in _INT_FIELDS else v) for k, v in out.items()}


def _bucket(n: int, multiple: int = 1) -> int:
    """Smallest power of two >= n, rounded up to a multiple of ``multiple``."""
    b = 1 << max(n - 1, 0).bit_length()
    return -(-b // multiple) * multiple


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return (
        np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)]) if size > a.shape[0] else a
    )


@functools.partial(jax.jit, static_argnames=("max_pes", "write_latency", "acc"))
def _work_tables(ev, unit_n, unit_r, unit_a, unit_p, n_units, *, max_pes, write_latency, acc):
    """Work tables of every work unit ``(N, r, A, pass)``, units sorted by (N, A): a
    ``lax.scan`` that sorts the non-zeros only when (N, A) changes (one sort per distinct N,
    one ``(Z,)`` sort in memory) and skips the padding units (index >= ``n_units``) with
    ``lax.cond``. ``acc`` (static): some unit has ``acc_regs`` A > 0 (A = 0: unlimited)."""

    def acc_of(a):
        return jnp.where(a > 0, a, jnp.int32(1 << 30)) if acc else None

    def gaps_of(na):
        return cycles.slice_gaps(ev, na[0], acc_regs=acc_of(na[1]))

    def work_of(n, r, a, p, g):
        return cycles.pe_work(ev, n, r, max_pes=max_pes, gaps=g, acc_regs=acc_of(a), pass_index=p)

    na0 = (unit_n[0], unit_a[0])
    g_shape = jax.eval_shape(gaps_of, na0)
    w_shape = jax.eval_shape(work_of, unit_n[0], unit_r[0], unit_a[0], unit_p[0], g_shape)
    zeros = functools.partial(jax.tree.map, lambda a: jnp.zeros(a.shape, a.dtype))

    def body(carry, x):
        gaps, prev_n, prev_a = carry
        i, n, r, a, p = x
        valid = i < n_units
        new = valid & ((n != prev_n) | (a != prev_a))
        gaps = jax.lax.cond(new, gaps_of, lambda _: gaps, (n, a))
        work = jax.lax.cond(valid, lambda: work_of(n, r, a, p, gaps), lambda: zeros(w_shape))
        return (gaps, jnp.where(valid, n, prev_n), jnp.where(valid, a, prev_a)), work

    idx = jnp.arange(unit_n.shape[0], dtype=jnp.int32)
    init = (zeros(g_shape), jnp.int32(-1), jnp.int32(-1))
    _, works = jax.lax.scan(body, init, (idx, unit_n, unit_r, unit_a, unit_p))
    tab = cycles.scan_tables(works, write_latency=write_latency)
    useful = works.nnz.sum((1, 2))
    fillers = works.entries.sum((1, 2)) - useful
    return works, tab, cycles._line_walk(works), useful, fillers


class PreparedLayer(NamedTuple):
    """A layer with its per-(N, r, A) work tables computed, for repeated :func:`sweep` calls.

    Everything here depends only on the layer and the distinct ``(n_pes, index_bits,
    acc_regs)`` triples (plus the static PE bound and write latency), not on FIFO depth, SRAM
    width, precision or clock: :func:`prepare` computes it once, and ``sweep(prepared,
    configs)`` skips the per-layer work (the sort of the non-zeros per PE count and the per-PE
    segment sums) for any configurations whose triples it holds. It is a snapshot of the layer
    at :func:`prepare` time (the layer's arrays are copied into :class:`cycles.LayerEvents`).

    A *work unit* is one pass of one triple: ``ceil(m / (N A))`` passes with ``acc_regs`` A
    when ``m > N A``, else one (A = 0: unlimited accumulators, one pass).

    Attributes:
        events: :class:`cycles.LayerEvents` of the layer.
        code_bits: bits of a weight code (an SRAM entry is ``code_bits + index_bits`` bits).
        pairs: ``(P, 3) int32`` the distinct ``(n_pes, index_bits, acc_regs)``, sorted.
        passes: ``(P,) int32`` passes of each.
        unit_pair: ``(U,) int32`` the row of ``pairs`` of each work unit (units of one row are
            consecutive, in pass order).
        max_pes: static PE-axis length of the tables (a power of two >= every N).
        write_latency: the pipeline latency the tables were built for.
        works: :class:`cycles.PEWork` with a leading unit axis (padded to a power of two).
        tables: :class:`cycles.ScanTables` of those works (the timing scans' input).
        line_prev: ``(U', max_pes, K) int32`` per PE and event, the CSC address of the last
            entry walked before it (``-1``: none), the width-independent part of the SRAM
            line reads.
        useful_macs: ``(P,) int64`` useful MACs (all passes). fillers: ``(P,) int64``.
    """

    events: cycles.LayerEvents
    code_bits: int
    pairs: np.ndarray
    passes: np.ndarray
    unit_pair: np.ndarray
    max_pes: int
    write_latency: int
    works: cycles.PEWork
    tables: cycles.ScanTables
    line_prev: jax.Array
    useful_macs: np.ndarray
    fillers: np.ndarray


def _layer_events(layer: Any, code_bits: int | None) -> tuple[cycles.LayerEvents, int]:
    """``(events, code_bits)`` of a layer (or of a :class:`cycles.LayerEvents`)."""
    if isinstance(layer, cycles.LayerEvents):
        return layer, 4 if code_bits is None else int(code_bits)
    ev = cycles.prepare_layer(layer)
    if code_bits is not None:
        return ev, int(code_bits)
    book = layer.get("codebook") if isinstance(layer, Mapping) else None
    if book is None and not isinstance(layer, Mapping):
        book = getattr(layer, "codebook", None)
    return ev, int(np.asarray(book).shape[0]).bit_length() - 1 if book is not None else 4


def _pair_index(pairs: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row of ``pairs`` (sorted, distinct ``(P, 3)``) holding each row of ``keys``; -1: none."""

    def code(a):  # n_pes, acc_regs <= 2**16, index_bits <= 16 < 32
        a = a.astype(np.int64)
        return (a[:, 0] << 22) | (a[:, 2] << 5) | a[:, 1]

    c, want = code(pairs), code(keys)
    order = np.argsort(c)
    i = np.minimum(np.searchsorted(c[order], want), len(c) - 1)
    return np.where(c[order][i] == want, order[i], -1)


def _pair_keys(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(configs, 3)`` ``(n_pes, index_bits, acc_regs)`` of each configuration."""
    return np.stack([cols["n_pes"], cols["index_bits"], cols["acc_regs"]], 1)


def _distinct_pairs(keys: np.ndarray) -> np.ndarray:
    """Distinct rows of ``keys``, sorted by (N, A, r): one sort of the non-zeros per (N, A)."""
    return np.unique(keys[:, [0, 2, 1]], axis=0)[:, [0, 2, 1]]


def _units_of(prep: PreparedLayer, pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand rows that each name a pair into one row per work unit (pass) of that pair.

    Returns ``(owner, unit)``: for each unit row, the index of the input row and the unit.
    """
    cnt = prep.passes[pair].astype(np.int64)
    owner = np.repeat(np.arange(len(pair)), cnt)
    first = np.cumsum(prep.passes) - prep.passes  # first unit of each pair
    offset = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return owner, np.repeat(first[pair], cnt) + offset


def _sum_by(owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``out[j] = sum of values[i] over owner[i] == j`` (int64; extra axes kept).

    ``owner`` is sorted and hits every ``j`` (from :func:`_units_of`), so equal lengths mean
    the identity (every pair has one unit: no ``acc_regs`` passes).
    """
    if len(owner) == n:
        return values.astype(np.int64)
    out = np.zeros((n, *values.shape[1:]), np.int64)
    np.add.at(out, owner, values.astype(np.int64))
    return out


def _prepare(ev, code_bits, pairs, max_pes, write_latency) -> PreparedLayer:
    if (ev.n + 2) * (ev.m + max_pes) >= 2**31:
        raise ValueError("layer too large for the int32 event model (see cycles.pe_work)")
    pairs = pairs.astype(np.int32)
    n, a = pairs[:, 0].astype(np.int64), pairs[:, 2].astype(np.int64)
    passes = np.where((a > 0) & (ev.m > n * a), -(-ev.m // np.maximum(n * a, 1)), 1)
    unit_pair = np.repeat(np.arange(len(pairs)), passes)
    unit_pass = np.arange(len(unit_pair)) - np.repeat(np.cumsum(passes) - passes, passes)
    units = np.concatenate([pairs[unit_pair], unit_pass[:, None]], 1).astype(np.int32)
    up = _pad(units, _bucket(len(units)))  # pairs sorted by N first, so units are too
    works, tab, prev, useful, fillers = _work_tables(
        ev,
        up[:, 0],
        up[:, 1],
        up[:, 2],
        up[:, 3],
        np.int32(len(units)),
        max_pes=max_pes,
        write_latency=write_latency,
        acc=bool(np.any(a > 0)),
    )
    return PreparedLayer(
        events=ev,
        code_bits=int(code_bits),
        pairs=pairs,
        passes=passes.astype(np.int32),
        unit_pair=unit_pair.astype(np.int32),
        max_pes=int(max_pes),
        write_latency=int(write_latency),
        works=works,
        tables=tab,
        line_prev=prev,
        useful_macs=_sum_by(unit_pair, np.asarray(useful)[: len(units)], len(pairs)),
        fillers=_sum_by(unit_pair, np.asarray(fillers)[: len(units)], len(pairs)),
    )


def prepare(
    layer: Any, configs: Any, *, code_bits: int | None = None, write_latency: int = 5
) -> PreparedLayer:
    """Compute a layer's per-(N, r, A) work tables once, for repeated :func:`sweep` calls.

    Args:
        layer: as for :func:`sweep` (a layer, mapping, npz or :class:`cycles.LayerEvents`).
        configs: as for :func:`sweep`; only its distinct ``(n_pes, index_bits, acc_regs)``
            triples matter (a later ``sweep(prepared, other_configs)`` may use any FIFO
            depths, SRAM widths, precisions and clocks, but only these triples).
        code_bits: keyword-only, as for :func:`sweep`.
        write_latency: keyword-only pipeline latency to the accumulator write (5).

    Returns:
        :class:`PreparedLayer`, which :func:`sweep` accepts in place of the layer.

    Example:
        >>> import numpy as np
        >>> layer = {"codes": np.eye(4, dtype=np.uint8), "act": np.ones(4, np.float32)}
        >>> prep = prepare(layer, grid(n_pes=[1, 2]))
        >>> prep.pairs.tolist()  # (n_pes, index_bits, acc_regs); acc_regs 0 = unlimited
        [[1, 4, 0], [2, 4, 0]]
        >>> sweep(prep, grid(n_pes=[1, 2], fifo_depth=[1, 4]))["cycles"].tolist()
        [18, 12, 18, 12]
    """
    cols = _normalize(configs)
    ev, cb = _layer_events(layer, code_bits)
    pairs = _distinct_pairs(_pair_keys(cols))
    return _prepare(ev, cb, pairs, _bucket(int(cols["n_pes"].max())), write_latency)


def _timing_batch_impl(tab, pair, fifo, *, max_fifo, bcast_latency, unroll, mesh, padded):
    """vmap of the scan over timing triples, sharded over ``mesh``'s single axis."""

    def local(tab, pair, fifo):
        f = functools.partial(
            cycles._timing_core,
            max_fifo=max_fifo,
            bcast_latency=bcast_latency,
            unroll=unroll,
            padded=padded,
        )
        t = jax.vmap(f, in_axes=(None, 0, 0))(tab, pair, fifo)
        return t.cycles, t.busy, t.stall_cycles, t.starvation_cycles

    if mesh is None:
        return local(tab, pair, fifo)
    rep = jax.tree.map(lambda _: P(), tab)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(rep, P("configs"), P("configs")),
        out_specs=(P("configs"), P("configs"), P("configs"), P("configs")),
        check_vma=False,  # the scan carry starts replicated and becomes per-device
    )(tab, pair, fifo)


_STATIC_T = ("max_fifo", "bcast_latency", "unroll", "mesh", "padded")
_timing_batch = jax.jit(_timing_batch_impl, static_argnames=_STATIC_T)


@jax.jit
def _line_table(works, line_prev, line_pair, line_epl):
    """SRAM line reads (summed over PEs) of each (pair, entries per line)."""

    def one(p, e):
        w = jax.tree.map(lambda x: x[p], works)
        return cycles._line_reads_from_walk(w, line_prev[p], e).sum()

    return jax.lax.map(lambda a: one(*a), (line_pair, line_epl))


def _mesh(devices: Any) -> Mesh | None:
    if devices is None:
        devices = jax.devices()
    devices = list(devices)
    if len(devices) <= 1:
        return None
    return Mesh(np.array(devices), ("configs",))


def _gather(x: Any) -> np.ndarray:
    if jax.process_count() > 1:  # multi-host: every host gets the whole result
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


#: Columns that :mod:`eie_model.energy` adds to a sweep table.
ENERGY_COLUMNS: tuple[str, ...] = (
    "energy_j",
    "power_w",
    "area_mm2",
    "gops",
    "gops_per_w",
    "frames_per_s",
    "frames_per_s_per_mm2",
    "spmat_j",
    "pointer_j",
    "arith_j",
    "actrw_j",
    "queue_j",
    "broadcast_j",
    "static_j",
)


def sweep(
    layer: Any,
    configs: Any,
    *,
    code_bits: int | None = None,
    bcast_latency: int = 2,
    write_latency: int | None = None,
    devices: Sequence[Any] | None = None,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | bool = False,
    unroll: int = 1,
) -> dict[str, np.ndarray]:
    """Evaluate every configuration of ``configs`` on ``layer``.

    Args:
        layer: a ``Layer`` / mapping / npz with ``codes``, ``act``, optional ``bias_codes``
            and ``codebook`` (its length sets ``code_bits``), a :class:`cycles.LayerEvents`
            (then give ``code_bits``), or a :class:`PreparedLayer` from :func:`prepare` (its
            per-(N, r, A) work tables are reused: repeated sweeps of one layer skip that work;
            ``configs`` may then use only its ``(n_pes, index_bits, acc_regs)`` triples).
        configs: mapping field -> values (broadcast together; see :func:`grid`), an
            ``EIEConfig`` (batched or not) or a sequence of them. Missing fields take
            :data:`DEFAULTS`.
        code_bits: bits of a weight code (default: from the codebook, else 4); an SRAM line
            holds ``sram_width // (code_bits + index_bits)`` entries.
        bcast_latency, write_latency: pipeline latencies (2 and 5 in design.md; ``None``
            write latency: 5, or the :class:`PreparedLayer`'s).
        devices: devices to shard the timing batch over (default: all of ``jax.devices()``).
        chunk: evaluate the timing triples in fixed chunks of this size (one compiled shape
            whatever the number of configurations; enables ``progress``). ``None``: one call.
        progress: ``True`` for a tqdm bar, or a callable ``(done, total)`` called per chunk.
        unroll: ``lax.scan`` unroll factor (speed only; 1 is fastest on XLA:CPU here: unrolling
            by 4 made the Alex-7 scans 2-7x slower).

    Returns:
        dict of 1-D NumPy arrays, one row per configuration: the :data:`CONFIG_FIELDS`, then
        ``cycles, latency_us, useful_macs, fillers, pointer_reads, spm_line_reads,
        stall_cycles, starvation_cycles, busy_total, busy_max, load_balance,
        mac_efficiency, load_efficiency`` and the :data:`ENERGY_COLUMNS` of
        :func:`eie_model.energy.energy_report` (``energy_j``, ``power_w``, ``area_mm2`` ...).

    Example:
        >>> import numpy as np
        >>> layer = {"codes": np.ones((4, 4), np.uint8), "act": np.ones(4, np.float32)}
        >>> t = sweep(layer, {"n_pes": [1, 2, 4], "fifo_depth": 2})
        >>> t["useful_macs"].tolist(), t["pointer_reads"].tolist()
        ([16, 16, 16], [4, 8, 16])
    """
    cols = _normalize(configs)
    keys = _pair_keys(cols)
    if isinstance(layer, PreparedLayer):
        prep = layer
        for name, got, have in (
            ("code_bits", code_bits, prep.code_bits),
            ("write_latency", write_latency, prep.write_latency),
        ):
            if got is not None and got != have:
                raise ValueError(
                    f"sweep: {name}={got} differs from the prepared layer's {have}; call "
                    f"prepare(layer, configs, {name}={got}) or leave {name} unset"
                )
        known = _pair_index(prep.pairs, keys)
        if np.any(known < 0):
            missing = np.unique(keys[known < 0], axis=0)[:5].tolist()
            raise ValueError(
                f"sweep: configs use (n_pes, index_bits, acc_regs) {missing} that the prepared "
                "layer does not hold; prepare(layer, configs) with these configs, or pass the "
                "layer itself"
            )
        cb = prep.code_bits
    else:
        prep = None
        ev, cb = _layer_events(layer, code_bits)
    n_cfg = cols["n_pes"].shape[0]
    epl = cols["sram_width"] // (cb + cols["index_bits"])
    if np.any(epl < 1):
        raise ValueError(
            f"configs: sram_width must hold one entry (>= code_bits + index_bits = "
            f"{cb} + index_bits bits); got widths {cols['sram_width'][epl < 1][:5].tolist()}"
        )
    if prep is None:
        wl = 5 if write_latency is None else write_latency
        max_pes = _bucket(int(cols["n_pes"].max()))
        prep = _prepare(ev, cb, _distinct_pairs(keys), max_pes, wl)
    ev, tab = prep.events, prep.tables
    max_fifo = _bucket(int(cols["fifo_depth"].max()))

    # distinct knob combinations (host); pair_of indexes prep.pairs
    pair_of = _pair_index(prep.pairs, keys)
    trips, trip_of = np.unique(
        np.stack([pair_of, cols["fifo_depth"]], 1), axis=0, return_inverse=True
    )
    lines, line_of = np.unique(np.stack([pair_of, epl], 1), axis=0, return_inverse=True)
    trip_of, line_of = trip_of.ravel(), line_of.ravel()
    # one timing scan / line count per work unit (acc_regs pass) of each, summed below
    trip_owner, trip_unit = _units_of(prep, trips[:, 0])
    utrips = np.stack([trip_unit, trips[trip_owner, 1]], 1)

    mesh = _mesh(devices)
    ndev = 1 if mesh is None else mesh.size
    n_trip = len(utrips)
    size = _bucket(n_trip, ndev) if chunk is None else -(-int(chunk) // ndev) * ndev
    n_chunks = -(-n_trip // size)
    tp = _pad(utrips.astype(np.int32), n_chunks * size)
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_trip, desc="sweep", unit="cfg")
    outs = []
    for c in range(n_chunks):
        sl = tp[c * size : (c + 1) * size]
        pair_a, fifo_a = sl[:, 0], sl[:, 1]
        if mesh is not None:
            sh = NamedSharding(mesh, P("configs"))
            pair_a, fifo_a = jax.device_put(pair_a, sh), jax.device_put(fifo_a, sh)
        res = _timing_batch(
            tab,
            pair_a,
            fifo_a,
            max_fifo=max_fifo,
            bcast_latency=bcast_latency,
            unroll=unroll,
            mesh=mesh,
            padded=ev.padded,
        )
        outs.append([_gather(x) for x in res])
        done = min((c + 1) * size, n_trip)
        if bar is not None:
            bar.update(done - bar.n)
        elif callable(progress):
            progress(done, n_trip)
    if bar is not None:
        bar.close()
    t_cycles, t_busy, t_stall, t_starv = (
        _sum_by(trip_owner, np.concatenate(x)[:n_trip], len(trips)) for x in zip(*outs, strict=True)
    )

    line_owner, line_unit = _units_of(prep, lines[:, 0])
    lp = np.stack([line_unit, lines[line_owner, 1]], 1).astype(np.int32)
    lp = _pad(lp, _bucket(len(lp)))
    line_reads = np.asarray(_line_table(prep.works, prep.line_prev, lp[:, 0], lp[:, 1]))
    line_reads = _sum_by(line_owner, line_reads[: len(line_owner)], len(lines))
    useful, fillers = prep.useful_macs, prep.fillers

    n = cols["n_pes"].astype(np.int64)
    cyc = t_cycles[trip_of].astype(np.int64)
    busy = t_busy[trip_of].astype(np.int64)  # (configs, max_pes)
    busy_total = busy.sum(1)
    busy_max = busy.max(1)
    denom = np.maximum(cyc, 1) * n
    out = dict(cols)
    out.update(
        cycles=cyc,
        latency_us=cyc / cols["clock_hz"] * 1e6,
        useful_macs=useful[pair_of].astype(np.int64),
        fillers=fillers[pair_of].astype(np.int64),
        pointer_reads=n * ev.num_broadcasts * prep.passes[pair_of],
        spm_line_reads=line_reads[line_of].astype(np.int64),
        stall_cycles=t_stall[trip_of].astype(np.int64),
        starvation_cycles=t_starv[trip_of].astype(np.int64),
        busy_total=busy_total,
        busy_max=busy_max,
        load_balance=np.where(busy_max > 0, busy_total / np.maximum(busy_max * n, 1), 1.0),
        mac_efficiency=useful[pair_of] / denom,
        load_efficiency=busy_total / denom,
    )
    assert all(v.shape[0] == n_cfg for v in out.values())
    return out


def to_records(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """The table as a NumPy structured array (one record per configuration).

    Example:
        >>> to_records({"a": np.array([1, 2]), "b": np.array([0.5, 1.0])})["b"].tolist()
        [0.5, 1.0]
    """
    names = list(table)
    return np.rec.fromarrays([np.asarray(table[k]) for k in names], names=names)


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    with atomic_open(path, "w", newline="") as f:
        write(f)


def _py(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return v


def write_csv(table: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write the table as CSV (header = column names), atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> write_csv({"cycles": np.array([3, 4])}, p)
        >>> p.read_text().split()
        ['cycles', '3', '4']
    """
    names = list(table)

    def w(f):
        wr = csv.writer(f)
        wr.writerow(names)
        for row in zip(*(np.asarray(table[k]).tolist() for k in names), strict=True):
            wr.writerow(row)

    _atomic_write(path, w)


def write_json(table: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write the table as a JSON list of row objects, atomically.

    Example:
        >>> import tempfile, pathlib, json
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.json"
        >>> write_json({"cycles": np.array([3])}, p)
        >>> json.loads(p.read_text())
        [{'cycles': 3}]
    """
    names = list(table)
    rows = [
        dict(zip(names, r, strict=True))
        for r in zip(*(np.asarray(table[k]).tolist() for k in names), strict=True)
    ]
    _atomic_write(path, lambda f: json.dump(rows, f, indent=1))


def pareto_front(
    table: Mapping[str, np.ndarray], objectives: Sequence[str] = ("latency_us", "energy_j")
) -> np.ndarray:
    """Mask of the configurations no other configuration dominates (all objectives minimized).

    A row is dominated when another row is <= in every objective and < in at least one.

    Args:
        table: a :func:`sweep` result (or any dict of equal-length columns).
        objectives: column names to minimize (negate a column to maximize it).

    Returns:
        ``(rows,) bool``.

    Example:
        >>> t = {"x": np.array([1, 2, 3, 2]), "y": np.array([3, 1, 2, 3])}
        >>> pareto_front(t, ("x", "y")).tolist()
        [True, True, False, False]
    """
    if not objectives:
        raise ValueError("pareto_front: give at least one objective column")
    for k in objectives:
        if k not in table:
            raise ValueError(f"pareto_front: no column {k!r}; columns are {sorted(table)}")
    pts = np.stack([np.asarray(table[k], np.float64) for k in objectives], 1)
    n = pts.shape[0]
    keep = np.ones(n, bool)
    step = max(1, 4_000_000 // max(n, 1))
    for lo in range(0, n, step):
        blk = pts[lo : lo + step]  # (b, k) candidates vs all points
        le = np.all(pts[None, :, :] <= blk[:, None, :], axis=2)
        lt = np.any(pts[None, :, :] < blk[:, None, :], axis=2)
        keep[lo : lo + step] = ~np.any(le & lt, axis=1)
    return keep


cycles = _sys.modules[__name__]


def _main() -> None:
    import argparse
    import time

    from eie_model.cli import parse_list
    from eie_model.layers import load_layer

    ap = argparse.ArgumentParser(description="the old eie-model sweep (baseline kernel)")
    ap.add_argument("--layer", required=True)
    ap.add_argument("--pes", required=True)
    ap.add_argument("--fifo", required=True)
    a = ap.parse_args()
    layer = load_layer(a.layer)
    cfg = grid(n_pes=parse_list(a.pes), fifo_depth=parse_list(a.fifo))
    n = len(cfg["n_pes"])
    trips = len(np.unique(np.stack([cfg["n_pes"], cfg["index_bits"], cfg["fifo_depth"]]), axis=1).T)
    chunk = max(8, _bucket(-(-trips // 10)))
    t0 = time.perf_counter()
    sweep(layer._asdict(), cfg, chunk=chunk)
    dt = time.perf_counter() - t0
    print(f"{n} configurations in {dt:.2f} s ({n / dt:,.0f} configurations/s)", file=_sys.stderr)


if __name__ == "__main__":
    _main()
