"""EIE's storage capacities as built: what one PE's SpMat SRAM and column pointers can hold.

Every PE keeps its slice of the layer (non-zeros and filler entries, column by column, as
:func:`eie_model.format.encode_layer` lays it out) in its SpMat SRAM and addresses it with
column pointers. Two limits bound the entries one PE can hold (docs/guides/eie-capacities.md):

* pointer width: a ``ptr_bits``-bit pointer addresses ``2**ptr_bits`` entries (EIE: 16 bits,
  65,536 entries; ``EIEStatic.ptr_bits``);
* SRAM size: ``spmat_bytes * 8 // (code_bits + index_bits)`` entries (EIE: 128 KB of 8-bit
  entries, 131,072; ``EIEStatic.spmat_bytes``).

The capacity is the smaller of the two. A layer whose fullest PE holds more raises a
:class:`CapacityError` (a ``ValueError``) naming the PE, its entries, the capacity, the
shortfall and the fixes (more PEs, wider pointers, a larger SRAM): EIE holds the whole model on
chip and the model has no cost for reloading the SpMat from DRAM, so a run that pretends the
layer fits would report a latency and energy the hardware cannot reach.

With ``acc_regs`` passes each pass's rows are laid out as a matrix of their own (zero runs
restart at the pass's first row, as :func:`eie_model.reference.run` encodes them), and all of
them are resident: a PE holds the sum over passes.

Example:
    >>> import numpy as np
    >>> from eie_model.types import EIEStatic, Layer
    >>> layer = Layer(np.ones((4, 3), np.uint8), np.arange(16.0), np.ones(3))
    >>> stored_entries(layer, n_pes=2, index_bits=4).tolist()   # 2 rows x 3 columns per PE
    [6, 6]
    >>> capacity_entries(EIEStatic(), index_bits=4)   # 16-bit pointers bind before 128 KB
    65536
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from eie_model.sim.events import Events, layer_events
from eie_model.types import EIEParams, EIEStatic, Layer

__all__ = ["CapacityError", "capacity_entries", "check_capacity", "stored_entries"]


class CapacityError(ValueError):
    """A layer's fullest PE holds more SpMat entries than the pointers / SRAM can hold."""


def capacity_entries(static: EIEStatic, index_bits: int) -> int:
    """Entries one PE can hold: ``min(2**ptr_bits, spmat_bytes * 8 // entry_bits)``.

    Args:
        static: :class:`eie_model.types.EIEStatic` (``ptr_bits``, ``spmat_bytes``,
            ``code_bits``).
        index_bits: relative-index bits r; an entry is ``code_bits + r`` bits.

    Returns:
        The capacity in entries (Python int).

    Example:
        >>> capacity_entries(EIEStatic(ptr_bits=18), index_bits=4)   # now the SRAM binds
        131072
    """
    entry_bits = static.code_bits + int(index_bits)
    return min(1 << static.ptr_bits, static.spmat_bytes * 8 // entry_bits)


def _events(layer: Layer | Events) -> Events:
    if isinstance(layer, Events):
        return layer
    if isinstance(layer, Layer):
        return layer_events(layer)
    raise TypeError(
        f"layer must be an eie_model.Layer (see Layer.load), got {type(layer).__name__}"
    )


def _gaps_by_pe(ev: Events, n_pes: int, acc_regs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pe, gap)`` of every stored non-zero (padding non-zeros dropped): its PE and the zero
    local rows before it in its (column, PE[, pass]) slice."""
    rows, cols = np.asarray(ev.rows, np.int64), np.asarray(ev.cols, np.int64)
    keep = cols <= ev.n  # column n + 1 holds padding non-zeros (layer_events(pad_nnz=))
    rows, cols = rows[keep], cols[keep]
    if not rows.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lr_count = -(-ev.m // n_pes)
    pe, lr = rows % n_pes, rows // n_pes
    key = (cols * n_pes + pe) * lr_count + lr
    key.sort()  # by (column, PE, local row)
    lr = key % lr_count
    slice_id = key // lr_count  # column * N + PE
    pe = slice_id % n_pes
    first = np.ones(key.size, bool)
    first[1:] = slice_id[1:] != slice_id[:-1]
    if acc_regs:  # each pass's zero runs restart at its first local row
        block = lr // acc_regs
        first[1:] |= block[1:] != block[:-1]
        start = block * acc_regs
    else:
        start = np.zeros_like(lr)
    prev = np.concatenate([[0], lr[:-1]])
    gap = np.where(first, lr - start, lr - prev - 1)
    return pe, gap


def stored_entries(
    layer: Layer | Events, n_pes: int, index_bits: int, acc_regs: int = 0
) -> np.ndarray:
    """Entries (non-zeros and fillers, bias column included) each PE stores (host, NumPy).

    The same layout as :func:`eie_model.format.encode_layer`: row ``i`` in PE ``i % N``; a run
    of ``g`` zero local rows before a non-zero of a column costs ``g >> index_bits`` fillers.

    Args:
        layer: a :class:`eie_model.types.Layer` (or its :func:`eie_model.sim.layer_events`).
        n_pes: PE count N (Python int >= 1).
        index_bits: relative-index bits r (Python int >= 1).
        acc_regs: accumulators per PE A (``0`` = unlimited: one pass); with A > 0 each pass of
            ``N * A`` rows is laid out on its own and the passes add up.

    Returns:
        ``(N,) int64`` entries per PE.

    Example:
        >>> import numpy as np
        >>> layer = Layer(np.array([[1], [0], [0], [0], [0], [2]], np.uint8), np.arange(4.0),
        ...               np.ones(1))
        >>> stored_entries(layer, 1, 2).tolist()   # rows 0 and 5: a gap of 4 -> 1 filler
        [3]
    """
    n_pes, index_bits, acc_regs = int(n_pes), int(index_bits), int(acc_regs)
    if n_pes < 1 or index_bits < 1 or acc_regs < 0:
        raise ValueError(
            f"stored_entries: n_pes >= 1, index_bits >= 1 and acc_regs >= 0 required, got "
            f"{n_pes}, {index_bits}, {acc_regs}"
        )
    ev = _events(layer)
    pe, gap = _gaps_by_pe(ev, n_pes, acc_regs if ev.m > n_pes * acc_regs else 0)
    return np.bincount(pe, weights=1 + (gap >> index_bits), minlength=n_pes).astype(np.int64)


#: (layer key, N, r, A) -> (fullest PE, its entries): a sweep's layer is checked once
_FULLEST: collections.OrderedDict = collections.OrderedDict()
_FULLEST_SIZE = 256


def _fullest(ev_of: Any, key: Any, n: int, rs: list[int], a: int) -> dict[int, tuple[int, int]]:
    out, todo = {}, []
    for r in rs:
        hit = None if key is None else _FULLEST.get((key, n, r, a))
        if hit is None:
            todo.append(r)
        else:
            out[r] = hit
    if todo:
        ev = ev_of()
        pe, gap = _gaps_by_pe(ev, n, a if ev.m > n * a else 0)
        for r in todo:
            per_pe = np.bincount(pe, weights=1 + (gap >> r), minlength=n)
            i = int(np.argmax(per_pe))
            out[r] = (i, int(per_pe[i]))
            if key is not None:
                _FULLEST[(key, n, r, a)] = out[r]
        while len(_FULLEST) > _FULLEST_SIZE:
            _FULLEST.popitem(last=False)
    return out


def check_capacity(
    static: EIEStatic, params: EIEParams, layer: Layer | Events, *, layer_key: Any = None
) -> None:
    """Raise :class:`CapacityError` when a design point's fullest PE does not fit.

    Checks every distinct ``(n_pes, index_bits, acc_regs)`` of concrete ``params`` (traced
    params, inside ``jit`` / ``vmap``, are skipped: check them before tracing).
    :func:`eie_model.sim.simulate`, :func:`eie_model.sweep.sweep` and
    :func:`eie_model.reference.run` call it.

    Args:
        static: :class:`eie_model.types.EIEStatic` (``ptr_bits``, ``spmat_bytes``).
        params: :class:`eie_model.types.EIEParams`, one point or a batch.
        layer: a :class:`eie_model.types.Layer` or its events.
        layer_key: keyword-only hashable identity of the layer's contents, to remember the
            result across calls (``None``: a hash of the non-zeros' coordinates).

    Raises:
        CapacityError: naming the design point, the fullest PE, its entries, the capacity,
            the shortfall and the fixes.

    Example:
        >>> import numpy as np
        >>> layer = Layer(np.ones((4, 3), np.uint8), np.arange(16.0), np.ones(3))
        >>> check_capacity(EIEStatic(max_pes=2), EIEParams(n_pes=2), layer)   # 6 entries fit
        >>> try:
        ...     check_capacity(EIEStatic(max_pes=2, ptr_bits=2), EIEParams(n_pes=2), layer)
        ... except CapacityError as e:
        ...     print(str(e).split(";")[0])
        layer does not fit at n_pes=2, index_bits=4, acc_regs=64: PE 0 stores 6 entries
    """
    leaves = (params.n_pes, params.index_bits, params.acc_regs)
    if not all(isinstance(x, np.ndarray) for x in leaves):
        return
    shape = params.batch_shape
    keys = np.stack([np.broadcast_to(x, shape).reshape(-1) for x in leaves], 1)
    combos = np.unique(keys.astype(np.int64), axis=0).tolist()
    by_na: dict[tuple[int, int], list[int]] = {}
    for n, r, a in combos:
        by_na.setdefault((n, a), []).append(r)
    cache: list[Events] = []

    def ev_of() -> Events:
        if not cache:
            cache.append(_events(layer))
        return cache[0]

    if not isinstance(layer, (Layer, Events)):
        raise TypeError(
            f"layer must be an eie_model.Layer (see Layer.load), got {type(layer).__name__}"
        )
    if layer_key is None:  # the storage depends on the non-zeros only: key them by content
        ev = ev_of()
        rows, cols = np.asarray(ev.rows), np.asarray(ev.cols)
        layer_key = ("nz", ev.m, ev.n, hash(rows.tobytes()), hash(cols.tobytes()))
    name = layer.name if isinstance(layer, Layer) else ""
    for (n, a), rs in by_na.items():
        for r, (pe, have) in _fullest(ev_of, layer_key, n, rs, a).items():
            _refuse_if_over(static, name, n, r, a, pe, have)


def _refuse_if_over(
    static: EIEStatic, name: str, n: int, r: int, a: int, pe: int, have: int
) -> None:
    """Raise :class:`CapacityError` when PE ``pe``'s ``have`` entries exceed the capacity at
    ``(n_pes, index_bits, acc_regs) = (n, r, a)`` (the message :func:`check_capacity` gives).

    Example:
        >>> _refuse_if_over(EIEStatic(), "fc", 64, 4, 64, 3, 65536)   # exactly full: fits
    """
    cap = capacity_entries(static, r)
    if have <= cap:
        return
    entry_bits = static.code_bits + r
    label = f"layer {name!r}" if name else "layer"
    need_ptr = max(have - 1, 1).bit_length()
    raise CapacityError(
        f"{label} does not fit at n_pes={n}, index_bits={r}, acc_regs={a}: PE {pe} "
        f"stores {have:,} entries; a PE holds {cap:,} (the smaller of 2**ptr_bits = "
        f"{1 << static.ptr_bits:,} pointer addresses and spmat_bytes = "
        f"{static.spmat_bytes:,} B of {entry_bits}-bit entries = "
        f"{static.spmat_bytes * 8 // entry_bits:,}); short by {have - cap:,} entries. "
        f"Use more PEs (entries per PE fall about as 1/n_pes: n_pes >= about "
        f"{-(-n * have // cap)}), or wider pointers and a larger SpMat "
        f"(EIEStatic(ptr_bits={max(need_ptr, static.ptr_bits)}, spmat_bytes="
        f"{max(static.spmat_bytes, -(-have * entry_bits // 8))}))"
    )
