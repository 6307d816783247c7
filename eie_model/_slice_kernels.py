"""Compiled (numba) kernels of the sweep's work tables: one pass over the non-zeros, no sort.

:func:`eie_model.sweep._slice_entries` sorts the non-zeros by (column, PE, local row) for each
PE count N. The same tables come from one walk in CSC order (``ev.rows`` is sorted within each
column): rows of one PE arrive in increasing local row, so the zero run before a non-zero is its
local row minus the last local row seen for its PE in this column, minus one (its local row when
it is the PE's first in the column). A length-N array of last rows replaces the sort.

The kernels release the GIL (``nogil``): the sweep runs the PE counts on every core with
threads. They are compiled once per machine into numba's cache (beside this file, else the
user's cache folder; no cache when neither is writable). ``tests/test_eie_sweep.py`` checks
them against the NumPy sort path.
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


@_jit
def event_tables(ev_col, col_bucket, n, count, ent):  # pragma: no cover - compiled
    """``(entries, nnz, base)`` ``(K, N)`` int64 of one index width, as ``_event_tables``."""
    k_ev = len(ev_col)
    n_pes = ent.shape[1]
    entries = np.zeros((k_ev, n_pes), np.int64)
    nnz = np.zeros((k_ev, n_pes), np.int64)
    base = np.zeros((k_ev, n_pes), np.int64)
    before = np.zeros(n_pes, np.int64)  # entries of columns 0..j - 1, per PE
    j = 0
    for k in range(k_ev):
        while j <= n and col_bucket[j] <= k:
            for p in range(n_pes):
                before[p] += ent[j, p]
            j += 1
        col = ev_col[k]
        live = col <= n
        for p in range(n_pes):
            e = ent[col, p] if live else 0
            entries[k, p] = e
            nnz[k, p] = count[col, p] if live else 0
            base[k, p] = before[p] - e
    return entries, nnz, base
