"""Tests of the fast event model (eie_model.sim) against a direct NumPy transcription of the
timing rules in docs/design.md (per-PE CSC built row by row, the event formulas evaluated with
Python loops) and against the cycle-by-cycle simulator, eie_model.reference."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import reference, sim
from eie_model.sim import counters as sim_counters
from eie_model.sim.events import layer_events
from eie_model.sim.timing import timing
from eie_model.sim.work import pe_work, slice_gaps
from eie_model.types import EIEParams, EIEStatic, Layer

BOOK = np.arange(16, dtype=np.float32)


def _layer(codes, act, bias=None):
    return Layer(codes, BOOK, act, bias)


def reference_counters(codes, act, bias, n_pes, index_bits, fifo_depth, epl):
    """The cycle-by-cycle simulator, with the SRAM width giving ``epl`` entries a line."""
    params = EIEParams(
        n_pes=n_pes,
        index_bits=index_bits,
        fifo_depth=fifo_depth,
        sram_width=epl * (4 + index_bits),
    )
    static = EIEStatic(max_pes=n_pes, max_fifo=fifo_depth)
    c = reference.simulate(static, params, _layer(codes, act, bias))
    out = {k: int(getattr(c, k)) for k in SCALARS}
    out["busy"] = list(c.busy)
    return out


# ---------------------------------------------------------------------------------------------
# Oracle: design.md written out with loops.


def _encode(full, n_pes, index_bits):
    """Per-PE CSC: ``slices[i][j] = (address, [codes of the entries, fillers as 0])``."""
    m, ncols = full.shape
    lr_count = -(-m // n_pes)
    slices = []
    for i in range(n_pes):
        addr, per_col = 0, []
        for j in range(ncols):
            ents, last = [], -1
            for lr in range(lr_count):
                row = lr * n_pes + i
                if row < m and full[row, j] != 0:
                    ents += [0] * ((lr - last - 1) // 2**index_bits)
                    ents.append(int(full[row, j]))
                    last = lr
            per_col.append((addr, ents))
            addr += len(ents)
        slices.append(per_col)
    return slices


def oracle(codes, act, bias, n_pes, index_bits, fifo_depth, epl):
    m, n = codes.shape
    full = codes if bias is None else np.concatenate([codes, bias[:, None]], 1)
    slices = _encode(full, n_pes, index_bits)
    ev = [j for j in range(n) if act[j] != 0] + ([n] if bias is not None else [])
    ext = [j if j < n else -(-n // n_pes) * n_pes for j in ev]
    big = -(10**9)
    e, s = [], [[] for _ in range(n_pes)]
    d = [[max(1, len(slices[i][j][1])) for j in ev] for i in range(n_pes)]
    stall = 0
    for k, col in enumerate(ext):
        g, lane = divmod(col, n_pes)
        if k == 0:
            ready = 1 + g
        else:
            gp, lp = divmod(ext[k - 1], n_pes)
            ready = e[k - 1] + (1 if g == gp else (1 if lp == n_pes - 1 else 2) + g - gp - 1)
        bound = big
        if fifo_depth >= 2 and k - fifo_depth + 1 >= 0:
            bound = max(s[i][k - fifo_depth + 1] for i in range(n_pes))
        if fifo_depth == 1 and k >= 1:
            bound = max(s[i][k - 1] + d[i][k - 1] for i in range(n_pes))
        e.append(max(ready, bound))
        stall += e[k] - ready
        for i in range(n_pes):
            prev = s[i][k - 1] + d[i][k - 1] if k else big
            s[i].append(max(e[k] + 2, prev))
    last_write, useful, fillers, lines = big, 0, 0, 0
    busy = [sum(len(slices[i][j][1]) for j in ev) for i in range(n_pes)]
    starv = sum(
        s[i][k] - s[i][k - 1] - d[i][k - 1] for i in range(n_pes) for k in range(1, len(ev))
    )
    for i in range(n_pes):
        cur = None
        for k, j in enumerate(ev):
            addr, ents = slices[i][j]
            for mm, code in enumerate(ents):
                if code:
                    useful += 1
                    last_write = max(last_write, s[i][k] + mm + 5)
                else:
                    fillers += 1
                line = (addr + mm) // epl
                if line != cur:
                    lines += 1
                    cur = line
    n_groups = -(-n // n_pes) + (bias is not None)
    if last_write > big:
        cyc = last_write + 1
    elif ev:  # no write: the LNZD has scanned every group
        g, lane = divmod(ext[-1], n_pes)
        cyc = e[-1] + (1 if lane == n_pes - 1 else 2) + n_groups - 1 - g
    else:
        cyc = 1 + n_groups
    return {
        "cycles": cyc,
        "useful_macs": useful,
        "fillers": fillers,
        "pointer_reads": n_pes * len(ev),
        "spm_line_reads": lines,
        "stall_cycles": stall,
        "starvation_cycles": starv,
        "busy": busy,
    }


def _random_layer(rng, m, n, density, act_density, with_bias):
    mask = rng.random((m, n)) < density
    codes = np.where(mask, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < act_density, rng.random(n) + 0.1, 0.0).astype(np.float32)
    bias = None
    if with_bias:
        bias = np.where(rng.random(m) < 0.8, rng.integers(1, 16, m), 0).astype(np.uint8)
    return codes, act, bias


@functools.partial(jax.jit, static_argnames=("max_pes", "max_fifo"))
def _batched(ev, n, r, dd, epl, *, max_pes, max_fifo):
    """``vmap(simulate)`` in one jit over a batch of configs (N, r, D, epl); the layer is a
    traced argument, so layers with equal ``n``, ``K`` and padded non-zero count share the
    compiled program. Returns a dict of the counters (``busy`` per PE, ``busy_total/max``)."""
    static = EIEStatic(max_pes=max_pes, max_fifo=max_fifo)
    params = EIEParams(n_pes=n, index_bits=r, fifo_depth=dd, sram_width=epl * (4 + r))
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, n.shape), params)
    c = jax.vmap(lambda p: sim.simulate(static, p, ev))(params)
    out = {k: getattr(c, k) for k in (*SCALARS, "busy", "busy_total", "busy_max")}
    return out


SCALARS = (
    "cycles",
    "useful_macs",
    "fillers",
    "pointer_reads",
    "spm_line_reads",
    "stall_cycles",
    "starvation_cycles",
)


def test_property_random_layers_match_oracle():
    """Hundreds of (layer, config) pairs: every counter equals the loop transcription.

    Layers share n = 10 inputs and K broadcasts (5 activations, with or without a bias), so
    two compiled programs serve them all; m, densities and codes vary freely."""
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(32):
        m, with_bias = int(rng.integers(1, 15)), trial % 4 != 0
        codes, _, bias = _random_layer(rng, m, 10, rng.uniform(0.05, 0.9), 1.0, with_bias)
        act = np.zeros(10, np.float32)
        act[rng.choice(10, 5, replace=False)] = rng.random(5) + 0.1
        if with_bias and trial % 8 == 1:
            bias[:] = 0  # a bias column that is broadcast but holds nothing
        ev = layer_events(_layer(codes, act, bias), pad_nnz=160)
        cfg = np.stack(
            [
                rng.integers(1, 9, 16),  # N
                rng.integers(1, 4, 16),  # r
                rng.integers(1, 7, 16),  # D
                rng.integers(1, 5, 16),  # entries per line
            ]
        ).astype(np.int32)
        out = _batched(ev, *cfg, max_pes=8, max_fifo=6)
        out = jax.tree.map(np.asarray, out)
        for b in range(cfg.shape[1]):
            args = (codes, act, bias, *(int(v) for v in cfg[:, b]))
            got = {k: int(out[k][b]) for k in SCALARS}
            wants = [oracle(*args), reference_counters(*args)]
            for want in wants:
                assert got == {k: want[k] for k in SCALARS}, (trial, cfg[:, b])
                np.testing.assert_array_equal(out["busy"][b][: cfg[0, b]], want["busy"])
            assert not out["busy"][b][cfg[0, b] :].any()
            checked += 1
    assert checked >= 500
    assert _batched._cache_size() <= 2


@pytest.mark.parametrize("n_pes,fifo,r", [(4, 1, 2)])
def test_hand_sized_layer_matches_oracle_eager_and_jit(n_pes, fifo, r):
    rng = np.random.default_rng(n_pes)
    codes, act, bias = _random_layer(rng, 37, 23, 0.3, 0.5, True)
    layer = _layer(codes, act, bias)
    want = oracle(codes, act, bias, n_pes, r, fifo, 8 // (4 + r) or 1)
    static = EIEStatic(max_pes=n_pes, max_fifo=fifo)
    params = EIEParams(n_pes=n_pes, fifo_depth=fifo, index_bits=r, sram_width=8)
    got = sim.simulate(static, params, layer)
    for k in SCALARS:
        assert int(getattr(got, k)) == want[k], k
    # the work tables and line reads eagerly (no jit) give the same
    w = pe_work(layer_events(layer), n_pes, r, max_pes=n_pes)
    epl = max(8 // (4 + r), 1)
    assert int(sim.sram_line_reads(w, epl).sum()) == want["spm_line_reads"]
    assert int(w.entries.sum() - w.nnz.sum()) == want["fillers"]


def test_vmap_equals_single():
    rng = np.random.default_rng(3)
    codes, act, bias = _random_layer(rng, 20, 16, 0.4, 0.6, True)
    ev = layer_events(_layer(codes, act, bias))
    ns, ds = jnp.array([1, 3, 5, 8]), jnp.array([1, 2, 3, 4])

    def one(n, d):
        w = pe_work(ev, n, 2, max_pes=8)
        return timing(w, d, max_fifo=4).cycles

    batched = jax.jit(jax.vmap(one))(ns, ds)
    for i in range(4):
        assert int(batched[i]) == int(jax.jit(one)(ns[i], ds[i]))


def test_invariants_fifo_monotone_and_work_bound():
    rng = np.random.default_rng(5)
    codes, act, bias = _random_layer(rng, 64, 40, 0.25, 0.5, True)
    ev = layer_events(_layer(codes, act, bias))
    depths = np.array([1, 2, 3, 4, 8, 16], np.int32)
    ones = np.ones_like(depths)
    out = _batched(ev, 8 * ones, 4 * ones, depths, ones, max_pes=8, max_fifo=16)
    cyc = np.asarray(out["cycles"])
    assert np.all(np.diff(cyc) <= 0)  # a deeper FIFO never costs cycles
    assert np.all(cyc >= np.asarray(out["busy_max"]))
    want_macs = np.count_nonzero(codes[:, act != 0]) + np.count_nonzero(bias)
    assert np.all(np.asarray(out["useful_macs"]) == want_macs)
    # more PEs never more work per PE
    pes = np.array([1, 2, 4, 8], np.int32)
    one = np.ones_like(pes)
    out = _batched(ev, pes, 4 * one, 8 * one, one, max_pes=8, max_fifo=16)
    assert np.all(np.diff(np.asarray(out["busy_max"])) <= 0)


def test_pe_work_matches_encoding_counts():
    """Entries per (PE, event) equal the loop encoder's, for traced N and r."""
    rng = np.random.default_rng(7)
    codes, act, _ = _random_layer(rng, 50, 12, 0.2, 1.0, False)
    ev = layer_events(_layer(codes, act))
    f = jax.jit(functools.partial(pe_work, ev, max_pes=8))
    for n_pes, r in ((1, 1), (3, 2), (8, 1)):
        w = f(n_pes, r)
        sl = _encode(codes, n_pes, r)
        for i in range(n_pes):
            assert [len(sl[i][j][1]) for j in range(12)] == np.asarray(w.entries[i]).tolist()
            assert [sl[i][j][0] for j in range(12)] == np.asarray(w.base[i]).tolist()


def _simulate(layer, **kw):
    params = EIEParams(**kw)
    return sim.simulate(EIEStatic.covering(params), params, layer)


def test_empty_layer_and_no_broadcast():
    """No write at all: the layer ends when the LNZD has scanned every group."""
    codes = np.zeros((4, 3), np.uint8)
    out = _simulate(_layer(codes, np.zeros(3)), n_pes=2, fifo_depth=2)
    assert int(out.cycles) == 3 and int(out.pointer_reads) == 0  # 2 empty groups
    out = _simulate(_layer(codes, np.ones(3)), n_pes=2, fifo_depth=1)
    assert int(out.pointer_reads) == 6 and int(out.busy_total) == 0
    want = oracle(codes, np.ones(3), None, 2, 4, 1, 1)["cycles"]
    assert int(out.cycles) == want


def test_bad_inputs():
    with pytest.raises(TypeError, match="Layer"):
        layer_events({"codes": np.ones((2, 3), np.uint8), "act": np.ones(3)})
    with pytest.raises(ValueError, match="act"):
        layer_events(_layer(np.ones((2, 3), np.uint8), np.ones(2)))
    with pytest.raises(ValueError, match="fifo_depth"):
        _simulate(_layer(np.ones((2, 3), np.uint8), np.ones(3)), fifo_depth=0)
    with pytest.raises(ValueError, match="sram_width"):
        _simulate(_layer(np.ones((2, 3), np.uint8), np.ones(3)), sram_width=4)
    with pytest.raises(ValueError, match="max_fifo"):
        sim.simulate(
            EIEStatic(max_fifo=2), EIEParams(fifo_depth=4), _layer(np.ones((1, 1)), np.ones(1))
        )
    with pytest.raises(ValueError, match="code_bits"):
        sim.simulate(EIEStatic(code_bits=2), EIEParams(), _layer(np.full((1, 1), 9), np.ones(1)))
    with pytest.raises(ValueError, match="max_pes"):
        pe_work(layer_events(_layer(np.ones((1, 1)), np.ones(1))), 1, 4, max_pes=0)


@pytest.mark.parametrize("name", ["events", "work", "timing", "counters", "__init__"])
def test_docstring_examples_run(name):
    import doctest

    mod = importlib.import_module("eie_model.sim" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_gpu_program_holds_no_host_callback():
    """The CPU program sorts through a NumPy host callback; a CUDA export of the same
    simulate has none (lax.platform_dependent lowers only the platform's branch)."""
    from jax import export

    layer = _layer(np.eye(6, dtype=np.uint8), np.ones(6))
    static = EIEStatic(max_pes=4, max_fifo=4)
    params = EIEParams(n_pes=3, fifo_depth=2)
    ev = layer_events(layer)
    f = jax.jit(lambda p: sim.simulate(static, p, ev))

    def calls(text):  # the custom-call targets of a StableHLO module
        return [ln for ln in text.splitlines() if "custom_call" in ln]

    cpu = f.lower(params).as_text()
    assert any("callback" in ln for ln in calls(cpu))
    gpu = export.export(f, platforms=["cuda"])(params).mlir_module()
    assert not any("callback" in ln for ln in calls(gpu)) and "stablehlo.sort" in gpu


def test_real_layer_equals_reference(eie_layer_path):
    """The shared real layer (1000 x 4096, 64 PEs, FIFO 8, 64-bit lines): every counter equal
    to the cycle-by-cycle simulator's."""
    from eie_model.layers import load_npz_layer

    layer = load_npz_layer(eie_layer_path)
    params = EIEParams(n_pes=64, fifo_depth=8, sram_width=64)
    static = EIEStatic(max_pes=64, max_fifo=8)
    got = sim.simulate(static, params, layer)
    ref = reference.simulate(static, params, layer)
    for k in SCALARS:
        assert int(getattr(got, k)) == int(getattr(ref, k)), k
    np.testing.assert_array_equal(got.busy, ref.busy)


@pytest.mark.slow
def test_real_layer_equals_reference_many_configs(eie_layer_path):
    from eie_model.layers import load_npz_layer
    from eie_model.sweep import sweep

    layer = load_npz_layer(eie_layer_path)
    cfg = {"n_pes": [1, 8, 32, 256], "fifo_depth": [1, 2, 4, 512], "sram_width": [16, 32, 128, 512]}
    # one pass and one activation batch (acc_regs / act_regs passes: test_eie_sweep.py); pointers
    # and SRAM wide enough for the whole layer in one PE (EIE's 16 bits hold it from 8 PEs on)
    params = EIEParams(**{k: np.array(v) for k, v in cfg.items()}, acc_regs=0)
    static = EIEStatic.covering(params, act_regs=0, ptr_bits=24, spmat_bytes=1 << 24)
    table = sweep(static, params, layer)
    for i in range(4):
        ref = reference.simulate(static, params[i], layer)
        for k in SCALARS:
            assert int(getattr(table, k)[i]) == int(getattr(ref, k)), (k, i)


def test_slice_gaps_numpy_sort_equals_xla_sort(monkeypatch):
    """On CPU the one sort goes through NumPy (a host callback); JAXCOMP_XLA_SORT=1 keeps
    lax.sort. Both give the same gaps, also under vmap over N (the callback's batching)."""
    rng = np.random.default_rng(11)
    codes, act, bias = _random_layer(rng, 53, 31, 0.3, 0.6, True)
    ev = layer_events(_layer(codes, act, bias), pad_nnz=600)
    ns = jnp.array([1, 3, 4, 7], jnp.int32)

    def run():  # a fresh function each time: the sort is chosen at trace time
        f = jax.jit(jax.vmap(lambda n: slice_gaps(ev, n)))
        return f.lower(ns).as_text(), jax.tree.map(np.asarray, f(ns))

    text_np, by_numpy = run()
    monkeypatch.setenv("JAXCOMP_XLA_SORT", "1")
    text_xla, by_xla = run()
    assert "callback" in text_np and "stablehlo.sort" not in text_np
    assert "stablehlo.sort" in text_xla and "callback" not in text_xla
    assert by_numpy.block is None and by_xla.block is None  # no acc_regs: one pass
    fields = ("seg", "gap", "bcast")
    for k in fields:
        np.testing.assert_array_equal(getattr(by_numpy, k), getattr(by_xla, k))
    for i, n in enumerate(np.asarray(ns)):
        one = slice_gaps(ev, int(n))
        for k in fields:
            np.testing.assert_array_equal(getattr(by_numpy, k)[i], np.asarray(getattr(one, k)))


@functools.partial(jax.jit, static_argnames=("max_pes", "max_fifo"))
def _one_pass(ev, n, r, dd, epl, a, p, *, max_pes, max_fifo):
    w = pe_work(ev, n, r, max_pes=max_pes, acc_regs=a, pass_index=p)
    return sim_counters.unit_counts(w, timing(w, dd, max_fifo=max_fifo), epl)


def test_property_acc_regs_passes_match_reference():
    """With ``acc_regs`` A, outputs beyond N * A run as extra passes: the fast
    model's passes (pe_work's pass_index), summed, equal the reference simulator's acc_regs run
    in every counter and per-PE busy, on random small layers and configurations."""
    rng = np.random.default_rng(7)
    checked = multi = 0
    for trial in range(48):
        m, with_bias = int(rng.integers(1, 40)), trial % 3 != 0
        codes, _, bias = _random_layer(rng, m, 10, rng.uniform(0.05, 0.9), 1.0, with_bias)
        act = np.zeros(10, np.float32)
        act[rng.choice(10, 5, replace=False)] = rng.random(5) + 0.1
        ev = layer_events(_layer(codes, act, bias), pad_nnz=440)
        n, r, dd, epl, a = (int(v) for v in rng.integers(1, [9, 4, 7, 5, 5]))
        params = EIEParams(
            n_pes=n, index_bits=r, fifo_depth=dd, sram_width=epl * (4 + r), acc_regs=a
        )
        static = EIEStatic(max_pes=8, max_fifo=6)
        want = reference.simulate(static, params, _layer(codes, act, bias))
        # simulate sums the passes itself, and equals the reference too
        whole = sim.simulate(static, params, ev)
        for k in SCALARS:
            assert int(getattr(whole, k)) == int(getattr(want, k)), (trial, k)
        passes = -(-m // (n * a))
        multi += passes > 1
        got = [_one_pass(ev, n, r, dd, epl, a, p, max_pes=8, max_fifo=6) for p in range(passes)]
        for k in SCALARS:
            assert sum(int(g[k]) for g in got) == int(getattr(want, k)), (trial, k)
        busy = sum(np.asarray(g["busy"][:n]) for g in got)
        np.testing.assert_array_equal(busy, want.busy)
        checked += 1
    assert checked == 48 and multi >= 20
    assert _one_pass._cache_size() <= 2


def test_padding_events_and_nonzeros_changes_no_counter():
    """layer_events(pad_nnz=, pad_events=): no-op events and dummy non-zeros leave every
    counter of every configuration as it is (sweep and simulate), including a layer with
    no non-zero activation (only padding events) and one with a bias."""
    from eie_model.sweep import sweep

    rng = np.random.default_rng(7)
    g = EIEParams.grid(n_pes=[1, 3, 8], fifo_depth=[1, 4, 9], index_bits=[4], acc_regs=[0, 2])
    static = EIEStatic.covering(g)
    for t in range(2):  # no activation at all (t = 0); with a bias (t = 1)
        m, n = (int(v) for v in rng.integers(2, 30, 2))
        codes = (rng.integers(1, 16, (m, n)) * (rng.random((m, n)) < 0.4)).astype(np.uint8)
        act = (rng.random(n) * (rng.random(n) < 0.5)).astype(np.float32)
        if t == 0:
            act[:] = 0.0
        bias = rng.integers(0, 16, m).astype(np.uint8) if t % 2 else None
        layer = _layer(codes, act, bias)
        ev = layer_events(layer)
        padded = layer_events(layer, pad_nnz=ev.rows.size + 5, pad_events=ev.num_events + 3)
        assert padded.padded and not ev.padded
        assert padded.num_broadcasts == ev.num_broadcasts == ev.num_events
        want, got = sweep(static, g, ev), sweep(static, g, padded)
        for k in (*SCALARS, "busy"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=f"{t}: {k}")
        p = EIEParams(n_pes=4, fifo_depth=2)
        a = sim.simulate(static, p, ev)
        b = sim.simulate(static, p, padded)
        for k in (*SCALARS, "busy"):
            np.testing.assert_array_equal(np.asarray(getattr(b, k)), np.asarray(getattr(a, k)))
    with pytest.raises(ValueError, match="pad_events"):
        layer_events(layer, pad_events=ev.num_events - 1)
