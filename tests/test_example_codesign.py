"""The co-design example runs end to end on real MNIST at its small size, and its models are
what it says: equal sparsity, load-balanced non-zeros per PE, accuracy on EIE = accuracy in JAX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eie_model import load_dcz_network


@pytest.fixture(scope="module")
def result(mnist_dir, tmp_path_factory, load_example):
    ex = load_example("codesign")
    out = tmp_path_factory.mktemp("codesign")
    argv = ["--small", "--keep-scales", "1", "--train-limit", "2048", "--test-limit", "2000",
            "--out", str(out), "--data-dir", str(mnist_dir.parent), "--no-progress"]  # fmt: skip
    assert ex.main(argv) == 0
    return out, json.loads((out / "codesign.json").read_text()), ex


def test_rows_cover_every_model_and_pe_count(result):
    out, res, _ = result
    rows = res["rows"]
    assert {(r["load_balanced"], r["n_pes"]) for r in rows} == {
        (lb, n) for lb in (False, True) for n in (4, 64)
    }
    assert res["data"] == "full" and res["n_train"] == 2048 and res["lb_pes"] == 64
    for r in rows:
        assert 0 < r["eie_test_error"] < 0.5 and r["cycles"] > 0 and r["energy_j"] > 0
        # accuracy on EIE's 16-bit arithmetic is the model's own, to a few test images
        assert abs(r["eie_test_error"] - r["test_error"]) <= 0.003
        # the layers' own runs plus the ReLU write-backs after fc1 and fc2: ceil(m / N)
        per_layer = sum(v for k, v in r.items() if k.startswith("cycles:"))
        assert r["writeback_cycles"] == -(-300 // r["n_pes"]) - (-100 // r["n_pes"])
        assert per_layer + r["writeback_cycles"] == pytest.approx(r["cycles"])
    assert (out / "codesign.png").stat().st_size > 10_000


def test_load_balanced_models_keep_as_many_weights_balanced_over_pes(result):
    out, res, _ = result
    nets = {lb: load_dcz_network(out / f"keep1x-{lb}" / "model.dcz") for lb in ("plain", "lb")}
    for plain, lb in zip(nets["plain"].codes, nets["lb"].codes, strict=True):
        assert np.count_nonzero(plain) == np.count_nonzero(lb)  # same sparsity
        m = lb.shape[0]
        groups = min(m, 64)
        per_pe = [np.count_nonzero(lb[k::64]) for k in range(groups)]
        full = [k for k in range(groups) if len(range(k, m, 64)) == -(-m // 64)]
        # design.md: equal non-zeros per PE (+-1) among PEs with the same number of rows
        assert max(per_pe[k] for k in full) - min(per_pe[k] for k in full) <= 1
    balance = {
        (r["load_balanced"], r["n_pes"]): r["load_balance"] for r in res["rows"]
    }  # busy_total / (busy_max * N): the balanced model's PEs are more evenly busy
    assert balance[True, 64] > balance[False, 64]


def test_summary_reports_speedup_lines(result):
    _, res, ex = result
    text = ex.summary(res)
    assert "speedup" in text and "keep1x-lb" in text and text.count("\n| keep1x") == 2


@pytest.mark.parametrize("small", [True, False])
def test_small_and_full_runs_in_one_out_do_not_share_a_dense_baseline(
    tmp_path, monkeypatch, small, load_example
):
    """--small trains "its own small dense baseline": a full run in the same OUT must not pick
    up the small one (2 epochs on 4,096 images) as its dense model, nor the other way round."""
    from jaxcomp.zoo.data import MNIST

    ex = load_example("codesign")
    z = np.zeros((8, 28, 28), np.float32)
    y = np.zeros(8, np.int32)
    monkeypatch.setattr(ex, "load_mnist", lambda d: MNIST(z, y, z, y, "full"))
    monkeypatch.chdir(tmp_path)  # no runs/baselines/ here
    trained = []

    class Stop(Exception):
        pass

    def fake_train(model, data, *, epochs, out, progress):
        trained.append(Path(out))
        raise Stop

    monkeypatch.setattr(ex, "train_baseline", fake_train)
    out = tmp_path / "out"
    other = ["--small"] if not small else []
    # the other kind of run trained a baseline into OUT before
    argv = ["--out", str(out), "--no-progress"]
    with pytest.raises(Stop):
        ex.main(argv + other)
    (trained[0] / "params").mkdir(parents=True)
    with pytest.raises(Stop):
        ex.main(argv + (["--small"] if small else []))
    assert len(trained) == 2 and trained[1] != trained[0]
