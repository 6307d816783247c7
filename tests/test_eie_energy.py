"""Energy model: calibration to the paper, pure/jit/vmap, scaling rules, counters from runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import energy as E
from eie_model.energy import energy_report, full_load_counters, pe_area_mm2
from eie_model.reference import simulate
from eie_model.types import Counters, EIEParams, EIEStatic, Layer


def _counters(params, **c):
    """Counters of the given values (busy per PE unused by the energy model)."""
    zero = np.zeros(np.shape(c["cycles"]))
    c.setdefault("stall_cycles", zero)
    c.setdefault("starvation_cycles", zero)
    busy = np.zeros((*np.shape(c["cycles"]), 1))
    return Counters(EIEStatic(max_pes=64), params, busy=busy, **c)


def test_table_ii_constants_are_consistent():
    assert sum(E.POWER_MW.values()) == pytest.approx(E.PE_POWER_MW, abs=2e-3)
    assert sum(E.AREA_UM2.values()) == pytest.approx(E.PE_AREA_UM2)
    assert float(pe_area_mm2(EIEParams())) == pytest.approx(0.638024, rel=1e-6)


def test_fully_busy_64_pe_eie_draws_590_mw_with_table_ii_breakdown():
    r = energy_report(full_load_counters(EIEStatic(), EIEParams(n_pes=64), cycles=10_000))
    assert float(r.power_w) == pytest.approx(0.590, rel=2e-3)
    assert float(r.area_mm2) == pytest.approx(40.8, rel=2e-3)  # paper: 40.8 mm^2
    assert float(r.gops) == pytest.approx(102.4, rel=1e-4)  # paper: 102 GOP/s
    t = float(r.time_s)
    dyn = (E.PE_POWER_MW - E.CLOCK_NETWORK_MW) / E.PE_POWER_MW
    parts = (
        (("spmat_j", "leak_j"), "spmat_read"),
        (("pointer_j",), "ptr_read"),
        (("arith_j",), "arithm"),
    )
    for part, comp in parts:  # the SpMat's Table II power: its reads and its leakage
        mw = sum(float(getattr(r, p)) for p in part) / t * 1e3 / 64
        assert mw == pytest.approx(E.POWER_MW[comp] * dyn, rel=1e-3)
    parts = sum(float(getattr(r, k)) for k in r._fields if k.endswith("_j") and k != "energy_j")
    assert parts == pytest.approx(float(r.energy_j), rel=1e-6)


def test_jit_and_vmap_over_configs():
    pts = [EIEParams(n_pes=8, sram_width=w, act_bits=b) for w, b in ((32, 8), (64, 16), (128, 32))]
    batch = EIEParams.stack(pts)
    counters = _counters(
        batch,
        cycles=jnp.array([100.0, 200.0, 300.0]),
        useful_macs=jnp.array([500.0, 600.0, 700.0]),
        fillers=jnp.array([5.0, 6.0, 7.0]),
        pointer_reads=jnp.array([80.0, 80.0, 80.0]),
        spm_line_reads=jnp.array([90.0, 60.0, 30.0]),
    )
    out = jax.jit(jax.vmap(energy_report))(counters)
    for i in range(3):
        one = energy_report(jax.tree.map(lambda x, i=i: x[i], counters))
        for k in out._fields:
            np.testing.assert_allclose(
                np.asarray(getattr(out, k))[i], np.asarray(getattr(one, k)), rtol=1e-6
            )


def test_scaling_rules():
    c = dict(cycles=1000, useful_macs=4000, fillers=100, pointer_reads=800, spm_line_reads=500)

    def rep(counters=c, **kw):
        return energy_report(_counters(EIEParams(**kw), **counters))

    base = rep()
    wide = rep(sram_width=128)  # CACTI's read energy at 128 bits over 64 (eie_model/sram.py)
    ratio = E.sram.READ_PJ[2, 3] / E.sram.READ_PJ[2, 2]
    assert float(wide.spmat_j) == pytest.approx(ratio * float(base.spmat_j), rel=1e-6)
    lo = rep(act_bits=8, weight_bits=8)
    assert float(lo.arith_j) == pytest.approx(0.375 * float(base.arith_j), rel=1e-6)
    assert float(lo.actrw_j) == pytest.approx(0.5 * float(base.actrw_j), rel=1e-6)
    assert float(lo.area_mm2) < float(base.area_mm2)
    fast = rep(clock_hz=1.6e9)  # per-access energies do not move; leakage is power x time
    dyn = float(base.energy_j) - float(base.leak_j)
    assert float(fast.energy_j) - float(fast.leak_j) == pytest.approx(dyn)
    assert float(fast.leak_j) == pytest.approx(float(base.leak_j) / 2, rel=1e-6)
    assert float(fast.time_s) == pytest.approx(float(base.time_s) / 2)
    assert float(fast.power_w) == pytest.approx(float(fast.energy_j) / float(fast.time_s))
    zero = rep(dict(c, cycles=0))
    assert float(zero.power_w) == 0.0 and float(zero.gops) == 0.0


def test_on_reference_counters():
    rng = np.random.default_rng(0)
    codes = ((rng.random((64, 48)) < 0.3) * rng.integers(1, 16, (64, 48))).astype(np.uint8)
    act = (rng.random(48) < 0.5).astype(np.float32)
    params = EIEParams(n_pes=8, fifo_depth=4)
    c = simulate(EIEStatic.covering(params), params, Layer(codes, np.arange(16.0), act))
    r = energy_report(c)
    assert 0 < float(r.power_w) < 8 * E.PE_POWER_MW * 1e-3 * 1.5
    assert float(r.gops_per_w) > 0 and float(r.frames_per_s_per_mm2) > 0
    assert float(c.energy.energy_j) == float(r.energy_j)  # the property is the same function


def test_bad_input():
    with pytest.raises(TypeError, match="Counters"):
        energy_report(dict(cycles=1, useful_macs=1, fillers=0, pointer_reads=1))
