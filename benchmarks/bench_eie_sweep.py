"""Speed of the EIE sweep (eie_model.sweep) against today's kernel, measured in the same run.

The baseline is the kernel as it was before the typed-spine rewrite, kept verbatim in
``benchmarks/_baseline_eie_kernel.py`` (its ``sweep(layer, configs)``, without energy columns).

(a) The design sweep where every configuration is distinct: Alex-7 over PEs 1..64 x FIFO depth
    1..256 (16,384 configurations), each through a fresh process as a user runs it:
    the old ``eie-model sweep`` (``python benchmarks/_baseline_eie_kernel.py ...``) and
    ``eie-model sweep`` twice, first with an empty compilation cache (``--cache-dir`` a new
    folder), then with that cache warm. The time is the sweep call each prints (layer work,
    compilation and scans; not Python start-up), and every counter of the two CSVs is compared.
(b) The repeated-layer grids (Alex-7 at 64 PEs): 1,024 configurations (FIFO 1..32 x SRAM width x
    precisions x clock), 16,384 (FIFO 1..64 x index bits 1..8 x the same) and 1,024 distinct
    scans (FIFO 1..256 x index bits 1..4). Steady state of repeated calls on one layer: the
    baseline's ``sweep(prepare(layer, grid), grid)`` against ``sweep(static, params, layer)``
    (the layer's work tables kept by the sweep); medians of ``--repeats`` calls; every counter
    compared.
(c) One design point from the command line, ``eie-model simulate --layer alex7 --pes 64 --fifo
    8``, in fresh processes: wall time of the whole process (Python start-up, imports, the layer,
    the point) with a warm compilation cache (the first run fills it), median of ``--repeats``.

Operations per second: the measure of the work a configuration stands for, 8 integer
operations per PE per broadcast event (``8 * n_pes * K`` per configuration).

Usage::

    python benchmarks/bench_eie_sweep.py [--quick] [--repeats 5] [--skip-a] [--skip-c]

The machine is shared: each line prints the load average, and only ratios within one run mean
anything.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _baseline_eie_kernel as base  # noqa: E402

from eie_model.layers import benchmark_layer  # noqa: E402
from eie_model.sim.events import layer_events  # noqa: E402
from eie_model.sweep import sweep  # noqa: E402
from eie_model.types import EIEParams, EIEStatic  # noqa: E402

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


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(argv: list[str]) -> tuple[float, float]:
    """``(time the sweep call printed, wall time of the whole process)``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    line = [s for s in res.stderr.splitlines() if "configurations in" in s][-1]
    return float(line.split("configurations in ")[1].split(" s")[0]), wall


def _csv(path: str) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


#: the baseline models neither EIE's capacities nor its accumulator / activation registers:
#: the timed sweeps lift them (pointers and SRAM for all of Alex-7 in one PE, one pass, one
#: batch) so both sides do the same work (docs/guides/eie-capacities.md)
AS_BASELINE = dict(ptr_bits=24, spmat_bytes=1 << 24, act_regs=0)
AS_BASELINE_FLAGS = ["--acc-regs", "0", "--ptr-bits", "24", "--spmat-bytes", str(1 << 24),
                     "--act-regs", "0"]  # fmt: skip


def part_a(k_ev: int) -> None:
    print(
        f"(a) Alex-7, PEs 1..64 x FIFO 1..256 = 16,384 configurations, fresh processes; {_load()}"
    )
    axes = ["--layer", "alex7", "--pes", "1:64", "--fifo", "1:256"]
    with tempfile.TemporaryDirectory() as tmp:
        t_base, w_base = _run(
            [sys.executable, str(ROOT / "benchmarks" / "_baseline_eie_kernel.py"), *axes]
        )
        print(
            f"    baseline (old eie-model sweep):      {t_base:6.2f} s = "
            f"{16384 / t_base:8,.0f} configs/s; whole process {w_base:.2f} s wall"
        )
        cache = os.path.join(tmp, "cache")
        out = os.path.join(tmp, "new.csv")
        cmd = [sys.executable, "-m", "eie_model.cli", "--cache-dir", cache, "sweep", *axes]
        cmd += AS_BASELINE_FLAGS
        cmd += ["--out", out, "--quiet"]
        t_cold, w_cold = _run(cmd)
        t_warm, w_warm = _run(cmd)
        ops = 8 * k_ev * np.arange(1, 65).sum() * 256
        for name, t, w in (
            ("eie-model sweep, empty cache", t_cold, w_cold),
            ("eie-model sweep, warm cache", t_warm, w_warm),
        ):
            print(
                f"    {name + ':':<37}{t:6.2f} s = {16384 / t:8,.0f} configs/s "
                f"({ops / t / 1e9:,.1f} G ops/s), {t_base / t:5.1f}x the baseline; whole "
                f"process {w:.2f} s wall"
            )
        goal = "met" if 16384 / t_warm >= 20000 else "not met"
        print(f"    goal >= 20,000 configs/s (warm cache): {goal}")
        new = _csv(out)
    # the baseline's counters, in process (its CSV writer is gone with its CLI): spot rows
    layer = benchmark_layer("alex7")
    g = base.grid(n_pes=[1, 7, 33, 64], fifo_depth=[1, 2, 17, 256])
    want = base.sweep(layer._asdict(), g)
    for i in range(len(g["n_pes"])):
        row = int(
            np.flatnonzero(
                (new["n_pes"] == g["n_pes"][i]) & (new["fifo_depth"] == g["fifo_depth"][i])
            )[0]
        )
        for k in COUNTERS:
            assert int(new[k][row]) == int(want[k][i]), (k, i)
    print(f"    16 spot rows: every counter equal to the baseline's; {_load()}")
    stages(layer)
    kernel_load()


def kernel_load() -> None:
    """What the compiled host kernels cost a fresh process (numba import, its start-up on the
    first call, and loading the compiled code): with an empty numba cache (compiled once per
    machine), then from that cache."""
    code = (
        "import time; import jax; import numpy as np; t = time.perf_counter(); "
        "from eie_model import _host_kernels as k; z = np.zeros(1, np.int32); "
        "c, e = k.slice_entries(z, z, 1, 0, 1, np.zeros(1, np.int64)); "
        "d = np.zeros((1, 1, 1), np.int32); "
        "k.timing_scans(d, d, np.zeros((1, 1), np.int32), z, np.zeros((1, 1), np.int32), "
        "np.ones(1, np.int32), np.array([[0, 1]]), 2, -9, np.zeros((1, 3), np.int64)); "
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "NUMBA_CACHE_DIR": tmp,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        t = []
        for _ in range(2):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=600, check=True)  # fmt: skip
            t.append(float(res.stdout.split()[-1]))
    print(
        f"    numba host kernels in a fresh process: {t[0]:.2f} s with an empty numba "
        f"cache, {t[1]:.2f} s from it (in each sweep above); {_load()}"
    )


def stages(layer) -> None:
    """Where a sweep of grid (a) spends its time: one call in this process (host kernels
    loaded, the layer's tables not cached), by stage."""
    import importlib

    mod = importlib.import_module("eie_model.sweep")
    params = EIEParams.grid(n_pes=range(1, 65), fifo_depth=range(1, 257), acc_regs=0)
    static = EIEStatic.covering(params, **AS_BASELINE)
    spent: dict[str, float] = {}
    scans = [0]
    names = {"_prepared": "work tables", "_fifo_reuse": "FIFO reuse", "_host_scans": "scans"}
    saved = {k: getattr(mod, k) for k in names}

    def timed(name):
        def f(*a, **k):
            t0 = time.perf_counter()
            out = saved[name](*a, **k)
            spent[names[name]] = spent.get(names[name], 0.0) + time.perf_counter() - t0
            if name == "_host_scans":
                scans[0] += len(a[1])
            return out

        return f

    try:
        for k in names:
            setattr(mod, k, timed(k))
        for _ in range(2):  # the first call compiles
            mod._CACHE.clear()
            spent.clear()
            scans[0] = 0
            t0 = time.perf_counter()
            sweep(static, params, layer)
            total = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            setattr(mod, k, v)
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
    rest = total - sum(spent.values())
    print(
        f"    one call in this process: {total:.2f} s = {16384 / total:,.0f} configs/s = "
        f"{parts} ({scans[0]:,} scans), rest {rest:.2f} s; {_load()}"
    )


def _medians(fns, repeats: int) -> list[float]:
    """Median wall time of each of ``fns``, called in turn ``repeats`` times."""
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for f, t in zip(fns, ts, strict=True):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in ts]


def part_b(quick: bool, repeats: int, k_ev: int) -> None:
    layer = benchmark_layer("alex7")
    grids = {
        "1,024 grid": dict(
            n_pes=64,
            fifo_depth=range(1, 33),
            sram_width=[32, 64, 128, 256],
            act_bits=[8, 16],
            weight_bits=[8, 16],
            clock_hz=[4e8, 8e8],
        ),
        "16,384 grid": dict(
            n_pes=64,
            fifo_depth=range(1, 65),
            index_bits=range(1, 9),
            sram_width=[32, 64, 128, 256],
            act_bits=[8, 16],
            weight_bits=[8, 16],
            clock_hz=[4e8, 8e8],
        ),
        "1,024 distinct scans": dict(n_pes=64, fifo_depth=range(1, 257), index_bits=[1, 2, 3, 4]),
    }
    if quick:
        grids.pop("16,384 grid")
    print(
        f"(b) repeated-layer grids, Alex-7 at 64 PEs, steady state, medians of {repeats}; {_load()}"
    )
    for name, axes in grids.items():
        g_old = base.grid(**axes)
        params = EIEParams.grid(**axes, acc_regs=0)
        static = EIEStatic.covering(params, **AS_BASELINE)
        prep = base.prepare(layer._asdict(), g_old)
        old = base.sweep(prep, g_old)  # compile
        new = sweep(static, params, layer)  # compile, and keep the layer's tables
        t = new.table()
        for k in COUNTERS:
            np.testing.assert_array_equal(t[k], old[k], err_msg=k)
        # alternate the two, so a change of the machine's load hits both alike
        t_old, t_new = _medians(
            [
                lambda p=prep, g=g_old: base.sweep(p, g),
                lambda s=static, p=params: sweep(s, p, layer),
            ],
            repeats,
        )
        n = len(params)
        ops = 8 * k_ev * 64 * n
        print(
            f"    {name}: baseline {t_old:.3f} s = {n / t_old:9,.0f} configs/s; "
            f"new {t_new:.3f} s = "
            f"{n / t_new:9,.0f} configs/s ({ops / t_new / 1e9:,.1f} G ops/s): "
            f"{t_old / t_new:.1f}x (goal 5x: {'met' if t_old / t_new >= 5 else 'not met'}); "
            "every counter equal"
        )
    print(f"    {_load()}")


def part_c(repeats: int) -> None:
    print(f"(c) one point, eie-model simulate in fresh processes; {_load()}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "eie_model.cli", "--cache-dir", os.path.join(tmp, "c")]
        cmd += ["simulate", "--layer", "alex7", "--pes", "64", "--fifo", "8"]
        walls = []
        for _ in range(repeats + 1):  # the first run fills the compilation cache
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            walls.append(time.perf_counter() - t0)
            if res.returncode:
                raise RuntimeError(res.stderr[-3000:])
        cyc = [s for s in res.stdout.splitlines() if s.startswith("cycles")][0]
    med = float(np.median(walls[1:]))
    print(
        f"    empty cache {walls[0]:.2f} s wall; warm cache {med:.2f} s wall (median of "
        f"{repeats}; goal <= 2 s: {'met' if med <= 2 else 'not met'}); {cyc.split('(')[0].strip()}"
    )
    print(f"    {_load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the 16,384 grid of (b)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (5)")
    ap.add_argument("--skip-a", action="store_true", help="skip the fresh-process grid (a)")
    ap.add_argument("--skip-c", action="store_true", help="skip the single point (c)")
    args = ap.parse_args()
    k_ev = layer_events(benchmark_layer("alex7")).num_events
    print(f"Alex-7: K = {k_ev} broadcast events; {os.cpu_count()} CPU cores")
    if not args.skip_a:
        part_a(k_ev)
    part_b(args.quick, args.repeats, k_ev)
    if not args.skip_c:
        part_c(args.repeats)
    print("GPU: no device was lent to this task; no GPU number")


if __name__ == "__main__":
    main()
