"""The ``eie-model`` command: simulate one design point, sweep a grid, the reference simulator.

::

    eie-model simulate --layer Alex-7 --pes 64 --fifo 8 --json
    eie-model sweep --layer layer.npz --pes 1,2,4:8 --fifo 1:16 --sram-width 32,64 --out s.csv
    eie-model reference --layer layer.npz --pes 64 --fifo 8 --json
    eie-model table --pes 64 --fifo 8 --seeds 3
    eie-model figures --out docs/figures

``--layer`` is a benchmark name (``alex6 alex7 alex8 vgg6 vgg7 vgg8 nt-we nt-wd nt-lstm`` in
any of the paper's spellings, ``Alex-7`` / ``alex-7`` / ``alex7``: seeded synthetic layers of the
EIE paper's Table III), an ``.npz`` with the keys of ``shared/data/eie-layer`` (``codes``,
``codebook``, ``act``, optional ``bias_codes``) or ``FILE.dcz:LEAF``. Lists are comma separated;
``a:b`` is the inclusive range ``a..b`` and ``a:b:s`` steps by ``s``. The sweep's axes are the
fields of :class:`eie_model.types.EIEParams` (``EIEParams.flags()`` names the flags).

Compiled programs are kept in JAX's persistent compilation cache, in ``--cache-dir``, else
``$EIE_MODEL_CACHE_DIR``, else ``~/.cache/eie_model/jax`` (``--cache-dir ''`` turns it off):
a repeated ``eie-model simulate`` skips compilation.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "main", "parse_list", "setup_cache", "use_all_cores"]

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

    from eie_model.layers import _benchmark_key
    from eie_model.types import Layer

    key = str(name)
    if _benchmark_key(key) is not None or ".dcz:" in key or not os.path.exists(key):
        return Layer.load(name)
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
        return Layer.load(name)
    except damaged as e:
        raise ValueError(f"--layer {key}: damaged .npz file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(
                f"--layer {key}: an array in the .npz is not a plain numeric array"
            ) from None
        raise


def _flags() -> dict[str, str]:
    """``EIEParams`` field -> argparse dest of its flag (``n_pes`` -> ``pes``)."""
    from eie_model.types import EIEParams

    return {k: flag.replace("-", "_") for k, (flag, _) in EIEParams.flags().items()}


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
    dests = set(_flags().values())
    out = {}
    for k, v in data.items():
        key = k.replace("-", "_")
        if key not in dests:
            raise ValueError(f"--config {path}: unknown axis {k!r}; axes are {sorted(dests)}")
        out[key] = v
    return out


def _grid(axes: dict[str, Any]):
    from eie_model.types import EIEParams

    kw = {}
    for field, dest in _flags().items():
        val = axes.get(dest)
        if val is not None:
            kw[field] = parse_list(val, name=dest)
    return EIEParams.grid(**kw)


#: the EIEStatic capacity knobs ``simulate`` and ``sweep`` take as flags (flag, field, help)
STATIC_FLAGS = (
    ("ptr-bits", "ptr_bits", "column pointer bits: a PE addresses 2**ptr_bits entries"),
    ("spmat-bytes", "spmat_bytes", "SpMat SRAM bytes per PE"),
    ("act-regs", "act_regs", "source activation registers per PE; longer inputs run in "
     "batches of pes x act-regs (0 = unlimited)"),
)  # fmt: skip


def _add_static_flags(parser: argparse.ArgumentParser) -> None:
    from eie_model.types import EIEStatic

    for flag, field, hlp in STATIC_FLAGS:
        default = getattr(EIEStatic, field)
        parser.add_argument(f"--{flag}", type=int, default=default, help=f"{hlp} ({default})")


def _static_for(params, layer, args=None):
    from eie_model.types import EIEStatic

    kw = {} if args is None else {f: getattr(args, f) for _, f, _ in STATIC_FLAGS}
    return EIEStatic.covering(params, code_bits=max(layer.code_bits, 1), **kw)


def _simulate(args: argparse.Namespace) -> int:
    from eie_model.sweep import sweep
    from eie_model.types import EIEParams

    layer = _load(args.layer)
    params = EIEParams(**{f: getattr(args, d) for f, d in _flags().items()})
    # through sweep (= simulate, counter for counter): its work tables are built in NumPy, so
    # its compiled programs hold no host callback and JAX's persistent cache keeps them (it
    # does not store programs with callbacks, such as simulate's CPU sort)
    c = sweep(_static_for(params, layer, args), params, layer, devices=_first_device())
    row = {k: v[0].item() for k, v in c.table().items()}
    if args.json:
        out = {k: row[k] for k in SIMULATE_KEYS}
        out.update({k: row[k] for k in ("n_pes", "fifo_depth", "index_bits", "sram_width")})
        out["layer"] = str(args.layer)
        print(json.dumps(out))
        return 0
    p = params
    print(f"layer {args.layer}: {layer.codes.shape[0]} x {layer.codes.shape[1]} (out x in)")
    print(
        f"config: {int(p.n_pes)} PEs, FIFO {int(p.fifo_depth)}, {int(p.index_bits)}-bit index, "
        f"{int(p.sram_width)}-bit SRAM, {int(p.act_bits)}/{int(p.weight_bits)}-bit, "
        f"{float(p.clock_hz) / 1e6:g} MHz"
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


def _first_device() -> list:
    import jax

    return jax.local_devices()[:1]


def _sweep(args: argparse.Namespace) -> int:
    from eie_model.sweep import sweep, write_csv, write_json

    axes = _config_file(args.config) if args.config else {}
    for dest in _flags().values():
        v = getattr(args, dest)
        if v is not None:
            axes[dest] = v
    if "pes" not in axes or "fifo" not in axes:
        raise ValueError("sweep: give --pes and --fifo (flags or in --config)")
    params = _grid(axes)
    layer = _load(args.layer)
    n = len(params)
    kw = {} if args.chunk is None else {"chunk": args.chunk}
    t0 = time.perf_counter()
    counters = sweep(_static_for(params, layer, args), params, layer, progress=not args.quiet,
                     engine=args.engine, **kw)  # fmt: skip
    dt = time.perf_counter() - t0
    table = counters.table()
    if args.out.endswith(".json"):
        write_json(table, args.out)
    else:
        write_csv(table, args.out)
    print(
        f"{n} configurations in {dt:.2f} s ({n / max(dt, 1e-9):,.0f} configurations/s) "
        f"-> {args.out}",
        file=sys.stderr,
    )
    if args.plots:
        from eie_model import plots

        for p in plots.plot_sweep(table, args.plots, label=str(args.layer)):
            print(f"figure {p}", file=sys.stderr)
    return 0


def _reference(args: argparse.Namespace) -> int:
    from eie_model import reference

    return reference.main(args.rest)


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


def _table_layers(args: argparse.Namespace, names: list[str]):
    """``(row name, spec name, [layer per seed])`` of the table: each benchmark drawn with
    Table III's densities, then, with ``--real-layer``, the real layer's benchmark (of its
    shape, the closest in weight density) drawn with its measured counts and spread
    (``name~real``) and, at ``--scale 1``, the real layer itself (one layer: no seed spread)."""
    from eie_model.layers import BENCHMARKS, fit_spread, load_npz_layer, synthetic_layer

    seeds = range(args.seed, args.seed + args.seeds)
    out = []

    def draw(bench, wd, ad, **kw):
        spec = BENCHMARKS[bench]
        m = max(1, round(spec.n_out * args.scale))
        n = max(1, round(spec.n_in * args.scale))
        return [synthetic_layer(m, n, wd, ad, seed=sd, **kw) for sd in seeds]

    for name in names:
        spec = BENCHMARKS[name]
        out.append((name, name, draw(name, spec.weight_density, spec.act_density, name=name)))
    if args.real_layer:
        real = load_npz_layer(args.real_layer)
        like = [k for k in names if (BENCHMARKS[k].n_out, BENCHMARKS[k].n_in) == real.shape]
        if not like:
            raise ValueError(
                f"--real-layer {args.real_layer} has shape {real.shape}, which is no benchmark "
                f"of --layers {','.join(names)}; give a layer of one of their (out, in) shapes"
            )
        # one benchmark per real layer: of those with its shape (Alex-8 and VGG-8 share one),
        # the one whose Table III weight density is closest to the layer's
        like = [min(like, key=lambda k: abs(BENCHMARKS[k].weight_density - real.weight_density))]
        row_cv, col_cv = fit_spread(real.codes)
        for name in like:
            kw = dict(row_cv=row_cv, col_cv=col_cv, bias=real.bias_codes is not None)
            layers = draw(name, real.weight_density, real.act_density, name=f"{name}~real", **kw)
            out.append((f"{name}~real", name, layers))
            if args.scale == 1:
                out.append((f"{name} real layer", name, [real]))
    return out


def _table(args: argparse.Namespace) -> int:
    from eie_model.capacity import CapacityError
    from eie_model.layers import BENCHMARKS
    from eie_model.sim import simulate
    from eie_model.types import EIEParams, EIEStatic

    names = parse_list_names(args.layers) if args.layers else list(BENCHMARKS)
    params = EIEParams(n_pes=args.pes, fifo_depth=args.fifo, clock_hz=args.clock_mhz * 1e6)
    static = EIEStatic.covering(params)
    rows = []
    for label, name, layers in _table_layers(args, names):
        m, n = layers[0].shape
        row = {
            "layer": label,
            "benchmark": name,
            "shape": f"{n}x{m}",
            "seeds": [args.seed + i for i in range(len(layers))] if len(layers) > 1 else [],
            "weight_nnz": int(np.count_nonzero(layers[0].codes)),
            "act_nnz": int(np.count_nonzero(layers[0].act)),
        }
        try:
            counters = [simulate(static, params, layer) for layer in layers]
        except CapacityError as e:  # EIE cannot hold it: no latency to report
            print(f"{label}: {e}", file=sys.stderr)
            counters = None
        if counters is None:
            row.update({k: None for k in ("eie_us", "eie_us_std", "eie_us_min", "eie_us_max",
                                          "eie_us_per_seed", "eie_cycles",
                                          "eie_cycles_per_seed")})  # fmt: skip
        else:
            us = np.array([float(c.latency_us) for c in counters])
            row.update({
                "eie_us": float(us.mean()),
                "eie_us_std": float(us.std()),
                "eie_us_min": float(us.min()),
                "eie_us_max": float(us.max()),
                "eie_us_per_seed": us.tolist(),
                "eie_cycles": float(np.mean([int(c.cycles) for c in counters])),
                "eie_cycles_per_seed": [int(c.cycles) for c in counters],
            })  # fmt: skip
        layer = layers[0]  # the CPU products: first seed only (their time hardly moves)
        for b in (1, 64):
            tim = cpu_timings(layer.codes, layer.codebook, layer.act, batch=b, repeats=args.repeats)
            for k, v in tim.items():
                row[f"{k}_b{b}_us"] = v
        rows.append(row)
        if not args.json:
            print(f"{label}: done", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
        return 0
    cols = ["numpy_dense", "jax_dense", "scipy_csr", "jax_bcoo"]
    head = (
        "| layer | in x out | EIE us mean | std | min..max | "
        + " | ".join(f"{c} b{b} us" for b in (1, 64) for c in cols)
        + " |"
    )
    print(head)
    print("|" + "---|" * (5 + 2 * len(cols)))
    for r in rows:
        if r["eie_cycles"] is None:
            cells = [r["layer"], r["shape"], "does not fit", "", ""]
        else:
            cells = [r["layer"], r["shape"], f"{r['eie_us']:.2f}", f"{r['eie_us_std']:.3f}"]
            cells.append(f"{r['eie_us_min']:.2f}..{r['eie_us_max']:.2f}")
        cells += [f"{r[f'{c}_b{b}_us']:.1f}" for b in (1, 64) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(
        f"(EIE: {args.pes} PEs, FIFO {args.fifo}, {args.clock_mhz:g} MHz, batch 1; mean, "
        f"population std and range over seeds {args.seed}..{args.seed + args.seeds - 1} "
        f"(exact non-zero counts, so seeds move only where the non-zeros lie); CPU times best "
        f"of {args.repeats} on seed {args.seed}'s layer; layers scaled x{args.scale:g}; "
        "batch-64 times are for all 64)"
    )
    return 0


def parse_list_names(text: str) -> list[str]:
    """Comma list of benchmark layer names, validated."""
    from eie_model.layers import BENCHMARKS, _benchmark_key

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if _benchmark_key(t) is None]
    if bad or not names:
        raise ValueError(f"--layers: unknown {bad}; choose from {sorted(BENCHMARKS)}")
    return [_benchmark_key(t) for t in names]


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
    ap.add_argument(
        "--cache-dir",
        default=None,
        help="JAX compilation cache folder (default $EIE_MODEL_CACHE_DIR, else "
        "~/.cache/eie_model/jax; '' turns it off)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    from eie_model.types import EIEParams

    defaults = {f.name: f.default for f in dataclasses.fields(EIEParams)}
    s = sub.add_parser("simulate", help="one layer, one design point (the fast model)")
    s.add_argument("--layer", required=True, help="benchmark name, .npz or FILE.dcz:LEAF")
    for field, (flag, hlp) in EIEParams.flags().items():
        kind = float if field == "clock_hz" else int
        s.add_argument(f"--{flag}", type=kind, default=defaults[field],
                       help=f"{hlp} ({defaults[field]:g})")  # fmt: skip
    _add_static_flags(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=_simulate)

    w = sub.add_parser("sweep", help="the full grid of the given axes in one batched call")
    w.add_argument("--layer", required=True, help="benchmark name, .npz or FILE.dcz:LEAF")
    w.add_argument("--config", help="JSON or TOML file of axis -> list/range (flags override)")
    for flag, hlp in EIEParams.flags().values():
        w.add_argument(f"--{flag}", default=None, help=f"{hlp}: comma list / a:b range")
    w.add_argument("--out", required=True, help="output .csv (or .json)")
    w.add_argument("--plots", help="folder for the design-space figures of this sweep")
    w.add_argument("--chunk", type=int, default=None,
                   help="configurations per timing chunk of the xla engine")  # fmt: skip
    w.add_argument("--engine", choices=("auto", "host", "xla"), default="auto",
                   help="where the timing scans run: host (compiled CPU loops), xla (jitted "
                   "scans on the JAX devices) or auto (host on a CPU-only machine)")  # fmt: skip
    _add_static_flags(w)
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(fn=_sweep)

    r = sub.add_parser(
        "reference", help="one design point, cycle by cycle (slow; the oracle)", add_help=False
    )
    r.set_defaults(fn=_reference)  # its own parser reads the rest: eie-model reference --help

    t = sub.add_parser("table", help="Table IV analogue: EIE model vs CPU dense/sparse")
    t.add_argument("--layers", help="comma list of benchmark names (default: all nine)")
    t.add_argument("--pes", type=int, default=64)
    t.add_argument("--fifo", type=int, default=8)
    t.add_argument("--clock-mhz", type=float, default=800.0)
    t.add_argument("--scale", type=float, default=1.0, help="scale layer sizes (tests)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    t.add_argument("--seeds", type=int, default=3,
                   help="seeds per benchmark: --seed .. --seed + N - 1 (default 3)")  # fmt: skip
    t.add_argument("--real-layer",
                   help="a real layer .npz: adds its benchmark drawn with its measured counts "
                   "and spread (NAME~real) and, at --scale 1, the real layer itself")  # fmt: skip
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

    for flag, lo in (("repeats", 1), ("chunk", 1), ("seeds", 1)):
        v = getattr(args, flag, None)
        if v is not None and v < lo:
            raise ValueError(f"--{flag} must be >= {lo}, got {v}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2**32:
        raise ValueError(f"--seed must be in 0..{2**32 - 1}, got {seed}")
    seeds = getattr(args, "seeds", None)
    if seed is not None and seeds is not None and seed + seeds > 2**32:
        raise ValueError(f"--seed + --seeds must be <= {2**32}, got {seed} + {seeds}")
    for flag in ("scale", "clock_mhz", "clock_hz"):
        v = getattr(args, flag, None)
        if isinstance(v, (int, float)) and (not math.isfinite(v) or v <= 0):
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


def cache_dir(flag: str | None = None) -> str:
    """The compilation cache folder: ``flag``, else ``$EIE_MODEL_CACHE_DIR``, else the default.

    ``""`` (from either) means no persistent cache.

    Example:
        >>> cache_dir("/tmp/x")
        '/tmp/x'
    """
    if flag is not None:
        return flag
    env = os.environ.get("EIE_MODEL_CACHE_DIR")
    if env is not None:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "eie_model", "jax")


def setup_cache(flag: str | None = None) -> str:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (every program cached).

    Returns:
        the folder (``""``: left off).
    """
    path = cache_dir(flag)
    if path:
        import jax

        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def use_all_cores() -> int:
    """Expose every CPU core as a JAX CPU device, so the ``"xla"`` engine's chunks run side by
    side (``eie-model sweep --engine xla``; the host engine uses every core by itself).

    Only before JAX's backends start, and only when ``XLA_FLAGS`` does not already set the
    host device count. Returns the number of cores.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = os.environ.get("XLA_FLAGS", "")
    if n and n > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return int(n or 1)


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
        args, rest = ap.parse_known_args(argv)
        if args.cmd == "reference":
            args.rest = rest
        elif rest:
            ap.error(f"unrecognized arguments: {' '.join(rest)}")
        flags = os.environ.get("XLA_FLAGS")
        if args.cmd == "sweep" and args.engine == "xla":
            use_all_cores()
        setup_cache(args.cache_dir)
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
        finally:  # called in-process (a test, a notebook): child processes keep their flags
            if flags is None:
                os.environ.pop("XLA_FLAGS", None)
            else:
                os.environ["XLA_FLAGS"] = flags
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
