"""Energy, power, area and throughput of one EIE layer run, from its counters (docs/design.md).

A pure function of a :class:`eie_model.types.Counters` (its counters, static and params;
``jnp`` throughout), so it runs under ``jit`` and ``vmap`` on the counters the fast cycle model
returns for a batch of configurations. ``Counters.energy`` calls it.

Source of every constant: EIE paper (Han et al., "EIE: Efficient Inference Engine on Compressed
Deep Neural Network", ISCA 2016), Table II, the per-PE power and area breakdown of the 45 nm
layout at 800 MHz (treat as approximate):

=============  ==========  ============
component      power (mW)  area (um^2)
=============  ==========  ============
Act_queue         0.112          758
PtrRead           1.807      121,849
SpmatRead         4.955      469,412
ArithmUnit        1.162        3,110
ActRW             1.122       18,934
filler cells          -       23,961
total (PE)        9.157      638,024
=============  ==========  ============

Table II also splits the PE's power by kind: clock network 1.874 mW (20.46 %), memory, registers,
combinational. The paper's whole 64-PE chip draws 590 mW in 40.8 mm^2; 64 x 9.157 = 586.05 mW,
so the remaining 3.95 mW is charged to the central unit (LNZD / broadcast).

Model (all decisions stated; the paper gives power, not per-access energy):

* Static: the clock network's 1.874 mW is charged every cycle to every PE
  (``E_static = 1.874 mW / 800 MHz = 2.34 pJ`` per PE-cycle; no clock gating).
* Dynamic: the other 7.283 mW of a PE are shared among the five components in proportion to
  their Table II power, and turned into energy per access with the *calibration activity* of a
  fully busy PE: one SpMat entry, one arithmetic operation and one accumulator (ActRW) update
  per cycle, and the access mix of the shared real layer (Alex-8 sized, 64 PEs, FIFO 8, 64-bit
  lines; ``eie-model reference --layer .../layer.npz --pes 64 --fifo 8 --json``):
  ``CAL_LINES_PER_ENTRY = 100,900 / 453,748`` 64-bit line reads per entry and one pointer read
  and one queue access per ``CAL_ENTRIES_PER_COLUMN = 453,748 / 112,640 = 4.03`` entries.
  The central unit's 3.95 mW is charged per broadcast at the calibration rate of one
  broadcast per ``CAL_ENTRIES_PER_COLUMN`` cycles.
  So a fully busy 64-PE EIE at 800 MHz draws 64 x 9.157 + 3.95 = 590 mW, with Table II's
  breakdown.
* Counted accesses: SpMat line reads (``spm_line_reads``), pointer reads and queue accesses
  (``pointer_reads``: one per PE per broadcast), arithmetic operations (every entry read,
  fillers included: ``useful_macs + fillers``), accumulator updates (``useful_macs``),
  broadcasts (``pointer_reads / n_pes``), static energy (``cycles x n_pes``).

SpMat SRAM by width W and capacity C (:mod:`eie_model.sram`, CACTI 7 at 45 nm; the table,
its provenance and the width study: docs/guides/eie-sram-energy.md):

* Line reads: ``line_reads="kept"`` (default) charges ``spm_line_reads`` (a line stays open
  across columns: the line register holds the last line read, and the next column's first
  entry on that line needs no read); ``line_reads="fresh"`` charges ``spm_line_reads_fresh``
  (every broadcast column fetches its lines again). Each mode is calibrated with its own count
  on the real layer (``CAL_LINES_PER_ENTRY`` / ``CAL_FRESH_LINES_PER_ENTRY``), so both give
  Table II's 590 mW at the calibration point; they differ elsewhere.
* Calibration split: at 64 bits and 128 KB, CACTI's read energy times the calibration read
  rate and CACTI's leakage split the SpMat's dynamic (non-clock) Table II power into reads and
  leakage (``leakage=False``: all of it is reads, as before leakage was modelled).
* Read energy: ``read_energy="cacti"`` (default) scales the calibrated energy of a line read
  by CACTI's ``read_pj(W, C) / read_pj(64, 128)``; ``read_energy="linear"`` is the earlier
  assumption ``1/2 + 1/2 x W / 64`` (half per-access overhead, half per bit; no capacity
  term), kept for comparison.
* Leakage: the calibrated leakage power times CACTI's ``leak_mw(W, C) / leak_mw(64, 128)``,
  charged to every PE for the run's time (``cycles / clock_hz``; one 800 MHz cycle is
  ``E_leak`` per PE-cycle at calibration).
* Area: Table II's SpmatRead area times CACTI's ``area_mm2(W, C) / area_mm2(64, 128)``.
* Outside the CACTI table (16..512 bits, 32..512 KB) the SpMat energies and the area are NaN.
* Capacity ``C``: ``energy_report(..., spmat_kb=...)``; by default the static's
  ``spmat_bytes`` where it has one, else EIE's 128 KB.

Other scaling rules:

* Precision: ArithmUnit energy per operation scales as
  ``1/2 x (weight_bits x act_bits) / 16**2 + 1/2 x act_bits / 16`` (half multiplier, half
  adder, at 16 bits); ActRW and Act_queue energies scale as ``act_bits / 16``; pointer reads
  as ``ptr_bits / 16``. Areas of ArithmUnit, ActRW and Act_queue scale the same way; the
  pointer SRAM's area does not change.
* Clock: energy per access does not depend on the clock (leakage energy does: it is power x
  time); power = energy / time.

Throughput as the paper reports it: an operation is a multiply or an add, so a MAC is 2 ops;
``gops`` counts the useful (non-zero weight x non-zero activation) MACs of the compressed layer;
``frames_per_s`` is layers per second at batch 1; ``frames_per_s_per_mm2`` divides by the
area of the N PEs.

Example:
    >>> from eie_model.types import EIEParams, EIEStatic
    >>> from eie_model.energy import energy_report, full_load_counters
    >>> r = energy_report(full_load_counters(EIEStatic(), EIEParams(n_pes=64), cycles=1000))
    >>> round(float(r.power_w) * 1e3)   # mW: the paper's 590 mW
    590
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eie_model import sram
from eie_model.types import Counters, EIEParams, EIEStatic

__all__ = [
    "EnergyReport",
    "energy_report",
    "full_load_counters",
    "pe_area_mm2",
    "spmat_calibration",
]
# The scaling-rule numbers in this docstring come from:
#   eie-model reference --layer layer.npz --pes 64 --fifo 8 --sram-width W --json

# --- EIE paper, Table II (per PE, 45 nm, 800 MHz) ------------------------------------------
PE_POWER_MW = 9.157
PE_AREA_UM2 = 638_024.0
POWER_MW = {  # component -> mW
    "act_queue": 0.112,
    "ptr_read": 1.807,
    "spmat_read": 4.955,
    "arithm": 1.162,
    "act_rw": 1.122,
}
AREA_UM2 = {  # component -> um^2
    "act_queue": 758.0,
    "ptr_read": 121_849.0,
    "spmat_read": 469_412.0,
    "arithm": 3_110.0,
    "act_rw": 18_934.0,
    "filler_cells": 23_961.0,
}
CLOCK_NETWORK_MW = 1.874  # Table II: clock network share of the PE's power
CHIP_POWER_MW = 590.0  # EIE paper: 64 PEs at 800 MHz
CHIP_PES = 64
CENTRAL_MW = CHIP_POWER_MW - CHIP_PES * PE_POWER_MW  # LNZD / central unit: 3.952 mW

# --- calibration activity (a fully busy PE) -----------------------------------------------
CAL_CLOCK_HZ = 800e6
CAL_SRAM_WIDTH = 64
CAL_LINES_PER_ENTRY = 100_900 / 453_748  # real layer, 64 PEs, FIFO 8, 64-bit lines
CAL_ENTRIES_PER_COLUMN = 453_748 / 112_640  # entries per pointer read, same run
CAL_FRESH_LINES_PER_ENTRY = 154_563 / 453_748  # the same run's spm_line_reads_fresh
CAL_PRECISION = 16
CAL_PTR_BITS = 16
CAL_SPMAT_KB = sram.EIE_SPMAT_KB
#: The line-read counts energy can charge, and the per-read energy rules.
LINE_READS = ("kept", "fresh")
READ_ENERGY = ("cacti", "linear")

_DYN = (PE_POWER_MW - CLOCK_NETWORK_MW) / PE_POWER_MW  # dynamic share of each component
_RATES = {  # accesses per PE-cycle at calibration
    "spmat_read": CAL_LINES_PER_ENTRY,  # 64-bit line reads
    "ptr_read": 1.0 / CAL_ENTRIES_PER_COLUMN,  # pointer reads
    "act_queue": 1.0 / CAL_ENTRIES_PER_COLUMN,  # queue accesses
    "arithm": 1.0,  # operations (entries)
    "act_rw": 1.0,  # accumulator updates
}
#: Energy per access in joules at calibration (64-bit line, 16-bit datapath, 16-bit pointer).
E_ACCESS_J = {k: POWER_MW[k] * 1e-3 * _DYN / (CAL_CLOCK_HZ * _RATES[k]) for k in POWER_MW}
#: Static (clock network) energy per PE-cycle, joules.
E_STATIC_J = CLOCK_NETWORK_MW * 1e-3 / CAL_CLOCK_HZ
#: Central unit energy per broadcast, joules (one broadcast per 4 cycles at calibration).
E_BROADCAST_J = CENTRAL_MW * 1e-3 / (CAL_CLOCK_HZ / CAL_ENTRIES_PER_COLUMN)

# --- SpMat SRAM calibration (CACTI at 64 bits, 128 KB; Table II's SpmatRead power) ----------
_CACTI_READ0 = float(sram.lookup(sram.READ_PJ, CAL_SRAM_WIDTH, CAL_SPMAT_KB, np))  # pJ
_CACTI_LEAK0 = float(sram.lookup(sram.LEAK_MW, CAL_SRAM_WIDTH, CAL_SPMAT_KB, np))  # mW
_CACTI_AREA0 = float(sram.lookup(sram.AREA_MM2, CAL_SRAM_WIDTH, CAL_SPMAT_KB, np))  # mm^2
_SPMAT_DYN_MW = POWER_MW["spmat_read"] * _DYN  # the SpMat's non-clock power at calibration
_CAL_RATE = {"kept": CAL_LINES_PER_ENTRY, "fresh": CAL_FRESH_LINES_PER_ENTRY}


def spmat_calibration(line_reads: str = "kept", leakage: bool = True) -> tuple[float, float]:
    """``(E_read_j, P_leak_mw)`` at 64 bits, 128 KB: one line read's energy and the leakage.

    The SpMat's non-clock Table II power (``4.955 mW x 7.283 / 9.157``) split between reads
    (at the calibration rate of ``line_reads``) and leakage in CACTI's proportion at that point
    (``leakage=False``: no leakage, all reads).

    Example:
        >>> e, p = spmat_calibration()
        >>> round(e * 1e12, 2), round(p, 3)   # pJ per 64-bit line read, mW leakage per PE
        (13.35, 1.565)
    """
    if line_reads not in LINE_READS:
        raise ValueError(f"line_reads must be one of {LINE_READS}, got {line_reads!r}")
    rate = _CAL_RATE[line_reads]
    read_mw = _CACTI_READ0 * 1e-12 * rate * CAL_CLOCK_HZ * 1e3
    share = _CACTI_LEAK0 / (_CACTI_LEAK0 + read_mw) if leakage else 0.0
    e_read = _SPMAT_DYN_MW * (1.0 - share) * 1e-3 / (CAL_CLOCK_HZ * rate)
    return e_read, _SPMAT_DYN_MW * share


class EnergyReport(NamedTuple):
    """Energy, time, power, area and throughput of one run (jnp arrays, batched like inputs).

    Attributes:
        energy_j: total energy (J).
        spmat_j, pointer_j, arith_j, actrw_j, queue_j, broadcast_j, static_j, leak_j: its
            parts (J); ``leak_j`` is the SpMat SRAM's leakage.
        time_s: cycles / clock_hz.
        power_w: energy_j / time_s.
        area_mm2: area of the N PEs.
        gops: 2 x useful_macs / time, in 1e9 ops/s.
        gops_per_w: gops / power_w.
        frames_per_s: 1 / time_s (batch 1).
        frames_per_s_per_mm2: frames_per_s / area_mm2.
    """

    energy_j: Any
    spmat_j: Any
    pointer_j: Any
    arith_j: Any
    actrw_j: Any
    queue_j: Any
    broadcast_j: Any
    static_j: Any
    leak_j: Any
    time_s: Any
    power_w: Any
    area_mm2: Any
    gops: Any
    gops_per_w: Any
    frames_per_s: Any
    frames_per_s_per_mm2: Any


def _traced(*xs: Any) -> bool:
    return any(isinstance(x, (jax.Array, jax.core.Tracer)) for x in xs)


def _fl(x: Any, on_device: bool) -> Any:
    """``float32`` jnp for device / traced values; ``float64`` NumPy for host values."""
    return jnp.asarray(x, jnp.float32) if on_device else np.asarray(x, np.float64)


def _arith_scale(params: EIEParams, dev: bool = True):
    wb, ab = _fl(params.weight_bits, dev), _fl(params.act_bits, dev)
    return 0.5 * wb * ab / CAL_PRECISION**2 + 0.5 * ab / CAL_PRECISION


def _spmat_kb(static: EIEStatic, spmat_kb: Any) -> Any:
    if spmat_kb is not None:
        return spmat_kb
    nbytes = getattr(static, "spmat_bytes", None)
    return CAL_SPMAT_KB if nbytes is None else nbytes / 1024


def pe_area_mm2(params: EIEParams, spmat_kb: Any = CAL_SPMAT_KB):
    """Area of one PE in mm^2 under the precision and SRAM scaling rules (batched).

    Args:
        params: :class:`eie_model.types.EIEParams` (``act_bits``, ``weight_bits``,
            ``sram_width`` are used).
        spmat_kb: SpMat SRAM capacity per PE in KB (default EIE's 128).

    Returns:
        an array batched like ``params`` (``float32`` jnp for device or traced params,
        ``float64`` NumPy for host ones); NaN outside the SRAM table (16..512 bits,
        32..512 KB).

    Example:
        >>> from eie_model.types import EIEParams
        >>> from eie_model.energy import pe_area_mm2
        >>> round(float(pe_area_mm2(EIEParams())), 6)
        0.638024
        >>> round(float(pe_area_mm2(EIEParams(sram_width=512))), 3)   # CACTI: a larger array
        0.849
    """
    dev = _traced(params.act_bits, params.weight_bits, params.sram_width, spmat_kb)
    xp = jnp if dev else np
    act = _fl(params.act_bits, dev) / CAL_PRECISION
    ratio = sram.lookup(sram.AREA_MM2, params.sram_width, spmat_kb, xp, check=False)
    um2 = (
        AREA_UM2["spmat_read"] * ratio / _CACTI_AREA0
        + AREA_UM2["ptr_read"]
        + AREA_UM2["filler_cells"]
        + AREA_UM2["arithm"] * _arith_scale(params, dev)
        + (AREA_UM2["act_rw"] + AREA_UM2["act_queue"]) * act
    )
    return um2 * 1e-6


def energy_report(
    counters: Counters,
    *,
    line_reads: str = "kept",
    read_energy: str = "cacti",
    leakage: bool = True,
    spmat_kb: Any = None,
) -> EnergyReport:
    """Energy and derived metrics from a run's counters (pure; jit/vmap-able).

    Args:
        counters: a :class:`eie_model.types.Counters` (fast model, sweep or reference;
            batched or not): ``cycles``, ``useful_macs``, ``fillers``, ``pointer_reads``,
            ``spm_line_reads`` (or ``spm_line_reads_fresh``) with its ``params`` (``n_pes``,
            ``sram_width``, ``act_bits``, ``weight_bits``, ``clock_hz``) and
            ``static.ptr_bits``.
        line_reads: keyword-only, ``"kept"`` (default: charge ``spm_line_reads``, a line
            stays open across columns) or ``"fresh"`` (``spm_line_reads_fresh``, a fresh fetch
            per broadcast column).
        read_energy: ``"cacti"`` (default; CACTI's read energy by width and capacity) or
            ``"linear"`` (``1/2 + 1/2 x W / 64``, the earlier rule).
        leakage: charge the SpMat SRAM's leakage (CACTI's share of Table II's SpMat power).
        spmat_kb: SpMat capacity per PE in KB (default: ``static.spmat_bytes / 1024`` where
            the static has it, else 128).

    Returns:
        ``EnergyReport`` batched like the counters: ``float32`` jnp arrays for device or
        traced counters (under ``jit``), ``float64`` NumPy for host ones (a sweep's).

    Raises:
        ValueError: a counter is negative, NaN or infinite (checked when the counters are
            concrete; under ``jit`` / ``vmap`` the energy, power and efficiency are NaN instead).
        TypeError: a counter is not a real number; ``counters`` is not a ``Counters``.
        ValueError: ``line_reads`` or ``read_energy`` unknown; ``line_reads="fresh"`` on
            counters without ``spm_line_reads_fresh``.

    Example:
        >>> import jax
        >>> from eie_model.types import Counters, EIEParams, EIEStatic
        >>> c = Counters(EIEStatic(max_pes=4), EIEParams(n_pes=4), cycles=100, useful_macs=300,
        ...              fillers=0, pointer_reads=64, spm_line_reads=50, stall_cycles=0,
        ...              starvation_cycles=0, busy=np.full(4, 75))
        >>> r = jax.jit(energy_report)(c)
        >>> bool(r.energy_j > 0), bool(r.gops > 0)
        (True, True)
    """
    if not isinstance(counters, Counters):
        raise TypeError(
            f"energy_report: counters must be an eie_model.Counters, got {type(counters).__name__}"
        )
    if read_energy not in READ_ENERGY:
        raise ValueError(f"read_energy must be one of {READ_ENERGY}, got {read_energy!r}")
    e_read, leak_mw = spmat_calibration(line_reads, leakage)
    line_field = "spm_line_reads" if line_reads == "kept" else "spm_line_reads_fresh"
    if getattr(counters, line_field) is None:
        raise ValueError(
            f"energy_report: line_reads={line_reads!r} needs counters.{line_field}; these "
            "counters have none (simulate, sweep and the reference simulator count it)"
        )
    params, static = counters.params, counters.static
    names = ("cycles", "useful_macs", "fillers", "pointer_reads", line_field)
    for k in names:  # host-side, where the counters are concrete
        v = getattr(counters, k)
        if isinstance(v, jax.core.Tracer):
            continue
        a = np.asarray(v)
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"energy_report: counters.{k} must be real numbers, got {a.dtype}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"energy_report: counters.{k} must be finite and >= 0 (counts)")
    kb = _spmat_kb(static, spmat_kb)
    dev = counters._xp() is jnp or _traced(*jax.tree.leaves(params), kb)
    xp = jnp if dev else np

    def _f32(x):
        return _fl(x, dev)

    cycles = _f32(counters.cycles)
    useful = _f32(counters.useful_macs)
    fillers = _f32(counters.fillers)
    entries = useful + fillers
    ptr = _f32(counters.pointer_reads)
    lines = _f32(getattr(counters, line_field))
    n = _f32(params.n_pes)
    width = _f32(params.sram_width)
    act = _f32(params.act_bits) / CAL_PRECISION
    time_s = cycles / _f32(params.clock_hz)

    if read_energy == "cacti":
        per_read = sram.lookup(sram.READ_PJ, width, kb, xp, check=False) / _CACTI_READ0
    else:
        per_read = 0.5 + 0.5 * width / CAL_SRAM_WIDTH
    spmat = lines * e_read * per_read
    leak_w = leak_mw * 1e-3 * sram.lookup(sram.LEAK_MW, width, kb, xp, check=False) / _CACTI_LEAK0
    leak = leak_w * n * time_s
    pointer = ptr * E_ACCESS_J["ptr_read"] * (static.ptr_bits / CAL_PTR_BITS)
    arith = entries * E_ACCESS_J["arithm"] * _arith_scale(params, dev)
    actrw = useful * E_ACCESS_J["act_rw"] * act
    queue = ptr * E_ACCESS_J["act_queue"] * act
    broadcast = (ptr / n) * E_BROADCAST_J
    static = cycles * n * E_STATIC_J
    total = spmat + pointer + arith + actrw + queue + broadcast + static + leak

    safe_t = xp.where(time_s > 0, time_s, 1.0)
    power = xp.where(time_s > 0, total / safe_t, 0.0)
    area = pe_area_mm2(params, kb) * n
    gops = xp.where(time_s > 0, 2.0 * useful / safe_t * 1e-9, 0.0)
    fps = xp.where(time_s > 0, 1.0 / safe_t, 0.0)
    rep = EnergyReport(
        energy_j=total,
        spmat_j=spmat,
        pointer_j=pointer,
        arith_j=arith,
        actrw_j=actrw,
        queue_j=queue,
        broadcast_j=broadcast,
        static_j=static,
        leak_j=leak,
        time_s=time_s,
        power_w=power,
        area_mm2=area,
        gops=gops,
        gops_per_w=xp.where(power > 0, gops / xp.where(power > 0, power, 1.0), 0.0),
        frames_per_s=fps,
        frames_per_s_per_mm2=fps / area,
    )
    # traced counters cannot be checked above: a negative or NaN count makes every figure but
    # the area NaN (never a negative energy)
    bad = xp.zeros((), bool)
    for c in (cycles, useful, fillers, ptr, lines):
        bad = bad | xp.any(~(c >= 0))
    return rep._replace(
        **{k: xp.where(bad, xp.nan, v) for k, v in rep._asdict().items() if k != "area_mm2"}
    )


def full_load_counters(static: EIEStatic, params: EIEParams, *, cycles: int) -> Counters:
    """Counters of ``cycles`` cycles of every PE fully busy at the calibration activity.

    One entry (a useful MAC) per PE-cycle, ``CAL_LINES_PER_ENTRY`` line reads
    (``CAL_FRESH_LINES_PER_ENTRY`` fresh per column) and
    ``1 / CAL_ENTRIES_PER_COLUMN`` pointer reads per entry (the calibration access mix, whatever
    the params' SRAM width). For calibration checks and peak-throughput estimates.

    Args:
        static: the :class:`eie_model.types.EIEStatic`.
        params: one design point (:class:`eie_model.types.EIEParams`; ``n_pes`` concrete).
        cycles: keyword-only, the run's length.

    Returns:
        float-valued :class:`eie_model.types.Counters` (``busy`` over ``n_pes`` PEs).

    Example:
        >>> from eie_model.types import EIEParams, EIEStatic
        >>> float(full_load_counters(EIEStatic(), EIEParams(n_pes=2), cycles=8).useful_macs)
        16.0
    """
    n = int(params.n_pes)
    return Counters(
        static,
        params,
        cycles=np.float64(cycles),
        useful_macs=np.float64(cycles * n),
        fillers=np.float64(0.0),
        pointer_reads=np.float64(cycles * n / CAL_ENTRIES_PER_COLUMN),
        spm_line_reads=np.float64(cycles * n * CAL_LINES_PER_ENTRY),
        stall_cycles=np.float64(0.0),
        starvation_cycles=np.float64(0.0),
        busy=np.full(n, float(cycles)),
        spm_line_reads_fresh=np.float64(cycles * n * CAL_FRESH_LINES_PER_ENTRY),
    )
