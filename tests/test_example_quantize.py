"""examples/quantize_lenet300.py end to end at a small size (slow: trains on full MNIST)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_quantize_example_small(mnist_dir, tmp_path, load_example):
    mod = load_example("quantize_lenet300")
    out = tmp_path / "res.json"
    res = mod.main(
        [
            "--data-dir", str(mnist_dir.parent),
            "--baseline", str(tmp_path / "baseline"),
            "--baseline-epochs", "1",
            "--cache", str(tmp_path / "pruned.npz"),
            "--prune-epochs", "5",
            "--prune-epochs-per-stage", "1",
            "--epochs", "1",
            "--bits", "2", "6",
            "--inits", "linear", "uniform",
            "--figure", str(tmp_path / "fig.png"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text())["runs"] == res["runs"]
    assert len(res["runs"]) == 4 and all(r["invariants"] for r in res["runs"])
    for k, s in mod.THESIS_SPARSITY.items():
        assert abs(res["kept"][k.split("/")[0]] - (1 - s)) < 1e-3
    six = {r["init"]: r for r in res["runs"] if r["bits"] == 6}
    assert six["linear"]["err_after"] < 0.1  # a working net, not a broken one
    assert (tmp_path / "fig.png").stat().st_size > 0
