"""A compressed network on EIE, with and without the work between its layers.

EIE runs a network's fully-connected layers one after another; between two of them each PE
passes its outputs through ReLU into the next layer's source registers, and every layer
broadcasts its bias as one more column (docs/guides/eie-networks.md). This script loads the
chain of a jaxcomp ``.dcz`` file (:func:`eie_model.load_dcz_network`), feeds it MNIST test
images and prints, per PE count, the cycles and energy of :func:`eie_model.network_sweep`
three ways: the layers alone (no bias column, no write-back: the sum of the layers' runs),
with the bias column, and with the write-back too (the default), with each part's share.
Given two files (e.g. plain and load-balance-aware pruning at one sparsity), it also prints
the second's speed-up over the first, on the layers alone and with the work between them.

Run (a LeNet-300-100 ``.dcz``, e.g. one of ``examples/codesign.py``'s models)::

    JAXCOMP_DATA_DIR=/path/to/data python examples/eie_network.py \\
        runs/codesign/keep1x-plain/model.dcz --samples 16 --pes 4,16,64
    python examples/eie_network.py runs/codesign/keep1x-plain/model.dcz \
        runs/codesign/keep1x-lb/model.dcz --pes 2,4,8,16,32,64,128
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from eie_model import EIEParams, EIEStatic, load_dcz_network, network_sweep
from jaxcomp.zoo.data import load_mnist


def compare(net, x, pes, fifo=8) -> dict[str, np.ndarray]:
    """Cycles and energy per PE count: layers alone, + bias column, + write-back.

    Args:
        net: a :class:`eie_model.Network`.
        x: ``(S, n_0)`` input samples.
        pes: PE counts.
        fifo: FIFO depth.

    Returns:
        columns ``n_pes``, ``cycles_layers``, ``cycles_bias``, ``cycles``,
        ``writeback_cycles``, ``energy_layers_j``, ``energy_j`` (one row per PE count).
    """
    p = EIEParams.grid(n_pes=pes, fifo_depth=[fifo])
    st = EIEStatic.covering(p)
    bare = network_sweep(net, x, st, p, bias=False, writeback=False)
    bias = network_sweep(net, x, st, p, writeback=False)
    full = network_sweep(net, x, st, p)
    return {
        "n_pes": full["n_pes"],
        "cycles_layers": bare["cycles"],
        "cycles_bias": bias["cycles"],
        "cycles": full["cycles"],
        "writeback_cycles": full["writeback_cycles"],
        "energy_layers_j": bare["energy_j"],
        "energy_j": full["energy_j"],
    }


def table(t: dict[str, np.ndarray]) -> str:
    """Markdown table of :func:`compare`'s columns."""
    lines = [
        "| PEs | cycles: layers | + bias column | + write-back | write-back share | "
        "energy: layers (nJ) | all (nJ) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(t["n_pes"])):
        lines.append(
            f"| {int(t['n_pes'][i])} | {t['cycles_layers'][i]:.1f} | {t['cycles_bias'][i]:.1f} | "
            f"{t['cycles'][i]:.1f} | {100 * t['writeback_cycles'][i] / t['cycles'][i]:.1f}% | "
            f"{1e9 * t['energy_layers_j'][i]:.1f} | {1e9 * t['energy_j'][i]:.1f} |"
        )
    return "\n".join(lines)


def speedups(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str:
    """Markdown: ``b``'s speed-up over ``a`` (:func:`compare` tables), layers alone and all."""
    lines = ["| PEs | speed-up: layers | with bias + write-back |", "|---:|---:|---:|"]
    for i in range(len(a["n_pes"])):
        bare = a["cycles_layers"][i] / b["cycles_layers"][i]
        lines.append(
            f"| {int(a['n_pes'][i])} | {bare:.3f}x | {a['cycles'][i] / b['cycles'][i]:.3f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "dcz", nargs="+", help="one or two .dcz files whose weight-shared kernels form a chain"
    )
    ap.add_argument("--samples", type=int, default=16, help="MNIST test images fed through EIE")
    ap.add_argument("--pes", default="4,16,64", help="PE counts, comma-separated")
    ap.add_argument("--fifo", type=int, default=8, help="FIFO depth")
    ap.add_argument("--data-dir", default=None, help="folder holding mnist/")
    args = ap.parse_args(argv)
    pes = [int(v) for v in args.pes.split(",") if v.strip()]
    if len(args.dcz) > 2:
        ap.error(f"give one or two .dcz files, got {len(args.dcz)}")
    x = load_mnist(args.data_dir).x_test[: args.samples]
    tables = []
    for path in args.dcz:
        net = load_dcz_network(path)
        print(f"{path}: {' -> '.join(str(n) for _, n in net.shapes)} -> {net.shapes[-1][0]}, "
              f"{len(x)} MNIST test images, FIFO {args.fifo}")  # fmt: skip
        tables.append(compare(net, x, pes, args.fifo))
        print(table(tables[-1]))
    if len(tables) == 2:
        print(f"speed-up of {args.dcz[1]} over {args.dcz[0]}:")
        print(speedups(*tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
