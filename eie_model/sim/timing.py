"""Stage 3 of the fast model: the event recurrence, a ``lax.scan`` over a named PE state.

One scan step per broadcast event ``k`` (``d[i,k] = max(1, entries)``, 0 on padding PEs)::

    ready[k] = e[k-1] + c[k]                        (LNZD: latch / one per cycle rules)
    e[k]     = max(ready[k], R[k - max(D-1, 1)])    (slot room; R = -inf before event 0)
    s[i,k]   = max(e[k] + 2, s[i,k-1] + d[i,k-1])   (PE i starts column k)
    R[k]     = max_i s[i,k]          if D >= 2      (the slot frees when the column starts)
             = max_i s[i,k] + d[i,k] if D == 1      (no queue: every PE must be idle)

Entry ``m`` (code != 0) of a column is written at ``s + m + 5``; the layer ends one cycle after
the last write (with no write at all: when the LNZD would latch the group after the last).

The state of one configuration is a :class:`PEState` (``init`` / ``step`` / ``run`` =
``lax.scan(step, ...)``). :func:`run` also returns, per event, ``e[k]`` and ``max_i s[i,k]``:
from one run with an unbounded FIFO, the sweep finds which FIFO depths keep that run's PE
schedule (:func:`eie_model.sweep._replay`) and skips their scans.

Example:
    >>> import numpy as np
    >>> from eie_model.sim.events import layer_events
    >>> from eie_model.sim.work import pe_work
    >>> from eie_model.types import Layer
    >>> ev = layer_events(Layer(np.ones((2, 2), np.uint8), np.arange(16.0), np.ones(2)))
    >>> t = timing(pe_work(ev, 2, 4, max_pes=2), 2, max_fifo=2)
    >>> int(t.cycles), int(t.stall_cycles)   # e = 1, 3 (slot room); s = 3, 5; last write 10
    (11, 1)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from eie_model.sim.events import NEG
from eie_model.sim.work import PEWork

__all__ = [
    "PEState",
    "ScanTables",
    "Timing",
    "finish",
    "init",
    "run",
    "scan_tables",
    "step",
    "timing",
]


class PEState(NamedTuple):
    """The scan carry of one configuration (leading PE axis; a batch adds a leading axis).

    Attributes:
        free: ``(P,) int32`` cycle each PE is free again (``s + d`` of its last column;
            ``NEG`` before its first).
        last_write: ``(P,) int32`` latest accumulator write cycle of each PE (``NEG``: none).
        ring: ``(L,) int32`` slot-room history: ``R[j]`` at ``j % L`` (``L`` > the lookback).
        bcast: ``() int32`` cycle of the last broadcast ``e[k-1]`` (0 before the first).
        stall: ``() int32`` broadcast stall cycles so far, ``sum (e[k] - ready[k])``.
    """

    free: jax.Array
    last_write: jax.Array
    ring: jax.Array
    bcast: jax.Array
    stall: jax.Array


class ScanTables(NamedTuple):
    """Event-major tables of ``U`` work units (the scan's read-only input).

    Attributes:
        d: ``(K, U, P) int32`` cycles of each slice, ``max(1, entries)`` (0 on padding PEs and
            padding events).
        w: ``(K, U, P) int32`` ``entries + write_latency``, ``NEG`` for empty slices.
        c: ``(K, U) int32`` LNZD ready gaps (``-1``: a padding event).
        busy: ``(U, P) int32`` entries per PE. dsum: ``(U, P)`` ``sum_k d``.
        tail: ``(U,) int32`` tail gaps. n_pes: ``(U,) int32``.
    """

    d: jax.Array
    w: jax.Array
    c: jax.Array
    busy: jax.Array
    dsum: jax.Array
    tail: jax.Array
    n_pes: jax.Array


class Timing(NamedTuple):
    """What the scan decides for one configuration (``() int32`` each).

    Attributes:
        cycles: cycles of the layer.
        stall_cycles: broadcast stall cycles.
        starvation_cycles: summed over PEs (``f[i] - s[i,0] - sum_k d[i,k]``).
        last_broadcast: cycle of the last broadcast (``0`` when none).
    """

    cycles: jax.Array
    stall_cycles: jax.Array
    starvation_cycles: jax.Array
    last_broadcast: jax.Array


def scan_tables(work: PEWork, *, write_latency: int = 5) -> ScanTables:
    """Turn a :class:`PEWork` (or one batched over a leading unit axis) into scan tables.

    Args:
        work: :func:`eie_model.sim.work.pe_work` result, unbatched or with a leading axis ``U``.
        write_latency: keyword-only static pipeline depth to the accumulator write (5).

    Returns:
        :class:`ScanTables` with a unit axis (``U = 1`` for an unbatched ``work``).

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.ones((2, 2), np.uint8), np.arange(16.0), np.ones(2)))
        >>> scan_tables(pe_work(ev, 2, 4, max_pes=2)).d.shape
        (2, 1, 2)
    """
    if work.entries.ndim == 2:
        work = jax.tree.map(lambda x: x[None], work)
    ent = work.entries  # (U, P, K)
    valid = jnp.arange(ent.shape[1])[None, :, None] < work.n_pes[:, None, None]
    valid = valid & (work.ready_gap >= 0)[:, None, :]  # padding events take no time
    d = jnp.where(valid, jnp.maximum(ent, 1), 0)
    w = jnp.where(ent > 0, ent + write_latency, NEG)
    return ScanTables(
        d=jnp.transpose(d, (2, 0, 1)).astype(jnp.int32),
        w=jnp.transpose(w, (2, 0, 1)).astype(jnp.int32),
        c=work.ready_gap.T.astype(jnp.int32),
        busy=ent.sum(-1).astype(jnp.int32),
        dsum=d.sum(-1).astype(jnp.int32),
        tail=work.tail_gap.astype(jnp.int32),
        n_pes=work.n_pes.astype(jnp.int32),
    )


def init(n_lanes: int, ring_len: int) -> PEState:
    """The state before the first event: every PE free since ``NEG``, an empty history.

    Example:
        >>> init(2, 4).free.shape, int(init(2, 4).bcast)
        ((2,), 0)
    """
    return PEState(
        free=jnp.full(n_lanes, NEG, jnp.int32),
        last_write=jnp.full(n_lanes, NEG, jnp.int32),
        ring=jnp.full(max(int(ring_len), 1), NEG, jnp.int32),
        bcast=jnp.int32(0),
        stall=jnp.int32(0),
    )


def step(
    state: PEState,
    event: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    depth: Any,
    *,
    bounded: Any = True,
    bcast_latency: int = 2,
    padded: bool = True,
) -> tuple[PEState, tuple[jax.Array, jax.Array]]:
    """One broadcast event: ``(d_k (P,), w_k (P,), c_k (), k ())`` -> new state, ``(e, max s)``.

    Args:
        state: the :class:`PEState` before event ``k``.
        event: the event's slice durations, write offsets, LNZD gap and index.
        depth: ``() int32`` FIFO depth D (traced OK).
        bounded: ``() bool`` whether the FIFO bounds the broadcast (``False``: unbounded FIFO).
        bcast_latency: keyword-only static cycles from broadcast to column start (2).
        padded: keyword-only static; the tables may hold padding events (``c_k < 0``), which
            leave the state unchanged (``False`` skips those selects). Padding events come
            last, so what they write in the history is never read.

    Returns:
        ``(state, (e[k], max_i s[i,k]))``.
    """
    d_k, w_k, c_k, k = event
    ring_len = state.ring.shape[-1]
    depth = jnp.asarray(depth, jnp.int32)
    lookback = jnp.maximum(depth - 1, 1)
    j = k - lookback
    ready = state.bcast + c_k
    room = jnp.where(bounded & (j >= 0), state.ring[j % ring_len], NEG)
    e = jnp.maximum(ready, room)
    s = jnp.maximum(e + bcast_latency, state.free)
    f = s + d_k
    s_max = jnp.max(s)
    r = jnp.where(depth == 1, jnp.max(f), s_max)
    ring = state.ring.at[k % ring_len].set(r)
    last = jnp.maximum(state.last_write, s + w_k)
    stall = state.stall + (e - ready)
    if padded:
        live = c_k >= 0
        f = jnp.where(live, f, state.free)
        last = jnp.where(live, last, state.last_write)
        e = jnp.where(live, e, state.bcast)
        stall = jnp.where(live, stall, state.stall)
        s_max = jnp.where(live, s_max, jnp.iinfo(jnp.int32).max)
    return PEState(f, last, ring, e, stall), (e, s_max)


def run(
    tab: ScanTables,
    unit: Any,
    depth: Any,
    *,
    ring_len: int,
    n_lanes: int | None = None,
    bounded: Any = True,
    bcast_latency: int = 2,
    padded: bool = True,
    unit_tables: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[Timing, tuple[jax.Array, jax.Array]]:
    """``lax.scan(step)`` over every event for one configuration: work unit ``unit``, depth D.

    Args:
        tab: :class:`ScanTables` (all units).
        unit: ``() int32`` the unit (row of the tables) this configuration runs.
        depth: ``() int32`` FIFO depth D.
        ring_len: keyword-only static history length; must exceed ``D - 1`` for every ``D``
            that can bind (``D - 1 < K``).
        n_lanes: keyword-only static PE lanes to simulate (``<= P``; default ``P``): the
            configurations' ``n_pes`` must not exceed it.
        bounded: ``() bool``, ``False`` for an unbounded FIFO.
        bcast_latency: keyword-only static (2).
        padded: keyword-only static, see :func:`step`.
        unit_tables: keyword-only ``(d, w)`` ``(K, n_lanes)`` of the unit, when the caller has
            them already (a batch of configurations of one unit reads them without a gather).

    Returns:
        ``(Timing, (e (K,), max_i s (K,)))`` (``int32``; the per-event pair is ``INT32_MAX``
        on padding events).
    """
    k_ev, _, p = tab.d.shape
    lanes = p if n_lanes is None else int(n_lanes)
    if unit_tables is None:
        d, w = tab.d[:, unit, :lanes], tab.w[:, unit, :lanes]
    else:
        d, w = unit_tables
    ks = jnp.arange(k_ev, dtype=jnp.int32)

    def body(state, x):
        return step(state, x, depth, bounded=bounded, bcast_latency=bcast_latency, padded=padded)

    state, trace = lax.scan(body, init(lanes, ring_len), (d, w, tab.c[:, unit], ks))
    t = finish(tab, unit, state, bcast_latency=bcast_latency)
    return t, trace


def finish(tab: ScanTables, unit: Any, state: PEState, *, bcast_latency: int = 2) -> Timing:
    """The :class:`Timing` of a configuration from its final :class:`PEState`.

    ``cycles`` = last accumulator write + 1 (with no write: the LNZD's end, last broadcast +
    the unit's tail gap); starvation telescopes to ``f[i] - s[i,0] - sum_k d[i,k]`` over the
    real PEs (``s[i,0] = c[0] + bcast_latency``: the first broadcast never stalls).

    Args:
        tab: the :class:`ScanTables` the state ran over. unit: ``() int32`` its row.
        state: the state after the last event (``free`` over the first ``n_lanes`` PEs).
        bcast_latency: keyword-only static (2).

    Returns:
        :class:`Timing`.
    """
    lanes = state.free.shape[-1]
    k_ev = tab.d.shape[0]
    valid = jnp.arange(lanes) < tab.n_pes[unit]
    last = jnp.max(state.last_write)
    cycles = jnp.where(last > NEG // 2, last, state.bcast + tab.tail[unit])  # last write + 1
    if k_ev:
        c0 = tab.c[0, unit]
        s0 = c0 + bcast_latency
        dsum = tab.dsum[unit, :lanes]
        starv = jnp.where(valid & (c0 >= 0), state.free - s0 - dsum, 0).sum()
    else:
        starv = jnp.int32(0)
    return Timing(
        cycles=cycles.astype(jnp.int32),
        stall_cycles=state.stall.astype(jnp.int32),
        starvation_cycles=starv.astype(jnp.int32),
        last_broadcast=state.bcast,
    )


def timing(
    work: PEWork,
    fifo_depth: Any,
    *,
    max_fifo: int,
    bcast_latency: int = 2,
    write_latency: int = 5,
) -> Timing:
    """The timing of one configuration from its work tables (jittable, vmappable).

    Args:
        work: :func:`eie_model.sim.work.pe_work` result.
        fifo_depth: ``() int`` D >= 1 (traced OK), at most ``max_fifo``.
        max_fifo: keyword-only static bound of D (ring length of the slot-room history).
        bcast_latency: cycles from broadcast to earliest column start (2).
        write_latency: cycles from an entry's read to its accumulator write (5).

    Returns:
        :class:`Timing`.

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.ones((2, 2), np.uint8), np.arange(16.0), np.ones(2)))
        >>> int(timing(pe_work(ev, 2, 4, max_pes=2), 1, max_fifo=1).cycles)  # D = 1: e = 1, 4
        12
    """
    tab = scan_tables(work, write_latency=write_latency)
    t, _ = run(tab, 0, fifo_depth, ring_len=max(int(max_fifo), 2), bcast_latency=bcast_latency)
    return t
