"""Crafted-file fuzz of the .dcz loader at scale, each case under a time cap and a memory cap.

Runs the crafted cases of ``tests/dcz_fuzz.py`` (valid CRCs; edits of manifest fields, raw
manifest text, header and payloads) on four real files: the test suite's three small ones and
a LeNet-300-100-sized one (784x300 + 300x100 + 100x10 kernels, about 30 KB). The cases run in a
worker process whose address space is capped (``resource.setrlimit(RLIMIT_AS)``: what it held
after warming up plus ``--mem-cap-mb``); the parent kills the worker when a case runs past
``--time-cap`` wall seconds (a hang) and restarts it after the next case; a worker that dies is a
crash. Each case is one of: refused (``DczFormatError``), exact (decoded to exactly the model
the edit means), or other (a foreign exception, a wrong decode, a hang, a crash).

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/fuzz_dcz.py --cases 10000

It prints the counts, the slowest case, the largest memory growth of one case, and exits 1
unless every case was refused or exact.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bases():
    sys.path.insert(0, str(ROOT / "tests"))
    import dcz_fuzz as fz
    import numpy as np

    from jaxcomp import fileformat as ff

    rng = np.random.default_rng(1)
    params, cbs, codes = {}, {}, {}
    for name, (n, m), bits in (
        ("fc1", (784, 300), 6),
        ("fc2", (300, 100), 5),
        ("fc3", (100, 10), 5),
    ):
        params[name] = {
            "kernel": np.zeros((n, m), np.float32),
            "bias": rng.normal(size=m).astype("f4"),
        }
        c = rng.integers(1, 2**bits, size=(n, m)) * (rng.random((n, m)) < 0.08)
        codes[f"{name}/kernel"] = c.astype(np.uint8)
        cbs[f"{name}/kernel"] = np.concatenate([[0.0], rng.normal(size=2**bits - 1)]).astype("f4")
    lenet = ff.dumps_compressed(params, cbs, codes, index_bits=5, compact_manifest=True)
    files = [*fz.base_files(), lenet]
    return fz, [(data, fz.flat_decode(data)) for data in files]


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def worker(start: int, stop: int, seed: int, mem_cap_mb: int) -> None:
    fz, bases = _bases()
    from jaxcomp import fileformat as ff

    for data, _ in bases:  # warm up every code path that allocates once (JAX, NumPy)
        ff.loads_compressed(data)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + mem_cap_mb * 2**20,) * 2)
    for i in range(start, stop):
        r = random.Random(seed * 1_000_003 + i)
        data, original = bases[r.randrange(len(bases))]
        case = fz.craft(r, data, original)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fz.check(case, full=True)
        except MemoryError:
            out = "foreign MemoryError (escaped the checker)"
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        out = out.replace("\n", " ").replace("\t", " ")
        print(f"{i}\t{dt:.4f}\t{cpu:.4f}\t{grew}\t{len(case.data)}\t{case.kind}\t{out}", flush=True)


def _spawn(start, stop, args):
    cmd = [sys.executable, __file__, "--worker", "--start", str(start), "--stop", str(stop),
           "--seed", str(args.seed), "--mem-cap-mb", str(args.mem_cap_mb)]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-cap", type=float, default=60.0, help="wall seconds per case")
    ap.add_argument("--mem-cap-mb", type=int, default=1024, help="address space per case (MiB)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.start, args.stop, args.seed, args.mem_cap_mb)
        return 0

    t_start = time.perf_counter()
    counts = collections.Counter()
    others: list[str] = []
    slowest = (0.0, "")
    most_mem = (0, "")
    largest = 0
    i = 0
    while i < args.cases:
        proc = _spawn(i, args.cases, args)
        startup = True
        while i < args.cases:
            cap = args.time_cap + (120 if startup else 0)  # the first case waits for imports
            ready, _, _ = select.select([proc.stdout], [], [], cap)
            if not ready:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                counts["other"] += 1
                others.append(f"case {i}: hang (> {args.time_cap} s)")
                i += 1
                break
            line = proc.stdout.readline()
            if not line:
                rc = proc.wait()
                counts["other"] += 1
                others.append(f"case {i}: worker died (exit {rc})")
                i += 1
                break
            startup = False
            idx, dt, cpu, grew, size, kind, out = line.rstrip("\n").split("\t", 6)
            i = int(idx) + 1
            largest = max(largest, int(size))
            counts[out if out in ("refused", "exact") else "other"] += 1
            if out not in ("refused", "exact"):
                others.append(f"case {idx} ({kind}): {out}")
            if float(cpu) > slowest[0]:
                slowest = (float(cpu), f"case {idx} ({kind}, {float(dt):.3f} s wall)")
            if int(grew) > most_mem[0]:
                most_mem = (int(grew), f"case {idx} ({kind})")
        else:
            proc.wait()
    tried = sum(counts.values())
    print(f"tried {tried:,} crafted valid-CRC files (largest {largest:,} bytes), "
          f"seed {args.seed}, {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print(f"  refused cleanly (DczFormatError): {counts['refused']:,}")
    print(f"  decoded exactly:                  {counts['exact']:,}")
    print(f"  other (foreign exception, wrong decode, hang, crash): {counts['other']:,}")
    print(f"  slowest case: {slowest[0]:.3f} s CPU, {slowest[1]} (cap {args.time_cap:g} s wall)")
    print(f"  largest peak-memory growth of one case: {most_mem[0] / 1024:.1f} MiB, {most_mem[1]} "
          f"(address-space cap {args.mem_cap_mb} MiB over the warmed-up worker)")  # fmt: skip
    for line in others[:20]:
        print("  " + line)
    return 0 if counts["other"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
