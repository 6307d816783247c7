"""The DSD experiment script runs end to end on real MNIST at a small size."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dsd_example_small(mnist_dir, tmp_path, capsys):
    ex = _load("dsd_mnist")
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
