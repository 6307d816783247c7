"""Stage 4 of the fast model: the counters, and the one place their formulas live.

From a unit's work tables (:mod:`eie_model.sim.work`) and its timing (:mod:`eie_model.sim.timing`):

* ``useful_macs``: entries with code != 0 in broadcast columns (bias included), all PEs;
* ``fillers``: the other entries read (they take a cycle, are never written);
* ``busy`` (per PE): entries PE ``i`` reads (an empty slice's one cycle is not busy);
* ``pointer_reads``: ``N`` per broadcast (padding events are no broadcast);
* ``spm_line_reads``: per PE walk the broadcast columns' entries in CSC address order; an entry
  at address ``p`` is on line ``p // entries_per_line``; a read whenever the line changes,
  starting from no line; summed over PEs (:func:`sram_line_reads`, no scan);
* ``spm_line_reads_fresh``: the same walk with a fresh fetch per broadcast column: a non-empty
  slice reads lines ``base // L .. last // L`` whatever the previous column read
  (``sram_line_reads(..., fresh=True)``);
* ``cycles``, ``stall_cycles``, ``starvation_cycles``: from the timing.

With ``acc_regs`` passes every counter is the sum over passes (:func:`add`). Derived figures
(efficiencies, latency, energy) are properties of :class:`eie_model.types.Counters`.

Example:
    >>> import numpy as np
    >>> from eie_model.sim.events import layer_events
    >>> from eie_model.sim.work import pe_work
    >>> from eie_model.types import Layer
    >>> w = pe_work(layer_events(Layer(np.ones((1, 3), np.uint8), np.arange(16.0), np.ones(3))),
    ...             1, 4, max_pes=1)
    >>> [int(x) for x in work_counts(w)]   # useful MACs, fillers, broadcasts
    [3, 0, 3]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from eie_model.sim.timing import Timing
from eie_model.sim.work import PEWork, _cumulative

__all__ = [
    "add",
    "line_reads_from_walk",
    "line_walk",
    "sram_line_reads",
    "unit_counts",
    "work_counts",
]


def work_counts(work: PEWork) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(useful_macs, fillers, broadcasts)`` of one work table (``() int32`` each).

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.array([[1], [0], [0], [2]], np.uint8), np.arange(4.0),
        ...                         np.ones(1)))
        >>> [int(x) for x in work_counts(pe_work(ev, 1, 1, max_pes=1))]  # one filler
        [2, 1, 1]
    """
    useful = jnp.sum(work.nnz, axis=(-2, -1))
    fillers = jnp.sum(work.entries, axis=(-2, -1)) - useful
    k_ev = jnp.sum((work.ready_gap >= 0).astype(jnp.int32), axis=-1)
    return useful.astype(jnp.int32), fillers.astype(jnp.int32), k_ev.astype(jnp.int32)


def unit_counts(work: PEWork, t: Timing, entries_per_line: Any) -> dict[str, jax.Array]:
    """Every counter of one work unit (one ``acc_regs`` pass) as a dict of ``int32`` arrays.

    Args:
        work: :func:`eie_model.sim.work.pe_work` result (one unit).
        t: its :class:`eie_model.sim.timing.Timing`.
        entries_per_line: ``() int`` SpMat entries per SRAM line.

    Returns:
        ``cycles, useful_macs, fillers, pointer_reads, spm_line_reads, stall_cycles,
        starvation_cycles, spm_line_reads_fresh`` (scalars) and ``busy`` ``(max_pes,)``.
    """
    useful, fillers, k_ev = work_counts(work)
    prev = line_walk(work)
    valid = jnp.arange(work.entries.shape[-2]) < work.n_pes
    return {
        "cycles": t.cycles,
        "useful_macs": useful,
        "fillers": fillers,
        "pointer_reads": (work.n_pes * k_ev).astype(jnp.int32),
        "spm_line_reads": jnp.sum(line_reads_from_walk(work, prev, entries_per_line)).astype(
            jnp.int32
        ),
        "spm_line_reads_fresh": jnp.sum(
            line_reads_from_walk(work, jnp.full_like(prev, -1), entries_per_line)
        ).astype(jnp.int32),
        "stall_cycles": t.stall_cycles,
        "starvation_cycles": t.starvation_cycles,
        "busy": jnp.where(valid, work.entries.sum(-1), 0).astype(jnp.int32),
    }


def add(a: dict[str, jax.Array], b: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Counters of two passes run back to back: every counter adds up."""
    return jax.tree.map(jnp.add, a, b)


def sram_line_reads(work: PEWork, entries_per_line: Any, *, fresh: bool = False) -> jax.Array:
    """Sparse-matrix SRAM line reads per PE (no scan: addresses are known up front).

    Per PE, the broadcast slices are visited in event order; their entries occupy CSC addresses
    ``base .. base + entries - 1``; line ``p // entries_per_line``; a read whenever the line
    differs from the previous entry's, starting from no line. With ``fresh`` every broadcast
    column starts from no line (a fresh fetch per column: the line the previous column left
    open is read again).

    Args:
        work: :func:`pe_work` result.
        entries_per_line: ``() int`` entries per SRAM line (``W // entry_bits``), >= 1.
        fresh: keyword-only (Python bool), count a fresh fetch per broadcast column.

    Returns:
        ``(max_pes,) int32`` line reads per PE.

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.ones((1, 3), np.uint8), np.arange(16.0), np.ones(3)))
        >>> w = pe_work(ev, 1, 4, max_pes=1)
        >>> sram_line_reads(w, 2).tolist()  # addrs 0,1 | 2
        [2]
        >>> sram_line_reads(w, 2, fresh=True).tolist()  # columns at addrs 0 | 1 | 2
        [3]
    """
    prev = line_walk(work)
    if fresh:
        prev = jnp.full_like(prev, -1)
    return line_reads_from_walk(work, prev, entries_per_line)


def line_walk(work: PEWork) -> jax.Array:
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
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.ones((1, 3), np.uint8), np.arange(16.0), np.ones(3)))
        >>> line_walk(pe_work(ev, 1, 4, max_pes=1)).tolist()
        [[-1, 0, 1]]
    """
    ent = work.entries
    last = jnp.where(ent > 0, work.base + ent - 1, -1)
    if not ent.shape[-1]:
        return last
    prev = _cumulative(jnp.maximum, last)
    pad = jnp.full((*prev.shape[:-1], 1), -1, prev.dtype)
    return jnp.concatenate([pad, prev[..., :-1]], -1).astype(jnp.int32)


def line_reads_from_walk(work: PEWork, prev: jax.Array, entries_per_line: Any) -> jax.Array:
    """Line reads per PE from :func:`line_walk`'s ``prev`` (two divisions per slice).

    A non-empty slice at addresses ``base .. base + entries - 1`` reads its lines
    ``base // L .. (base + entries - 1) // L`` (``L`` = entries per line), less the first one
    when the previous walked entry ``prev`` (``< base``) sits on it: ``prev >= (base // L) * L``.

    Args:
        work: :func:`pe_work` result. prev: its :func:`line_walk`.
        entries_per_line: ``() int`` entries per SRAM line, >= 1.

    Returns:
        ``(..., max_pes) int32`` line reads per PE.

    Example:
        >>> import numpy as np
        >>> from eie_model.sim.events import layer_events
        >>> from eie_model.sim.work import pe_work
        >>> from eie_model.types import Layer
        >>> ev = layer_events(Layer(np.ones((1, 3), np.uint8), np.arange(16.0), np.ones(3)))
        >>> w = pe_work(ev, 1, 4, max_pes=1)
        >>> line_reads_from_walk(w, line_walk(w), 2).tolist()  # addrs 0,1 | 2
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
