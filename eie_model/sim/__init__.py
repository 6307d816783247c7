"""The fast EIE cycle model, by stage: events -> per-PE work -> timing -> counters.

The authors' C++ simulator ticks every register of every PE once a cycle. This model steps once
per *broadcast event* and keeps the PE state as arrays with a leading PE axis, so a layer is
``K`` scan steps of ``O(max_pes)`` vector work:

1. :mod:`eie_model.sim.events` (host, once per layer): non-zeros and broadcast events;
2. :mod:`eie_model.sim.work` (device): per-PE, per-event work for ``(n_pes, index_bits)``;
3. :mod:`eie_model.sim.timing` (device): ``lax.scan`` over a named :class:`PEState`;
4. :mod:`eie_model.sim.counters` (device): the counters, and the formulas they follow.

:func:`simulate` chains them for one design point (``jax.vmap`` batches it; the sweep,
:func:`eie_model.sweep.sweep`, gives the same counters far faster for a batch).

Example:
    >>> import numpy as np
    >>> from eie_model.types import EIEParams, EIEStatic, Layer
    >>> layer = Layer(np.array([[1, 0, 2], [0, 3, 0]], np.uint8), np.arange(16.0),
    ...               np.array([1.0, 0.0, 2.0], np.float32))
    >>> c = simulate(EIEStatic(max_pes=2, max_fifo=2), EIEParams(n_pes=2, fifo_depth=2), layer)
    >>> int(c.useful_macs), int(c.pointer_reads)
    (2, 4)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from eie_model.sim import counters, events, timing, work
from eie_model.sim.counters import sram_line_reads, unit_counts
from eie_model.sim.events import Events, layer_events
from eie_model.sim.timing import PEState, ScanTables, Timing, run, scan_tables
from eie_model.sim.work import PEWork, SliceGaps, pe_work, slice_gaps
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

__all__ = [
    "Events",
    "PEState",
    "PEWork",
    "ScanTables",
    "SliceGaps",
    "Timing",
    "counters",
    "events",
    "layer_events",
    "n_batches",
    "pe_work",
    "run",
    "scan_tables",
    "simulate",
    "slice_gaps",
    "sram_line_reads",
    "timing",
    "unit_counts",
    "work",
]

#: ``acc_regs`` 0 (unlimited) becomes this many accumulators: more rows than any layer has.
UNLIMITED = 1 << 30


def check_layer(static: EIEStatic, layer: Layer) -> None:
    """Raise ``ValueError`` when a layer's codes do not fit ``static.code_bits``."""
    top = 0
    for a in (layer.codes, layer.bias_codes):
        if a is not None and np.size(a):
            top = max(top, int(np.max(a)))
    if top >= 1 << static.code_bits:
        raise ValueError(
            f"layer codes reach {top}, beyond EIEStatic.code_bits={static.code_bits}; use "
            f"EIEStatic(code_bits={max(top.bit_length(), 1)}) or more (Layer.code_bits is "
            f"{layer.code_bits})"
        )


def n_batches(static: EIEStatic, ev: Events, n_pes: Any) -> Any:
    """Activation batches of a layer: ``ceil(ceil(n / N) / static.act_regs)`` (1 if unlimited).

    The inputs form ``ceil(n / N)`` LNZD groups of N; a batch holds ``act_regs`` of them
    (``N * act_regs`` inputs: the source activation registers of every PE). The bias column
    (activation 1.0, a constant that takes no register) is scanned at the end of the last
    batch. Works on Python ints, NumPy and traced N alike.

    Example:
        >>> import numpy as np
        >>> ev = layer_events(Layer(np.ones((2, 9216), np.uint8), np.arange(16.0), np.ones(9216),
        ...                         bias_codes=np.ones(2, np.uint8)))   # Alex-6's 9216 inputs
        >>> [int(n_batches(EIEStatic(act_regs=a), ev, 64)) for a in (64, 144, 0)]
        [3, 1, 1]
    """
    groups = (ev.n + n_pes - 1) // n_pes
    if not static.act_regs:
        return groups * 0 + 1
    return (groups + static.act_regs - 1) // static.act_regs + (groups == 0)


def simulate(static: EIEStatic, params: EIEParams, layer: Layer | Events) -> Counters:
    """Every counter of one design point on one layer (jitted; ``jax.vmap`` batches it).

    Args:
        static: :class:`eie_model.types.EIEStatic` (``max_pes`` >= N, ``max_fifo`` >= D).
        params: one design point, :class:`eie_model.types.EIEParams` (under ``vmap``: a batch).
        layer: a :class:`eie_model.types.Layer` (or its :func:`layer_events`).

    Returns:
        :class:`eie_model.types.Counters` with ``busy`` of length ``static.max_pes``.

    Raises:
        eie_model.capacity.CapacityError: the fullest PE holds more entries than
            ``static.ptr_bits`` / ``static.spmat_bytes`` allow (concrete params).

    Example:
        >>> import numpy as np
        >>> layer = Layer(np.ones((2, 2), np.uint8), np.arange(16.0), np.ones(2, np.float32))
        >>> c = simulate(EIEStatic(max_pes=2), EIEParams(n_pes=2, fifo_depth=8), layer)
        >>> int(c.cycles), c.busy.tolist()  # e = 1, 2; s = 3, 4; last write 9
        (10, [2, 2])
    """
    if not isinstance(static, EIEStatic):
        raise TypeError(f"simulate: static must be an EIEStatic, got {type(static).__name__}")
    if not isinstance(params, EIEParams):
        raise TypeError(f"simulate: params must be an EIEParams, got {type(params).__name__}")
    from eie_model.capacity import check_capacity

    if isinstance(layer, Layer):
        check_layer(static, layer)
        layer = layer_events(layer)
    elif not isinstance(layer, Events):
        raise TypeError(
            f"simulate: layer must be an eie_model.Layer (see Layer.load), got "
            f"{type(layer).__name__}"
        )
    params.check(static)
    check_capacity(static, params, layer)  # concrete params only (see its docstring)
    return _simulate_jit(static, params, layer)


def _simulate_impl(static: EIEStatic, params: EIEParams, ev: Events) -> Counters:
    n = jnp.asarray(params.n_pes, jnp.int32)
    r = jnp.asarray(params.index_bits, jnp.int32)
    a = jnp.asarray(params.acc_regs, jnp.int32)
    acc = jnp.where(a > 0, a, UNLIMITED)
    epl = params.entries_per_line(static)
    na = n * a  # rows of one pass when A > 0
    passes = jnp.where((a > 0) & (ev.m > na), (ev.m + na - 1) // jnp.maximum(na, 1), 1)
    batches = n_batches(static, ev, n)  # activation batches of each pass
    passes = passes * batches
    gaps = slice_gaps(ev, n, acc_regs=acc) if ev.rows.shape[0] else None
    ring = max(int(static.max_fifo), 2)

    def one_pass(q):
        p, b = q // batches, q % batches  # acc_regs pass p, activation batch b
        w = pe_work(ev, n, r, max_pes=static.max_pes, gaps=gaps, acc_regs=acc, pass_index=p,
                    batch_groups=static.act_regs, batch_index=b, batches=batches)  # fmt: skip
        tab = scan_tables(w, write_latency=static.write_latency)
        t, _ = run(tab, 0, params.fifo_depth, ring_len=ring, bcast_latency=static.bcast_latency)
        return unit_counts(w, t, epl)

    first = one_pass(jnp.int32(0))

    def body(carry):
        p, total = carry
        return p + 1, counters.add(total, one_pass(p))

    _, total = lax.while_loop(lambda c: c[0] < passes, body, (jnp.int32(1), first))
    return Counters(static, params, **total)


_simulate_jit = jax.jit(_simulate_impl, static_argnums=0)
