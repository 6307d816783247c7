"""Tests of eie_model.sweep: batch = per-config runs, trace counts, sharding, tables, Pareto."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

# the package re-exports the function `sweep`, which shadows the module attribute
sweep = importlib.import_module("eie_model.sweep")

COUNTERS = (
    "cycles",
    "useful_macs",
    "fillers",
    "pointer_reads",
    "spm_line_reads",
    "stall_cycles",
    "starvation_cycles",
    "busy_total",
    "busy_max",
)


def _layer(seed=0, m=40, n=30):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.3, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    book = np.linspace(0, 1, 16, dtype=np.float32)
    return {"codes": codes, "act": act, "bias_codes": bias, "codebook": book}


def test_batch_equals_reference_per_config():
    """Every row of a batched sweep equals issue 8's simulator run on that one configuration."""
    from eie_model.config import EIEConfig
    from eie_model.reference import simulate

    layer = _layer()
    g = sweep.grid(n_pes=[1, 3, 8], fifo_depth=[1, 2, 5], index_bits=[1, 4], sram_width=[64])
    table = sweep.sweep(layer, g)
    assert len(table["cycles"]) == 18
    for i in range(18):
        cfg = EIEConfig(**{k: g[k][i].item() for k in ("n_pes", "fifo_depth", "index_bits")})
        ref = simulate(layer["codes"], layer["act"], layer["bias_codes"], config=cfg)
        for k in COUNTERS[:7]:
            assert int(table[k][i]) == int(getattr(ref, k)), (k, i)
        assert int(table["busy_total"][i]) == int(ref.busy.sum())
        assert int(table["busy_max"][i]) == int(ref.busy.max())
        assert table["mac_efficiency"][i] == pytest.approx(ref.mac_efficiency, 1e-9)
        assert table["load_efficiency"][i] == pytest.approx(ref.load_efficiency, 1e-9)
    # energy columns come from eie_model.energy on the same counters
    from eie_model.energy import energy_report

    cfg = EIEConfig(n_pes=8, fifo_depth=5, index_bits=4)
    i = int(np.flatnonzero((g["n_pes"] == 8) & (g["fifo_depth"] == 5) & (g["index_bits"] == 4))[0])
    rep = energy_report({k: table[k][i] for k in COUNTERS[:5]}, cfg)
    assert table["energy_j"][i] == pytest.approx(float(rep.energy_j), rel=1e-6)
    assert table["area_mm2"][i] == pytest.approx(float(rep.area_mm2), rel=1e-6)


def test_acc_regs_passes_equal_reference_per_config():
    """With acc_regs A, outputs beyond N * A run as extra passes (DESIGN §4.4): every counter
    of every row equals the reference simulator's acc_regs run (0 = unlimited, one pass), also
    through a prepared layer."""
    from eie_model.config import EIEConfig
    from eie_model.reference import simulate

    layer = _layer(4)
    g = sweep.grid(n_pes=[1, 3, 8], fifo_depth=[1, 4], index_bits=[2], acc_regs=[0, 2, 5, 64])
    table = sweep.sweep(layer, g)
    again = sweep.sweep(sweep.prepare(layer, g), g)
    for i in range(len(g["n_pes"])):
        a = int(g["acc_regs"][i])
        cfg = EIEConfig(
            **{k: g[k][i].item() for k in ("n_pes", "fifo_depth", "index_bits")},
            acc_regs=a or None,
        )
        ref = simulate(layer["codes"], layer["act"], layer["bias_codes"], config=cfg)
        for k in COUNTERS[:7]:
            assert int(table[k][i]) == int(getattr(ref, k)), (k, i)
            assert int(again[k][i]) == int(getattr(ref, k)), (k, i)
        assert int(table["busy_total"][i]) == int(ref.busy.sum())
        assert int(table["busy_max"][i]) == int(ref.busy.max())
        assert table["mac_efficiency"][i] == pytest.approx(ref.mac_efficiency, 1e-9)
    passes = -(-40 // (g["n_pes"] * np.maximum(g["acc_regs"], 1)))
    passes = np.where(g["acc_regs"] > 0, passes, 1)
    assert passes.max() == 20  # N = 1, A = 2: 20 passes
    k_ev = table["pointer_reads"][0]  # row 0: N = 1, one pass
    np.testing.assert_array_equal(table["pointer_reads"], g["n_pes"] * k_ev * passes)


def test_compiles_do_not_grow_with_configs(monkeypatch):
    """The timing scan traces once for a 120-config sweep and again not at all for another
    120 configurations with new values; with chunk= any count reuses one shape."""
    layer = _layer(1)
    counted = jax.jit(
        chex.assert_max_traces(sweep._timing_batch_impl, n=1), static_argnames=sweep._STATIC_T
    )
    monkeypatch.setattr(sweep, "_timing_batch", counted)
    rng = np.random.default_rng(0)
    for _ in range(2):
        cfg = {
            "n_pes": rng.integers(1, 9, 120),
            "fifo_depth": rng.integers(1, 9, 120),
            "index_bits": rng.integers(1, 5, 120),
            "sram_width": rng.choice([32, 64, 128], 120),
        }
        cfg["fifo_depth"][0] = 8  # same static bounds in both batches
        cfg["n_pes"][0] = 8
        out = sweep.sweep(layer, cfg, chunk=64)
        assert out["cycles"].shape == (120,)
    chex.clear_trace_counter()


def test_progress_callback_and_tqdm():
    seen = []
    sweep.sweep(
        _layer(),
        sweep.grid(fifo_depth=range(1, 10), n_pes=4),
        chunk=4,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1][0] == seen[-1][1] == 9 and len(seen) == 3


def test_configs_from_eieconfig_and_validation():
    from eie_model.config import EIEConfig

    layer = _layer()
    a = sweep.sweep(layer, [EIEConfig(n_pes=4, fifo_depth=2), EIEConfig(n_pes=4, fifo_depth=3)])
    b = sweep.sweep(layer, {"n_pes": 4, "fifo_depth": [2, 3]})
    np.testing.assert_array_equal(a["cycles"], b["cycles"])
    c = sweep.sweep(layer, [EIEConfig(n_pes=4, acc_regs=2), EIEConfig(n_pes=4)])
    d = sweep.sweep(layer, {"n_pes": 4, "acc_regs": [2, 0]})
    np.testing.assert_array_equal(c["cycles"], d["cycles"])
    assert c["acc_regs"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="acc_regs"):
        sweep.sweep(layer, {"acc_regs": [-1]})
    with pytest.raises(ValueError, match="unknown field"):
        sweep.sweep(layer, {"pes": [1]})
    with pytest.raises(ValueError, match="fifo_depth"):
        sweep.sweep(layer, {"fifo_depth": [0, 1]})
    with pytest.raises(ValueError, match="sram_width"):
        sweep.sweep(layer, {"sram_width": [4]})
    with pytest.raises(ValueError, match="act_bits"):
        sweep.sweep(layer, {"act_bits": [12]})
    with pytest.raises(TypeError, match="configs"):
        sweep.sweep(layer, 3)


def test_csv_json_records(tmp_path):
    t = sweep.sweep(_layer(), sweep.grid(n_pes=[1, 3], fifo_depth=[2, 5]))
    sweep.write_csv(t, tmp_path / "t.csv")
    sweep.write_json(t, tmp_path / "t.json")
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["cycles"]) for r in rows] == t["cycles"].tolist()
    with open(tmp_path / "t.json") as f:
        assert json.load(f)[3]["spm_line_reads"] == int(t["spm_line_reads"][3])
    rec = sweep.to_records(t)
    assert rec.shape == (4,) and rec["fifo_depth"].tolist() == [2, 5, 2, 5]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


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
    sys.path.insert(0, {tests!r})
    from test_eie_sweep import _layer
    assert len(jax.devices()) == 4, jax.devices()
    g = sweep.grid(n_pes=[1, 2, 5, 8], fifo_depth=[1, 2, 3], index_bits=[2, 4])
    many = sweep.sweep(_layer(), g)
    one = sweep.sweep(_layer(), g, devices=jax.devices()[:1])
    same = all(np.array_equal(many[k], one[k]) for k in many)
    print(json.dumps({{"same": bool(same), "n": int(len(many["cycles"]))}}))
    """
)


def test_sharded_over_four_devices_equals_one_device():
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

    mod = importlib.import_module("eie_model.sweep")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_prepared_layer_reuses_tables_and_equals_fresh_sweep():
    """sweep(prepare(layer, ...), configs) equals sweep(layer, configs) in every column, for
    other FIFO depths / widths / precisions and a subset of the prepared (N, r) pairs."""
    layer = _layer(2)
    prep = sweep.prepare(layer, sweep.grid(n_pes=[2, 5, 8], index_bits=[2, 4]))
    assert prep.pairs.tolist() == [[2, 2, 0], [2, 4, 0], [5, 2, 0], [5, 4, 0], [8, 2, 0], [8, 4, 0]]
    assert prep.code_bits == 4 and prep.max_pes == 8
    g = sweep.grid(
        n_pes=[5, 2], fifo_depth=[1, 3, 9], index_bits=[4, 2], sram_width=[16, 64], act_bits=[8]
    )
    want = sweep.sweep(layer, g)
    for _ in range(2):  # the prepared layer is not changed by a sweep
        got = sweep.sweep(prep, g)
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # a non-default write latency travels with the prepared layer
    prep7 = sweep.prepare(layer, g, write_latency=7)
    np.testing.assert_array_equal(
        sweep.sweep(prep7, g)["cycles"], sweep.sweep(layer, g, write_latency=7)["cycles"]
    )
    with pytest.raises(ValueError, match=r"\[\[3, 4, 0\]\].*prepare"):
        sweep.sweep(prep, {"n_pes": [2, 3]})
    with pytest.raises(ValueError, match="write_latency=6"):
        sweep.sweep(prep, {"n_pes": 2}, write_latency=6)
    with pytest.raises(ValueError, match="code_bits=5"):
        sweep.sweep(prep, {"n_pes": 2}, code_bits=5)
