"""The ``eie-model`` command: simulate one configuration, sweep a grid, print Table IV, figures.

::

    eie-model simulate --layer alex7 --pes 64 --fifo 8 --json
    eie-model sweep --layer layer.npz --pes 1,2,4:8 --fifo 1:16 --sram-width 32,64 --out s.csv
    eie-model table --pes 64 --fifo 8
    eie-model figures --out docs/figures

``--layer`` is a benchmark name (``alex6 alex7 alex8 vgg6 vgg7 vgg8 nt-we nt-wd nt-lstm``,
seeded synthetic layers of the EIE paper's Table III) or an ``.npz`` with the keys of
``shared/data/eie-layer`` (``codes``, ``codebook``, ``act``, optional ``bias_codes``).
Lists are comma separated; ``a:b`` is the inclusive range ``a..b`` and ``a:b:s`` steps by ``s``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "parse_list"]

#: CLI flag -> sweep field.
_AXES = {
    "pes": "n_pes",
    "fifo": "fifo_depth",
    "index_bits": "index_bits",
    "sram_width": "sram_width",
    "act_bits": "act_bits",
    "weight_bits": "weight_bits",
    "acc_regs": "acc_regs",
    "clock_mhz": "clock_hz",
}

#: Keys of ``simulate --json``, in output order (the contract other tools rely on first).
SIMULATE_KEYS = (
    "cycles",
    "useful_macs",
    "fillers",
    "pointer_reads",
    "spm_line_reads",
    "mac_efficiency",
    "load_efficiency",
    "energy_j",
    "latency_us",
    "stall_cycles",
    "starvation_cycles",
    "busy_total",
    "busy_max",
    "load_balance",
    "power_w",
    "area_mm2",
    "gops",
    "gops_per_w",
)


#: Most values one list flag may expand to (``1:1e9`` would otherwise allocate gigabytes).
_MAX_VALUES = 1_000_000


def parse_list(text: str | int | float | Sequence[Any], *, name: str = "value") -> list[float]:
    """Parse ``"1,2,8:16"`` (comma list; ``a:b`` inclusive range; ``a:b:s`` with step s).

    Args:
        text: the string (or an already-parsed number / sequence, passed through).
        name: the flag's name, for error messages.

    Returns:
        list of numbers (ints where whole).

    Example:
        >>> parse_list("1,2,8:10")
        [1, 2, 8, 9, 10]
        >>> parse_list("16:64:16")
        [16, 32, 48, 64]
    """
    if isinstance(text, (int, float)):
        return [text]
    if not isinstance(text, str):
        out: list[float] = []
        for t in text:
            out += parse_list(t, name=name)
        return out
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                bits = [float(b) for b in part.split(":")]
                if len(bits) not in (2, 3):
                    raise ValueError
                lo, hi = bits[0], bits[1]
                step = bits[2] if len(bits) == 3 else 1.0
                if step <= 0 or hi < lo or not np.isfinite(bits).all():
                    raise ValueError
                count = (hi - lo) / step + 1
                if not np.isfinite(count) or count > _MAX_VALUES:  # before allocating it
                    raise ValueError(
                        f"--{name.replace('_', '-')}: {part!r} gives {count:,.0f} values; at "
                        f"most {_MAX_VALUES:,} per list"
                    )
                vals = np.arange(lo, hi + step / 2, step).tolist()
            else:
                vals = [float(part)]
        except ValueError as e:
            if str(e).startswith("--"):
                raise
            raise ValueError(
                f"--{name.replace('_', '-')}: cannot parse {part!r}; use a comma list of numbers "
                "and inclusive ranges a:b or a:b:step (e.g. 1,2,8:16)"
            ) from None
        if not np.isfinite(vals).all():
            raise ValueError(f"--{name.replace('_', '-')}: {part!r} is not a finite number")
        out += [int(v) if float(v).is_integer() else v for v in vals]
    if not out:
        raise ValueError(f"--{name.replace('_', '-')}: no values in {text!r}")
    return out


def _load(name: str):
    """``--layer``: a benchmark name, ``FILE.dcz:LEAF``, or an ``.npz`` file; a file that is not
    a readable ``.npz`` (truncated, random bytes, a folder) is refused in one line naming it."""
    import pickle
    import zipfile
    import zlib

    from eie_model.layers import BENCHMARKS, load_layer

    key = str(name)
    if key.lower() in BENCHMARKS or ".dcz:" in key or not os.path.exists(key):
        return load_layer(name)
    if os.path.isdir(key):
        raise IsADirectoryError(errno.EISDIR, "is a folder; give an .npz layer file", key)
    with open(key, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(
            f"--layer {key}: not an .npz file (no zip header); give a file written by "
            "numpy.savez with codes, codebook, act [, bias_codes], or a benchmark name"
        )
    damaged = (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, KeyError)
    try:  # numpy leaves its file open when the archive is damaged: check it here first
        with zipfile.ZipFile(key) as z:
            member = z.testzip()
    except damaged as e:
        raise ValueError(f"--layer {key}: damaged .npz file ({type(e).__name__}: {e})") from None
    if member is not None:
        raise ValueError(f"--layer {key}: damaged .npz file (member {member} fails its CRC)")
    try:
        return load_layer(name)
    except damaged as e:
        raise ValueError(f"--layer {key}: damaged .npz file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(
                f"--layer {key}: an array in the .npz is not a plain numeric array"
            ) from None
        raise


def _config_file(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        data = tomllib.loads(raw.decode())
    else:
        data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected an object of axis -> values")
    out = {}
    for k, v in data.items():
        key = k.replace("-", "_")
        if key not in _AXES:
            raise ValueError(f"--config {path}: unknown axis {k!r}; axes are {sorted(_AXES)}")
        out[key] = v
    return out


def _axes_to_grid(axes: dict[str, Any]) -> dict[str, np.ndarray]:
    from eie_model.sweep import grid

    kw = {}
    for flag, val in axes.items():
        if val is None:
            continue
        vals = parse_list(val, name=flag)
        if flag == "clock_mhz":
            vals = [v * 1e6 for v in vals]
        kw[_AXES[flag]] = vals
    return grid(**kw)


def _simulate(args: argparse.Namespace) -> int:
    from eie_model.sweep import sweep

    layer = _load(args.layer)
    cfg = {
        "n_pes": [args.pes],
        "fifo_depth": [args.fifo],
        "index_bits": [args.index_bits],
        "sram_width": [args.sram_width],
        "act_bits": [args.act_bits],
        "weight_bits": [args.weight_bits],
        "acc_regs": [args.acc_regs],
        "clock_hz": [args.clock_mhz * 1e6],
    }
    t = sweep(layer, cfg, devices=[__import__("jax").devices()[0]])
    row = {k: t[k][0].item() for k in t}
    if args.json:
        out = {k: row[k] for k in SIMULATE_KEYS}
        out.update({k: row[k] for k in ("n_pes", "fifo_depth", "index_bits", "sram_width")})
        out["layer"] = str(args.layer)
        print(json.dumps(out))
        return 0
    print(f"layer {args.layer}: {layer.codes.shape[0]} x {layer.codes.shape[1]} (out x in)")
    print(
        f"config: {args.pes} PEs, FIFO {args.fifo}, {args.index_bits}-bit index, "
        f"{args.sram_width}-bit SRAM, {args.act_bits}/{args.weight_bits}-bit, "
        f"{args.clock_mhz:g} MHz"
    )
    print(f"cycles           {row['cycles']:,}  ({row['latency_us']:.2f} us)")
    print(f"useful MACs      {row['useful_macs']:,}  (fillers {row['fillers']:,})")
    print(f"efficiency       MAC {row['mac_efficiency']:.3f}, load {row['load_efficiency']:.3f}")
    print(
        f"stalls           broadcast {row['stall_cycles']:,}, "
        f"starvation {row['starvation_cycles']:,} PE-cycles"
    )
    print(
        f"memory           {row['pointer_reads']:,} pointer reads, "
        f"{row['spm_line_reads']:,} SpMat line reads"
    )
    print(
        f"energy           {row['energy_j'] * 1e6:.3f} uJ at {row['power_w'] * 1e3:.1f} mW, "
        f"{row['area_mm2']:.1f} mm^2"
    )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from eie_model.sweep import _bucket, sweep, write_csv, write_json

    axes = _config_file(args.config) if args.config else {}
    for flag in _AXES:
        v = getattr(args, flag)
        if v is not None:
            axes[flag] = v
    if "pes" not in axes or "fifo" not in axes:
        raise ValueError("sweep: give --pes and --fifo (flags or in --config)")
    cfg = _axes_to_grid(axes)
    layer = _load(args.layer)
    n = len(cfg["n_pes"])
    trips = len(np.unique(np.stack([cfg["n_pes"], cfg["index_bits"], cfg["fifo_depth"]]), axis=1).T)
    chunk = args.chunk or max(8, _bucket(-(-trips // 10)))
    t0 = time.perf_counter()
    table = sweep(layer, cfg, chunk=chunk, progress=not args.quiet)
    dt = time.perf_counter() - t0
    if args.out.endswith(".json"):
        write_json(table, args.out)
    else:
        write_csv(table, args.out)
    print(
        f"{n} configurations ({trips} distinct timing runs) in {dt:.2f} s -> {args.out}",
        file=sys.stderr,
    )
    if args.plots:
        from eie_model import plots

        for p in plots.plot_sweep(table, args.plots, label=str(args.layer)):
            print(f"figure {p}", file=sys.stderr)
    return 0


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (and compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def cpu_timings(
    codes: np.ndarray, codebook: np.ndarray, act: np.ndarray, *, batch: int, repeats: int = 3
) -> dict[str, float]:
    """Microseconds of one dense / sparse matrix-vector (or matrix-matrix) product on the CPU.

    NumPy dense, JAX dense (jit), SciPy CSR and ``jax.experimental.sparse`` BCOO (jit), each
    the best of ``repeats`` runs after a warm-up, on ``batch`` copies of ``act`` as columns.
    """
    import jax
    import jax.numpy as jnp
    import scipy.sparse as sp
    from jax.experimental import sparse as jsparse

    w = codebook[codes].astype(np.float32)
    x = (
        np.repeat(act.astype(np.float32)[:, None], batch, 1)
        if batch > 1
        else act.astype(np.float32)
    )
    csr = sp.csr_matrix(w)
    wj, xj = jnp.asarray(w), jnp.asarray(x)
    bcoo = jsparse.BCOO.fromdense(wj)
    dense_j = jax.jit(lambda a, b: a @ b)
    sparse_j = jax.jit(lambda a, b: a @ b)
    return {
        "numpy_dense": _time(lambda: w @ x, repeats),
        "jax_dense": _time(lambda: dense_j(wj, xj).block_until_ready(), repeats),
        "scipy_csr": _time(lambda: csr @ x, repeats),
        "jax_bcoo": _time(lambda: sparse_j(bcoo, xj).block_until_ready(), repeats),
    }


def _table(args: argparse.Namespace) -> int:
    from eie_model.layers import BENCHMARKS, synthetic_layer
    from eie_model.sweep import sweep

    names = parse_list_names(args.layers) if args.layers else list(BENCHMARKS)
    rows = []
    for name in names:
        spec = BENCHMARKS[name]
        m = max(1, round(spec.n_out * args.scale))
        n = max(1, round(spec.n_in * args.scale))
        layer = synthetic_layer(
            m, n, spec.weight_density, spec.act_density, seed=args.seed, name=name
        )
        t = sweep(
            layer, {"n_pes": args.pes, "fifo_depth": args.fifo, "clock_hz": args.clock_mhz * 1e6}
        )
        row = {
            "layer": name,
            "shape": f"{n}x{m}",
            "eie_us": float(t["latency_us"][0]),
            "eie_cycles": int(t["cycles"][0]),
        }
        for b in (1, 64):
            tim = cpu_timings(layer.codes, layer.codebook, layer.act, batch=b, repeats=args.repeats)
            for k, v in tim.items():
                row[f"{k}_b{b}_us"] = v
        rows.append(row)
        if not args.json:
            print(f"{name}: done", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
        return 0
    cols = ["numpy_dense", "jax_dense", "scipy_csr", "jax_bcoo"]
    head = (
        "| layer | in x out | EIE us | "
        + " | ".join(f"{c} b{b} us" for b in (1, 64) for c in cols)
        + " |"
    )
    print(head)
    print("|" + "---|" * (3 + 2 * len(cols)))
    for r in rows:
        cells = [r["layer"], r["shape"], f"{r['eie_us']:.2f}"]
        cells += [f"{r[f'{c}_b{b}_us']:.1f}" for b in (1, 64) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(
        f"(EIE: {args.pes} PEs, FIFO {args.fifo}, {args.clock_mhz:g} MHz, batch 1; CPU times "
        f"best of {args.repeats}; layers scaled x{args.scale:g}; batch-64 times are for all 64)"
    )
    return 0


def parse_list_names(text: str) -> list[str]:
    """Comma list of benchmark layer names, validated."""
    from eie_model.layers import BENCHMARKS

    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in BENCHMARKS]
    if bad or not names:
        raise ValueError(f"--layers: unknown {bad}; choose from {sorted(BENCHMARKS)}")
    return names


def _figures(args: argparse.Namespace) -> int:
    from eie_model import plots

    for p in plots.design_space_figures(
        args.out,
        layers=parse_list_names(args.layers) if args.layers else None,
        real_layer=args.real_layer,
        scale=args.scale,
    ):
        print(f"figure {p}")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="eie-model", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="one layer, one configuration")
    s.add_argument("--layer", required=True, help="benchmark name or .npz file")
    s.add_argument("--pes", type=int, default=64, help="number of PEs N (64)")
    s.add_argument("--fifo", type=int, default=8, help="FIFO depth D (8)")
    s.add_argument("--index-bits", type=int, default=4, help="relative-index bits (4)")
    s.add_argument("--sram-width", type=int, default=64, help="SpMat SRAM line bits (64)")
    s.add_argument("--act-bits", type=int, default=16, help="activation precision (16)")
    s.add_argument("--weight-bits", type=int, default=16, help="weight precision (16)")
    s.add_argument("--clock-mhz", type=float, default=800.0, help="clock in MHz (800)")
    s.add_argument(
        "--acc-regs", type=int, default=0, help="accumulators per PE (0 = unlimited, one pass)"
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=_simulate)

    w = sub.add_parser("sweep", help="the full grid of the given axes in one batched call")
    w.add_argument("--layer", required=True, help="benchmark name or .npz file")
    w.add_argument("--config", help="JSON or TOML file of axis -> list/range (flags override)")
    for flag in _AXES:
        w.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, default=None, help="comma list / a:b range"
        )
    w.add_argument("--out", required=True, help="output .csv (or .json)")
    w.add_argument("--plots", help="folder for the design-space figures of this sweep")
    w.add_argument("--chunk", type=int, default=None, help="timing runs per device call")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(fn=_sweep)

    t = sub.add_parser("table", help="Table IV analogue: EIE model vs CPU dense/sparse")
    t.add_argument("--layers", help="comma list of benchmark names (default: all nine)")
    t.add_argument("--pes", type=int, default=64)
    t.add_argument("--fifo", type=int, default=8)
    t.add_argument("--clock-mhz", type=float, default=800.0)
    t.add_argument("--scale", type=float, default=1.0, help="scale layer sizes (tests)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true")
    t.set_defaults(fn=_table)

    f = sub.add_parser("figures", help="the README's design-space figures")
    f.add_argument("--out", default="docs/figures")
    f.add_argument("--layers", help="comma list of benchmark names (default: all nine)")
    f.add_argument("--real-layer", help="the shared real layer .npz (added to the figures)")
    f.add_argument("--scale", type=float, default=1.0, help="scale layer sizes (tests)")
    f.set_defaults(fn=_figures)
    return ap


#: What to do about an OS error, by errno (appended to its one-line message).
_OS_HINTS = {
    errno.ENOSPC: "free some space and rerun",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "check the permissions or choose another location",
    errno.ELOOP: "a symbolic link points (indirectly) at itself; fix the link",
    errno.ENAMETOOLONG: "shorten the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _os_error_line(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    files = [os.fspath(f) for f in (e.filename, e.filename2) if f is not None]
    line = f"{' -> '.join(str(f) for f in files)}: {what}" if files else what
    hint = _OS_HINTS.get(e.errno or 0)
    return " ".join((line + (f"; {hint}" if hint else "")).split())


def _check_args(args: argparse.Namespace) -> None:
    """Flags that the models do not check themselves, refused before any work."""
    import math

    for flag, lo in (("repeats", 1), ("chunk", 1)):
        v = getattr(args, flag, None)
        if v is not None and v < lo:
            raise ValueError(f"--{flag} must be >= {lo}, got {v}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2**32:
        raise ValueError(f"--seed must be in 0..{2**32 - 1}, got {seed}")
    for flag in ("scale", "clock_mhz"):
        v = getattr(args, flag, None)
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number > 0, got {v}")
    out = getattr(args, "out", None)
    if out is not None:
        if not out.strip():
            raise ValueError("--out is empty; give a file (sweep) or folder (figures) path")
        want_dir = args.cmd == "figures"
        if os.path.exists(out) and os.path.isdir(out) != want_dir:
            kind = "a folder" if want_dir else "a file"
            raise ValueError(f"--out {out} exists and is not {kind}")
        for parent in [os.path.abspath(out), *map(str, Path(os.path.abspath(out)).parents)][1:]:
            if os.path.exists(parent):
                if not os.path.isdir(parent):
                    raise ValueError(f"--out {out} lies below the file {parent}")
                break


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eie-model``; returns the exit status.

    0: done; 1: the file system refused (missing file, no space, read-only, ...); 2: a bad flag
    or input file (the message names it); 130: interrupted. Every error is one line on stderr
    (``docs/guides/cli-errors.md``).

    Example:
        >>> main(["simulate", "--layer", "nt-lstm", "--pes", "8", "--fifo", "4", "--json"])
        ... # doctest: +SKIP
    """
    try:
        ap = _parser()
        args = ap.parse_args(argv)
        where = f"eie-model {args.cmd}: error:"
        try:
            _check_args(args)
            return int(args.fn(args) or 0)
        except OSError as e:
            print(f"{where} {_os_error_line(e)}", file=sys.stderr)
            return 1
        except (ValueError, TypeError) as e:
            print(f"{where} {' '.join(str(e).split())}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
