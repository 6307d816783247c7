"""Energy and area vs SpMat SRAM width (the thesis' Figures 6.12 / 6.13) under each assumption.

For the real layer (``--real-layer``) and synthetic Alex-7 at 64 PEs, FIFO 8, widths 16..512:
line reads (kept-line and fresh-per-column counts), then the layer's energy under every
combination of the three assumptions that decide the optimum width (``energy_report``'s
``line_reads``, ``read_energy`` and ``leakage``), the optimum of each, and the 64-PE area.
Writes the figure ``--out`` (default ``docs/figures/eie_sram_width.png``).

Usage::

    JAXCOMP_DATA_DIR=/path/to/data python examples/eie_sram_width.py \\
        --real-layer $JAXCOMP_DATA_DIR/eie-layer/layer.npz
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from eie_model.energy import energy_report
from eie_model.layers import load_npz_layer
from eie_model.sweep import sweep
from eie_model.types import EIEParams, EIEStatic, Layer

WIDTHS = (16, 32, 64, 128, 256, 512)
#: (line_reads, read_energy, leakage): the default first, the earlier model third.
ASSUMPTIONS = tuple(itertools.product(("kept", "fresh"), ("cacti", "linear"), (True, False)))


def label(a: tuple[str, str, bool]) -> str:
    """``kept/cacti/leak``-style name of an assumption."""
    return f"{a[0]}/{a[1]}/{'leak' if a[2] else 'no-leak'}"


def width_study(layer: Layer, widths=WIDTHS, n_pes: int = 64, fifo: int = 8) -> dict:
    """Counters and energies (J) per assumption at each width, and the 64-PE area (mm^2)."""
    p = EIEParams.grid(n_pes=[n_pes], fifo_depth=[fifo], sram_width=list(widths))
    c = sweep(EIEStatic.covering(p, code_bits=max(layer.code_bits, 1)), p, layer)
    out = {
        "kept": np.asarray(c.spm_line_reads),
        "fresh": np.asarray(c.spm_line_reads_fresh),
        "cycles": np.asarray(c.cycles),
        "area_mm2": np.asarray(energy_report(c).area_mm2),
    }
    for a in ASSUMPTIONS:
        r = energy_report(c, line_reads=a[0], read_energy=a[1], leakage=a[2])
        out[a] = np.asarray(r.energy_j)
    return out


def figure(studies: dict, path: str) -> str:
    """Line reads, energy per assumption and area vs width, one row per layer."""
    from eie_model.plots import plt, save_figure

    fig, axes = plt.subplots(len(studies), 3, figsize=(13, 3.6 * len(studies)), dpi=100)
    axes = np.atleast_2d(axes)
    for row, (name, s) in zip(axes, studies.items(), strict=True):
        for ax in row:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("SpMat SRAM width (bits)")
            ax.grid(True, alpha=0.3)
        row[0].plot(WIDTHS, s["kept"], "o-", ms=3, label="kept line")
        row[0].plot(WIDTHS, s["fresh"], "s--", ms=3, label="fresh per column")
        row[0].set_yscale("log")
        row[0].set_title(f"{name}: SpMat line reads")
        for a in ASSUMPTIONS:
            ls = "-" if a[0] == "kept" else "--"
            mk = "o" if a[1] == "cacti" else "^"
            e = s[a] * 1e6
            (ln,) = row[1].plot(WIDTHS, e, ls=ls, marker=mk, ms=3, lw=2 if a[2] else 1,
                                label=label(a))  # fmt: skip
            i = int(np.argmin(e))
            row[1].plot(WIDTHS[i], e[i], "*", ms=12, color=ln.get_color())
        row[1].set_title(f"{name}: energy per layer (uJ); * = optimum")
        row[2].plot(WIDTHS, s["area_mm2"], "o-", ms=3)
        row[2].set_title("area of 64 PEs (mm^2), CACTI SpMat")
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-layer", help="the shared real layer .npz")
    ap.add_argument("--out", default="docs/figures/eie_sram_width.png")
    ap.add_argument("--no-figure", action="store_true")
    args = ap.parse_args(argv)
    layers = {}
    if args.real_layer:
        layers["real"] = load_npz_layer(args.real_layer)
    layers["Alex-7"] = Layer.load("Alex-7")
    studies = {name: width_study(layer) for name, layer in layers.items()}
    head = "| assumption | " + " | ".join(f"{w} b" for w in WIDTHS) + " | optimum |"
    rule = "|---" * (len(WIDTHS) + 2) + "|"
    for name, s in studies.items():
        print(f"\n{name} (64 PEs, FIFO 8; {int(s['cycles'][0])} cycles at every width)\n")
        print(head)
        print(rule)
        for k in ("kept", "fresh"):
            cells = " | ".join(f"{int(v):,}" for v in s[k])
            print(f"| {k} line reads | {cells} | |")
        for a in ASSUMPTIONS:
            e = s[a] * 1e6
            cells = " | ".join(f"{v:.3f}" for v in e)
            print(f"| energy (uJ) {label(a)} | {cells} | {WIDTHS[int(np.argmin(e))]} b |")
        cells = " | ".join(f"{v:.2f}" for v in s["area_mm2"])
        print(f"| area of 64 PEs (mm^2) | {cells} | |")
    if not args.no_figure:
        print("\nwrote", figure(studies, args.out))
    return studies


if __name__ == "__main__":
    main()
