"""Design-space sweeps: thousands of EIE configurations of one layer in one compiled call.

``sweep(layer, configs)`` evaluates a batch of configurations — PE count ``n_pes``, FIFO depth
``fifo_depth``, relative-index bits ``index_bits``, SRAM line width ``sram_width``, precisions
``act_bits`` / ``weight_bits``, accumulators per PE ``acc_regs`` (0 = unlimited, the default)
and ``clock_hz`` — and returns a table (dict of 1-D NumPy arrays, one row per configuration)
with every counter of DESIGN §4.4, the latency, energy and area.

``acc_regs`` A > 0 with ``m > N A`` outputs runs the layer as ``ceil(m / (N A))`` passes, each a
fresh run over the next ``N A`` output rows that rebroadcasts the input, back to back (DESIGN
§4.4, as :func:`eie_model.reference.simulate`): every counter is the sum over passes. Each pass
is a *work unit* below (one unit per configuration without it).

How the batch is evaluated (each counter depends on a few knobs only, so each stage runs once per
distinct value of those knobs, found on the host):

1. per work unit of each distinct ``(n_pes, index_bits, acc_regs)`` "pair": the per-PE work
   tables (:func:`cycles.pe_work`, on device, a ``lax.scan`` over units — one sort of the
   non-zeros per distinct (N, A), NumPy's on CPU). They depend on the layer and the pair only:
   :func:`prepare` computes them once and returns a :class:`PreparedLayer` that ``sweep``
   accepts in place of the layer, so repeated sweeps of one layer (other FIFO depths, widths,
   precisions, clocks) skip this stage;
2. per distinct ``(unit, fifo_depth)``: the timing scan (:func:`cycles.timing`'s core),
   ``jax.vmap`` over them, **sharded over every local device** with a 1-D
   :class:`jax.sharding.Mesh` (``jax.shard_map``; the batch is padded to a multiple of the
   device count);
3. per distinct ``(unit, entries per line)``: the SRAM line reads (no scan);
4. per configuration: sums over its units, gathers, then energy and area
   (:mod:`eie_model.energy`).

Shapes are padded to power-of-two buckets, so the number of compilations does not grow with the
number of configurations (a sweep of 10 or 10,000 configurations of one layer compiles the
timing scan at most once per bucket; ``chunk=`` fixes the shape completely).

Multi-host: call ``jax.distributed.initialize()`` on every host first (same script, same
configurations on every host; on CPU hosts set ``jax_cpu_collectives_implementation`` to
``"gloo"`` before); :func:`sweep` then builds its mesh over ``jax.devices()`` (all hosts'
devices) and gathers the result on every host (``tests/test_eie_multihost.py``: two processes).

Example:
    >>> import numpy as np
    >>> from eie_model.sweep import grid, sweep
    >>> layer = {"codes": np.eye(4, dtype=np.uint8), "act": np.ones(4, np.float32)}
    >>> t = sweep(layer, grid(n_pes=[1, 2], fifo_depth=[1, 4]))
    >>> t["cycles"].tolist()
    [18, 12, 18, 12]
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from eie_model import cycles
from jaxcomp.atomic import atomic_open

__all__ = [
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
#: one pass, as the authors' simulator and DESIGN §4.4's default).
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


def _energy_columns(table: dict[str, np.ndarray], code_bits: int) -> dict[str, np.ndarray]:
    """Energy, power, area and throughput per configuration (:func:`energy.energy_report`).

    ``energy_report`` takes an ``EIEConfig`` whose ``n_pes`` is static, so it is called once
    per distinct N with the other knobs as arrays (vectorized; its result does not depend on
    ``index_bits``, which is set to the group's smallest so that every width is valid).
    """
    from eie_model.config import EIEConfig
    from eie_model.energy import energy_report

    n_rows = table["n_pes"].shape[0]
    out = {k: np.zeros(n_rows) for k in ENERGY_COLUMNS}
    for n in np.unique(table["n_pes"]):
        sel = np.flatnonzero(table["n_pes"] == n)
        cfg = EIEConfig(
            n_pes=int(n),
            index_bits=int(table["index_bits"][sel].min()),
            code_bits=int(code_bits),
            fifo_depth=table["fifo_depth"][sel],
            sram_width=table["sram_width"][sel],
            act_bits=table["act_bits"][sel],
            weight_bits=table["weight_bits"][sel],
            clock_hz=table["clock_hz"][sel],
        )
        cnt = {
            k: table[k][sel]
            for k in ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads")
        }
        rep = energy_report(cnt, cfg)._asdict()
        for k in ENERGY_COLUMNS:
            out[k][sel] = np.asarray(rep[k], np.float64)
    return out


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
        bcast_latency, write_latency: pipeline latencies (2 and 5 in DESIGN §4.4; ``None``
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
    out.update(_energy_columns(out, cb))
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
