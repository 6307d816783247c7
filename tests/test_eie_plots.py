"""Tests of eie_model.plots: each figure draws the sweep's data and saves a small PNG."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from eie_model import plots
from eie_model.sweep import sweep
from eie_model.types import EIEParams, EIEStatic, Layer


def _layer(seed=0, m=48, n=40):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.2, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    act = np.where(rng.random(n) < 0.5, rng.random(n) + 0.1, 0).astype(np.float32)
    return Layer(codes, np.linspace(0, 1, 16, dtype="f4"), act)


def _table(**axes):
    p = EIEParams.grid(**axes)
    return sweep(EIEStatic.covering(p), p, _layer()).table()


def test_figures_plot_the_table_and_save(tmp_path):
    t = _table(n_pes=[1, 2, 4, 8], fifo_depth=[1, 2, 8], sram_width=[32, 64])
    paths = plots.plot_sweep(t, tmp_path, label="rnd")
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == sorted(
        ["fifo.png", "speedup.png", "fillers.png", "balance.png", "width.png", "pareto.png"]
    )
    for p in paths:
        data = Path(p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
    # the speedup curve is cycles(1 PE) / cycles(N)
    fig = plots.fig_speedup({"rnd": t})
    line = fig.axes[0].lines[0]
    cyc = [t["cycles"][t["n_pes"] == n].mean() for n in (1, 2, 4, 8)]
    np.testing.assert_allclose(line.get_ydata(), cyc[0] / np.array(cyc))
    # the fifo curve is the mean load efficiency per depth
    fig = plots.fig_fifo({"rnd": t})
    y = fig.axes[0].lines[0].get_ydata()
    want = [t["load_efficiency"][t["fifo_depth"] == d].mean() for d in (1, 2, 8)]
    np.testing.assert_allclose(y, want)
    plots.save_figure(fig, tmp_path / "x.png")


def test_pareto_figure_marks_front():
    t = _table(n_pes=[2, 4, 8], fifo_depth=[2, 4], act_bits=[8, 16])
    fig = plots.fig_pareto(t)
    front_line = fig.axes[0].lines[0]
    from eie_model.sweep import pareto_front

    assert len(front_line.get_xdata()) == int(pareto_front(t).sum())


def test_docstring_examples_run():
    import doctest

    mod = importlib.import_module("eie_model.plots")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_design_space_figures_draw_all_six_with_finite_energy(tmp_path, monkeypatch):
    """`eie-model figures` end to end on two small layers: six PNGs, and the energy and area
    its width and Pareto panels plot are finite (the SRAM table spans 32..512 KB, so those
    runs keep EIE's 128 KB SpMat while the others lift every capacity limit)."""
    from eie_model import plots

    seen = []
    real = plots.fig_pareto

    def spy(table, **kw):
        seen.append(table)
        return real(table, **kw)

    monkeypatch.setattr(plots, "fig_pareto", spy)
    paths = plots.design_space_figures(tmp_path, layers=["nt-we", "alex8"], scale=0.05)
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        ["eie_fifo.png", "eie_speedup.png", "eie_fillers.png", "eie_balance.png",
         "eie_width.png", "eie_pareto.png"]
    )  # fmt: skip
    assert all(os.path.getsize(p) > 0 for p in paths)
    assert np.isfinite(seen[0]["energy_j"]).all() and np.isfinite(seen[0]["area_mm2"]).all()
