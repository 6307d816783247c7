"""Tests of eie_model.sweep: sweep == vmap(simulate) == the reference per configuration, the
FIFO reuse (replay) against full scans, trace counts, devices, tables, Pareto."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import reference, sim
from eie_model.types import _COUNTER_FIELDS, Counters, EIEParams, EIEStatic, Layer

# the package re-exports the function `sweep`, which shadows the module attribute
sweep = importlib.import_module("eie_model.sweep")

# every counter a run returns (the fresh-fetch line reads are Counters' optional leaf)
COUNTERS = (*_COUNTER_FIELDS, "spm_line_reads_fresh")


def _layer(seed=0, m=40, n=30):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.3, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    book = np.linspace(0, 1, 16, dtype=np.float32)
    return Layer(codes, book, act, bias)


def _vmap_simulate(static, params, layer):
    full = jax.tree.map(lambda x: jnp.broadcast_to(x, params.batch_shape), params)
    return jax.vmap(lambda p: sim.simulate(static, p, layer))(full)


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_sweep_equals_vmap_simulate_and_reference(engine):
    """Every counter of every row of a sweep (either engine) equals vmap(simulate) and the
    cycle-by-cycle simulator run on that one configuration; derived figures come from the same
    Counters."""
    layer = _layer()
    g = EIEParams.grid(n_pes=[1, 3, 8], fifo_depth=[1, 2, 5], index_bits=[1, 4], sram_width=[64])
    static = EIEStatic.covering(g)
    c = sweep.sweep(static, g, layer, engine=engine)
    assert isinstance(c, Counters) and c.batch_shape == (18,)
    v = _vmap_simulate(static, g, layer)
    for k in (*COUNTERS, "busy"):
        np.testing.assert_array_equal(getattr(c, k), np.asarray(getattr(v, k)), err_msg=k)
    for i in range(18):
        ref = reference.simulate(static, g[i], layer)
        for k in COUNTERS:
            assert int(getattr(c, k)[i]) == int(getattr(ref, k)), (k, i)
        n = int(g.n_pes[i])
        np.testing.assert_array_equal(c.busy[i, :n], ref.busy)
        assert not c.busy[i, n:].any()
        assert c.mac_efficiency[i] == pytest.approx(ref.mac_efficiency, 1e-9)
        assert c.load_efficiency[i] == pytest.approx(ref.load_efficiency, 1e-9)
    t = c.table()
    i = 17
    rep = c[i].energy
    assert t["energy_j"][i] == pytest.approx(float(rep.energy_j), rel=1e-6)
    assert t["area_mm2"][i] == pytest.approx(float(rep.area_mm2), rel=1e-6)


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_acc_regs_passes_equal_reference_per_config(engine):
    """With acc_regs A, outputs beyond N * A run as extra passes: every counter of every row
    equals the reference simulator's acc_regs run (0 = unlimited, one pass)."""
    layer = _layer(4)
    g = EIEParams.grid(n_pes=[1, 3, 8], fifo_depth=[1, 4], index_bits=[2], acc_regs=[0, 2, 5, 64])
    static = EIEStatic.covering(g)
    c = sweep.sweep(static, g, layer, engine=engine)
    again = sweep.sweep(static, g, layer, engine=engine)  # from the layer cache
    for i in range(len(g)):
        ref = reference.simulate(static, g[i], layer)
        for k in COUNTERS:
            assert int(getattr(c, k)[i]) == int(getattr(ref, k)), (k, i)
            assert int(getattr(again, k)[i]) == int(getattr(ref, k)), (k, i)
        assert int(c.busy_total[i]) == int(ref.busy.sum())
        assert int(c.busy_max[i]) == int(ref.busy.max())
    passes = -(-40 // (g.n_pes * np.maximum(g.acc_regs, 1)))
    passes = np.where(g.acc_regs > 0, passes, 1)
    assert passes.max() == 20  # N = 1, A = 2: 20 passes
    k_ev = c.pointer_reads[0]  # row 0: N = 1, one pass
    np.testing.assert_array_equal(c.pointer_reads, g.n_pes * k_ev * passes)


def test_fifo_reuse_equals_full_scans_on_many_depths():
    """Deep FIFOs take the unbounded run's schedule and a replayed stall counter when their
    broadcasts hold no PE back: every counter equals vmap(simulate) (full scans) over depths
    1..40 on layers where the condition holds for some depths and fails for others."""
    for seed in range(2):
        layer = _layer(seed + 10, m=60, n=50)
        g = EIEParams.grid(n_pes=[1, 2, 5, 16], fifo_depth=range(1, 41), index_bits=[1, 4])
        static = EIEStatic.covering(g)
        c = sweep.sweep(static, g, layer, engine=("host", "xla")[seed])
        v = _vmap_simulate(static, g, layer)
        for k in (*COUNTERS, "busy"):
            np.testing.assert_array_equal(getattr(c, k), np.asarray(getattr(v, k)), err_msg=k)
        # some depths stall (replayed), deep ones do not, and cycles never grow with depth
        cyc = c.cycles.reshape(4, 40, 2)
        assert np.all(np.diff(cyc, axis=1) <= 0)
        assert c.stall_cycles.max() > 0


def test_trace_counts_do_not_grow_with_configs():
    """The chunk scan (the "xla" engine) compiles per shape bucket, not per configuration: a
    second sweep with new values of the same buckets traces nothing new."""
    layer = _layer(1)
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(2):
        p = EIEParams(
            n_pes=rng.integers(1, 9, 120),
            fifo_depth=rng.integers(1, 9, 120),
            index_bits=rng.integers(1, 5, 120),
            sram_width=rng.choice([32, 64, 128], 120),
        )
        out = sweep.sweep(EIEStatic(max_pes=8, max_fifo=8), p, layer, engine="xla")
        assert out.cycles.shape == (120,)
        sizes.append(sweep._chunk._cache_size())
    assert sizes[1] == sizes[0] > 0


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_progress_callback(engine):
    seen = []
    p = EIEParams.grid(fifo_depth=range(1, 10), n_pes=4)
    sweep.sweep(EIEStatic.covering(p), p, _layer(), progress=lambda d, t: seen.append((d, t)),
                engine=engine)  # fmt: skip
    assert seen and seen[-1][0] == seen[-1][1]


def test_validation_names_the_field():
    layer = _layer()
    with pytest.raises(ValueError, match="acc_regs"):
        EIEParams(acc_regs=[-1])
    with pytest.raises(ValueError, match="unknown field"):
        EIEParams.grid(pes=[1])
    with pytest.raises(ValueError, match="fifo_depth"):
        EIEParams(fifo_depth=[0, 1])
    with pytest.raises(ValueError, match="sram_width"):
        sweep.sweep(EIEStatic(), EIEParams(sram_width=[4]), layer)
    with pytest.raises(ValueError, match="act_bits"):
        EIEParams(act_bits=[12])
    with pytest.raises(ValueError, match="max_pes"):
        sweep.sweep(EIEStatic(max_pes=2), EIEParams(n_pes=[4]), layer)
    with pytest.raises(TypeError, match="EIEParams"):
        sweep.sweep(EIEStatic(), {"n_pes": [1]}, layer)
    with pytest.raises(TypeError, match="Layer"):
        sweep.sweep(EIEStatic(), EIEParams(n_pes=[1]), {"codes": layer.codes})
    with pytest.raises(ValueError, match="engine must be 'auto', 'host' or 'xla'"):
        sweep.sweep(EIEStatic(), EIEParams(n_pes=[1]), layer, engine="gpu")


def test_batch_shape_kept():
    p = EIEParams(n_pes=np.array([[1, 2], [3, 4]]), fifo_depth=2)
    c = sweep.sweep(EIEStatic(max_pes=4, max_fifo=2), p, _layer())
    assert c.cycles.shape == (2, 2) and c.busy.shape == (2, 2, 4)
    flat = sweep.sweep(
        EIEStatic(max_pes=4, max_fifo=2), EIEParams(n_pes=[1, 2, 3, 4], fifo_depth=2), _layer()
    )
    np.testing.assert_array_equal(c.cycles.ravel(), flat.cycles)


def test_csv_json_records(tmp_path):
    p = EIEParams.grid(n_pes=[1, 3], fifo_depth=[2, 5])
    c = sweep.sweep(EIEStatic.covering(p), p, _layer())
    sweep.write_csv(c, tmp_path / "t.csv")
    sweep.write_json(c.table(), tmp_path / "t.json")
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["cycles"]) for r in rows] == c.cycles.tolist()
    with open(tmp_path / "t.json") as f:
        assert json.load(f)[3]["spm_line_reads"] == int(c.spm_line_reads[3])
    rec = sweep.to_records(c)
    assert rec.shape == (4,) and rec["fifo_depth"].tolist() == [2, 5, 2, 5]
    assert not [q for q in os.listdir(tmp_path) if q.startswith(".tmp")]


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(5)
    t = {"a": rng.integers(0, 20, 200), "b": rng.integers(0, 20, 200), "c": rng.random(200)}
    mask = sweep.pareto_front(t, ("a", "b", "c"))
    pts = np.stack([t["a"], t["b"], t["c"]], 1)
    for i in range(200):
        dom = np.any(np.all(pts <= pts[i], 1) & np.any(pts < pts[i], 1))
        assert mask[i] == (not dom)
    with pytest.raises(ValueError, match="no column"):
        sweep.pareto_front(t, ("zzz",))


_SHARD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import importlib
    sweep = importlib.import_module("eie_model.sweep")
    from eie_model.types import EIEParams, EIEStatic
    sys.path.insert(0, {tests!r})
    from test_eie_sweep import _layer
    assert len(jax.devices()) == 4, jax.devices()
    g = EIEParams.grid(n_pes=[1, 2, 5, 8], fifo_depth=[1, 2, 3], index_bits=[2, 4])
    st = EIEStatic.covering(g)
    many = sweep.sweep(st, g, _layer(), chunk=4)
    one = sweep.sweep(st, g, _layer(), chunk=4, devices=jax.devices()[:1])
    t1, t2 = many.table(), one.table()
    same = all(np.array_equal(t1[k], t2[k]) for k in t1)
    print(json.dumps({{"same": bool(same), "n": int(len(many))}}))
    """
)


def test_chunks_over_four_devices_equal_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    here = os.path.dirname(os.path.abspath(__file__))
    script = _SHARD_SCRIPT.format(tests=here)
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"same": True, "n": 24}


def test_docstring_examples_run():
    import doctest

    for name in ("eie_model.sweep", "eie_model.types"):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, name


def test_layer_cache_sees_changed_arrays():
    """The per-layer cache is keyed by content: a changed activation is a new layer."""
    layer = _layer(2)
    p = EIEParams.grid(n_pes=[2, 5], fifo_depth=[1, 3])
    st = EIEStatic.covering(p)
    a = sweep.sweep(st, p, layer)
    act = layer.act.copy()
    act[np.flatnonzero(act)[:3]] = 0.0
    b = sweep.sweep(st, p, layer._replace(act=act))
    want = _vmap_simulate(st, p, layer._replace(act=act))
    np.testing.assert_array_equal(b.cycles, np.asarray(want.cycles))
    assert not np.array_equal(a.pointer_reads, b.pointer_reads)


@pytest.mark.parametrize("compiled", [True, False])
def test_host_work_tables_equal_pe_work_under_jit(compiled, monkeypatch):
    """The sweep's host work tables (the compiled one-pass kernels, or one NumPy sort per PE
    count with slice sums from prefix sums) equal the device model's pe_work / scan_tables
    under jit and vmap, for PE counts from 1 to beyond the rows, index bits 1..8, with a bias,
    padding non-zeros and padding events."""
    from eie_model.sim.events import layer_events

    monkeypatch.setattr(sweep, "_COMPILED_FROM", 2 if compiled else 10**9)
    from eie_model.sim.timing import scan_tables
    from eie_model.sim.work import pe_work

    rng = np.random.default_rng(3)
    for t in range(3):
        layer = _layer(20 + t, m=int(rng.integers(5, 50)), n=int(rng.integers(5, 40)))
        if t == 1:
            layer = layer._replace(bias_codes=None)
        ev = layer_events(layer)
        if t == 2:
            ev = layer_events(layer, pad_nnz=ev.rows.size + 7, pad_events=ev.num_events + 4)
        ns = [1, 2, 3, 7, 16, ev.m + 3]
        pairs = np.array([(n, r, 0) for n in ns for r in range(1, 9)], np.int32)
        max_pes = sweep._lanes(max(ns))
        prep = sweep._prepare(ev, pairs, max_pes, 5)
        works = jax.jit(
            jax.vmap(lambda n, r, e=ev, p=max_pes: pe_work(e, n, r, max_pes=p)),
        )(jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1]))
        want = scan_tables(works)
        got = prep.tab
        for k in ("d", "w", "c", "busy", "dsum", "tail", "n_pes"):
            np.testing.assert_array_equal(getattr(got, k), np.asarray(getattr(want, k)), k)
        np.testing.assert_array_equal(prep.useful, np.asarray(works.nnz).sum((1, 2)))
        # the SRAM walk (one pass per pair: units are pairs): each non-empty slice's first and
        # last address and the last address walked before it, from the device's base/entries
        for u in range(len(pairs)):
            ent = np.asarray(works.entries[u]).T  # (K, P)
            addr = np.asarray(works.base[u]).T
            last = np.where(ent > 0, addr + ent - 1, -1)
            prev = np.concatenate(
                [np.full((1, ent.shape[1]), -1), np.maximum.accumulate(last)[:-1]]
            )
            nz = ent > 0
            for g, x in zip(prep.walks[u], (addr, last, prev), strict=True):
                np.testing.assert_array_equal(g, x[nz], str(u))


def test_compiled_host_kernels_equal_numpy_sort_path():
    """The numba slice kernel (one pass, no sort) gives the NumPy sort path's slice tables
    exactly, every column (bias and padding included), for several index widths at once, PE
    counts 1..beyond m, with and without padding and bias (the unit tables built from them
    are checked against the device model in test_host_work_tables_equal_pe_work_under_jit)."""
    from eie_model import _host_kernels as kern
    from eie_model.sim.events import layer_events

    rng = np.random.default_rng(11)
    for t in range(4):
        layer = _layer(40 + t, m=int(rng.integers(1, 60)), n=int(rng.integers(1, 30)))
        if t == 1:
            layer = layer._replace(bias_codes=None)
        ev = layer_events(layer)
        if t >= 2:
            ev = layer_events(layer, pad_nnz=ev.rows.size + 5, pad_events=ev.num_events + 3)
        rows, cols = ev.rows.astype(np.int32), ev.cols.astype(np.int32)
        for n_pes in sorted({1, 2, 3, 5, 8, ev.m, ev.m + 4}):
            bits = list(range(1, 9))
            count, ents = kern.slice_entries(rows, cols, ev.m, ev.n, n_pes, np.array(bits))
            want_count, want = sweep._slice_entries(ev, n_pes, bits)
            np.testing.assert_array_equal(count, want_count)
            for i, r in enumerate(bits):
                np.testing.assert_array_equal(ents[i], want[r], (t, n_pes, r))


def test_compiled_kernels_without_a_writable_cache(monkeypatch):
    """Where numba finds no writable cache folder (its njit(cache=True) raises RuntimeError),
    the kernels compile without a cache instead of failing (and warn nothing)."""
    import numba

    from eie_model import _host_kernels as kern

    real = numba.njit
    seen = []

    def njit(**kw):
        seen.append(kw)
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(**kw)

    monkeypatch.setattr(numba, "njit", njit)
    f = kern._jit(lambda x: x + 1)
    assert f(np.int64(2)) == 3
    assert seen == [{"nogil": True, "cache": True}, {"nogil": True}]


def test_unbounded_closed_form_equals_scan():
    """The unbounded-FIFO run in closed form (prefix sums and running maxima) equals the
    timing scan with an unbounded FIFO: cycles, starvation, and per event the broadcast cycle
    and the latest column start; with padding events too."""
    from eie_model.sim.events import layer_events
    from eie_model.sim.timing import run

    for t in range(2):
        layer = _layer(30 + t, m=45, n=35)
        ev = layer_events(layer)
        if t:
            ev = layer_events(layer, pad_nnz=ev.rows.size + 3, pad_events=ev.num_events + 5)
        pairs = np.array([(n, r, 0) for n in (1, 4, 9, 50) for r in (1, 4)], np.int32)
        prep = sweep._prepare(ev, pairs, 64, 5)
        tab = jax.tree.map(jnp.asarray, prep.tab)
        k_live = ev.num_broadcasts
        scan = jax.jit(
            lambda u, tb=tab, p=bool(t): run(tb, u, 1, ring_len=2, bounded=False, padded=p)
        )
        for u in range(len(pairs)):
            cyc, starv, e, r, fmin = sweep._unbounded(prep, u, 2)
            want, (e_w, s_w) = scan(u)
            assert cyc == int(want.cycles) and starv == int(want.starvation_cycles), u
            np.testing.assert_array_equal(e, np.asarray(e_w)[:k_live])
            np.testing.assert_array_equal(r, np.asarray(s_w)[:k_live])
            # the compiled loop gives the same five results
            got = sweep._unbounded(prep, u, 2, sweep._kernels())
            assert got[:2] == (cyc, starv), u
            for a, b in zip(got[2:], (e, r, fmin), strict=True):
                np.testing.assert_array_equal(a, b)


def test_codes_beyond_code_bits_refused_also_when_cached():
    """The largest code is kept with the layer's key: a second sweep of the same layer with
    fewer code bits is refused as the first would be, and a fitting one runs."""
    layer = _layer(5)  # codes up to 15
    p = EIEParams.grid(n_pes=[2], fifo_depth=[1, 2])
    sweep.sweep(EIEStatic.covering(p), p, layer)
    with pytest.raises(ValueError, match="code_bits"):
        sweep.sweep(EIEStatic(max_pes=2, max_fifo=2, code_bits=3), p, layer)
    again = sweep.sweep(EIEStatic(max_pes=2, max_fifo=2, code_bits=5), p, layer)
    assert again.cycles.shape == (2,)


def test_host_scans_equal_xla_chunks():
    """The compiled host scans give the jitted chunk scans' cycles, stall and starvation for
    every (unit, depth): PE counts 1..beyond the lanes of a group, depths 1 (no queue), small,
    and beyond the number of events, acc_regs passes, and tables with padding events."""
    from eie_model.sim.events import layer_events

    rng = np.random.default_rng(7)
    for t in range(3):
        layer = _layer(50 + t, m=int(rng.integers(20, 70)), n=int(rng.integers(10, 40)))
        ev = layer_events(layer)
        if t == 2:
            ev = layer_events(layer, pad_nnz=ev.rows.size + 4, pad_events=ev.num_events + 6)
        pairs = np.array([(n, r, a) for n in (1, 3, 17) for r in (1, 4) for a in (0, 5)], np.int32)
        prep = sweep._prepare(ev, pairs, 64, 5)
        n_units = len(prep.unit_pair)
        depths = np.array([1, 2, 3, 7, ev.num_events + 3])
        runs = np.stack(np.meshgrid(np.arange(n_units), depths, indexing="ij"), -1).reshape(-1, 2)
        runs = runs[rng.permutation(len(runs))]  # any order in, rows kept
        static = EIEStatic(max_pes=64, max_fifo=int(depths.max()))
        host = sweep._host_scans(prep, runs, static, None)
        xla = sweep._scan_runs(prep, runs, ring_len=sweep._bucket(int(depths.max())),
                               static=static, devices=None, chunk=16, progress=None)  # fmt: skip
        np.testing.assert_array_equal(host, xla, err_msg=str(t))
        assert host[:, 1].max() > 0  # some depth stalls


def test_host_line_reads_equal_numpy():
    """The compiled line-read count (float reciprocal with an exact fix-up) equals NumPy's
    integer division for widths that do and do not divide the addresses."""
    from eie_model.sim.events import layer_events

    ev = layer_events(_layer(8, m=64, n=48))
    pairs = np.array([(n, r, 0) for n in (1, 5, 16) for r in (1, 3)], np.int32)
    prep = sweep._prepare(ev, pairs, 16, 5)
    epls = np.array([1, 2, 3, 5, 7, 8, 13, 64, 1000])
    for u in range(len(pairs)):
        np.testing.assert_array_equal(
            sweep._line_reads(prep, u, epls, sweep._kernels()), sweep._line_reads(prep, u, epls)
        )


def test_read_only_layers_are_cached_by_identity_and_writable_ones_by_content():
    """A loader's layer is read-only and its key is its identity (no hash per call); a
    writable layer edited in place, or a read-only view of a writable array edited through
    its base, gives a new key and new counters."""
    from eie_model.layers import benchmark_layer

    bench = benchmark_layer("nt-we")
    assert not bench.codes.flags.writeable and not bench.act.flags.writeable
    assert sweep._layer_key(bench)[0][0] == "id"
    assert sweep._layer_key(bench) == sweep._layer_key(bench)
    assert sweep._layer_key(bench) != sweep._layer_key(benchmark_layer("nt-we"))

    p = EIEParams.grid(n_pes=[2, 5], fifo_depth=[1, 3])
    st = EIEStatic.covering(p)
    layer = _layer(3)
    first = sweep.sweep(st, p, layer)
    layer.codes[: layer.codes.shape[0] // 2] = 0  # in place: same objects, new content
    edited = sweep.sweep(st, p, layer)
    want = _vmap_simulate(st, p, jax.tree.map(np.copy, layer))
    np.testing.assert_array_equal(edited.useful_macs, np.asarray(want.useful_macs))
    assert edited.useful_macs.sum() < first.useful_macs.sum()

    base = _layer(4).codes
    view = base[:]
    view.flags.writeable = False
    assert not sweep._immutable(view)  # its base can still change it
    ro = _layer(4)._replace(codes=view, bias_codes=None)
    before = sweep.sweep(st, p, ro)
    base[:] = 0
    after = sweep.sweep(st, p, ro)
    assert after.useful_macs.sum() == 0 < before.useful_macs.sum()

    frozen = _layer(4).read_only()
    assert sweep._immutable(frozen.codes) and frozen.name == _layer(4).name
    jx = _layer(4)._replace(codes=jnp.asarray(_layer(4).codes))
    assert sweep._layer_key(jx)[0][0] == "id"
    np.testing.assert_array_equal(sweep.sweep(st, p, jx).cycles, sweep.sweep(st, p, frozen).cycles)
