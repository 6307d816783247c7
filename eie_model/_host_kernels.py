"""Compiled (numba) host kernels of the sweep: work tables, timing scans, unbounded runs and
SRAM line reads, each one loop over plain arrays.

Work tables: :func:`eie_model.sweep._slice_entries` sorts the non-zeros by (column, PE, local
row) for each PE count N. The same tables come from one walk in CSC order (``ev.rows`` is
sorted within each column): rows of one PE arrive in increasing local row, so the zero run
before a non-zero is its local row minus the last local row seen for its PE in this column,
minus one (its local row when it is the PE's first in the column). A length-N array of last
rows replaces the sort.

Timing: :func:`timing_scans` is :func:`eie_model.sim.timing.step`'s recurrence, one
configuration at a time over its own PEs (the ``"host"`` engine of
:func:`eie_model.sweep.sweep`); :func:`unbounded_run` is its unbounded-FIFO run with the
per-event trace the FIFO reuse needs.

The kernels release the GIL (``nogil``): the sweep runs them on every core with threads. They
are compiled once per machine into numba's cache (beside this file, else the user's cache
folder; no cache when neither is writable). A fresh process pays numba's start-up (import and
its first call, about 0.7 s on the 2-core CI machine) once. ``tests/test_eie_sweep.py`` checks
every kernel against the NumPy path or the jitted scan.
"""

from __future__ import annotations

import numba
import numpy as np


def _jit(fn):
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # no writable cache folder: compile in each process instead
        return numba.njit(nogil=True)(fn)


@_jit
def slice_entries(rows, cols, m, n, n_pes, bits):  # pragma: no cover - compiled
    """``(count (n + 2, N), entries (len(bits), n + 2, N))`` int64, as ``_slice_entries``.

    One 64-bit word per slice and width: the width's entries in the low 32 bits, and for the
    first width the non-zero count in the high 32 bits (one read-modify-write per non-zero).
    """
    where = np.empty(m, np.int64)  # row -> PE | local row << 32
    for i in range(m):
        where[i] = (i % n_pes) | ((i // n_pes) << 32)
    nb = len(bits)
    size = (n + 2) * n_pes
    acc = np.zeros(nb * size, np.int64)
    last = np.full(n_pes, -1, np.int64)  # the PE's last local row in this column
    cur = -1
    one = (1 << 32) + 1
    for z in range(len(rows)):
        c = cols[z]
        if c != cur:  # a new column: no row seen yet
            last[:] = -1
            cur = c
        w = where[rows[z]]
        p = w & 0xFFFFFFFF
        lr = w >> 32
        run = lr - last[p] - 1
        last[p] = lr
        s = c * n_pes + p
        acc[s] += one + (run >> bits[0])
        for b in range(1, nb):
            acc[b * size + s] += 1 + (run >> bits[b])
    count = (acc[:size] >> 32).reshape(n + 2, n_pes)
    ent = (acc & 0xFFFFFFFF).reshape(nb, n + 2, n_pes)
    return count, ent


#: configurations of one unit that :func:`timing_scans` steps together (independent recurrences
#: interleaved: the CPU overlaps their dependency chains, and they share each event's loads)
GROUP = 4


@_jit
def timing_scans(d, w, c, tail, dsum, n_pes, runs, bcast_latency, neg, out):  # pragma: no cover
    """Bounded-FIFO timing of ``runs`` ``(R, 2)`` = (unit, depth) into ``out`` ``(R, 3)`` int64
    (cycles, stall, starvation): :func:`eie_model.sim.timing.run` per configuration.

    ``d``/``w`` ``(K, U, P)`` and ``c`` ``(K, U)`` are the :class:`ScanTables` arrays (int32).
    Consecutive runs of one unit go :data:`GROUP` at a time. Padding PEs (``>= n_pes``) and
    padding events (``c < 0``, last) change nothing, so the loops stop at them. The slot-room
    history is kept whole (``hist[k]``), so no ring index is needed. State is int32, as in
    the scan (cycle counts stay below ``2**29``, see ``eie_model.sim.events.NEG``).
    """
    k_ev = d.shape[0]
    lanes = d.shape[2]
    free = np.empty((GROUP, lanes), np.int32)
    last = np.empty((GROUP, lanes), np.int32)
    hist = np.empty((GROUP, max(k_ev, 1)), np.int32)
    bcast = np.zeros(GROUP, np.int32)
    stall = np.zeros(GROUP, np.int64)
    look = np.zeros(GROUP, np.int64)
    one = np.zeros(GROUP, np.bool_)
    neg32 = np.int32(neg)
    bl = np.int32(bcast_latency)
    n_runs = runs.shape[0]
    r0 = 0
    while r0 < n_runs:
        u = runs[r0, 0]
        g = 1
        while g < GROUP and r0 + g < n_runs and runs[r0 + g, 0] == u:
            g += 1
        n = n_pes[u]
        for j in range(g):
            depth = runs[r0 + j, 1]
            look[j] = max(depth - 1, 1)
            one[j] = depth == 1
            free[j, :n] = neg32
            last[j, :n] = neg32
            bcast[j] = 0
            stall[j] = 0
        for k in range(k_ev):
            ck = c[k, u]
            if ck < 0:
                break
            dk = d[k, u]
            wk = w[k, u]
            for j in range(g):
                ready = bcast[j] + ck
                e = ready
                if k >= look[j]:
                    e = max(e, hist[j, k - look[j]])
                start = np.int32(e + bl)
                fr = free[j]
                la = last[j]
                s_max = neg32
                f_max = neg32
                for i in range(n):
                    s = max(fr[i], start)
                    f = s + dk[i]
                    fr[i] = f
                    s_max = max(s_max, s)
                    f_max = max(f_max, f)
                    la[i] = max(la[i], s + wk[i])
                hist[j, k] = f_max if one[j] else s_max
                stall[j] += e - ready
                bcast[j] = e
        for j in range(g):
            top = neg32
            for i in range(n):
                top = max(top, last[j, i])
            out[r0 + j, 0] = top if top > neg // 2 else bcast[j] + tail[u]
            out[r0 + j, 1] = stall[j]
            starv = 0
            if k_ev and c[0, u] >= 0:
                s0 = c[0, u] + bcast_latency
                for i in range(n):
                    starv += free[j, i] - s0 - dsum[u, i]
            out[r0 + j, 2] = starv
        r0 += g


@_jit
def line_reads(base, last, prev, epls):  # pragma: no cover
    """SRAM line reads of one unit's walk for each of ``epls`` ``(E,)`` entries per line:
    ``(E, 2)`` int64, the kept-line count and the fresh-fetch-per-column count.

    ``base``/``last``/``prev`` ``(S,)`` int32 are the non-empty slices' first and last address
    and the last address walked before each (``eie_model.sweep._Prepared.walks``); a slice
    reads lines ``base // epl .. last // epl``, less the first when ``prev`` already read it
    (kept count) or always all of them (fresh count). Division goes through a float64
    reciprocal with an exact fix-up (addresses < ``2**31``).
    """
    out = np.zeros((len(epls), 2), np.int64)
    for j in range(len(epls)):
        epl = epls[j]
        inv = 1.0 / epl
        fresh = 0
        kept = 0
        for i in range(len(base)):
            b = base[i]
            q0 = np.int64(b * inv)
            q0 += (q0 + 1) * epl <= b
            q0 -= q0 * epl > b
            x = last[i]
            q1 = np.int64(x * inv)
            q1 += (q1 + 1) * epl <= x
            q1 -= q1 * epl > x
            fresh += q1 - q0 + 1
            kept += prev[i] >= q0 * epl
        out[j, 0] = fresh - kept
        out[j, 1] = fresh
    return out


@_jit
def unbounded_run(d, w, c, tail, dsum, n, u, bcast_latency, neg):  # pragma: no cover
    """The unbounded-FIFO run of unit ``u`` (``n`` PEs), as ``eie_model.sweep._unbounded``.

    Returns ``(cycles, starvation, e, r, fmin)``: per live event the broadcast cycle, the latest
    column start and the earliest time a PE is free before it (``neg`` at event 0), int64.
    """
    k_ev = d.shape[0]
    k_live = 0
    while k_live < k_ev and c[k_live, u] >= 0:
        k_live += 1
    e_out = np.empty(k_live, np.int64)
    r_out = np.empty(k_live, np.int64)
    fmin = np.empty(k_live, np.int64)
    free = np.full(n, neg, np.int64)
    last = np.full(n, neg, np.int64)
    bcast = 0
    for k in range(k_live):
        e = bcast + c[k, u]
        start = e + bcast_latency
        s_max = neg
        f_min = neg if k == 0 else free[0]
        for i in range(n):
            fi = free[i]
            if k and fi < f_min:
                f_min = fi
            s = fi if fi > start else start
            free[i] = s + d[k, u, i]
            if s > s_max:
                s_max = s
            wr = s + w[k, u, i]
            if wr > last[i]:
                last[i] = wr
        e_out[k] = e
        r_out[k] = s_max
        fmin[k] = f_min
        bcast = e
    top = neg
    for i in range(n):
        if last[i] > top:
            top = last[i]
    if not k_live:
        return tail[u], 0, e_out, r_out, fmin
    cycles = top if top > neg // 2 else bcast + tail[u]
    s0 = c[0, u] + bcast_latency
    starv = 0
    for i in range(n):
        starv += free[i] - s0 - dsum[u, i]
    return cycles, starv, e_out, r_out, fmin


@_jit
def unit_tables(
    ev_col, col_bucket, n, count, ent, c_u, write_latency, neg, d_u, w_u
):  # pragma: no cover
    """One unit's scan tables and walk from its slice tables, as the NumPy path's
    ``eie_model.sweep._event_tables`` and ``_prepare``'s ``finish`` give them, in one pass.

    Writes ``d_u`` / ``w_u`` ``(K, >= N)`` int32 (the unit's rows of :class:`ScanTables`' ``d`` and
    ``w``; only the first N columns) and returns ``(busy (N,), dsum (N,), useful, walk_base,
    walk_last, walk_prev)``: entries and cycles per PE, the non-zeros, and per non-empty slice
    (event-major) its first and last CSC address and the last address walked before it (-1).
    """
    k_ev = len(ev_col)
    n_pes = ent.shape[1]
    before = np.zeros(n_pes, np.int64)  # entries of columns 0..j - 1, per PE
    walked = np.full(n_pes, -1, np.int64)  # last address walked so far, per PE
    busy = np.zeros(n_pes, np.int64)
    dsum = np.zeros(n_pes, np.int64)
    useful = 0
    wb = np.empty(k_ev * n_pes, np.int32)
    wl = np.empty(k_ev * n_pes, np.int32)
    wp = np.empty(k_ev * n_pes, np.int32)
    s = 0
    j = 0
    for k in range(k_ev):
        while j <= n and col_bucket[j] <= k:
            for p in range(n_pes):
                before[p] += ent[j, p]
            j += 1
        col = ev_col[k]
        live = col <= n
        timed = c_u[k] >= 0
        for p in range(n_pes):
            e = ent[col, p] if live else 0
            if live:
                useful += count[col, p]
            d = (e if e > 1 else 1) if timed else 0
            d_u[k, p] = d
            dsum[p] += d
            busy[p] += e
            if e > 0:
                w_u[k, p] = e + write_latency
                base = before[p] - e
                wb[s] = base
                wl[s] = base + e - 1
                wp[s] = walked[p]
                if base + e - 1 > walked[p]:
                    walked[p] = base + e - 1
                s += 1
            else:
                w_u[k, p] = neg
    return busy, dsum, useful, wb[:s].copy(), wl[:s].copy(), wp[:s].copy()
