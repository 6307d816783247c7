"""The DSD experiment script runs end to end on real MNIST at a small size."""

from __future__ import annotations

import json
import math


def test_dsd_example_small(mnist_dir, tmp_path, capsys, load_example):
    ex = load_example("dsd_mnist")
    out = tmp_path / "dsd.json"
    rc = ex.main(
        [
            "--seeds",
            "2",
            "--epochs",
            "4",
            "--train-subset",
            "2048",
            "--data-dir",
            str(mnist_dir.parent),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert len(res["runs"]) == 2 and res["data"] == "full"
    for r in res["runs"]:
        assert 0.0 < r["dense"] < 0.2 and 0.0 < r["dsd"] < 0.2  # learned something
    s = res["summary"]
    assert math.isfinite(s["dense_std"]) and math.isfinite(s["welch_p"])
    assert "paired t-test" in capsys.readouterr().out
