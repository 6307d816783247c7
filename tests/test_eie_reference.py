"""Reference cycle simulator: the event formulas of docs/design.md, invariants, the real
layer, the ``eie-model reference`` command."""

import json

import numpy as np
import pytest

from eie_model.cli import main as cli_main
from eie_model.format import encode_layer
from eie_model.reference import run, simulate_encoded
from eie_model.types import EIEParams, EIEStatic, Layer


class _Run:
    """Counters of a reference run with the outputs ``y`` beside them (attribute access)."""

    def __init__(self, counters, y):
        self.c, self.y = counters, y

    def __getattr__(self, k):
        return getattr(self.c, k)


def simulate(codes, act, bias_codes=None, *, codebook=None, **kw):
    """The reference on one design point: ``kw`` are EIEParams fields (``code_bits`` static)."""
    code_bits = kw.pop("code_bits", 4)
    params = EIEParams(**kw)
    static = EIEStatic.covering(params, code_bits=code_bits)
    book = np.zeros(1 << code_bits, np.float32) if codebook is None else codebook
    return _Run(*run(static, params, Layer(np.asarray(codes), book, np.asarray(act), bias_codes)))


def event_model(codes, act, bias, *, N, D, r=4, width=64, code_bits=4, lat_b=2, lat_w=5):
    """Direct transcription of design.md's event formulas (pure Python, small layers)."""
    enc = encode_layer(codes, bias, n_pes=N, index_bits=r, code_bits=code_bits)
    m, n = codes.shape
    n_cols = enc.n_cols
    a = np.zeros(n_cols)
    a[:n] = act
    if bias is not None:
        a[-1] = 1.0
    n_groups = -(-n_cols // N)
    lanes = np.zeros(n_groups * N)
    lanes[:n_cols] = a
    lanes = lanes.reshape(n_groups, N)
    e, cols, ready_free = [], [], []
    s = [[] for _ in range(N)]
    d = [[] for _ in range(N)]
    latch = 1
    for g in range(n_groups):
        nz = np.flatnonzero(lanes[g])
        if nz.size == 0:
            latch += 1
            continue
        for idx, lane in enumerate(nz):
            ready = latch if idx == 0 else e[-1] + 1
            k = len(e)
            t = ready
            if D >= 2 and k - D + 1 >= 0:
                t = max(t, max(s[i][k - D + 1] for i in range(N)))
            if D == 1 and k >= 1:
                t = max(t, max(s[i][k - 1] + d[i][k - 1] for i in range(N)))
            e.append(t)
            ready_free.append(ready)
            col = g * N + int(lane)
            cols.append(col)
            for i in range(N):
                entries = int(enc.col_ptr[i, col + 1] - enc.col_ptr[i, col])
                start = e[k] + lat_b if k == 0 else max(e[k] + lat_b, s[i][k - 1] + d[i][k - 1])
                s[i].append(start)
                d[i].append(max(1, entries))
        latch = e[-1] + 1 if nz[-1] == N - 1 else e[-1] + 2
    scan_end = latch
    last_write = None
    busy = np.zeros(N, np.int64)
    useful = fillers = starve = 0
    lines = np.zeros(N, np.int64)
    epl = width // (code_bits + r)
    for i in range(N):
        code_i, _ = enc.pe_entries(i)
        prev_line = -1
        for k, col in enumerate(cols):
            lo, hi = enc.col_ptr[i, col], enc.col_ptr[i, col + 1]
            for mm, p in enumerate(range(lo, hi)):
                busy[i] += 1
                if code_i[p]:
                    useful += 1
                    w = s[i][k] + mm + lat_w
                    last_write = w if last_write is None else max(last_write, w)
                else:
                    fillers += 1
                if p // epl != prev_line:
                    lines[i] += 1
                    prev_line = p // epl
            if k >= 1:
                starve += max(0, s[i][k] - s[i][k - 1] - d[i][k - 1])
    cycles = last_write + 1 if last_write is not None else scan_end
    return dict(
        cycles=cycles,
        busy=busy,
        useful_macs=useful,
        fillers=fillers,
        stall_cycles=int(sum(x - y for x, y in zip(e, ready_free, strict=True))),
        starvation_cycles=starve,
        pointer_reads=N * len(e),
        spm_line_reads=int(lines.sum()),
        broadcasts=len(e),
    )


def _rand_layer(rng, m, n, wd, ad, bias=True, bits=4):
    codes = ((rng.random((m, n)) < wd) * rng.integers(1, 2**bits, (m, n))).astype(np.uint8)
    act = ((rng.random(n) < ad) * rng.random(n)).astype(np.float32)
    b = ((rng.random(m) < wd) * rng.integers(1, 2**bits, m)).astype(np.uint8) if bias else None
    cb = np.concatenate([[0.0], rng.normal(size=2**bits - 1)]).astype(np.float32)
    return codes, act, b, cb


def _check_against_events(codes, act, b, cb, **kw):
    N, D = kw["N"], kw["D"]
    r, width = kw.get("r", 4), kw.get("width", 64)
    got = simulate(
        codes, act, b, codebook=cb, n_pes=N, fifo_depth=D, index_bits=r, sram_width=width
    )
    want = event_model(codes, act, b, **kw)
    for k, v in want.items():
        np.testing.assert_array_equal(getattr(got, k), v, err_msg=f"{k} {kw}")
    return got


def test_event_formulas_match_on_random_small_layers():
    rng = np.random.default_rng(0)
    for trial in range(150):
        m, n = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        kw = dict(
            N=int(rng.integers(1, 9)),
            D=int(rng.integers(1, 7)),
            r=int(rng.integers(1, 5)),
            width=int(rng.choice([8, 16, 24, 64, 128])),
        )
        codes, act, b, cb = _rand_layer(
            rng, m, n, rng.uniform(0, 1), rng.uniform(0, 1), bias=bool(trial % 3)
        )
        got = _check_against_events(codes, act, b, cb, **kw)
        assert got.pointer_reads == kw["N"] * got.broadcasts


def test_hand_worked_example():
    # one PE, two columns of one entry each, both activations non-zero, no bias.
    # D = 3: broadcasts at e = 1, 2; starts s = 3, 4; writes at 8, 9; end = 10.
    codes, act = np.array([[1, 2]], np.uint8), np.array([1.0, 1.0])
    c = simulate(codes, act, n_pes=1, fifo_depth=3)
    assert (c.cycles, c.broadcasts, c.stall_cycles) == (10, 2, 0)
    # D = 2: e[1] >= s[0] = 3, so s = 3, 5 and the end is 11 after one stall cycle
    c2 = simulate(codes, act, n_pes=1, fifo_depth=2)
    assert (c2.cycles, c2.stall_cycles) == (11, 1)
    # D = 1: e[1] >= s[0] + d[0] = 4, so s = 3, 6; end 12; stalls 4 - 2 = 2
    c1 = simulate(codes, act, n_pes=1, fifo_depth=1)
    assert (c1.cycles, c1.stall_cycles) == (12, 2)
    assert c1.starvation_cycles == 2  # the PE idles at cycles 4 and 5 between its columns


def test_output_is_float32_sum_in_broadcast_order():
    rng = np.random.default_rng(5)
    codes, act, b, cb = _rand_layer(rng, 37, 50, 0.4, 0.6)
    c = simulate(codes, act, b, codebook=cb, n_pes=4, fifo_depth=3)
    y = np.zeros(37, np.float32)
    w = cb[codes]
    for j in np.flatnonzero(act):
        y = y + (w[:, j] * act[j]).astype(np.float32)
    y = y + cb[b]
    np.testing.assert_array_equal(c.y, y)
    np.testing.assert_allclose(c.y, w.astype(np.float64) @ act + cb[b], rtol=1e-5, atol=1e-5)


def test_invariants():
    rng = np.random.default_rng(1)
    for _ in range(12):
        codes, act, b, cb = _rand_layer(rng, 48, 40, rng.uniform(0.05, 0.6), rng.uniform(0.1, 1))
        prev_max_busy = None
        for N in (1, 2, 4, 8):
            cycles_by_d = []
            for D in (1, 2, 3, 5, 8):
                c = simulate(codes, act, b, n_pes=N, fifo_depth=D)
                bc = np.flatnonzero(act)
                assert c.useful_macs == np.count_nonzero(codes[:, bc]) + np.count_nonzero(b)
                assert c.cycles >= c.busy.max()
                assert 0 < c.load_efficiency <= 1 and c.mac_efficiency <= c.load_efficiency
                assert c.busy.sum() == c.useful_macs + c.fillers
                cycles_by_d.append(c.cycles)
            # a deeper FIFO never costs cycles
            assert all(x >= y for x, y in zip(cycles_by_d, cycles_by_d[1:], strict=False))
            # more PEs (doubling) never more work per PE
            if prev_max_busy is not None:
                assert c.busy.max() <= prev_max_busy
            prev_max_busy = c.busy.max()


def test_degenerate_layers_end():
    cfg = dict(n_pes=3, fifo_depth=1)
    # all activations zero, no bias: nothing is broadcast; the LNZD scans 2 groups.
    c = simulate(np.ones((4, 5), np.uint8), np.zeros(5), **cfg)
    assert (c.broadcasts, c.cycles, c.useful_macs) == (0, 3, 0)
    # all weights zero: broadcasts happen, nothing is written
    z = simulate(np.zeros((4, 5), np.uint8), np.ones(5), np.zeros(4, np.uint8), **cfg)
    assert z.broadcasts == 6 and z.useful_macs == 0 and z.cycles > 0


def test_acc_regs_passes_sum_sub_layers():
    rng = np.random.default_rng(2)
    codes, act, b, cb = _rand_layer(rng, 20, 9, 0.5, 0.7)
    c = simulate(codes, act, b, codebook=cb, n_pes=2, fifo_depth=3, acc_regs=4)
    base = dict(n_pes=2, fifo_depth=3)
    parts = [
        simulate(codes[lo : lo + 8], act, b[lo : lo + 8], codebook=cb, **base) for lo in (0, 8, 16)
    ]
    assert c.cycles == sum(p.cycles for p in parts)
    assert c.pointer_reads == 3 * parts[0].pointer_reads
    np.testing.assert_array_equal(c.y, np.concatenate([p.y for p in parts]))
    one = simulate(codes, act, b, codebook=cb, **base)
    np.testing.assert_array_equal(c.y, one.y)
    assert c.useful_macs == one.useful_macs and c.cycles > one.cycles


def test_bad_input():
    codes = np.ones((4, 3), np.uint8)
    with pytest.raises(ValueError, match="act"):
        simulate(codes, np.ones(4), n_pes=2)
    with pytest.raises(TypeError, match="EIEParams"):
        run(EIEStatic(), {"n_pes": 2}, Layer(codes, np.zeros(16), np.ones(3)))
    enc = encode_layer(codes, n_pes=2)
    st = EIEStatic(max_pes=4)
    with pytest.raises(ValueError, match="n_pes"):
        simulate_encoded(st, EIEParams(n_pes=4), enc, np.ones(3))
    with pytest.raises(ValueError, match="index_bits"):
        simulate_encoded(st, EIEParams(n_pes=2, index_bits=3), enc, np.ones(3))
    with pytest.raises(ValueError, match="codebook"):
        simulate_encoded(st, EIEParams(n_pes=2), enc, np.ones(3), codebook=np.zeros(4))
    with pytest.raises(ValueError, match="single"):
        simulate_encoded(st, EIEParams(n_pes=2, fifo_depth=np.array([1, 2])), enc, np.ones(3))


def test_real_layer(eie_layer_path):
    d = np.load(eie_layer_path)
    # the authors' simulator has unlimited accumulators and activation registers: acc_regs=0
    # (this layer's 1000 outputs and 4096 inputs fit EIE's 64 at 64 PEs anyway)
    c = simulate(d["codes"], d["act"], d["bias_codes"], codebook=d["codebook"], n_pes=64,
                 fifo_depth=8, acc_regs=0)  # fmt: skip
    np.testing.assert_array_equal(c.y, d["y_sim"])  # bit-identical to the authors' output
    want = event_model(d["codes"], d["act"], d["bias_codes"], N=64, D=8)
    for k, v in want.items():
        np.testing.assert_array_equal(getattr(c, k), v, err_msg=k)
    assert c.broadcasts == 1759 + 1 and c.pointer_reads == 64 * 1760
    assert c.fillers == 0


def test_cli_json(tmp_path, capsys):
    """``eie-model reference`` prints the reference's counters."""
    rng = np.random.default_rng(4)
    codes, act, b, cb = _rand_layer(rng, 30, 20, 0.3, 0.5)
    p = tmp_path / "l.npz"
    np.savez(p, codes=codes, codebook=cb, act=act, bias_codes=b)
    argv = ["reference", "--layer", str(p), "--pes", "4", "--fifo", "3", "--sram-width", "32"]
    assert cli_main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = simulate(codes, act, b, n_pes=4, fifo_depth=3, sram_width=32)
    for k in ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads"):
        assert out[k] == getattr(ref, k)
    assert out["mac_efficiency"] == pytest.approx(ref.mac_efficiency)
    assert out["load_efficiency"] == pytest.approx(ref.load_efficiency)
    with pytest.raises(SystemExit):
        cli_main(["reference", "--layer", str(p), "--pes", "0", "--json"])
