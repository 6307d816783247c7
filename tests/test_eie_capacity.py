"""Tests of eie_model.capacity: entries per PE against the encoder, both sides of the pointer /
SRAM limit in simulate, sweep (both engines) and the reference simulator, the error's content."""

from __future__ import annotations

import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import reference, sim
from eie_model.capacity import CapacityError, capacity_entries, check_capacity, stored_entries
from eie_model.format import encode_layer
from eie_model.sim.events import layer_events
from eie_model.types import EIEParams, EIEStatic, Layer

sweep = importlib.import_module("eie_model.sweep")


def _layer(seed=0, m=40, n=30, density=0.3):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < density, rng.integers(1, 16, (m, n)), 0)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    return Layer(codes.astype(np.uint8), np.linspace(0, 1, 16, dtype=np.float32), act, bias)


@pytest.mark.parametrize("seed", range(6))
def test_stored_entries_equal_the_encoders_layout(seed):
    """Entries per PE (non-zeros + fillers + bias) are the encoder's, with acc_regs passes laid
    out one by one (as the reference simulator encodes them) and summed."""
    rng = np.random.default_rng(100 + seed)
    m, n = (int(x) for x in rng.integers(1, 70, 2))
    layer = _layer(seed, m, n, density=float(rng.uniform(0.02, 0.5)))
    for n_pes in (1, 3, 8):
        for r in (1, 2, 4):
            for a in (0, 1, 3):
                rows = n_pes * a if a and m > n_pes * a else m
                want = np.zeros(n_pes, np.int64)
                for lo in range(0, m, rows):
                    part = slice(lo, lo + rows)
                    enc = encode_layer(layer.codes[part], layer.bias_codes[part],
                                       n_pes=n_pes, index_bits=r, code_bits=4)  # fmt: skip
                    want += enc.entries_per_pe
                got = stored_entries(layer, n_pes, r, a)
                np.testing.assert_array_equal(got, want, err_msg=f"N={n_pes} r={r} A={a}")
                np.testing.assert_array_equal(
                    stored_entries(layer_events(layer, pad_nnz=layer_events(layer).rows.size + 5),
                                   n_pes, r, a), want)  # fmt: skip


def test_capacity_is_the_smaller_of_pointers_and_sram():
    assert capacity_entries(EIEStatic(), 4) == 1 << 16  # EIE: 16-bit pointers bind
    assert capacity_entries(EIEStatic(ptr_bits=20), 4) == 128 * 1024 * 8 // 8  # SRAM binds
    assert capacity_entries(EIEStatic(ptr_bits=20), 12) == 128 * 1024 * 8 // 16
    assert capacity_entries(EIEStatic(ptr_bits=8, spmat_bytes=1 << 20), 4) == 256
    with pytest.raises(ValueError, match="spmat_bytes"):
        EIEStatic(spmat_bytes=0)


def _limits(layer, params):
    """The fullest PE's entries for one design point, and a static that just fits it."""
    have = int(stored_entries(layer, int(params.n_pes), int(params.index_bits),
                              int(params.acc_regs)).max())  # fmt: skip
    bits = max(have - 1, 1).bit_length()  # 2**bits >= have
    return have, bits


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_both_sides_of_the_limit_in_every_path(engine):
    """At a capacity of exactly the fullest PE's entries every path runs (and agrees); one entry
    less and simulate, sweep and the reference all raise, naming PE, entries and shortfall."""
    layer = _layer(3, m=48, n=40)
    p = EIEParams(n_pes=3, fifo_depth=4, index_bits=4, acc_regs=0)
    have, bits = _limits(layer, p)
    # the SRAM binds (8-bit entries: a byte each): exactly `have` entries fit, then one less
    fits = EIEStatic(max_pes=3, max_fifo=4, ptr_bits=bits + 1, spmat_bytes=have)
    tight = fits.replace(spmat_bytes=have - 1)
    assert capacity_entries(fits, 4) == have and capacity_entries(tight, 4) == have - 1
    ref = reference.simulate(fits, p, layer)
    c = sim.simulate(fits, p, layer)
    s = sweep.sweep(fits, EIEParams.stack([p]), layer, engine=engine)
    assert int(c.cycles) == ref.cycles == int(s.cycles[0])
    for run in (
        lambda st: sim.simulate(st, p, layer),
        lambda st: sweep.sweep(st, EIEParams.stack([p]), layer, engine=engine),
        lambda st: reference.simulate(st, p, layer),
    ):
        with pytest.raises(CapacityError) as info:
            run(tight)
        msg = str(info.value)
        pe = int(np.argmax(stored_entries(layer, 3, 4)))
        short = 1
        assert f"PE {pe} stores {have:,} entries" in msg
        assert f"short by {short:,} entries" in msg
        assert "more PEs" in msg and "ptr_bits" in msg
    # the pointer width binds the same way
    ptr_fits = EIEStatic(max_pes=3, max_fifo=4, ptr_bits=bits, spmat_bytes=1 << 20)
    assert int(sim.simulate(ptr_fits, p, layer).cycles) == ref.cycles
    if (1 << (bits - 1)) < have:
        with pytest.raises(CapacityError, match=re.escape(f"2**ptr_bits = {1 << (bits - 1)}")):
            sim.simulate(ptr_fits.replace(ptr_bits=bits - 1), p, layer)


def test_sweep_names_the_point_that_does_not_fit_and_its_fix_runs():
    """A batch fails on its one point that does not fit (fewer PEs, more entries each); the
    fix the message proposes (its EIEStatic) makes the same sweep run."""
    layer = _layer(5, m=64, n=50)
    g = EIEParams.grid(n_pes=[2, 8], index_bits=[4], acc_regs=[0, 4])
    cap = int(stored_entries(layer, 8, 4, 0).max())
    static = EIEStatic(max_pes=8, ptr_bits=max(cap - 1, 1).bit_length())
    need2 = int(stored_entries(layer, 2, 4).max())
    assert need2 > capacity_entries(static, 4)
    # both N = 2 points overflow; whichever is checked first is named, and its fix applied
    for _ in range(2):
        try:
            sweep.sweep(static, g, layer)
            break
        except CapacityError as e:
            assert re.search("at n_pes=2, index_bits=4, acc_regs=[04]:", str(e)), str(e)
            fix = re.search(r"EIEStatic\(ptr_bits=(\d+), spmat_bytes=(\d+)\)", str(e))
            static = static.replace(ptr_bits=int(fix[1]), spmat_bytes=int(fix[2]))
    sweep.sweep(static, g, layer)  # the proposed statics fit every point


@pytest.mark.slow  # draws the 100 M codes of VGG-6 (about 10 s)
def test_benchmark_sizes_at_64_pes():
    """Alex-6 fits 16-bit pointers at 64 PEs, VGG-6 does not (docs/guides/eie-capacities.md)."""
    alex6, vgg6 = Layer.load("alex6"), Layer.load("vgg6")
    p = EIEParams(n_pes=64)
    static = EIEStatic()
    assert stored_entries(alex6, 64, 4).max() <= 1 << 16
    check_capacity(static, p, alex6)
    assert stored_entries(vgg6, 64, 4).max() > 100_000
    with pytest.raises(CapacityError, match="layer 'vgg6' does not fit"):
        check_capacity(static, p, vgg6)


def test_traced_params_are_not_checked_under_jit_and_vmap():
    """Inside jit / vmap the params are tracers: check_capacity leaves them to the caller
    (simulate checks concrete params before tracing), and vmap(simulate) runs."""
    layer = _layer(1)
    tight = EIEStatic(max_pes=4, ptr_bits=1)
    p = EIEParams(n_pes=jnp.array([2, 4]), fifo_depth=2)

    @jax.jit
    def f(params):
        check_capacity(tight, params, layer)
        return params.n_pes

    assert f(p).tolist() == [2, 4]
    with pytest.raises(CapacityError):
        sim.simulate(tight, EIEParams(n_pes=2, fifo_depth=2), layer)
    full = jax.tree.map(lambda x: jnp.broadcast_to(x, (2,)), p)
    v = jax.vmap(lambda q: sim.simulate(EIEStatic(max_pes=4), q, layer))(full)
    assert v.cycles.shape == (2,)


def test_table_marks_a_layer_that_does_not_fit(capsys):
    """``eie-model table`` reports the layers EIE cannot hold instead of a latency (the layers
    that fit: tests/test_eie_cli.py::test_table_small)."""
    import json

    from eie_model import cli

    argv = ["table", "--layers", "vgg6", "--scale", "0.15", "--pes", "1", "--repeats", "1"]
    assert cli.main([*argv, "--json"]) == 0
    out = capsys.readouterr()
    rows = {r["layer"]: r for r in json.loads(out.out)}
    assert rows["vgg6"]["eie_us"] is None and rows["vgg6"]["eie_cycles"] is None
    assert "vgg6" in out.err and "does not fit at n_pes=1" in out.err


# ------------------------------------------------------------------- activation batches
COUNTERS = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
            "stall_cycles", "starvation_cycles")  # fmt: skip


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_activation_batches_agree_in_every_path(engine):
    """Inputs beyond N * act_regs run in batches: simulate, sweep (this engine) and the
    reference agree counter for counter, with acc_regs passes too; the reference's outputs are
    bit-identical to one batch (partial sums stay in the accumulators)."""
    layer = _layer(7, m=26, n=37)
    g = EIEParams.grid(n_pes=[1, 3], fifo_depth=[1, 3], acc_regs=[0, 4], index_bits=[2],
                       sram_width=[16])  # fmt: skip
    for act_regs in (1, 3):
        st = EIEStatic(max_pes=3, max_fifo=3, act_regs=act_regs)
        c = sweep.sweep(st, g, layer, engine=engine)
        for i in range(len(g)):
            ref, y = reference.run(st, g[i], layer)
            _, y_one = reference.run(st.replace(act_regs=0), g[i], layer)
            np.testing.assert_array_equal(y, y_one)
            one = sim.simulate(st, g[i], layer)
            for k in COUNTERS:
                assert int(getattr(c, k)[i]) == int(getattr(ref, k)) == int(getattr(one, k)), k
            n = int(g.n_pes[i])
            np.testing.assert_array_equal(c.busy[i, :n], ref.busy)


def test_batches_split_the_scan_and_a_layer_that_fits_is_unchanged():
    """A batch restarts the LNZD scan and drains the pipeline: more cycles, the same work and
    broadcasts; n <= N * act_regs: every counter equals the unbatched run."""
    layer = _layer(8, m=20, n=40)
    p = EIEParams.stack([EIEParams(n_pes=4, fifo_depth=2, acc_regs=0)])

    def run(act_regs):  # the sweep equals simulate and the reference (tests above)
        return sweep.sweep(EIEStatic(max_pes=4, act_regs=act_regs), p, layer, engine="host")

    one = run(0)
    fits = run(10)  # 4 x 10 = 40 inputs
    for k in (*COUNTERS, "busy"):
        np.testing.assert_array_equal(np.asarray(getattr(fits, k)), np.asarray(getattr(one, k)))
    ev = layer_events(layer)
    assert int(sim.n_batches(EIEStatic(act_regs=10), ev, 4)) == 1
    four = run(3)  # 10 groups -> 3 + 3 + 3 + 1
    assert int(sim.n_batches(EIEStatic(act_regs=3), ev, 4)) == 4
    for k in ("useful_macs", "fillers", "pointer_reads"):
        assert getattr(four, k)[0] == getattr(one, k)[0], k
    assert four.cycles[0] > one.cycles[0]
    # the bias takes no register: exactly N * act_regs inputs and a bias stay one batch
    assert layer.bias_codes is not None
    assert int(sim.n_batches(EIEStatic(act_regs=5), layer_events(layer), 8)) == 1


def test_accumulator_default_is_eies_and_zero_is_unlimited():
    """EIEParams' default acc_regs is EIE's 64; 0 is unlimited (one pass). NT-Wd's 8,791
    outputs at 64 PEs: three passes by default, one with 0 (every broadcast three times)."""
    assert int(EIEParams().acc_regs) == 64
    rng = np.random.default_rng(0)
    m, n = 8791, 8  # NT-Wd's outputs, a few inputs
    codes = np.where(rng.random((m, n)) < 0.1, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    layer = Layer(codes, np.arange(16.0, dtype=np.float32), np.ones(n, np.float32))
    static = EIEStatic()
    c = sweep.sweep(static, EIEParams.stack([EIEParams(), EIEParams(acc_regs=0)]), layer)
    assert c.pointer_reads.tolist() == [3 * 64 * n, 64 * n]
    assert c.useful_macs[0] == c.useful_macs[1] == np.count_nonzero(codes)
    assert reference.simulate(static, EIEParams(), layer).cycles == c.cycles[0]


def test_command_line_capacity_flags(tmp_path, capsys):
    """``eie-model simulate / sweep / reference`` take --ptr-bits, --spmat-bytes, --act-regs:
    the same counters as the API with that EIEStatic; a layer that does not fit is one error
    line naming the PE (exit status 2)."""
    import json

    from eie_model import cli

    layer = _layer(9, m=24, n=30)
    p = tmp_path / "layer.npz"
    np.savez(p, codes=layer.codes, act=layer.act, bias_codes=layer.bias_codes,
             codebook=layer.codebook)  # fmt: skip
    args = ["--layer", str(p), "--pes", "2", "--fifo", "2", "--act-regs", "3"]
    assert cli.main(["simulate", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    st = EIEStatic(max_pes=2, max_fifo=2, act_regs=3)
    ref = reference.simulate(st, EIEParams(n_pes=2, fifo_depth=2), layer)
    assert out["cycles"] == ref.cycles and out["pointer_reads"] == ref.pointer_reads
    assert cli.main(["reference", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] == ref.cycles
    have = int(stored_entries(layer, 2, 4).max())
    small = ["--spmat-bytes", str(have - 1)]
    assert cli.main(["simulate", *args, *small]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"stores {have:,} entries" in err and "short by 1" in err
    assert cli.main(["sweep", *args, *small, "--out", str(tmp_path / "s.csv"), "--quiet"]) == 2
    assert "does not fit" in capsys.readouterr().err
