"""Tests of the eie-model command line (eie_model.cli)."""

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from eie_model import cli
from eie_model.reference import simulate as ref_simulate
from eie_model.types import EIEParams, EIEStatic, Layer


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    """The command's compilation cache stays off in this process (its config is global)."""
    monkeypatch.setenv("EIE_MODEL_CACHE_DIR", "")


def simulate(d, **kw):
    """The reference on the npz layer ``d`` for the EIEParams fields ``kw``."""
    params = EIEParams(**kw)
    layer = Layer(d["codes"], d["codebook"], d["act"], d["bias_codes"])
    return ref_simulate(EIEStatic.covering(params), params, layer)


def _npz(tmp_path: Path, seed=0, m=24, n=20) -> Path:
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.3, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    p = tmp_path / "layer.npz"
    np.savez(p, codes=codes, act=act, bias_codes=bias, codebook=np.linspace(0, 1, 16, dtype="f4"))
    return p


def test_parse_list():
    assert cli.parse_list("1,2,8:10") == [1, 2, 8, 9, 10]
    assert cli.parse_list("16:64:16") == [16, 32, 48, 64]
    assert cli.parse_list("0.5,1.5") == [0.5, 1.5]
    for bad in ("", "a", "4:2", "1:2:0", "1:2:3:4"):
        with pytest.raises(ValueError, match="--pes"):
            cli.parse_list(bad, name="pes")


def test_simulate_json_contract_equals_reference(tmp_path, capsys):
    p = _npz(tmp_path)
    rc = cli.main(
        [
            "simulate",
            "--layer",
            str(p),
            "--pes",
            "4",
            "--fifo",
            "3",
            "--index-bits",
            "2",
            "--sram-width",
            "32",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for k in (
        "cycles",
        "useful_macs",
        "fillers",
        "pointer_reads",
        "spm_line_reads",
        "mac_efficiency",
        "load_efficiency",
        "energy_j",
    ):
        assert k in out
    with np.load(p) as d:
        ref = simulate(d, n_pes=4, fifo_depth=3, index_bits=2, sram_width=32)
    for k in ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads"):
        assert out[k] == getattr(ref, k), k
    assert out["mac_efficiency"] == pytest.approx(ref.mac_efficiency)
    assert out["energy_j"] > 0


def test_acc_regs_flag_equals_reference(tmp_path, capsys):
    """--acc-regs 2 at 4 PEs runs the 24 outputs as 3 passes, as the reference does."""
    p = _npz(tmp_path, seed=3)
    args = ["--layer", str(p), "--pes", "4", "--fifo", "2", "--acc-regs", "2"]
    assert cli.main(["simulate", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with np.load(p) as d:
        ref = simulate(d, n_pes=4, fifo_depth=2, acc_regs=2)
    for k in ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads"):
        assert out[k] == getattr(ref, k), k
    csv_path = tmp_path / "a.csv"
    assert (
        cli.main(["sweep", *args[:6], "--acc-regs", "0,2", "--out", str(csv_path), "--quiet"]) == 0
    )
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["acc_regs"]) for r in rows] == [0, 2]
    assert int(rows[1]["cycles"]) == out["cycles"] > int(rows[0]["cycles"])


def test_simulate_text_and_errors(tmp_path, capsys):
    p = _npz(tmp_path)
    assert cli.main(["simulate", "--layer", str(p), "--pes", "2", "--fifo", "2"]) == 0
    assert "cycles" in capsys.readouterr().out
    assert cli.main(["simulate", "--layer", str(tmp_path / "nope.npz")]) == 2
    assert "neither a benchmark name" in capsys.readouterr().err
    assert cli.main(["simulate", "--layer", str(p), "--fifo", "0"]) == 2
    assert "fifo_depth" in capsys.readouterr().err


def test_sweep_grid_to_csv_and_config_file(tmp_path, capsys):
    p = _npz(tmp_path)
    out = tmp_path / "s.csv"
    rc = cli.main(
        [
            "sweep",
            "--layer",
            str(p),
            "--pes",
            "1,3:4",
            "--fifo",
            "1:3",
            "--sram-width",
            "32,64",
            "--out",
            str(out),
            "--quiet",
            "--chunk",
            "8",
        ]
    )
    assert rc == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 3 * 2
    with np.load(p) as d:
        for r in rows[::5]:
            ref = simulate(
                d,
                n_pes=int(r["n_pes"]),
                fifo_depth=int(r["fifo_depth"]),
                sram_width=int(r["sram_width"]),
            )
            assert int(r["cycles"]) == ref.cycles
            assert int(r["spm_line_reads"]) == ref.spm_line_reads
    conf = tmp_path / "grid.toml"
    conf.write_text('pes = "2,4"\nfifo = [1, 2]\nclock_hz = "4e8"\n')
    out2 = tmp_path / "s.json"
    assert (
        cli.main(
            [
                "sweep",
                "--layer",
                str(p),
                "--config",
                str(conf),
                "--out",
                str(out2),
                "--quiet",
                "--engine",
                "xla",
                "--chunk",
                "8",
                "--plots",
                str(tmp_path / "figs"),
            ]
        )
        == 0
    )
    rows2 = json.loads(out2.read_text())
    assert len(rows2) == 4 and {r["clock_hz"] for r in rows2} == {4e8}
    assert (tmp_path / "figs" / "fifo.png").exists()
    assert cli.main(["sweep", "--layer", str(p), "--pes", "2", "--out", str(out)]) == 2
    assert "--fifo" in capsys.readouterr().err


def test_table_small(capsys):
    rc = cli.main(["table", "--layers", "nt-we", "--scale", "0.03", "--repeats", "1", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in rows] == ["nt-we"]
    for r in rows:
        assert r["eie_us"] > 0 and r["eie_cycles"] > 0
        for b in (1, 64):
            for k in ("numpy_dense", "jax_dense", "scipy_csr", "jax_bcoo"):
                assert r[f"{k}_b{b}_us"] > 0
    assert cli.main(["table", "--layers", "alexnet"]) == 2


def test_table_reports_the_seed_spread_of_eie_latency(tmp_path, capsys):
    """Three seeds (the default): the mean, std and range are those of the per-seed latencies,
    each equal to simulate on that seed's layer; --real-layer adds NAME~real with the real
    layer's exact counts (and, at scale 1, the real layer itself)."""
    from eie_model.layers import BENCHMARKS, exact_count, synthetic_layer
    from eie_model.sim import simulate
    from eie_model.types import EIEParams, EIEStatic

    scale = 0.03  # the shape of test_table_small: its compiled programs are reused
    argv = ["table", "--layers", "nt-we", "--scale", str(scale), "--repeats", "1"]
    assert cli.main([*argv, "--seed", "4", "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["seeds"] == [4, 5, 6] and len(r["eie_us_per_seed"]) == 3
    s = BENCHMARKS["nt-we"]
    m, n = round(s.n_out * scale), round(s.n_in * scale)
    params = EIEParams(n_pes=64, fifo_depth=8)
    runs = zip(r["seeds"], r["eie_us_per_seed"], r["eie_cycles_per_seed"], strict=True)
    for seed, us, cyc in runs:
        layer = synthetic_layer(m, n, s.weight_density, s.act_density, seed=seed)
        c = simulate(EIEStatic.covering(params), params, layer)
        assert (int(c.cycles), float(c.latency_us)) == (cyc, pytest.approx(us))
    us = np.array(r["eie_us_per_seed"])
    assert r["eie_us"] == pytest.approx(us.mean()) and r["eie_us_std"] == pytest.approx(us.std())
    assert (r["eie_us_min"], r["eie_us_max"]) == (us.min(), us.max())
    assert r["eie_us_min"] <= r["eie_us"] <= r["eie_us_max"]
    assert r["weight_nnz"] == exact_count(s.weight_density, m * n)

    real = synthetic_layer(600, 4096, 0.2, 0.9, seed=7, row_cv=0.3, col_cv=0.0)  # nt-we shape
    np.savez(tmp_path / "r.npz", codes=real.codes, codebook=real.codebook, act=real.act)
    assert cli.main([*argv, "--seeds", "2", "--real-layer", str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert "| EIE us mean | std | min..max |" in out and "over seeds 0..1" in out
    assert "| nt-we~real | 123x18 |" in out and "real layer" not in out  # none when scaled
    # the real-density rows, built as the table builds them (at scale 1, without CPU timings)
    args = cli._parser().parse_args(["table", "--real-layer", str(tmp_path / "r.npz")])
    built = cli._table_layers(args, ["nt-we", "alex8"])
    assert [(x[0], x[1], len(x[2])) for x in built] == [
        ("nt-we", "nt-we", 3),
        ("alex8", "alex8", 3),
        ("nt-we~real", "nt-we", 3),
        ("nt-we real layer", "nt-we", 1),
    ]
    for layer in built[2][2]:
        assert np.count_nonzero(layer.codes) == np.count_nonzero(real.codes)
        assert np.count_nonzero(layer.act) == np.count_nonzero(real.act)
    np.testing.assert_array_equal(built[3][2][0].codes, real.codes)
    assert cli.main([*argv[:2], "alex8", "--real-layer", str(tmp_path / "r.npz")]) == 2
    assert "is no benchmark of --layers alex8" in capsys.readouterr().err


def test_console_script_declared():
    root = Path(__file__).resolve().parents[1]
    with open(root / "pyproject.toml", "rb") as f:
        proj = tomllib.load(f)
    assert proj["project"]["scripts"]["eie-model"] == "eie_model.cli:main"
    assert callable(cli.main) and sys.version_info >= (3, 10)


def test_docstring_examples_run():
    import doctest

    mod = importlib.import_module("eie_model.cli")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_repeated_simulate_reuses_the_compilation_cache(tmp_path):
    """A second ``eie-model simulate`` (a new process) finds its programs in --cache-dir."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "eie_model.cli", "--cache-dir", str(cache), "simulate"]
    argv += ["--layer", "nt-lstm", "--pes", "8", "--fifo", "4", "--json"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted(p.name for p in cache.iterdir())
    assert files  # the compiled programs were written
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(first.stdout)
    assert sorted(p.name for p in cache.iterdir()) == files  # nothing new to compile


def test_in_process_sweep_leaves_xla_flags_as_it_found_them(tmp_path, monkeypatch):
    """`eie-model sweep --engine xla` exposes every core as a JAX device through XLA_FLAGS;
    called in-process it must put the variable back, or every process started later (a
    notebook kernel) splits its work over devices it never asked for."""
    out = str(tmp_path / "s.csv")
    argv = ["sweep", "--layer", "nt-lstm", "--pes", "16", "--fifo", "1,2", "--out", out, "--quiet"]
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert cli.main([*argv, "--engine", "xla"]) == 0
    assert "XLA_FLAGS" not in os.environ
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    assert cli.main([*argv, "--engine", "xla"]) == 0
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_thunk_runtime=true"
