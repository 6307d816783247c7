"""Design-space figures from sweep tables (matplotlib, Agg backend; thesis chapter 6).

Each ``fig_*`` function takes ``tables``: a mapping label -> the columns of a sweep
(``sweep(...).table()``, one curve per label) and returns a ``matplotlib.figure.Figure``:

* :func:`fig_fifo`: load efficiency vs FIFO depth (thesis Figure 6.10);
* :func:`fig_speedup`: speedup over one PE vs number of PEs 1..256 (Figure 6.14);
* :func:`fig_fillers`: filler fraction of the entries vs number of PEs (Figure 6.15);
* :func:`fig_balance`: load efficiency and load balance (mean / max busy PE) vs PEs (6.16);
* :func:`fig_width`: SpMat SRAM line reads and energy vs SRAM width (Figures 6.12 / 6.13);
* :func:`fig_pareto`: latency-energy-area Pareto front of one table;
* :func:`fig_codesign`: compressed models x EIE configurations (``examples/codesign.py``):
  load-balance-aware vs plain pruning, and the accuracy-latency-energy Pareto front.

:func:`design_space_figures` runs the sweeps and writes all of them (the README's figures).

Example:
    >>> import numpy as np
    >>> from eie_model import EIEParams, EIEStatic, Layer, sweep
    >>> from eie_model.plots import fig_fifo
    >>> layer = Layer(np.ones((8, 8), np.uint8), np.arange(16.0), np.ones(8, np.float32))
    >>> p = EIEParams.grid(n_pes=4, fifo_depth=[1, 2, 4])
    >>> fig = fig_fifo({"ones": sweep(EIEStatic.covering(p), p, layer).table()})
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from jaxcomp.atomic import atomic_open

__all__ = [
    "design_space_figures",
    "fig_balance",
    "fig_codesign",
    "fig_fifo",
    "fig_fillers",
    "fig_pareto",
    "fig_speedup",
    "fig_width",
    "plot_sweep",
    "save_figure",
]

Tables = Mapping[str, Mapping[str, np.ndarray]]


def _curve(t: Mapping[str, np.ndarray], x: str, y: np.ndarray | str):
    """Mean of ``y`` for each distinct ``x`` (other knobs should be fixed)."""
    yv = np.asarray(t[y] if isinstance(y, str) else y, np.float64)
    xs = np.unique(t[x])
    return xs, np.array([yv[t[x] == v].mean() for v in xs])


def _fig(title: str, xlabel: str, ylabel: str, *, logx: bool = False):
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log", base=2)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)


def fig_fifo(tables: Tables):
    """Load efficiency vs FIFO depth, one curve per table (Figure 6.10)."""
    fig, ax = _fig("Load efficiency vs FIFO depth", "FIFO depth", "load efficiency", logx=True)
    for label, t in tables.items():
        ax.plot(*_curve(t, "fifo_depth", "load_efficiency"), marker="o", ms=3, label=label)
    _legend(ax)
    return fig


def fig_speedup(tables: Tables):
    """Speedup over the smallest PE count vs number of PEs, with the ideal line (Figure 6.14)."""
    fig, ax = _fig("Speedup vs number of PEs", "PEs", "speedup over 1 PE", logx=True)
    ax.set_yscale("log", base=2)
    xs = None
    for label, t in tables.items():
        xs, cyc = _curve(t, "n_pes", "cycles")
        ax.plot(xs, cyc[0] / cyc * xs[0], marker="o", ms=3, label=label)
    if xs is not None:
        ax.plot(xs, xs / xs[0], "k--", lw=1, label="ideal")
    _legend(ax)
    return fig


def fig_fillers(tables: Tables):
    """Filler entries / all entries read vs number of PEs (Figure 6.15)."""
    fig, ax = _fig("Filler zeros vs number of PEs", "PEs", "filler fraction", logx=True)
    for label, t in tables.items():
        frac = t["fillers"] / np.maximum(t["fillers"] + t["useful_macs"], 1)
        ax.plot(*_curve(t, "n_pes", frac), marker="o", ms=3, label=label)
    _legend(ax)
    return fig


def fig_balance(tables: Tables):
    """Load efficiency (solid) and load balance = mean/max busy PE (dashed) vs PEs (6.16)."""
    fig, ax = _fig("Load balance vs number of PEs", "PEs", "efficiency", logx=True)
    for label, t in tables.items():
        (line,) = ax.plot(*_curve(t, "n_pes", "load_efficiency"), marker="o", ms=3, label=label)
        ax.plot(*_curve(t, "n_pes", "load_balance"), ls="--", color=line.get_color(), lw=1)
    ax.set_ylim(0, 1.02)
    _legend(ax)
    return fig


def fig_width(tables: Tables):
    """SpMat SRAM line reads (left; dashed: fresh fetch per column, where the table has
    ``spm_line_reads_fresh``) and energy (right) vs SRAM width (Figures 6.12 / 6.13; the
    assumptions behind the energy: docs/guides/eie-sram-energy.md)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    for ax, lab in ((a1, "SpMat line reads"), (a2, "energy per layer (uJ)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("SRAM width (bits)")
        ax.set_ylabel(lab)
        ax.grid(True, alpha=0.3)
    for label, t in tables.items():
        (ln,) = a1.plot(*_curve(t, "sram_width", "spm_line_reads"), marker="o", ms=3, label=label)
        if "spm_line_reads_fresh" in t:
            xs, f = _curve(t, "sram_width", "spm_line_reads_fresh")
            a1.plot(xs, f, ls="--", lw=1, color=ln.get_color())
        if "energy_j" in t:
            xs, e = _curve(t, "sram_width", "energy_j")
            a2.plot(xs, e * 1e6, marker="o", ms=3, label=label)
    a1.set_yscale("log")
    a1.set_title("SRAM reads vs width")
    a2.set_title("Energy vs width")
    _legend(a2)
    fig.tight_layout()
    return fig


def fig_pareto(table: Mapping[str, np.ndarray], *, title: str = "Pareto front"):
    """Latency vs energy of every configuration, coloured by area; the latency-energy front
    (line) and the latency-energy-area front (ringed)."""
    from eie_model.sweep import pareto_front

    fig, ax = _fig(title, "latency (us)", "energy (uJ)")
    lat, en, area = table["latency_us"], table["energy_j"] * 1e6, table["area_mm2"]
    sc = ax.scatter(lat, en, c=area, s=8, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="area (mm^2)")
    f2 = pareto_front(table, ("latency_us", "energy_j"))
    order = np.argsort(lat[f2])
    ax.plot(lat[f2][order], en[f2][order], "r-", lw=1, label="latency-energy front")
    f3 = pareto_front(table, ("latency_us", "energy_j", "area_mm2"))
    ax.scatter(
        lat[f3],
        en[f3],
        s=30,
        facecolors="none",
        edgecolors="k",
        lw=0.6,
        label="latency-energy-area front",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    _legend(ax)
    return fig


def fig_codesign(table: Mapping[str, np.ndarray], *, n_pes: int = 64, label: str | None = None):
    """Co-design figure: one row per (compressed model, EIE configuration).

    Three panels: (a) speedup of load-balance-aware over plain pruning (cycles of the plain
    model / cycles of the balanced one, same sparsity) vs the number of PEs, one line per
    sparsity (thesis Figure 3.11); (b) test error on EIE vs weights kept for both (Figure 3.12);
    (c) test error vs latency of every row, coloured by energy, with the error-latency front
    (line) and the error-latency-energy Pareto front (ringed).

    Args:
        table: dict of equal-length columns ``keep_pct`` (weights kept, %), ``load_balanced``
            (bool), ``eie_test_error`` (fraction), ``n_pes``, ``cycles``, ``latency_us``,
            ``energy_j``, optionally ``seed`` (as ``examples/codesign.py`` writes); a plain and a
            balanced model of equal ``keep_pct`` form a pair, averaged over seeds.
        n_pes: the PE count the balanced models were pruned for (marked in panel (a)).
        label: the balanced models' legend entry (default ``load-balance-aware (N PEs)``).

    Returns:
        a ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a missing column.
    """
    from eie_model.sweep import pareto_front

    need = ("keep_pct", "load_balanced", "eie_test_error", "n_pes", "cycles", "latency_us")
    missing = [k for k in (*need, "energy_j") if k not in table]
    if missing:
        raise ValueError(f"fig_codesign: table lacks columns {missing}")
    t = {k: np.asarray(v) for k, v in table.items()}
    lb = t["load_balanced"].astype(bool)
    keep = np.round(t["keep_pct"], 6)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    ax = axes[0]
    for k in sorted(np.unique(keep), reverse=True):
        pes, speed = [], []
        for n in np.unique(t["n_pes"]):
            p = (keep == k) & (t["n_pes"] == n)
            if (p & ~lb).any() and (p & lb).any():
                pes.append(n)
                speed.append(t["cycles"][p & ~lb].mean() / t["cycles"][p & lb].mean())
        ax.plot(pes, speed, marker="o", label=f"{k:.2f}% of weights kept")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axvline(n_pes, color="gray", lw=0.8, ls=":", label=f"pruned for {n_pes} PEs")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set(xlabel="EIE processing elements", ylabel="speedup (plain cycles / balanced cycles)")
    ax.set_title("(a) load-balance-aware pruning: speedup")
    styles = ((False, "plain magnitude pruning", "tab:blue", "o"),
              (True, label or f"load-balance-aware ({n_pes} PEs)", "tab:orange", "s"))  # fmt: skip
    for b, label, color, marker in styles:
        ks, errs, spread = [], [], []
        for k in np.unique(keep[lb == b]):
            # one error per model (rows repeat it per configuration): models = distinct errors
            # of distinct seeds when a "seed" column is given
            sel = (lb == b) & (keep == k)
            if "seed" in t:
                _, first = np.unique(t["seed"][sel], return_index=True)
                e = 100 * t["eie_test_error"][sel][first]
            else:
                e = 100 * t["eie_test_error"][sel][:1]
            ks.append(k)
            errs.append(e.mean())
            spread.append(e.std(ddof=1) if e.size > 1 else 0.0)
        axes[1].errorbar(ks, errs, yerr=spread, marker=marker, color=color, label=label,
                         capsize=3)  # fmt: skip
    axes[1].set(
        xlabel="weights kept (%)", ylabel="test error on EIE, 16-bit (%, mean +- std over seeds)"
    )
    axes[1].set_title("(b) accuracy on EIE")
    ax = axes[2]
    err = 100 * t["eie_test_error"]
    energy = t["energy_j"] * 1e6
    norm = matplotlib.colors.LogNorm(energy.min(), max(energy.max(), energy.min() * 1.001))
    for b, label, _, marker in styles:
        sel = lb == b
        sc = ax.scatter(
            t["latency_us"][sel], err[sel], c=energy[sel], marker=marker, cmap="viridis",
            norm=norm, s=30, label=label,
        )  # fmt: skip
    fig.colorbar(sc, ax=ax, label="energy per inference (uJ)")
    f2 = pareto_front(t, ("eie_test_error", "latency_us"))
    order = np.argsort(t["latency_us"][f2])
    ax.step(t["latency_us"][f2][order], err[f2][order], "r-", where="post", lw=1,
            label="error-latency front")  # fmt: skip
    front = pareto_front(t, ("eie_test_error", "latency_us", "energy_j"))
    ax.scatter(
        t["latency_us"][front], err[front], s=90, facecolors="none", edgecolors="k", lw=0.7,
        label="error-latency-energy front",
    )  # fmt: skip
    ax.set(xscale="log", xlabel="latency per inference (us)", ylabel="test error on EIE (%)")
    ax.set_title("(c) every model x EIE configuration")
    for a in axes:
        a.grid(True, alpha=0.3)
    _legend(axes[0])
    _legend(axes[1])
    axes[2].legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return fig


def save_figure(fig, path: str | os.PathLike) -> str:
    """Save a figure as PNG atomically (temp file + fsync + rename) and close it."""
    path = os.fspath(path)
    try:
        fig.tight_layout()
        with atomic_open(path, make_parents=True) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_sweep(
    table: Mapping[str, np.ndarray], out_dir: str | os.PathLike, *, label: str = "layer"
) -> list[str]:
    """Write the figures a sweep's varying axes support (for ``eie-model sweep --plots``).

    Returns:
        the paths written.
    """
    paths = []
    tabs = {label: table}

    def varies(k):
        return len(np.unique(table[k])) > 1

    if varies("fifo_depth"):
        paths.append(save_figure(fig_fifo(tabs), os.path.join(out_dir, "fifo.png")))
    if varies("n_pes"):
        paths.append(save_figure(fig_speedup(tabs), os.path.join(out_dir, "speedup.png")))
        paths.append(save_figure(fig_fillers(tabs), os.path.join(out_dir, "fillers.png")))
        paths.append(save_figure(fig_balance(tabs), os.path.join(out_dir, "balance.png")))
    if varies("sram_width"):
        paths.append(save_figure(fig_width(tabs), os.path.join(out_dir, "width.png")))
    if "energy_j" in table and len(table["cycles"]) > 1:
        paths.append(save_figure(fig_pareto(table), os.path.join(out_dir, "pareto.png")))
    return paths


#: Axes of the README's design-space sweeps (the thesis' ranges).
FIFO_DEPTHS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SRAM_WIDTHS = (16, 32, 64, 128, 256, 512)


def design_space_figures(
    out_dir: str | os.PathLike,
    *,
    layers: Sequence[str] | None = None,
    real_layer: str | os.PathLike | None = None,
    scale: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Sweep the nine benchmark layers (and the real layer) and write the six figures.

    Sweeps per layer: FIFO depth :data:`FIFO_DEPTHS` at 64 PEs; PEs :data:`PE_COUNTS` at
    FIFO 8; SRAM width :data:`SRAM_WIDTHS` at 64 PEs, FIFO 8. Pareto front: the real layer
    (else the first layer) over PEs 16..256 x FIFO 2..16 x width 32..256 x 8/16-bit.

    Args:
        out_dir: folder for ``eie_fifo.png eie_speedup.png eie_fillers.png eie_balance.png
            eie_width.png eie_pareto.png``.
        layers: benchmark names (default: all nine).
        real_layer: optional ``.npz`` of the shared real layer, plotted as ``real``.
        scale: scale the synthetic layers' sizes (for quick tests).
        seed: synthetic layers' seed.

    Returns:
        the paths written.
    """
    from eie_model.layers import BENCHMARKS, load_npz_layer, synthetic_layer
    from eie_model.sweep import sweep
    from eie_model.types import EIEParams, EIEStatic

    def run(layer, spmat_bytes=1 << 40, **axes):
        # the thesis' figures come from the authors' simulator: no capacity limits, one pass,
        # one activation batch (docs/guides/eie-capacities.md). The figures that show energy
        # or area keep EIE's 128 KB SpMat (only the pointers are widened): the SRAM table
        # (eie_model.sram) spans 32..512 KB, and energy is the thesis' at its capacity.
        p = EIEParams.grid(acc_regs=0, **axes)
        st = EIEStatic.covering(p, code_bits=max(layer.code_bits, 1), ptr_bits=40,
                                spmat_bytes=spmat_bytes, act_regs=0)  # fmt: skip
        return sweep(st, p, layer).table()

    built = EIEStatic().spmat_bytes

    names = list(layers) if layers else list(BENCHMARKS)
    items: list[tuple[str, Any]] = []
    for name in names:
        s = BENCHMARKS[name]
        m, n = max(1, round(s.n_out * scale)), max(1, round(s.n_in * scale))
        items.append(
            (name, synthetic_layer(m, n, s.weight_density, s.act_density, seed=seed, name=name))
        )
    if real_layer is not None:
        items.append(("real", load_npz_layer(real_layer)))
    fifo, pes, width = {}, {}, {}
    for label, layer in items:
        fifo[label] = run(layer, n_pes=64, fifo_depth=FIFO_DEPTHS)
        pes[label] = run(layer, n_pes=PE_COUNTS, fifo_depth=8)
        width[label] = run(layer, built, n_pes=64, fifo_depth=8, sram_width=SRAM_WIDTHS)
    p_label, p_layer = items[-1]
    pareto = run(
        p_layer,
        built,
        n_pes=[16, 32, 64, 128, 256],
        fifo_depth=[2, 4, 8, 16],
        sram_width=[32, 64, 128, 256],
        act_bits=[8, 16],
        weight_bits=[8, 16],
    )
    j = os.path.join
    return [
        save_figure(fig_fifo(fifo), j(out_dir, "eie_fifo.png")),
        save_figure(fig_speedup(pes), j(out_dir, "eie_speedup.png")),
        save_figure(fig_fillers(pes), j(out_dir, "eie_fillers.png")),
        save_figure(fig_balance(pes), j(out_dir, "eie_balance.png")),
        save_figure(fig_width(width), j(out_dir, "eie_width.png")),
        save_figure(
            fig_pareto(pareto, title=f"Pareto front ({p_label})"), j(out_dir, "eie_pareto.png")
        ),
    ]
