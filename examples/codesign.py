"""Algorithm-hardware co-design: from a pruning choice to cycles and joules on EIE.

LeNet-300-100 on MNIST is compressed at several sparsities, each twice from the same dense
baseline: with plain magnitude pruning, and with load-balance-aware pruning for ``--lb-pes``
EIE processing elements (thesis §3.5: every PE gets the same number of non-zeros). Each model
goes through the whole Deep Compression pipeline (iterative pruning + retraining, k-means
weight sharing + centroid fine-tuning, Huffman coding, a ``.dcz`` file). Then its three
fully-connected layers run on EIE:

* accuracy: the MNIST test set through :func:`eie_model.network_forward` in EIE's 16-bit fixed
  point (per-layer formats calibrated on 1,000 training images);
* speed, energy, area: :func:`eie_model.network_sweep` over EIE configurations (``--sweep-pes``
  PEs, FIFO depth ``--fifo``), each layer fed the activations real test images produce, cycles
  and energy summed over the layers (with each layer's bias column and the ReLU write-back
  between layers, docs/guides/eie-networks.md) and averaged over ``--samples`` images.

It prints one table (one row per model and PE count), writes every row to
``OUT/codesign.json`` and draws ``OUT/codesign.png`` (:func:`eie_model.plots.fig_codesign`;
``codesign-lb-fc1+fc2.*`` with ``--lb-layers fc1,fc2``, which balances only those layers):
cycles of plain vs load-balance-aware pruning, their test errors, and the accuracy-latency-energy
Pareto front of every model x configuration.

Run (full MNIST; each model is a resumable ``jaxcomp compress`` run under OUT)::

    JAXCOMP_DATA_DIR=/path/to/data python examples/codesign.py --out runs/codesign \\
        --figure docs/figures/codesign.png
    python examples/codesign.py --small --out /tmp/codesign      # a minute: tiny settings
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from eie_model import (
    EIEParams,
    EIEStatic,
    calibrate_fracs,
    load_dcz_network,
    network_forward,
    network_sweep,
)
from jaxcomp.atomic import atomic_open
from jaxcomp.zoo import THESIS, compress_preset, default_config
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.train import train_baseline

MODEL = "lenet-300-100"
#: Sweep-table columns kept per row of the result.
COLUMNS = (
    "cycles",
    "latency_us",
    "energy_j",
    "area_mm2",
    "power_w",
    "load_balance",
    "load_efficiency",
    "mac_efficiency",
    "useful_macs",
    "writeback_cycles",
)


def sparsity_at(keep_scale: float) -> dict[str, float]:
    """Per-layer sparsity keeping ``keep_scale`` x the thesis' kept fraction of each layer."""
    out = {}
    for path, s in THESIS[MODEL]["sparsity"].items():
        keep = min(1.0, (1.0 - s) * keep_scale)
        out[path] = round(1.0 - keep, 6)
    return out


def _parse_floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: give comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{name}: give at least one value")
    return vals


def run(args: argparse.Namespace, log=print) -> dict:
    """Compress every (sparsity, pruning) variant, evaluate it on EIE; return the results."""
    out = Path(args.out)
    data = load_mnist(args.data_dir)
    if args.train_limit:
        data = data._replace(
            x_train=data.x_train[: args.train_limit], y_train=data.y_train[: args.train_limit]
        )
    if args.test_limit:
        data = data._replace(
            x_test=data.x_test[: args.test_limit], y_test=data.y_test[: args.test_limit]
        )
    log(f"data: {data.source} MNIST, {len(data.x_train)} train / {len(data.x_test)} test images")
    baseline = args.baseline
    if baseline is None:
        auto = Path("runs") / "baselines" / MODEL
        baseline = auto if (auto / "params").exists() and not args.small else None
    if baseline is None:  # one dense model for every variant, trained once and kept in OUT,
        # named by what it was trained on: another run in the same OUT (--small, --train-limit,
        # --dense-epochs) gets its own instead of silently reusing one made differently
        epochs = "recipe" if args.dense_epochs is None else args.dense_epochs
        baseline = out / f"baseline-{len(data.x_train)}img-{epochs}ep"
        if not (baseline / "params").exists():
            _, _, err = train_baseline(
                MODEL, data, epochs=args.dense_epochs, out=baseline, progress=args.progress
            )
            log(f"dense baseline: test error {100 * err:.2f}% -> {baseline}")
    log(f"dense baseline: {baseline}")

    calib = data.x_train[:1000]
    samples = data.x_test[: args.samples]
    configs = EIEParams.grid(n_pes=args.sweep_pes, fifo_depth=args.fifo)
    static = EIEStatic.covering(configs)
    rows: list[dict] = []
    variants = [
        (scale, lb, seed)
        for scale in args.keep_scales
        for seed in range(args.seed, args.seed + args.seeds)
        for lb in (False, True)
    ]
    for scale, lb, seed in variants:
        sparsity = sparsity_at(scale)
        kind = "plain"
        balance: int | dict[str, int] | None = None
        if lb:
            kind = "lb" if args.lb_layers is None else "lb-" + "+".join(args.lb_layers)
            balance = (
                args.lb_pes
                if args.lb_layers is None
                else {f"{layer}/kernel": args.lb_pes for layer in args.lb_layers}
            )
        name = f"keep{scale:g}x-{kind}" + (f"-seed{seed}" if seed else "")
        cfg = default_config(
            MODEL,
            seed=seed,
            sparsity=sparsity,
            load_balance_pes=balance,
            prune_epochs=args.prune_epochs,
            epochs_per_step=args.epochs_per_step,
            prune_fractions=tuple(args.prune_fractions),
            finetune_epochs=args.finetune_epochs,
        )
        t0 = time.perf_counter()
        rep = compress_preset(
            MODEL,
            out / name,
            cfg,
            data=data,
            baseline=baseline,
            progress=args.progress,
            plots=False,
            log=lambda s, name=name: log(f"[{name}] {s}"),
        )
        net = load_dcz_network(out / name / "model.dcz")
        fracs = calibrate_fracs(net, calib, 16)
        logits, _ = network_forward(net, data.x_test, bits=16, fracs=fracs)
        eie_err = float(np.mean(logits.argmax(-1) != data.y_test))
        table = network_sweep(net, samples, static, configs, progress=args.progress)
        kept = sum(int(np.count_nonzero(c)) for c in net.codes)
        total = sum(c.size for c in net.codes)
        for i in range(len(table["n_pes"])):
            row = {
                "model": name,
                "keep_scale": scale,
                "keep_pct": 100.0 * kept / total,
                "load_balanced": lb,
                "seed": seed,
                "compression_rate": rep["compression_rate"],
                "test_error": rep["test_error"]["final"],
                "eie_test_error": eie_err,
                "n_pes": int(table["n_pes"][i]),
                "fifo_depth": int(table["fifo_depth"][i]),
            }
            row.update({k: float(table[k][i]) for k in COLUMNS})
            row.update({k: float(v[i]) for k, v in table.items() if k.startswith("cycles:")})
            rows.append(row)
        log(
            f"[{name}] kept {100 * kept / total:.2f}%, {rep['compression_rate']:.1f}x, "
            f"test error {100 * rep['test_error']['final']:.2f}% (JAX) / "
            f"{100 * eie_err:.2f}% (EIE 16-bit), {time.perf_counter() - t0:.0f} s"
        )
    return {
        "model": MODEL,
        "data": data.source,
        "n_train": int(len(data.x_train)),
        "samples": int(len(samples)),
        "lb_pes": args.lb_pes,
        "lb_layers": args.lb_layers,
        "settings": {
            k: getattr(args, k)
            for k in (
                "prune_epochs",
                "epochs_per_step",
                "prune_fractions",
                "finetune_epochs",
                "seeds",
            )
        },
        "rows": rows,
    }


def columns(result: dict) -> dict[str, np.ndarray]:
    """The result's rows as a table (dict of equal-length arrays) for plots and Pareto fronts."""
    rows = result["rows"]
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def summary(result: dict) -> str:
    """Markdown: one line per model at ``lb_pes`` PEs, then plain vs balanced per sparsity and PE
    count (means over seeds; the error as mean +- standard deviation when there are several)."""
    n = result["lb_pes"]
    rows = [r for r in result["rows"] if r["n_pes"] == n]
    lines = [
        f"| model | weights kept | compression | error (JAX) | error (EIE 16-bit) | "
        f"cycles @ {n} PEs | latency (us) | energy (nJ) | load balance |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['keep_pct']:.2f}% | {r['compression_rate']:.1f}x | "
            f"{100 * r['test_error']:.2f}% | {100 * r['eie_test_error']:.2f}% | "
            f"{r['cycles']:.1f} | {r['latency_us']:.3f} | {1e9 * r['energy_j']:.1f} | "
            f"{r['load_balance']:.3f} |"
        )
    seeds = sorted({r["seed"] for r in result["rows"]})
    lines += [
        "",
        f"load-balance-aware vs plain pruning at equal sparsity, {len(seeds)} seed(s) "
        "(speedup = plain cycles / balanced cycles):",
    ]

    def err(rs):
        e = 100 * np.array([r["eie_test_error"] for r in rs])
        return f"{e.mean():.2f}%" + (f" +- {e.std(ddof=1):.2f}" if len(e) > 1 else "")

    for scale in sorted({r["keep_scale"] for r in result["rows"]}, reverse=True):
        for pes in sorted({r["n_pes"] for r in result["rows"]}):
            sel = [r for r in result["rows"] if r["keep_scale"] == scale and r["n_pes"] == pes]
            p = [r for r in sel if not r["load_balanced"]]
            b = [r for r in sel if r["load_balanced"]]
            if p and b:
                pc, bc = (np.mean([r["cycles"] for r in x]) for x in (p, b))
                pe, be = (np.mean([r["energy_j"] for r in x]) for x in (p, b))
                lines.append(
                    f"  keep {scale:g}x thesis ({p[0]['keep_pct']:.2f}%), {pes:>3} PEs: "
                    f"speedup {pc / bc:.3f}x, energy ratio {be / pe:.3f}, "
                    f"EIE test error {err(p)} -> {err(b)}"
                )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/codesign", help="output folder (resumable)")
    p.add_argument("--figure", default=None, help="also save the figure here")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/")
    p.add_argument(
        "--baseline",
        default=None,
        help="dense baseline folder (default: runs/baselines/lenet-300-100 when present, "
        "else one is trained into OUT/baseline-<images>img-<epochs>ep)",
    )
    p.add_argument("--dense-epochs", type=int, default=None, help="when training the baseline")
    p.add_argument(
        "--keep-scales",
        default="2,1,0.5",
        help="sparsity levels as multiples of the thesis' kept fractions (8/9/26%%)",
    )
    p.add_argument("--lb-pes", type=int, default=64, help="PEs load-balance-aware pruning targets")
    p.add_argument(
        "--lb-layers",
        default=None,
        help="balance only these layers, e.g. 'fc1,fc2' (default: every pruned layer)",
    )
    p.add_argument("--sweep-pes", default="2,4,8,16,32,64,128", help="EIE PE counts to sweep")
    p.add_argument("--fifo", type=int, default=8, help="EIE FIFO depth")
    p.add_argument("--samples", type=int, default=16, help="test images fed through EIE")
    p.add_argument("--prune-epochs", type=int, default=24)
    p.add_argument("--epochs-per-step", type=int, default=4)
    p.add_argument("--prune-fractions", default="0.5,0.75,0.875,0.9375,1")
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=None, help="first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images")
    p.add_argument("--seed", type=int, default=0, help="first seed (pruning and fine-tuning)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per model (same dense baseline)")
    p.add_argument(
        "--small",
        action="store_true",
        help="tiny settings for a smoke run, with its own small dense baseline (also "
        "JAXCOMP_NOTEBOOK_SMALL=1)",
    )
    p.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw the figure and reprint the table from OUT/codesign.json (no training)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.small = args.small or os.environ.get("JAXCOMP_NOTEBOOK_SMALL") == "1"
    if args.small:
        args.keep_scales, args.sweep_pes, args.samples = "1,0.5", "4,64", 2
        args.prune_epochs, args.epochs_per_step, args.prune_fractions = 3, 1, "0.5,0.8,1"
        args.finetune_epochs, args.dense_epochs = 1, 2
        args.train_limit = args.train_limit or 4096
    args.keep_scales = _parse_floats(args.keep_scales, "--keep-scales")
    args.sweep_pes = [int(v) for v in _parse_floats(args.sweep_pes, "--sweep-pes")]
    args.prune_fractions = _parse_floats(args.prune_fractions, "--prune-fractions")
    if args.lb_layers is not None:
        args.lb_layers = [v.strip().split("/")[0] for v in args.lb_layers.split(",") if v.strip()]
        known = [p.split("/")[0] for p in THESIS[MODEL]["sparsity"]]
        bad = [v for v in args.lb_layers if v not in known]
        if bad or not args.lb_layers:
            raise SystemExit(f"--lb-layers: unknown layers {bad}; choose among {known}")
    if args.lb_pes not in args.sweep_pes:
        raise SystemExit(f"--lb-pes {args.lb_pes} must be one of --sweep-pes {args.sweep_pes}")
    out = Path(args.out)
    # one result file per choice of balanced layers (the models themselves share OUT)
    stem = "codesign" if args.lb_layers is None else "codesign-lb-" + "+".join(args.lb_layers)
    if args.plot_only:
        result = json.loads((out / f"{stem}.json").read_text())
    else:
        result = run(args)
        with atomic_open(out / f"{stem}.json", "w", make_parents=True) as f:
            json.dump(result, f, indent=1)
    from eie_model.plots import fig_codesign, save_figure

    layers = result.get("lb_layers")
    label = (
        f"load-balance-aware ({'+'.join(layers) + ', ' if layers else ''}{result['lb_pes']} PEs)"
    )
    for path in [out / f"{stem}.png"] + ([Path(args.figure)] if args.figure else []):
        save_figure(fig_codesign(columns(result), n_pes=result["lb_pes"], label=label), path)
    print(summary(result))
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
