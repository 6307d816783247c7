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

Scaling rules for other design points:

* SRAM width W: a line read costs ``E_line(W) = E_line(64) x (1/2 + 1/2 x W / 64)``: half of
  the 64-bit read is per-access overhead (decoder, word line, control), half grows with the
  bits read (CACTI-style; an assumption). Wider lines mean fewer reads but dearer ones.
  Caveat: with the line-read counter (a line stays open across columns) the real
  layer's reads fall faster than this rule's cost grows, so SpMat energy falls monotonically
  with width (16..512 bits); the thesis' optimum at 64 bits (Figures 6.12/6.13) is not
  reproduced. Table II gives no per-width energies to fit a steeper rule to.
* Precision: ArithmUnit energy per operation scales as
  ``1/2 x (weight_bits x act_bits) / 16**2 + 1/2 x act_bits / 16`` (half multiplier, half
  adder, at 16 bits); ActRW and Act_queue energies scale as ``act_bits / 16``; pointer reads
  as ``ptr_bits / 16``. Areas of ArithmUnit, ActRW and Act_queue scale the same way; the SRAMs'
  area (capacity, not width) does not change.
* Clock: energy per access does not depend on the clock; power = energy / time.

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

from eie_model.types import Counters, EIEParams, EIEStatic

__all__ = ["EnergyReport", "energy_report", "full_load_counters", "pe_area_mm2"]
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
CAL_PRECISION = 16
CAL_PTR_BITS = 16

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


class EnergyReport(NamedTuple):
    """Energy, time, power, area and throughput of one run (jnp arrays, batched like inputs).

    Attributes:
        energy_j: total energy (J).
        spmat_j, pointer_j, arith_j, actrw_j, queue_j, broadcast_j, static_j: its parts (J).
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


def pe_area_mm2(params: EIEParams):
    """Area of one PE in mm^2 under the precision scaling rule (jnp scalar, batched).

    Args:
        params: :class:`eie_model.types.EIEParams` (``act_bits``, ``weight_bits`` are used).

    Returns:
        an array batched like ``params`` (``float32`` jnp for device or traced params,
        ``float64`` NumPy for host ones).

    Example:
        >>> from eie_model.types import EIEParams
        >>> from eie_model.energy import pe_area_mm2
        >>> round(float(pe_area_mm2(EIEParams())), 6)
        0.638024
    """
    dev = _traced(params.act_bits, params.weight_bits)
    act = _fl(params.act_bits, dev) / CAL_PRECISION
    um2 = (
        AREA_UM2["spmat_read"]
        + AREA_UM2["ptr_read"]
        + AREA_UM2["filler_cells"]
        + AREA_UM2["arithm"] * _arith_scale(params, dev)
        + (AREA_UM2["act_rw"] + AREA_UM2["act_queue"]) * act
    )
    return um2 * 1e-6


def energy_report(counters: Counters) -> EnergyReport:
    """Energy and derived metrics from a run's counters (pure; jit/vmap-able).

    Args:
        counters: a :class:`eie_model.types.Counters` (fast model, sweep or reference;
            batched or not): ``cycles``, ``useful_macs``, ``fillers``, ``pointer_reads``,
            ``spm_line_reads`` with its ``params`` (``n_pes``, ``sram_width``, ``act_bits``,
            ``weight_bits``, ``clock_hz``) and ``static.ptr_bits``.

    Returns:
        ``EnergyReport`` batched like the counters: ``float32`` jnp arrays for device or
        traced counters (under ``jit``), ``float64`` NumPy for host ones (a sweep's).

    Raises:
        ValueError: a counter is negative, NaN or infinite (checked when the counters are
            concrete; under ``jit`` / ``vmap`` the energy, power and efficiency are NaN instead).
        TypeError: a counter is not a real number; ``counters`` is not a ``Counters``.

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
    params, static = counters.params, counters.static
    names = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads")
    for k in names:  # host-side, where the counters are concrete
        v = getattr(counters, k)
        if isinstance(v, jax.core.Tracer):
            continue
        a = np.asarray(v)
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"energy_report: counters.{k} must be real numbers, got {a.dtype}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"energy_report: counters.{k} must be finite and >= 0 (counts)")
    dev = counters._xp() is jnp or _traced(*jax.tree.leaves(params))
    xp = jnp if dev else np

    def _f32(x):
        return _fl(x, dev)

    cycles = _f32(counters.cycles)
    useful = _f32(counters.useful_macs)
    fillers = _f32(counters.fillers)
    entries = useful + fillers
    ptr = _f32(counters.pointer_reads)
    lines = _f32(counters.spm_line_reads)
    n = _f32(params.n_pes)
    width = _f32(params.sram_width)
    act = _f32(params.act_bits) / CAL_PRECISION

    spmat = lines * E_ACCESS_J["spmat_read"] * (0.5 + 0.5 * width / CAL_SRAM_WIDTH)
    pointer = ptr * E_ACCESS_J["ptr_read"] * (static.ptr_bits / CAL_PTR_BITS)
    arith = entries * E_ACCESS_J["arithm"] * _arith_scale(params, dev)
    actrw = useful * E_ACCESS_J["act_rw"] * act
    queue = ptr * E_ACCESS_J["act_queue"] * act
    broadcast = (ptr / n) * E_BROADCAST_J
    static = cycles * n * E_STATIC_J
    total = spmat + pointer + arith + actrw + queue + broadcast + static

    time_s = cycles / _f32(params.clock_hz)
    safe_t = xp.where(time_s > 0, time_s, 1.0)
    power = xp.where(time_s > 0, total / safe_t, 0.0)
    area = pe_area_mm2(params) * n
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

    One entry (a useful MAC) per PE-cycle, ``CAL_LINES_PER_ENTRY`` line reads and
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
    )
