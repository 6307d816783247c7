"""Crafted-file fuzz of the .dcz loader at scale, each case under a time cap and a memory cap.

Runs the crafted cases of ``tests/dcz_fuzz.py`` (valid CRCs; edits of manifest fields, raw
manifest text, header and payloads) on four real files: the test suite's three small ones and
two LeNet-300-100-sized ones (784x300 + 300x100 + 100x10 kernels, about 33 KB; one with a
single Huffman chunk per stream). Before them it loads named worst cases near 1 MB (a manifest
of escaped quotes, JSON nested 500,000 deep, huge declared counts, a 10**9 dimension, 4M
entries in one chunk, a file decoding to 256x its size), each in a fresh capped process. The
cases run in a worker process whose address space is capped
(``resource.setrlimit(RLIMIT_AS)``: what it held after warming up plus ``--mem-cap-mb``); the
parent kills the worker when a case runs past
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
    one_chunk = ff.dumps_compressed(params, cbs, codes, index_bits=5, chunk_size=2**20)
    files = [*fz.base_files(), lenet, one_chunk]
    return fz, [(data, fz.flat_decode(data)) for data in files]


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_start() -> int:
    """Reset the peak resident size (Linux clear_refs 5); return the current resident size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def _peak_growth(start: int) -> int:
    """KiB the peak resident size rose above ``start`` since :func:`_peak_start`."""
    return max(0, _status("VmHWM") - start) // 1024


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
        before = _peak_start()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fz.check(case, full=True)
        except MemoryError:
            out = "foreign MemoryError (escaped the checker)"
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        grew = _peak_growth(before)
        out = out.replace("\n", " ").replace("\t", " ")
        print(f"{i}\t{dt:.4f}\t{cpu:.4f}\t{grew}\t{len(case.data)}\t{case.kind}\t{out}", flush=True)


def _attack_files() -> dict[str, bytes]:
    """Worst cases near 1 MB, named: what each would cost a loader that trusted the file."""
    import json
    import struct

    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    import dcz_fuzz as fz

    from jaxcomp import fileformat as ff

    out = {}
    small = fz.base_files()[0]
    p = fz.parse(small)
    text = json.dumps(p.manifest, separators=(",", ":")).encode()
    payloads = [s for _, _, s in p.sections]
    quotes = text[:-1] + b',"zz":"' + b'\\"' * 500_000 + b"}"
    out["manifest: 1 MB unterminated string of escaped quotes"] = fz.build(
        2, 0, quotes, payloads, deflate=False
    )
    deep = text[:-1] + b',"m":' + b"[" * 500_000 + b"]" * 500_000 + b"}"
    out["manifest: JSON nested 500,000 deep"] = fz.build(2, 0, deep, payloads, deflate=False)
    m = json.loads(text)
    rec = next(r for r in m["l"] if r["k"] == "s")
    m["c"], rec["n"], rec["cn"] = 2**30, 2**40, 2**48
    out["sparse leaf declaring chunk 2**30, 2**40 entries"] = fz.build(
        2, 0, json.dumps(m).encode(), payloads, deflate=False
    )
    m = json.loads(text)
    rec = next(r for r in m["l"] if r["k"] == "s")
    rec["s"] = [*rec["s"][:-1], 10**9]
    out["sparse leaf whose last dimension is 10**9"] = fz.build(
        2, 0, json.dumps(m).encode(), payloads, deflate=False
    )
    rows, cols = 2048, 2048  # 4M weights at 2 bits each (1-bit code + 1-bit index): ~1 MB
    out["valid: 4M entries in one Huffman chunk (chunk_size 2**30)"] = ff.dumps_compressed(
        {"w": np.zeros((rows, cols), np.float32)},
        {"w": np.array([0.0, 1.0], np.float32)},
        {"w": np.ones((rows, cols), np.uint8)},
        index_bits=1,
        chunk_size=2**30,
    )
    filler = np.random.default_rng(0).normal(size=250_000).astype(np.float32)  # 1 MB dense
    zeros = (8192, 7700)  # 252 MB of float32 zeros: just under 256 x the file's size
    out["valid: 1 MB file decoding to 253 MB (max_ratio 256)"] = ff.dumps_compressed(
        {"dense": filler, "w": np.zeros(zeros, np.float32)},
        {"w": np.array([0.0, 1.0], np.float32)},
        {"w": np.zeros(zeros, np.uint8)},
    )
    assert len(struct.pack("<I", 0)) == 4
    return out


def attack(path: str, mem_cap_mb: int) -> None:
    from jaxcomp import fileformat as ff

    data = Path(path).read_bytes()
    ff.loads_compressed(fz_small())  # warm up
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + mem_cap_mb * 2**20,) * 2)
    before = _peak_start()
    c0 = time.process_time()
    try:
        ff.loads_compressed(data)
        out = "decoded"
    except ff.DczFormatError as e:
        out = f"refused: {str(e)[:90]}"
    except BaseException as e:  # noqa: BLE001 - reported, the point of the exercise
        out = f"FOREIGN {type(e).__name__}: {str(e)[:80]}"
    cpu = time.process_time() - c0
    grew = _peak_growth(before)
    print(f"{cpu:.3f}\t{grew}\t{out}", flush=True)


def fz_small() -> bytes:
    sys.path.insert(0, str(ROOT / "tests"))
    import dcz_fuzz as fz

    return fz.base_files()[0]


def run_attacks(args) -> int:
    import tempfile

    bad = 0
    print("named worst cases (each in a fresh process, same caps):")
    with tempfile.TemporaryDirectory() as d:
        for name, data in _attack_files().items():
            f = Path(d) / "a.dcz"
            f.write_bytes(data)
            cmd = [
                sys.executable,
                __file__,
                "--attack",
                str(f),
                "--mem-cap-mb",
                str(args.mem_cap_mb),
            ]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                     timeout=args.time_cap + 120)  # fmt: skip
                line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
                cpu, grew, out = (
                    line.split("\t", 2) if line else ("?", "0", f"died {res.returncode}")
                )
            except subprocess.TimeoutExpired:
                cpu, grew, out = "?", "0", "HANG"
            bad += out.startswith(("FOREIGN", "died", "HANG"))
            print(f"  {name}: {len(data):,} bytes -> {out}; {cpu} s CPU, "
                  f"peak memory +{int(grew) / 1024:.0f} MiB")  # fmt: skip
    return bad


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
    ap.add_argument("--attack", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.start, args.stop, args.seed, args.mem_cap_mb)
        return 0
    if args.attack:
        attack(args.attack, args.mem_cap_mb)
        return 0

    attacks_bad = run_attacks(args)
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
    return 0 if counts["other"] == 0 and attacks_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
