"""Design-space sweeps: ``sweep(static, params_batch, layer)`` = ``vmap(simulate)``, much faster.

:func:`sweep` returns the same :class:`eie_model.types.Counters` as ``jax.vmap(simulate)``
over a batch of :class:`eie_model.types.EIEParams` (``tests/test_eie_sweep.py`` checks it), but
runs each stage once per distinct value of the knobs it depends on, found on the host:

1. per distinct ``(n_pes, index_bits, acc_regs)`` *pair*, ``acc_regs`` pass and activation
   batch (``EIEStatic.act_regs``; a *work unit*):
   the per-PE work tables (:mod:`eie_model.sim.work`'s, on the host: with several PE counts one
   compiled pass over the non-zeros per N, ``eie_model/_host_kernels.py``; else one NumPy sort
   of the non-zeros per distinct (N, A)). They depend on the layer and the pair only, and are
   kept (a small cache keyed by the layer's content), so repeated sweeps of one layer skip
   this stage;
2. per work unit with FIFO depths ``D >= 2``, its run with an *unbounded* FIFO, in closed form
   (prefix sums and running maxima on the host, no scan: :func:`_unbounded`). A depth whose
   broadcasts never keep a PE waiting longer than that run's did has exactly its PE schedule
   (cycles, busy, starvation); only the broadcast times, hence the stall counter, differ, and
   they follow from the scalar recurrence ``e[k] = max(e[k-1] + c[k], R[k - D + 1])`` against
   the unbounded run's column starts ``R``, again a running maximum (:func:`_fifo_reuse`; it
   also checks the condition, which holds from one depth on). Only ``D = 1`` and the depths
   that fail it get scans;
3. the remaining ``(unit, D)`` scans: on the ``"host"`` engine (the default on a CPU-only
   machine) a compiled loop steps each configuration over its own PEs, on every core
   (:func:`_host_scans`); on the ``"xla"`` engine they run in fixed-size chunks of
   configurations: a chunk holds
   one unit when the unit has many depths (its tables are read without a gather), and the PE
   axis is the smallest lane bucket holding the chunk's PE count (not the sweep's largest);
   chunks go round-robin to the local devices (and across hosts after
   ``jax.distributed.initialize()``: each host runs its share, results are all-gathered);
4. per distinct ``(unit, entries per line)``: the SRAM line reads (no scan); sums over passes.

Shapes come from a few buckets (lanes, history length, chunk size), so the number of
compilations does not grow with the number of configurations.

Example:
    >>> import numpy as np
    >>> from eie_model.types import EIEParams, EIEStatic, Layer
    >>> layer = Layer(np.eye(4, dtype=np.uint8), np.arange(16.0), np.ones(4, np.float32))
    >>> params = EIEParams.grid(n_pes=[1, 2], fifo_depth=[1, 4])
    >>> sweep(EIEStatic.covering(params), params, layer).cycles.tolist()
    [18, 12, 18, 12]
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import functools
import itertools
import json
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eie_model.capacity import _refuse_if_over, check_capacity
from eie_model.sim import check_layer
from eie_model.sim.events import NEG, Events, layer_events
from eie_model.sim.timing import ScanTables, finish, init, step
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

__all__ = ["pareto_front", "sweep", "to_records", "write_csv", "write_json"]

#: Configurations per timing chunk (its state: a few hundred KB, cache-sized; big enough that
#: the scan's per-step overhead is small next to the chunk's work).
CHUNK = 128


def _bucket(n: int, multiple: int = 1) -> int:
    """Smallest power of two >= n, rounded up to a multiple of ``multiple``."""
    b = 1 << max(int(n) - 1, 0).bit_length()
    return -(-b // multiple) * multiple


def _lanes(n: int) -> int:
    """PE lanes for N PEs: 16, 64, 256, ... (powers of four: few compiled shapes per sweep,
    at most four times the lanes a configuration needs)."""
    b = _bucket(n)
    return max(b if b.bit_length() % 2 else 2 * b, 16)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return (
        np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)]) if size > a.shape[0] else a
    )


def _event_cols(ev: Events, n_pes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(column (K,), live (K,), LNZD groups)``: the bias at column ``ceil(n/N)*N``."""
    ev_col = np.asarray(ev.ev_col).astype(np.int64)
    is_bias = np.asarray(ev.ev_is_bias)
    col = np.where(is_bias, -(-ev.n // n_pes) * n_pes, ev_col)
    return col, ev_col <= ev.n, -(-ev.n // n_pes) + int(is_bias.any())


def _batch_work(ev: Events, n_pes: int, groups: int, b: int, tabs: tuple) -> tuple:
    """Activation batch ``b`` of ``groups`` LNZD groups (as :func:`eie_model.sim.pe_work`):
    ``(tabs, lnzd)`` with the batch's events first and the rest padding, the LNZD's gaps of a
    fresh scan from the batch's first group; ``tabs`` are ``(P, K)`` entries, non-zeros and
    addresses (the layer's addresses are kept)."""
    col, live, n_groups = _event_cols(ev, n_pes)
    in_groups = -(-ev.n // n_pes)  # the bias group is scanned at the end of the last batch
    last = max(-(-in_groups // groups), 1) - 1  # as eie_model.sim.n_batches
    g_b = np.minimum(col // n_pes // groups, last)
    mine = np.flatnonzero(live & (g_b == b))
    k_ev = len(col)
    out = []
    for x in tabs:
        y = np.zeros_like(x)
        y[:, : len(mine)] = x[:, mine]
        out.append(y)
    rel = np.zeros(k_ev, np.int64)
    rel[: len(mine)] = col[mine] - b * groups * n_pes
    sel = np.arange(k_ev) < len(mine)
    lnzd = _lnzd_from(rel, sel, n_pes, n_groups - b * groups if b == last else groups)
    return tuple(out), lnzd


def _lnzd_gaps(ev: Events, n_pes: int) -> tuple[np.ndarray, int]:
    """``(ready_gap (K,), tail_gap)`` of the LNZD for N PEs (as :func:`eie_model.sim.pe_work`)."""
    return _lnzd_from(*_event_cols(ev, n_pes)[:2], n_pes, _event_cols(ev, n_pes)[2])


def _lnzd_from(col: np.ndarray, live: np.ndarray, n_pes: int, n_groups: int):
    """The LNZD gaps of events at columns ``col`` (live ones first) over ``n_groups`` groups."""
    group, lane = col // n_pes, col % n_pes
    if not len(col):
        return np.zeros(0, np.int32), 1 + n_groups
    gprev = np.concatenate([[-1], group[:-1]])
    lprev = np.concatenate([[-1], lane[:-1]])
    gap = np.where(group == gprev, 1, np.where(lprev == n_pes - 1, 1, 2) + group - gprev - 1)
    gap[0] = 1 + group[0]
    last = max(int(live.sum()) - 1, 0)
    if live[last]:
        tail = (1 if lane[last] == n_pes - 1 else 2) + n_groups - 1 - int(group[last])
    else:
        tail = 1 + n_groups
    return np.where(live, gap, -1).astype(np.int32), int(tail)


class _Gaps(NamedTuple):
    seg: np.ndarray  # (Z,) PE * (K + 1) + event bucket of each non-zero
    gap: np.ndarray  # (Z,) zero local rows before it in its slice
    block: np.ndarray | None  # (Z,) its acc_regs pass, or None


def _gaps_np(ev: Events, n_pes: int, acc: int, bucket: np.ndarray) -> _Gaps:
    """:func:`eie_model.sim.slice_gaps` on the host (NumPy's sort; same results)."""
    rows, cols = np.asarray(ev.rows), np.asarray(ev.cols)
    k_ev = len(ev.ev_col)
    lr_count = -(-ev.m // n_pes)
    span = n_pes * lr_count
    dt = np.int32 if (ev.n + 2) * span < 2**31 else np.int64
    row_p = (rows % n_pes) * lr_count + rows // n_pes
    base = cols.astype(dt) * span
    row_p = np.sort(base + row_p.astype(dt)) - base  # cols sorted: only rows move
    pe = row_p // lr_count
    lr = row_p - pe * lr_count
    same = (row_p[:-1] >= (pe * lr_count)[1:]) & (cols[1:] == cols[:-1])
    block = None
    if acc:
        block = lr // acc
        same &= block[1:] == block[:-1]
        lr = lr - block * acc
    gap = np.concatenate([lr[:1], np.where(same, row_p[1:] - row_p[:-1] - 1, lr[1:])])
    return _Gaps(seg=pe.astype(np.int64) * (k_ev + 1) + bucket, gap=gap, block=block)


def _unit_work(ev, g: _Gaps, n_pes, r, p, bcast, max_pes):
    """Per-PE work of one unit on the host: ``(entries, nnz, base)`` ``(max_pes, K)``."""
    k_ev = len(ev.ev_col)
    size = max_pes * (k_ev + 1)
    if not len(g.gap):
        z = np.zeros((max_pes, k_ev), np.int64)
        return z, z, z
    ent = 1 + (g.gap >> r)
    if g.block is not None:
        mine = g.block == p
        ent, bc = ent * mine, bcast & mine
    else:
        bc = bcast
    total = np.bincount(g.seg, weights=ent, minlength=size).reshape(max_pes, k_ev + 1)
    seg_b = g.seg[bc]  # broadcast columns only (about a third of the non-zeros)
    entries = np.bincount(seg_b, weights=ent[bc], minlength=size).reshape(max_pes, k_ev + 1)
    nnz = np.bincount(seg_b, minlength=size).reshape(max_pes, k_ev + 1)
    total, entries, nnz = (x[:, :k_ev].astype(np.int64) for x in (total, entries, nnz))
    base = np.cumsum(total, axis=1) - entries
    return entries, nnz, base


#: from this many one-pass PE counts on, :func:`_prepare` uses the compiled kernels
_COMPILED_FROM = 2


def _kernels():
    """:mod:`eie_model._host_kernels` (imports numba: loaded only when a sweep needs it)."""
    from eie_model import _host_kernels

    return _host_kernels


def _key_shift(m: int, n_pes: int) -> int:
    """Bits below the column in :func:`_slice_entries`' sort key (PE and local row fields)."""
    return int(-(-m // n_pes) - 1).bit_length() + int(n_pes - 1).bit_length()


def _slice_entries(
    ev: Events, n_pes: int, bits: Sequence[int], col_keys: dict | None = None
) -> tuple[np.ndarray, dict]:
    """Entries of every (column, PE) slice for N PEs, one table per index width (host NumPy).

    One sort of the non-zeros by (column, PE, local row): ``ev.cols`` is sorted and is the
    key's major part, so only the rows of a column move. In that order a non-zero opens a new
    slice exactly when its key exceeds the previous one's by more than its local row, and the
    zero run before it is ``min(key step - 1, local row)``; slices are contiguous, so their
    non-zero counts and filler sums (``run >> r``) are differences of prefix sums at the slice
    starts (no scatter-add). ``col_keys``: optional ``{shift: cols << shift}`` shared by the
    PE counts whose keys have the same layout (:func:`_key_shift`).

    Returns:
        ``(count, {r: entries})``: ``(n + 2, N)`` int64 non-zeros and entries (fillers
        included) of each slice (column ``n`` = the bias, ``n + 1`` = padding non-zeros).
    """
    m, n = ev.m, ev.n
    rows, cols = np.asarray(ev.rows), np.asarray(ev.cols)
    size = (n + 2) * n_pes
    if not len(rows):
        z = np.zeros((n + 2, n_pes), np.int64)
        return z, {r: z for r in bits}
    lr_count = -(-m // n_pes)
    # key = column | PE | local row as bit fields: the local row is the key's low bits
    lr_bits = int(lr_count - 1).bit_length()
    shift = _key_shift(m, n_pes)
    dt = np.int32 if (n + 2) << shift < 2**31 else np.int64
    r_all = np.arange(m, dtype=np.int64)
    row_key = (((r_all % n_pes) << lr_bits) | (r_all // n_pes)).astype(dt)
    col_key = col_keys.get(shift) if col_keys is not None else None
    if col_key is None or col_key.dtype != dt:
        col_key = cols.astype(dt) << shift
    key = col_key + row_key[rows]
    key.sort()
    lr = key & dt((1 << lr_bits) - 1)  # local row
    step = np.diff(key)
    new = np.empty(len(key), bool)
    new[0] = True
    np.greater(step, lr[1:], out=new[1:])  # the previous key is below this slice's start
    step -= 1
    run = np.empty(len(key), dt)
    run[0] = lr[0]
    np.minimum(step, lr[1:], out=run[1:])
    starts = np.flatnonzero(new)
    ks = key[starts].astype(np.int64)
    slot = (ks >> shift) * n_pes + ((ks >> lr_bits) & ((1 << (shift - lr_bits)) - 1))
    ends = np.append(starts[1:], len(key))
    count = np.zeros(size, np.int64)
    count[slot] = ends - starts
    out = {}
    # fillers of one slice are at most its zero rows: total below m * (n + 2)
    cdt = dt if m * (n + 2) < 2**31 else np.int64
    cf = np.zeros(len(key) + 1, cdt)
    for r in bits:
        np.cumsum(run >> r, dtype=cdt, out=cf[1:])  # native dtype: 3x faster than widening
        ent = count.copy()
        ent[slot] += cf[ends] - cf[starts]
        out[r] = ent.reshape(n + 2, n_pes)
    return count.reshape(n + 2, n_pes), out


def _event_tables(ev: Events, count: np.ndarray, ent: np.ndarray):
    """A unit's ``(entries, nnz, base)`` ``(K, N)`` int64 from its slice tables.

    ``base`` (the CSC address of a slice) sums the PE's entries over every column before the
    event's, broadcast or not; padding events read nothing.
    """
    n = ev.n
    ev_col = np.asarray(ev.ev_col)
    live = ev_col <= n
    col = np.where(live, ev_col, 0)
    entries = np.where(live[:, None], ent[col], 0)
    nnz = np.where(live[:, None], count[col], 0)
    cum = np.cumsum(ent[: n + 1], axis=0)  # columns 0..n (padding non-zeros never count)
    bucket = np.asarray(ev.col_bucket)[: n + 1]
    upto = np.searchsorted(bucket, np.arange(len(ev_col)), side="right") - 1
    before = np.where((upto >= 0)[:, None], cum[np.maximum(upto, 0)], 0)
    return entries, nnz, before - entries


class _Prepared(NamedTuple):
    """A layer's per-unit work, kept between sweeps of that layer (host NumPy tables).

    A *work unit* is one activation batch of one ``acc_regs`` pass of one ``(n_pes,
    index_bits, acc_regs)`` pair (unit ``q`` of a pair: pass ``q // batches``, batch
    ``q % batches``).
    """

    events: Events
    pairs: np.ndarray  # (P, 3) int32 distinct (n_pes, index_bits, acc_regs), sorted by (N, A, r)
    passes: np.ndarray  # (P,) int32 units of each pair (acc_regs passes x activation batches)
    row_passes: np.ndarray  # (P,) int32 acc_regs passes of each pair
    unit_pair: np.ndarray  # (U,) int32 pair of each unit (units of a pair consecutive)
    walks: list  # per unit, (first, last, prev) int32 addresses of its non-empty slices' walk
    tab: ScanTables  # NumPy (K, U, max_pes) tables of the timing scans
    useful: np.ndarray  # (P,) int64 useful MACs (all passes)
    fillers: np.ndarray  # (P,) int64
    busy: np.ndarray  # (P, max_pes) int64 entries per PE (all passes)
    placed: dict  # (lanes, device, units) -> those units' scan tables on that device
    has_write: np.ndarray  # (U,) bool whether a unit writes an accumulator at all
    stored: np.ndarray  # (P, max_pes) int64 SpMat entries per PE of one-unit pairs (else 0)


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 4


def _immutable(a: Any) -> bool:
    """Whether ``a``'s contents cannot change: a ``jax.Array``, or a read-only ndarray that owns
    its memory (a read-only view of a writable array can still change)."""
    if isinstance(a, jax.Array):
        return True
    return isinstance(a, np.ndarray) and not a.flags.writeable and a.base is None


_IDS: dict[int, tuple[Any, int]] = {}  # id -> (weakref to the array, serial)
_SERIAL = itertools.count()


def _identity(a: Any) -> int:
    """A serial number of the live object ``a`` (a new one if its id was another object's)."""
    ref, serial = _IDS.get(id(a), (None, -1))
    if ref is None or ref() is not a:
        serial = next(_SERIAL)
        _IDS[id(a)] = (weakref.ref(a), serial)
        if len(_IDS) > 64 * _CACHE_SIZE:  # drop the entries of collected arrays
            for k in [k for k, (r, _) in _IDS.items() if r() is None]:
                del _IDS[k]
    return serial


def _layer_key(layer: Layer) -> tuple:
    """A key of the layer's content (codes, activations, bias): a changed array is a new key.

    An immutable array (:func:`_immutable`; every loader's, see
    :meth:`eie_model.types.Layer.read_only`) is keyed by its identity. Any other is keyed by
    Python's 64-bit SipHash of its bytes (ten times faster than hashlib's blake2b here; the
    cache lives in one process), so an in-place edit always gives a new key.
    """
    key: list = []
    for a in (layer.codes, layer.act, layer.bias_codes):
        if a is None:
            key.append(None)
        elif _immutable(a):
            key.append(("id", _identity(a)))
        else:
            a = np.asarray(a)
            key.append((a.dtype.str, a.shape, hash(a.tobytes())))
    return tuple(key)


def _prepare(
    ev: Events, pairs: np.ndarray, max_pes: int, write_latency: int, act_regs: int = 0
) -> _Prepared:
    if (ev.n + 2) * (ev.m + max_pes) >= 2**31:
        raise ValueError("layer too large for the int32 event model (see eie_model.sim.work)")
    pairs = pairs.astype(np.int32)
    n, a = pairs[:, 0].astype(np.int64), pairs[:, 2].astype(np.int64)
    row_passes = np.where((a > 0) & (ev.m > n * a), -(-ev.m // np.maximum(n * a, 1)), 1)
    groups = -(-ev.n // n)  # input groups (the bias takes no register): as sim.n_batches
    batches = np.maximum(-(-groups // act_regs), 1) if act_regs else np.ones_like(groups)
    n_batch = {int(k): int(v) for k, v in zip(n.tolist(), batches.tolist(), strict=True)}
    passes = row_passes * batches
    unit_pair = np.repeat(np.arange(len(pairs)), passes)
    unit_pass = np.arange(len(unit_pair)) - np.repeat(np.cumsum(passes) - passes, passes)
    units = np.concatenate([pairs[unit_pair], unit_pass[:, None]], 1).astype(np.int32)
    nu, k_ev = len(units), len(ev.ev_col)
    cols = np.asarray(ev.cols)
    # the tables every later stage reads, filled unit by unit by the worker threads
    walks: list = [None] * nu
    d = np.zeros((k_ev, nu, max_pes), np.int32)
    w = np.full((k_ev, nu, max_pes), NEG, np.int32)
    c = np.zeros((k_ev, nu), np.int32)
    tail = np.zeros(nu, np.int32)
    busy = np.zeros((nu, max_pes), np.int64)
    dsum = np.zeros((nu, max_pes), np.int32)
    useful = np.zeros(nu, np.int64)
    stored = np.zeros((len(pairs), max_pes), np.int64)  # every column's entries, bias included
    groups: dict[tuple[int, int], list[int]] = {}  # one sort per distinct (N, A)
    for u, (n_u, _, a_u, _) in enumerate(units.tolist()):
        groups.setdefault((n_u, a_u), []).append(u)
    cols_rows = (np.ascontiguousarray(ev.rows, np.int32), np.ascontiguousarray(cols, np.int32))
    ev_col = np.ascontiguousarray(ev.ev_col, np.int32)
    col_bucket = np.ascontiguousarray(ev.col_bucket, np.int32)
    col_keys = {}  # the sort keys' column field, shared by the N of one key layout
    for sh in {_key_shift(ev.m, g[0]) for g in groups if g[1] == 0}:
        col_keys[sh] = cols.astype(np.int32 if (ev.n + 2) << sh < 2**31 else np.int64) << sh

    def finish(u: int, ent: np.ndarray, nnz: np.ndarray, addr: np.ndarray, lnzd) -> None:
        """Unit ``u``'s rows of every table from its ``(K, N)`` entries, non-zeros, addresses."""
        n_u = ent.shape[1]
        c[:, u], tail[u] = lnzd
        live = (c[:, u] >= 0)[:, None]
        du = np.where(live, np.maximum(ent, 1), 0)
        d[:, u, :n_u] = du
        w[:, u, :n_u] = np.where(ent > 0, ent + write_latency, NEG)
        # the SRAM walk: the non-empty slices' first and last address, and the last address
        # walked before each (-1: none), as sim.counters.line_walk has it
        last = np.where(ent > 0, addr + ent - 1, -1)
        prev = np.full_like(last, -1)
        if k_ev:
            prev[1:] = np.maximum.accumulate(last, axis=0)[:-1]
        nz = ent > 0
        walks[u] = tuple(x[nz].astype(np.int32) for x in (addr, last, prev))
        busy[u, :n_u] = ent.sum(0)
        dsum[u, :n_u] = du.sum(0)
        useful[u] = nnz.sum()

    # several PE counts: the compiled one-pass kernels (loading them costs a fresh process
    # about half a second, more than one NumPy sort: a single PE count keeps the NumPy path)
    def one_pass(key: tuple[int, int]) -> bool:
        return key[1] == 0 and n_batch[key[0]] == 1

    kernels = _kernels() if sum(1 for g in groups if one_pass(g)) >= _COMPILED_FROM else None

    def group(key: tuple[int, int]) -> None:
        lnzd = _lnzd_gaps(ev, key[0])
        if one_pass(key):  # one pass: slice tables without a scatter
            bits = sorted({int(units[u, 1]) for u in groups[key]})
            if kernels is not None:
                count, ents = kernels.slice_entries(
                    cols_rows[0], cols_rows[1], ev.m, ev.n, key[0], np.asarray(bits, np.int64)
                )
                for u in groups[key]:
                    ent = ents[bits.index(int(units[u, 1]))]
                    stored[unit_pair[u], : ent.shape[1]] = ent[: ev.n + 1].sum(0)
                    c[:, u], tail[u] = lnzd
                    n_u = ent.shape[1]
                    b_u, ds_u, useful[u], *walk = kernels.unit_tables(
                        ev_col, col_bucket, ev.n, count, ent, c[:, u], write_latency, NEG,
                        d[:, u, :n_u], w[:, u, :n_u],
                    )  # fmt: skip
                    busy[u, :n_u], dsum[u, :n_u], walks[u] = b_u, ds_u, tuple(walk)
                return
            count, ent = _slice_entries(ev, key[0], bits, col_keys)
            for u in groups[key]:
                stored[unit_pair[u], : key[0]] = ent[int(units[u, 1])][: ev.n + 1].sum(0)
                finish(u, *_event_tables(ev, count, ent[int(units[u, 1])]), lnzd)
            return
        bucket = np.asarray(ev.col_bucket)[cols].astype(np.int64)
        bcast = np.asarray(ev.col_is_bcast)[cols]
        gaps = _gaps_np(ev, key[0], key[1], bucket)
        nb = n_batch[key[0]]
        for u in groups[key]:
            _, r_u, _, q_u = units[u].tolist()
            tabs = _unit_work(ev, gaps, key[0], r_u, q_u // nb, bcast, key[0])
            lnzd_u = lnzd
            if nb > 1:  # one activation batch of the pass
                tabs, lnzd_u = _batch_work(ev, key[0], act_regs, q_u % nb, tabs)
            finish(u, *(x.T for x in tabs), lnzd_u)

    # NumPy's sort and most ufuncs release the GIL: the groups run on every core
    workers = min(len(groups), _workers())
    if workers > 1:
        list(_pool().map(group, groups))
    else:
        for key in groups:
            group(key)
    tab = ScanTables(
        d=d, w=w, c=c, busy=busy, dsum=dsum, tail=tail, n_pes=units[:, 0].astype(np.int32)
    )
    fillers = busy.sum(1) - useful
    return _Prepared(
        events=ev,
        pairs=pairs,
        passes=passes.astype(np.int32),
        row_passes=row_passes.astype(np.int32),
        unit_pair=unit_pair.astype(np.int32),
        walks=walks,
        tab=tab,
        useful=_sum_by(unit_pair, useful, len(pairs)),
        fillers=_sum_by(unit_pair, fillers, len(pairs)),
        busy=_sum_by(unit_pair, busy, len(pairs)),
        placed={},
        has_write=_has_write(tab),
        stored=stored,
    )


_TOPS: collections.OrderedDict = collections.OrderedDict()  # layer key -> its largest code


def _checked_key(static: EIEStatic, layer: Layer) -> tuple:
    """The layer's :func:`_layer_key`, after checking its codes fit ``static.code_bits``
    (:func:`eie_model.sim.check_layer`; the largest code is kept with the key)."""
    key = _layer_key(layer)
    top = _TOPS.get(key)
    if top is None:
        top = max((int(np.max(a)) for a in (layer.codes, layer.bias_codes)
                   if a is not None and np.size(a)), default=0)  # fmt: skip
        _TOPS[key] = top
        while len(_TOPS) > 4 * _CACHE_SIZE:
            _TOPS.popitem(last=False)
    if top >= 1 << static.code_bits:
        check_layer(static, layer)  # raises, naming the fix
    return key


def _prepared(
    layer: Layer | Events, static: EIEStatic, pairs: np.ndarray, layer_key: tuple | None = None
) -> _Prepared:
    """The layer's work tables for ``pairs`` (from the cache when this layer had them)."""
    max_pes = _lanes(int(pairs[:, 0].max()))
    wl, ar = static.write_latency, static.act_regs
    if isinstance(layer, Events):
        return _prepare(layer, pairs, max_pes, wl, ar)
    if layer_key is None:
        layer_key = _layer_key(layer)
    key = (layer_key, wl, ar, max_pes, pairs.astype(np.int32).tobytes())
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    prep = _prepare(layer_events(layer), pairs, max_pes, wl, ar)
    _CACHE[key] = prep
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prep


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, axis=0, return_inverse=True)`` for small non-negative int columns, via one
    int64 key per row (several times faster than the row-wise unique)."""
    a = np.asarray(a, np.int64)
    span = a.max(0) + 1
    key = np.zeros(len(a), np.int64)
    for j in range(a.shape[1]):  # lexicographic: the first column most significant
        key = key * int(span[j]) + a[:, j]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return a[first], inv.ravel()


def _sum_by(owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``out[j] = sum of values[i] over owner[i] == j`` (int64; extra axes kept)."""
    out = np.zeros((n, *np.shape(values)[1:]), np.int64)
    np.add.at(out, owner, np.asarray(values).astype(np.int64))
    return out


def _chunk_impl(d, w, c, tail, dsum, n_pes, unit, depth, *, ring_len, bcast_latency, padded):
    """Bounded-FIFO timing scans of one chunk of configurations (``B`` = ``depth.shape[0]``).

    ``d``/``w`` ``(K, U, L)`` and ``c`` ``(K, U)`` hold the tables of the ``U`` units of one lane
    bucket (put on the device once per sweep); ``unit`` ``(B,)`` picks each configuration's row
    (a gather per step). Returns ``cycles, stall, starvation`` ``(B,)``.
    """
    k_ev, lanes = d.shape[0], d.shape[-1]
    tab = ScanTables(d=d, w=w, c=c, busy=None, dsum=dsum, tail=tail, n_pes=n_pes)
    state0 = jax.vmap(lambda _: init(lanes, ring_len))(depth)

    def one(state, ev, dd):
        return step(state, ev, dd, bcast_latency=bcast_latency, padded=padded)

    def body(state, x):
        d_k, w_k, c_k, k = x
        ev = (d_k[unit], w_k[unit], c_k[unit], k)
        state, _ = jax.vmap(one, in_axes=(0, (0, 0, 0, None), 0))(state, ev, depth)
        return state, None

    ks = jnp.arange(k_ev, dtype=jnp.int32)
    state, _ = jax.lax.scan(body, state0, (d, w, c, ks))
    t = jax.vmap(lambda u, s: finish(tab, u, s, bcast_latency=bcast_latency))(unit, state)
    return t.cycles, t.stall_cycles, t.starvation_cycles


_CHUNK_STATIC = ("ring_len", "bcast_latency", "padded")
_chunk = jax.jit(_chunk_impl, static_argnames=_CHUNK_STATIC)


def _has_write(tab: ScanTables) -> np.ndarray:
    """``(U,) bool`` whether a unit writes an accumulator at all (else its end is the LNZD's)."""
    live = (tab.c >= 0)[:, :, None]
    lanes = np.arange(tab.w.shape[2])[None, None, :] < tab.n_pes[None, :, None]
    return np.any((tab.w > NEG // 2) & live & lanes, axis=(0, 2))


def _unbounded(prep: _Prepared, unit: int, bcast_latency: int, kern: Any = None):
    """The unbounded-FIFO run of one unit in closed form (host NumPy, no scan; with ``kern``,
    :mod:`eie_model._host_kernels`, its compiled loop: same results, no ``(K, N)`` temporaries).

    With no FIFO bound ``e[k] = e[k-1] + c[k]`` (a prefix sum) and each PE's recurrence
    ``s[i,k] = max(e[k] + bl, s[i,k-1] + d[i,k-1])`` is a running maximum: with ``P[i,k] =
    sum_{j<k} d[i,j]``, ``s[i,k] = P[i,k] + max_{j<=k} (e[j] + bl - P[i,j])``. Padding events
    (``c < 0``) come last and change nothing, so only the live prefix is computed.

    Returns:
        ``(cycles, starvation, e, R, fmin)``: the run's counters and, per live event, the
        broadcast cycle, the latest column start ``max_i s[i,k]`` and the earliest time a real
        PE is free before it ``min_i f[i,k-1]`` (``NEG`` at ``k = 0``), int64 ``(K_live,)``.
    """
    tab = prep.tab
    n = int(tab.n_pes[unit])
    if kern is not None:
        return kern.unbounded_run(tab.d, tab.w, tab.c, tab.tail, tab.dsum, n, int(unit),
                                  int(bcast_latency), NEG)  # fmt: skip
    c = tab.c[:, unit]
    k_live = int(np.count_nonzero(c >= 0))
    c = c[:k_live]
    d = tab.d[:k_live, unit, :n]  # (K, N) int32, as the scan computes
    w = tab.w[:k_live, unit, :n]
    e = np.cumsum(c, dtype=np.int32)
    if not k_live:
        empty = np.zeros(0, np.int64)
        return int(tab.tail[unit]), 0, empty, empty, empty
    p = np.cumsum(d, axis=0, dtype=np.int32) - d  # exclusive prefix sums per PE
    s = np.maximum.accumulate((e + bcast_latency)[:, None] - p, axis=0) + p
    f = s + d
    r = s.max(1)
    fmin = np.concatenate([[NEG], f[:-1].min(1)]).astype(np.int64)
    wr = np.where(w > NEG // 2, s + w, NEG).max()
    cycles = int(wr) if wr > NEG // 2 else int(e[-1] + tab.tail[unit])
    s0 = c[0] + bcast_latency
    starv = int((f[-1] - s0 - tab.dsum[unit, :n]).sum(dtype=np.int64))
    return cycles, starv, e.astype(np.int64), r.astype(np.int64), fmin


def _fifo_reuse(
    prep: _Prepared,
    unit: int,
    depths: np.ndarray,
    bcast_latency: int,
    has_write: bool,
    kern: Any = None,
):
    """Which FIFO depths ``D >= 2`` of one unit keep the unbounded run's PE schedule, and their
    counters (host NumPy, no scan).

    A depth keeps it iff its broadcasts ``e[k] = max(e[k-1] + c[k], R[k - D + 1])`` (against the
    unbounded run's column starts ``R``) never exceed ``max(e_u[k], min_i f_u[i,k-1] - bl)``:
    then no PE starts a column later than without the bound. ``e`` is a running maximum,
    ``e[k] = C[k] + max(0, max_{j<=k} (R[j-D+1] - C[j]))`` with ``C`` the prefix sum of ``c``
    (the unbounded ``e``), so the stall counter telescopes to ``e[-1] - C[-1]``. ``e`` only
    falls as ``D`` grows (``R`` never decreases), so the depths that keep the schedule are all
    those from the smallest one that does, found by bisection.

    Args:
        prep: the layer's tables. unit: the unit. depths: ``(R,)`` sorted distinct depths >= 2.
        bcast_latency: cycles from broadcast to column start. has_write: whether the unit
        writes an accumulator (``prep.has_write``; else its end is the LNZD's). kern: see
        :func:`_unbounded`.

    Returns:
        ``(ok (R,) bool, cycles, stall, starvation (R,) int64)`` (counters valid where ``ok``).
    """
    depths = np.asarray(depths, np.int64)
    n_d = len(depths)
    cycles, starv, e_u, r_u, fmin = _unbounded(prep, unit, bcast_latency, kern)
    k_live = len(e_u)
    zero = np.zeros(n_d, np.int64)
    if not k_live:  # no broadcast: no FIFO, every depth runs the same
        return np.ones(n_d, bool), zero + cycles, zero, zero + starv
    ub = np.maximum(e_u, fmin - bcast_latency)

    def e_of(dd: int) -> np.ndarray:
        room = np.full(k_live, NEG, np.int64)
        room[dd - 1 :] = r_u[: max(k_live - dd + 1, 0)]
        return e_u + np.maximum(np.maximum.accumulate(room - e_u), 0)

    lo, hi = 0, n_d  # the first depth that keeps the schedule is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if np.all(e_of(int(depths[mid])) <= ub):
            hi = mid
        else:
            lo = mid + 1
    ok = np.arange(n_d) >= lo
    # stall of a depth: max(0, max_j R[j] - C[j + D - 1]), one row of a strided view per depth
    keep = depths[ok]
    stall = zero.copy()
    if len(keep):
        big = np.iinfo(np.int64).max // 4
        cpad = np.concatenate([e_u, np.full(int(keep.max()), big)])
        win = np.lib.stride_tricks.sliding_window_view(cpad, k_live)[keep - 1]  # (R', K)
        stall[ok] = np.maximum((r_u[None, :] - win).max(1), 0)
    cyc = np.where(has_write, cycles, e_u[-1] + stall + int(prep.tab.tail[unit]))
    return ok, np.where(ok, cyc, 0), stall, np.where(ok, starv, 0)


def _line_reads(prep: _Prepared, unit: int, epls: np.ndarray, kern: Any = None) -> np.ndarray:
    """SRAM line reads of one unit for each of ``epls`` ``(E,)`` entries a line, summed over
    PEs: ``(E, 2)`` int64, the kept-line count and the fresh-fetch-per-column count (host;
    :func:`eie_model.sim.counters.line_reads_from_walk`'s formula; with ``kern``,
    :func:`eie_model._host_kernels.line_reads`)."""
    base, last, prev = prep.walks[unit]
    epls = np.asarray(epls, np.int64)
    if kern is not None:
        return kern.line_reads(base, last, prev, epls)
    out = np.zeros((len(epls), 2), np.int64)
    for j, epl in enumerate(epls.tolist()):
        first = base // epl
        lines = last // epl - first + 1
        out[j] = np.sum(lines - (prev >= first * epl), dtype=np.int64), np.sum(lines)
    return out


def _workers() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads of the host stages (made once: starting threads costs a small sweep
    more than its scans)."""
    return concurrent.futures.ThreadPoolExecutor(_workers(), thread_name_prefix="eie-sweep")


#: lane-steps (PEs x events) below which the host scans run on the calling thread
_SPLIT_FROM = 1 << 21


def _host_scans(prep: _Prepared, runs: np.ndarray, static: EIEStatic, progress) -> np.ndarray:
    """The timing scans of ``runs`` ``(R, 2)`` = (unit, depth) on the host CPU: ``(R, 3)``
    cycles, stall, starvation (int64), from the compiled kernel
    :func:`eie_model._host_kernels.timing_scans` (the recurrence of
    :func:`eie_model.sim.timing.step`, one configuration at a time over its own PEs only).

    Runs go unit by unit (a unit's tables stay in cache over its depths), cut into pieces of
    equal work (PEs x events) that run on every core (the kernel releases the GIL).
    """
    kern = _kernels()
    tab = prep.tab
    out = np.zeros((len(runs), 3), np.int64)
    order = np.lexsort((runs[:, 1], runs[:, 0]))
    todo = np.ascontiguousarray(runs[order], np.int64)
    cost = np.cumsum(np.maximum(tab.n_pes[todo[:, 0]], 1).astype(np.int64))
    workers = _workers() if cost[-1] * tab.d.shape[0] >= _SPLIT_FROM else 1
    n_pieces = min(len(todo), 4 * workers if progress else workers)
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_pieces) / n_pieces)
    bounds = np.unique(np.concatenate([[0], cuts, [len(todo)]]))
    d, w, c = (np.ascontiguousarray(x) for x in (tab.d, tab.w, tab.c))
    tail, dsum, n_pes = (np.ascontiguousarray(x) for x in (tab.tail, tab.dsum, tab.n_pes))
    res = np.zeros((len(todo), 3), np.int64)

    def piece(i: int) -> None:
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        kern.timing_scans(d, w, c, tail, dsum, n_pes, todo[lo:hi], int(static.bcast_latency),
                          NEG, res[lo:hi])  # fmt: skip

    pieces = range(len(bounds) - 1)
    if workers > 1 and len(pieces) > 1:
        for done, _ in enumerate(_pool().map(piece, pieces)):
            if progress:
                progress(done + 1, len(pieces))
    else:
        for done, i in enumerate(pieces):
            piece(i)
            if progress:
                progress(done + 1, len(pieces))
    out[order] = res
    return out


def _engine(engine: str, devices: Sequence[Any] | None) -> str:
    """``"host"`` or ``"xla"``: where the timing scans run (see :func:`sweep`)."""
    if engine not in ("auto", "host", "xla"):
        raise ValueError(f"sweep: engine must be 'auto', 'host' or 'xla', got {engine!r}")
    if engine != "auto":
        return engine
    if devices is not None or jax.process_count() > 1:
        return "xla"
    return "host" if all(d.platform == "cpu" for d in jax.local_devices()) else "xla"


def _scan_runs(prep, runs, *, ring_len, static, devices, chunk, progress):
    """Bounded-FIFO timing scans of ``runs`` ``(R, 2)`` = (unit, depth): ``(R, 3)`` cycles,
    stall, starvation.

    Runs are grouped by lane bucket; each bucket's unit tables go to each device once, and its
    runs go in chunks of ``chunk`` configurations (the last one of a bucket rounded up to a
    power of two), so a sweep compiles one program per lane bucket and chunk size, whatever
    its number of configurations. Chunks go round-robin over ``devices``; with several
    processes each runs every ``process_count``-th chunk and the results are all-gathered.
    """
    tab = prep.tab
    padded = bool(np.any(tab.c < 0))
    out = np.zeros((len(runs), 3), np.int64)
    if not len(runs):
        return out
    lanes_of = np.array([_lanes(int(n)) for n in tab.n_pes])
    order = np.lexsort((runs[:, 1], runs[:, 0], lanes_of[runs[:, 0]]))
    jobs = []  # (lanes, units of the bucket, run indices)
    for ln in np.unique(lanes_of[runs[:, 0]]).tolist():
        sel = order[lanes_of[runs[order, 0]] == ln]
        units = np.unique(runs[sel, 0])
        for lo in range(0, len(sel), chunk):
            jobs.append((ln, units, sel[lo : lo + chunk]))
    nproc, me = jax.process_count(), jax.process_index()
    devs = list(devices) if devices is not None else jax.local_devices()
    placed = prep.placed  # kept with the layer's tables: a repeated sweep puts nothing
    pending = []
    for ji, (ln, units, idx) in enumerate(jobs):
        if ji % nproc != me:
            continue
        dev = devs[(ji // nproc) % len(devs)]
        where = (ln, dev, units.tobytes())
        if where not in placed:
            if len(placed) >= 64:  # many different unit sets (a long session): start over
                placed.clear()
            upad = _pad(units, _bucket(len(units)))
            placed[where] = jax.device_put(
                (tab.d[:, upad, :ln], tab.w[:, upad, :ln], tab.c[:, upad], tab.tail[upad],
                 tab.dsum[upad, :ln], tab.n_pes[upad]), dev)  # fmt: skip
        size = min(chunk, max(_bucket(len(idx)), 8))
        local = _pad(np.searchsorted(units, runs[idx, 0]).astype(np.int32), size)
        dep = _pad(runs[idx, 1].astype(np.int32), size)
        res = _chunk(*placed[where], *jax.device_put((local, dep), dev), ring_len=ring_len,
                     bcast_latency=static.bcast_latency, padded=padded)  # fmt: skip
        pending.append((idx, res))
    for done, (idx, res) in enumerate(pending):
        cyc, stall, starv = (np.asarray(x) for x in res)
        n = len(idx)
        out[idx] = np.stack([cyc[:n], stall[:n], starv[:n]], 1)
        if progress:
            progress(done + 1, len(pending))
    if nproc > 1:  # every host gets every chunk's result (zeros where another host ran it)
        from jax.experimental import multihost_utils

        out = np.asarray(multihost_utils.process_allgather(out)).sum(0)
    return out


def sweep(
    static: EIEStatic,
    params: EIEParams,
    layer: Layer,
    *,
    devices: Sequence[Any] | None = None,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | bool = False,
    engine: str = "auto",
) -> Counters:
    """Every counter of every design point of ``params`` on ``layer`` (= ``vmap(simulate)``).

    Args:
        static: :class:`eie_model.types.EIEStatic` (``max_pes`` / ``max_fifo`` bound the
            params; :meth:`EIEStatic.covering` fits them).
        params: a batch of :class:`eie_model.types.EIEParams` (any batch shape; e.g.
            :meth:`EIEParams.grid`).
        layer: a :class:`eie_model.types.Layer`.
        devices: keyword-only, local devices to spread the timing chunks over (default: all;
            giving them selects the ``"xla"`` engine).
        chunk: keyword-only, configurations per timing chunk of the ``"xla"`` engine (one
            compiled shape per lane bucket whatever the number of configurations).
        progress: ``True`` for a tqdm bar, or a callable ``(done, total)`` called per chunk.
        engine: keyword-only, where the timing scans run: ``"xla"`` (jitted ``lax.scan``
            chunks on ``devices``, across hosts after ``jax.distributed.initialize()``),
            ``"host"`` (a compiled CPU kernel on every core of this process, one configuration
            at a time over its own PEs: several times faster on CPU), or ``"auto"`` (default:
            ``"host"`` when every local device is a CPU, one process and no ``devices``,
            else ``"xla"``). Both give the same counters.

    Returns:
        :class:`eie_model.types.Counters` batched like ``params`` (``busy`` ``(..., max_pes)``),
        host NumPy arrays; ``.table()`` gives the columns (energy included).

    Example:
        >>> from eie_model.types import Layer
        >>> layer = Layer(np.ones((4, 4), np.uint8), np.arange(16.0), np.ones(4, np.float32))
        >>> p = EIEParams(n_pes=np.array([1, 2, 4]), fifo_depth=2)
        >>> c = sweep(EIEStatic(max_pes=4, max_fifo=2), p, layer)
        >>> c.useful_macs.tolist(), c.pointer_reads.tolist()
        ([16, 16, 16], [4, 8, 16])
    """
    if not isinstance(static, EIEStatic):
        raise TypeError(f"sweep: static must be an EIEStatic, got {type(static).__name__}")
    if not isinstance(params, EIEParams):
        raise TypeError(
            f"sweep: params must be an EIEParams batch (EIEParams.grid(...)), got "
            f"{type(params).__name__}"
        )
    if not isinstance(layer, (Layer, Events)):
        raise TypeError(
            f"sweep: layer must be an eie_model.Layer (see Layer.load), got {type(layer).__name__}"
        )
    engine = _engine(engine, devices)
    layer_key = _checked_key(static, layer) if isinstance(layer, Layer) else None
    shape = params.batch_shape
    # params were checked when made: flatten them as a pytree (no second validation pass)
    flat = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), shape).reshape(-1), params)
    flat.check(static)
    n_cfg = len(flat.n_pes)
    if n_cfg == 0:
        raise ValueError("sweep: params hold no configuration")
    keys = np.stack([flat.n_pes, flat.index_bits, flat.acc_regs], 1).astype(np.int64)
    pairs, pair_of = _unique_rows(keys[:, [0, 2, 1]])
    pairs, pair_of = pairs[:, [0, 2, 1]], pair_of.ravel()
    # SpMat capacity: pairs of several work units (acc_regs passes, activation batches) are
    # checked first, by their own sort, before their tables could take much memory; one-unit
    # pairs from the slice tables the work tables are built from (no second pass)
    m_rows, n_in = layer.shape if isinstance(layer, Layer) else (layer.m, layer.n)
    multi = (pairs[:, 2] > 0) & (m_rows > pairs[:, 0] * pairs[:, 2])
    # acc_regs that hold every output row run one pass, exactly as unlimited ones: the work
    # tables of such a pair are those of acc_regs = 0 (the one-pass, compiled path)
    work_pairs = pairs.copy()
    work_pairs[~multi, 2] = 0
    if static.act_regs:
        multi |= -(-n_in // pairs[:, 0]) > static.act_regs
    if multi.any():
        sel = pairs[multi]
        pts = EIEParams(n_pes=sel[:, 0], index_bits=sel[:, 1], acc_regs=sel[:, 2])
        check_capacity(static, pts, layer, layer_key=layer_key)  # memoized per layer and point
    prep = _prepared(layer, static, work_pairs, layer_key)
    name = layer.name if isinstance(layer, Layer) else ""
    for i in np.flatnonzero(~multi).tolist():
        n_i, r_i, a_i = (int(x) for x in pairs[i])
        pe = int(np.argmax(prep.stored[i, :n_i]))
        _refuse_if_over(static, name, n_i, r_i, a_i, pe, int(prep.stored[i, pe]))
    ev, tab = prep.events, prep.tab
    k_ev = tab.d.shape[0]
    depth = flat.fifo_depth.astype(np.int64)
    epl = (flat.sram_width // (static.code_bits + flat.index_bits)).astype(np.int64)

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(desc="sweep", unit="chunk")

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

    # (pair, D) -> units (passes): the timing runs every configuration needs
    first = np.cumsum(prep.passes) - prep.passes
    trips, trip_of = _unique_rows(np.stack([pair_of, depth], 1))
    trip_of = trip_of.ravel()
    cnt = prep.passes[trips[:, 0]].astype(np.int64)
    trip_owner = np.repeat(np.arange(len(trips)), cnt)
    offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    unit_runs = np.stack([first[trips[trip_owner, 0]] + offs, trips[trip_owner, 1]], 1)
    runs, run_of = _unique_rows(unit_runs)
    run_of = run_of.ravel()

    # the compiled host loops wherever this sweep loads them anyway (work tables of several
    # PE counts, or host scans); a single point on a device keeps NumPy (no numba start-up)
    kern = _kernels() if engine == "host" or len(np.unique(pairs[:, 0])) > 1 else None

    # FIFO reuse: the unbounded-FIFO run of each unit in closed form; a depth D >= 2 whose
    # broadcasts never hold back a PE keeps that run's PE schedule, and its stall counter comes
    # from the broadcast recurrence alone (no PE state, no scan): see _fifo_reuse
    res = np.zeros((len(runs), 3), np.int64)
    done = np.zeros(len(runs), bool)
    if k_ev:
        deep = np.flatnonzero(runs[:, 1] >= 2)  # runs are sorted by (unit, depth)
        if len(deep):
            has_write = prep.has_write
            units, starts = np.unique(runs[deep, 0], return_index=True)
            for u, sel in zip(units.tolist(), np.split(deep, starts[1:]), strict=True):
                ok, cyc_u, stall_u, starv_u = _fifo_reuse(
                    prep, u, runs[sel, 1], static.bcast_latency, bool(has_write[u]), kern
                )
                res[sel] = np.stack([cyc_u, stall_u, starv_u], 1)
                done[sel] = ok
    todo = np.flatnonzero(~done)
    if len(todo) and engine == "host":
        res[todo] = _host_scans(prep, runs[todo], static, progress)
    elif len(todo):
        ring = _bucket(max(min(int(runs[todo, 1].max()), k_ev + 1), 2))
        kw = dict(static=static, devices=devices, chunk=int(chunk), progress=progress)
        res[todo] = _scan_runs(prep, runs[todo], ring_len=ring, **kw)
    if bar is not None:
        bar.close()
    per_trip = _sum_by(trip_owner, res[run_of], len(trips))
    cyc, stall, starv = (per_trip[trip_of, i] for i in range(3))

    # SRAM line reads per (pair, entries per line), summed over the pair's units
    lines, line_of = _unique_rows(np.stack([pair_of, epl], 1))
    line_of = line_of.ravel()
    lc = prep.passes[lines[:, 0]].astype(np.int64)
    l_owner = np.repeat(np.arange(len(lines)), lc)
    l_offs = np.arange(int(lc.sum())) - np.repeat(np.cumsum(lc) - lc, lc)
    lu = np.stack([first[lines[l_owner, 0]] + l_offs, lines[l_owner, 1]], 1)
    reads = np.zeros(len(lu), np.int64)
    fresh = np.zeros(len(lu), np.int64)
    l_units = np.unique(lu[:, 0])
    order = np.argsort(lu[:, 0], kind="stable")
    for u, sel in zip(l_units.tolist(), np.split(order, np.searchsorted(lu[order, 0], l_units[1:])),
                      strict=True):  # fmt: skip
        reads[sel], fresh[sel] = _line_reads(prep, u, lu[sel, 1], kern).T
    reads = _sum_by(l_owner, reads, len(lines))[line_of]
    fresh = _sum_by(l_owner, fresh, len(lines))[line_of]

    k_live = int(np.count_nonzero(np.asarray(ev.ev_col) <= ev.n))
    busy = np.zeros((n_cfg, static.max_pes), np.int64)
    b = prep.busy[pair_of]
    busy[:, : min(b.shape[1], static.max_pes)] = b[:, : static.max_pes]
    out = Counters(
        static,
        flat,
        cycles=cyc,
        useful_macs=prep.useful[pair_of],
        fillers=prep.fillers[pair_of],
        pointer_reads=flat.n_pes.astype(np.int64) * k_live * prep.row_passes[pair_of],
        spm_line_reads=reads,
        stall_cycles=stall,
        starvation_cycles=starv,
        busy=busy,
        spm_line_reads_fresh=fresh,
    )
    return jax.tree.map(lambda x: x.reshape(tuple(shape) + x.shape[1:]), out)


def _columns(table: Any) -> Mapping[str, np.ndarray]:
    return table.table() if isinstance(table, Counters) else table


def to_records(table: Counters | Mapping[str, np.ndarray]) -> np.ndarray:
    """The table (or ``Counters.table()``) as a NumPy structured array (one record per run).

    Example:
        >>> to_records({"a": np.array([1, 2]), "b": np.array([0.5, 1.0])})["b"].tolist()
        [0.5, 1.0]
    """
    table = _columns(table)
    names = list(table)
    return np.rec.fromarrays([np.asarray(table[k]) for k in names], names=names)


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    # imported here: importing the jaxcomp package pulls in flax and orbax, seconds that a
    # sweep or a single point does not need
    from jaxcomp.atomic import atomic_open

    with atomic_open(path, "w", newline="") as f:
        write(f)


def _py(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return v


def write_csv(table: Counters | Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write the table (or ``Counters.table()``) as CSV (header = column names), atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> write_csv({"cycles": np.array([3, 4])}, p)
        >>> p.read_text().split()
        ['cycles', '3', '4']
    """
    table = _columns(table)
    names = list(table)

    def w(f):
        wr = csv.writer(f)
        wr.writerow(names)
        for row in zip(*(np.asarray(table[k]).tolist() for k in names), strict=True):
            wr.writerow(row)

    _atomic_write(path, w)


def write_json(table: Counters | Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write the table (or ``Counters.table()``) as a JSON list of row objects, atomically.

    Example:
        >>> import tempfile, pathlib, json
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.json"
        >>> write_json({"cycles": np.array([3])}, p)
        >>> json.loads(p.read_text())
        [{'cycles': 3}]
    """
    table = _columns(table)
    names = list(table)
    rows = [
        dict(zip(names, r, strict=True))
        for r in zip(*(np.asarray(table[k]).tolist() for k in names), strict=True)
    ]
    _atomic_write(path, lambda f: json.dump(rows, f, indent=1))


def pareto_front(
    table: Counters | Mapping[str, np.ndarray],
    objectives: Sequence[str] = ("latency_us", "energy_j"),
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
    table = _columns(table)
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
