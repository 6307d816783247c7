"""SpMat SRAM by width and capacity: the CACTI table, the fresh-per-column line-read count in
simulate / sweep (both engines) / the reference against an oracle on the CSC encoding, and the
energy and area the table drives."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import energy as E
from eie_model import reference, sim, sram
from eie_model.energy import energy_report, full_load_counters, pe_area_mm2
from eie_model.format import encode_layer
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

sweep = importlib.import_module("eie_model.sweep")

WIDTHS = [16, 32, 64, 128, 256, 512]


# ------------------------------------------------------------------------------ the table
def test_table_functions_hit_grid_points_and_interpolate_in_log2():
    for fn, tab in (
        (sram.spmat_read_pj, sram.READ_PJ),
        (sram.spmat_leakage_mw, sram.LEAK_MW),
        (sram.spmat_area_mm2, sram.AREA_MM2),
    ):
        w, c = np.meshgrid(sram.WIDTHS, sram.CAPACITIES_KB)
        np.testing.assert_allclose(np.asarray(fn(w, c)), tab, rtol=1e-6)
        # halfway in log2 between 64 and 128 bits (90.5 bits), at 128 KB: the mean
        mid = float(fn(64 * 2**0.5, 128))
        assert mid == pytest.approx((tab[2, 2] + tab[2, 3]) / 2, rel=1e-5)
        mid = float(fn(64, 128 * 2**0.5))
        assert mid == pytest.approx((tab[2, 2] + tab[3, 2]) / 2, rel=1e-5)


def test_table_functions_under_jit_and_vmap():
    w = jnp.array([16.0, 48.0, 64.0, 300.0, 512.0])
    c = jnp.array([32.0, 100.0, 128.0, 128.0, 512.0])
    for fn in (sram.spmat_read_pj, sram.spmat_leakage_mw, sram.spmat_area_mm2):
        eager = np.asarray(fn(np.asarray(w), np.asarray(c)))
        np.testing.assert_allclose(np.asarray(jax.jit(fn)(w, c)), eager, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(jax.vmap(fn)(w, c)), eager, rtol=1e-6)
        assert np.isnan(float(jax.jit(fn)(1024.0, 128.0)))  # traced: NaN outside the table


def test_table_functions_refuse_out_of_range():
    with pytest.raises(ValueError, match="width must lie in 16..512"):
        sram.spmat_read_pj(8)
    with pytest.raises(ValueError, match="capacity_kb must lie in 32..512"):
        sram.spmat_area_mm2(64, 1024)
    with pytest.raises(TypeError, match="width must be a real number"):
        sram.spmat_leakage_mw("64")


def test_read_energy_grows_with_width_and_capacity_leakage_with_capacity():
    assert np.all(np.diff(sram.READ_PJ, axis=1) > 0) and np.all(np.diff(sram.READ_PJ, axis=0) > 0)
    assert np.all(np.diff(sram.LEAK_MW, axis=0) > 0)  # leakage: the bits stored


# ---------------------------------------------------------------------- the line reads
def _oracle_line_reads(layer: Layer, n_pes: int, index_bits: int, widths, code_bits: int):
    """``[(kept, fresh)]`` line reads per width, straight from the CSC encoding (no simulator
    code)."""
    enc = encode_layer(
        layer.codes, layer.bias_codes, n_pes=n_pes, index_bits=index_bits, code_bits=code_bits
    )
    n = layer.codes.shape[1]
    cols = [j for j in range(n) if layer.act[j] != 0]
    if enc.has_bias:
        cols.append(enc.n_cols - 1)
    lo, hi = enc.col_ptr[:, cols], enc.col_ptr[:, np.asarray(cols) + 1]  # (N, K) slices
    out = []
    for width in widths:
        epl = width // (code_bits + index_bits)
        kept = fresh = 0
        for i in range(n_pes):
            nz = hi[i] > lo[i]
            first, last = lo[i][nz] // epl, (hi[i][nz] - 1) // epl
            fresh += int(np.sum(last - first + 1))
            prev = np.concatenate([[-1], last[:-1]])  # the line the previous slice ended on
            kept += int(np.sum(last - first + 1 - (first == prev)))
        out.append((kept, fresh))
    return out


def _layer(seed=0, m=40, n=30):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.3, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    return Layer(codes, np.linspace(0, 1, 16, dtype=np.float32), act, bias)


def test_fresh_line_reads_agree_everywhere_on_random_layers():
    """sweep == reference == the CSC oracle, for both counts, over widths, index bits and PE
    counts (acc_regs passes included); the same at 64 bits for both engines and
    vmap(simulate): tests/test_eie_sweep.py compares every counter, this one included."""
    layer = _layer(1)
    g = EIEParams.grid(n_pes=[3, 8], index_bits=[1, 4], sram_width=[16, 40, 512], acc_regs=[0, 3])
    static = EIEStatic.covering(g)
    host = sweep.sweep(static, g, layer, engine="host")
    for i in range(len(g)):
        n, r, w, a = (int(x) for x in (g.n_pes[i], g.index_bits[i], g.sram_width[i], g.acc_regs[i]))
        ref = reference.simulate(static, g[i], layer)
        assert int(ref.spm_line_reads_fresh) == int(host.spm_line_reads_fresh[i]), i
        assert int(ref.spm_line_reads) == int(host.spm_line_reads[i]), i
        if a == 0:  # one pass: the oracle walks the whole encoding
            [(kept, fresh)] = _oracle_line_reads(layer, n, r, [w], static.code_bits)
            assert (kept, fresh) == (int(ref.spm_line_reads), int(ref.spm_line_reads_fresh))
    assert np.all(host.spm_line_reads_fresh >= host.spm_line_reads)
    # the stage function itself, under jit
    from eie_model.sim.events import layer_events
    from eie_model.sim.work import pe_work

    work = pe_work(layer_events(layer), 3, 4, max_pes=4)
    f = jax.jit(lambda w, e: sim.counters.sram_line_reads(w, e, fresh=True))
    assert int(np.sum(f(work, 2))) == _oracle_line_reads(layer, 3, 4, [16], 4)[0][1]


def test_fresh_line_reads_on_the_real_layer(eie_layer_path):
    """sweep == reference == the CSC oracle on the real layer (simulate == sweep: above)."""
    d = np.load(eie_layer_path)
    layer = Layer(d["codes"], d["codebook"], d["act"], d["bias_codes"])
    g = EIEParams.grid(n_pes=[64], fifo_depth=[8], sram_width=WIDTHS)
    static = EIEStatic.covering(g)
    host = sweep.sweep(static, g, layer, engine="host")
    want = _oracle_line_reads(layer, 64, 4, WIDTHS, static.code_bits)
    got = list(zip(host.spm_line_reads.tolist(), host.spm_line_reads_fresh.tolist(), strict=True))
    assert got == want
    ref = reference.simulate(static, g[1], layer)  # 32 bits
    assert (ref.spm_line_reads, ref.spm_line_reads_fresh) == want[1]
    # the calibration constants of the energy model are this layer's 64-bit counts
    i64 = WIDTHS.index(64)
    assert want[i64][0] / int(host.useful_macs[i64]) == E.CAL_LINES_PER_ENTRY
    assert want[i64][1] / int(host.useful_macs[i64]) == E.CAL_FRESH_LINES_PER_ENTRY


# ---------------------------------------------------------------------- energy and area
def _counters(params, **c):
    zero = np.zeros(np.shape(c["cycles"]))
    c.setdefault("stall_cycles", zero)
    c.setdefault("starvation_cycles", zero)
    busy = np.zeros((*np.shape(c["cycles"]), 1))
    return Counters(EIEStatic(max_pes=64), params, busy=busy, **c)


C = dict(cycles=1000, useful_macs=4000, fillers=100, pointer_reads=800, spm_line_reads=500)


@pytest.mark.parametrize("mode", ["kept", "fresh"])
def test_590_mw_at_calibration_in_either_line_read_mode(mode):
    c = full_load_counters(EIEStatic(), EIEParams(n_pes=64), cycles=10_000)
    r = energy_report(c, line_reads=mode)
    assert float(r.power_w) == pytest.approx(0.590, rel=2e-3)
    spmat_mw = (float(r.spmat_j) + float(r.leak_j)) / float(r.time_s) * 1e3 / 64
    dyn = (E.PE_POWER_MW - E.CLOCK_NETWORK_MW) / E.PE_POWER_MW
    assert spmat_mw == pytest.approx(E.POWER_MW["spmat_read"] * dyn, rel=1e-6)
    # CACTI's own split at 64 bits / 128 KB: leakage over reads + leakage
    e_read, leak_mw = E.spmat_calibration(mode)
    rate = {"kept": E.CAL_LINES_PER_ENTRY, "fresh": E.CAL_FRESH_LINES_PER_ENTRY}[mode]
    cacti_read_mw = sram.READ_PJ[2, 2] * 1e-12 * rate * 800e6 * 1e3
    assert leak_mw / spmat_mw == pytest.approx(
        sram.LEAK_MW[2, 2] / (sram.LEAK_MW[2, 2] + cacti_read_mw), rel=1e-6
    )


def test_linear_rule_without_leakage_is_the_earlier_model():
    for w in (32, 64, 128):
        r = energy_report(
            _counters(EIEParams(sram_width=w), **C), read_energy="linear", leakage=False
        )
        assert float(r.leak_j) == 0.0
        want = 500 * E.E_ACCESS_J["spmat_read"] * (0.5 + 0.5 * w / 64)
        assert float(r.spmat_j) == pytest.approx(want, rel=1e-6)


def test_cacti_rule_scales_reads_leakage_and_area_by_the_table():
    base = energy_report(_counters(EIEParams(), **C))
    for w in (16, 128, 512):
        for kb in (64, 128, 256):
            r = energy_report(_counters(EIEParams(sram_width=w), **C), spmat_kb=kb)
            ratio = float(sram.spmat_read_pj(w, kb)) / float(sram.spmat_read_pj(64, 128))
            assert float(r.spmat_j) == pytest.approx(float(base.spmat_j) * ratio, rel=1e-5)
            ratio = float(sram.spmat_leakage_mw(w, kb)) / float(sram.spmat_leakage_mw(64, 128))
            assert float(r.leak_j) == pytest.approx(float(base.leak_j) * ratio, rel=1e-5)
            area = float(sram.spmat_area_mm2(w, kb)) / float(sram.spmat_area_mm2(64, 128))
            got = float(pe_area_mm2(EIEParams(sram_width=w), kb)) - float(pe_area_mm2(EIEParams()))
            assert got == pytest.approx(E.AREA_UM2["spmat_read"] * 1e-6 * (area - 1), rel=1e-6)


def test_leakage_is_power_times_time():
    a = energy_report(_counters(EIEParams(), **C))
    b = energy_report(_counters(EIEParams(), **dict(C, cycles=2000)))
    fast = energy_report(_counters(EIEParams(clock_hz=1.6e9), **C))
    assert float(b.leak_j) == pytest.approx(2 * float(a.leak_j), rel=1e-9)
    assert float(fast.leak_j) == pytest.approx(float(a.leak_j) / 2, rel=1e-9)
    _, leak_mw = E.spmat_calibration()
    assert float(a.leak_j) == pytest.approx(leak_mw * 1e-3 * 64 * 1000 / 800e6, rel=1e-9)


def test_energy_options_under_jit_and_vmap():
    batch = EIEParams.stack([EIEParams(n_pes=8, sram_width=w) for w in (16, 100, 512)])
    c = _counters(
        batch,
        cycles=jnp.array([100.0, 200.0, 300.0]),
        useful_macs=jnp.array([500.0, 600.0, 700.0]),
        fillers=jnp.array([5.0, 6.0, 7.0]),
        pointer_reads=jnp.array([80.0, 80.0, 80.0]),
        spm_line_reads=jnp.array([90.0, 60.0, 30.0]),
        spm_line_reads_fresh=jnp.array([120.0, 70.0, 40.0]),
    )
    f = jax.jit(jax.vmap(lambda c, kb: energy_report(c, line_reads="fresh", spmat_kb=kb)))
    out = f(c, jnp.array([64.0, 128.0, 300.0]))
    for i, kb in enumerate((64.0, 128.0, 300.0)):
        one = energy_report(jax.tree.map(lambda x, i=i: x[i], c), line_reads="fresh", spmat_kb=kb)
        for k in out._fields:
            np.testing.assert_allclose(
                np.asarray(getattr(out, k))[i], np.asarray(getattr(one, k)), rtol=2e-6, err_msg=k
            )


def test_energy_outside_the_table_is_nan_and_bad_options_raise():
    r = energy_report(_counters(EIEParams(sram_width=8), **C))
    assert np.isnan(float(r.spmat_j)) and np.isnan(float(r.area_mm2))
    with pytest.raises(ValueError, match="spm_line_reads_fresh"):
        energy_report(_counters(EIEParams(), **C), line_reads="fresh")
    with pytest.raises(ValueError, match="line_reads must be one of"):
        energy_report(_counters(EIEParams(), **C), line_reads="open")
    with pytest.raises(ValueError, match="read_energy must be one of"):
        energy_report(_counters(EIEParams(), **C), read_energy="cubic")


# ----------------------------------------------------------------------------- the examples
def test_cacti_config_changes_only_the_listed_lines(load_example):
    ex = load_example("cacti_sram_table")
    shipped = "\n".join(
        [
            "-size (bytes) 131072",
            "-block size (bytes) 64",
            "-associativity 2",
            "-technology (u) 0.090",
            "-output/input bus width 512",
            '-cache type "cache"',
            '-Data array cell type - "itrs-hp"',
            "-UCA bank count 1",
        ]
    )
    cfg = ex.config(shipped, 65536, 128).splitlines()
    assert cfg == [
        "-size (bytes) 65536",
        "-block size (bytes) 16",
        "-associativity 1",
        "-technology (u) 0.045",
        "-output/input bus width 128",
        '-cache type "ram"',
        '-Data array cell type - "itrs-lop"',
        "-UCA bank count 1",
    ]
    with pytest.raises(ValueError, match="no line matching"):
        ex.config("-size (bytes) 1", 1024, 64)


def test_width_study_energies_are_energy_reports(load_example):
    ex = load_example("eie_sram_width")
    layer = _layer(2, m=64, n=40)
    s = ex.width_study(layer, widths=(16, 64), n_pes=4, fifo=2)
    p = EIEParams.grid(n_pes=[4], fifo_depth=[2], sram_width=[16, 64])
    c = sweep.sweep(EIEStatic.covering(p), p, layer)
    np.testing.assert_allclose(s[("kept", "cacti", True)], c.table()["energy_j"], rtol=1e-12)
    r = energy_report(c, line_reads="fresh", read_energy="linear", leakage=False)
    np.testing.assert_allclose(s[("fresh", "linear", False)], r.energy_j, rtol=1e-12)
    assert np.all(s["fresh"] >= s["kept"])
