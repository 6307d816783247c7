"""Deep Compression end to end on real MNIST at reduced epochs: the pipeline's invariants.

One run of ``jaxcomp compress`` (LeNet-300-100, 2,048 training images, a few epochs per stage) is
shared by the tests; each checks one invariant of the contract: the report and the file agree
within 1%, the model read back from the file is the in-memory one, every stage's sparsity and
bits are the ones asked for, and a rerun resumes from the stage checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

from jaxcomp import cli
from jaxcomp.fileformat import load_compressed_codes, load_metadata
from jaxcomp.pipeline import STAGES, CompressConfig, default_config, load_dcz_model
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.train import evaluate

SPARSITY = {"fc1/kernel": 0.9, "fc2/kernel": 0.85, "fc3/kernel": 0.6}
BITS = {"fc1/kernel": 5, "fc2/kernel": 4, "fc3/kernel": 6}
INDEX_BITS = {"fc1/kernel": 5, "fc2/kernel": 4, "fc3/kernel": 3}
FLAGS = [
    "--model", "lenet-300-100",
    "--baseline", "none",
    "--train-limit", "2048",
    "--dense-epochs", "2",
    "--prune-epochs", "3",
    "--epochs-per-step", "1",
    "--prune-fractions", "0.5,0.8,1",
    "--finetune-epochs", "1",
    "--sparsity", "fc1=0.9,fc2=0.85,fc3=0.6",
    "--bits", "fc1=5,fc2=4,fc3=6",
    "--index-bits", "fc1=5,fc2=4,fc3=3",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lenet300")
    argv = ["compress", *FLAGS, "--out", str(out), "--data-dir", str(mnist_dir.parent)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    return out, report, argv


def test_report_contract_and_file_size(run):
    out, report, _ = run
    for key in ("original_bytes", "compressed_bytes", "file_bytes", "compression_rate"):
        assert key in report
    assert set(report["test_error"]) == set(STAGES)
    assert report["data"] == "full" and report["n_train"] == 2048
    assert report["original_bytes"] == 266_610 * 4
    assert report["file_bytes"] == os.path.getsize(out / "model.dcz")
    assert report["report"]["totals"]["file_bytes"] == report["file_bytes"]
    # compressed_bytes is the report's P+Q+H total (DESIGN §4.3) ...
    assert report["compressed_bytes"] == math.ceil(report["report"]["totals"]["pqh_bits"] / 8)
    assert report["compression_rate"] == pytest.approx(
        report["original_bytes"] / report["compressed_bytes"]
    )
    # ... and the file on disk is that plus a small header, within 1%
    assert report["compressed_bytes"] < report["file_bytes"] <= 1.01 * report["compressed_bytes"]
    assert load_metadata(out / "model.dcz") == {"model": "lenet-300-100"}
    for name in ("report.md", "plots/sparsity.png", "plots/fc1_kernel_codebook.png"):
        assert (out / name).stat().st_size > 0


def test_loaded_model_is_the_in_memory_one(run, mnist_dir):
    out, report, _ = run
    e = report["test_error"]
    # the quantized stage is evaluated in memory, final on the params read back from the file
    assert e["final"] == e["quantized"]
    name, apply, params = load_dcz_model(out / "model.dcz")
    assert name == "lenet-300-100"
    # each compressed leaf read back is codebook[codes] bit for bit
    codes = load_compressed_codes(out / "model.dcz")
    for path in SPARSITY:
        cb, cd = codes[path]
        w = np.asarray(params[path.split("/")[0]]["kernel"])
        assert np.array_equal(w, cb[cd])
    # and its test error, computed here, is the one the pipeline reported
    mnist = load_mnist(mnist_dir.parent)
    assert evaluate(apply, params, mnist.x_test, mnist.y_test) == e["final"]
    # evaluate on the CLI: the file alone gives the same test error
    res = cli_json(["evaluate", str(out / "model.dcz"), "--json", "--data-dir",
                    str(mnist_dir.parent)])  # fmt: skip
    assert res["test_error"] == e["final"]


def cli_json(argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(argv) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def test_every_stage_has_the_sparsity_and_bits_asked(run):
    out, report, _ = run
    codes = load_compressed_codes(out / "model.dcz")
    assert {r["layer"] for r in report["layers"]} == set(SPARSITY)
    for row in report["layers"]:
        path, n = row["layer"], row["weights"]
        kept = n - math.floor(SPARSITY[path] * n)
        assert row["kept"] == kept  # pruned stage: exactly floor(s * n) zeros
        assert row["kept_after_quantization"] == kept  # pruned weights stay pruned
        assert row["bits"] == BITS[path] and row["index_bits"] == INDEX_BITS[path]
        cb, cd = codes[path]
        assert cb.shape == (2 ** BITS[path],) and cb[0] == 0.0
        assert np.count_nonzero(cd) == kept
        assert int(cd.max()) < 2 ** BITS[path]
    rep = {r["path"]: r for r in report["report"]["layers"]}
    for path in SPARSITY:
        assert rep[path]["bits"] == BITS[path] and rep[path]["index_bits"] == INDEX_BITS[path]
    for bias in ("fc1/bias", "fc2/bias", "fc3/bias"):
        assert rep[bias]["kind"] == "dense"


def test_rerun_resumes_finished_stages(run, tmp_path):
    first, report, argv = run
    assert not any(s["resumed"] for s in report["stages"].values())
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    argv = [a if a != str(first) else str(out) for a in argv]
    assert cli.main(argv) == 0
    again = json.loads((out / "report.json").read_text())
    assert {k: v["resumed"] for k, v in again["stages"].items()} == {
        "dense": True,
        "pruned": True,
        "quantized": True,
        "final": False,
    }
    assert again["test_error"] == report["test_error"]
    assert again["file_bytes"] == report["file_bytes"]
    # a changed quantization setting redoes that stage only (and the file)
    argv2 = [a if a != "fc1=5,fc2=4,fc3=6" else "fc1=4,fc2=4,fc3=6" for a in argv]
    assert cli.main(argv2) == 0
    third = json.loads((out / "report.json").read_text())
    assert third["stages"]["pruned"]["resumed"] and not third["stages"]["quantized"]["resumed"]
    assert third["test_error"]["pruned"] == report["test_error"]["pruned"]
    fc1 = next(r for r in third["layers"] if r["layer"] == "fc1/kernel")
    assert fc1["bits"] == 4 and fc1["codebook_size"] == 16


def test_default_configs_are_the_thesis_settings():
    c = default_config("lenet-300-100")
    assert {p: round(1 - s, 2) for p, s in c.sparsity.items()} == {
        "fc1/kernel": 0.08,
        "fc2/kernel": 0.09,
        "fc3/kernel": 0.26,
    }
    assert c.bits == {"fc1/kernel": 5, "fc2/kernel": 6, "fc3/kernel": 6}
    c5 = default_config("lenet-5")
    assert c5.bits == {"conv1/kernel": 8, "conv2/kernel": 8, "fc1/kernel": 5, "fc2/kernel": 5}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"model": "vgg"}, "model"),
        ({"model": "lenet-300-100", "sparsity": {"fc9/kernel": 0.5}}, "fc9"),
        ({"model": "lenet-300-100", "sparsity": {"fc1/kernel": 1.0}, "bits": {"fc1/kernel": 4}},
         "sparsity"),
        ({"model": "lenet-300-100", "sparsity": {"fc1/kernel": 0.5}, "bits": {"fc1/kernel": 0}},
         "bits"),
        ({"model": "lenet-300-100", "sparsity": {"fc1/kernel": 0.5}, "bits": {}}, "same layers"),
        ({"model": "lenet-300-100", "prune_epochs": 3}, "prune_epochs"),
        ({"model": "lenet-300-100", "prune_fractions": (0.5, 0.9)}, "prune_fractions"),
        ({"model": "lenet-300-100", "load_balance_pes": 0}, "load_balance_pes"),
        ({"model": "lenet-300-100", "load_balance_pes": 4.0}, "load_balance_pes"),
        ({"model": "lenet-300-100", "load_balance_pes": {"fc1/kernel": 0}}, "load_balance_pes"),
        ({"model": "lenet-300-100", "load_balance_pes": {"fc9/kernel": 8}}, "not pruned"),
    ],
)  # fmt: skip
def test_bad_configs_raise_naming_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        CompressConfig(**kw)


def test_load_dcz_model_rejects_files_without_a_model_name(tmp_path):
    from jaxcomp.fileformat import save_compressed

    f = tmp_path / "x.dcz"
    save_compressed(f, {"b": np.ones(2, np.float32)}, {}, {})
    with pytest.raises(ValueError, match="names model None"):
        load_dcz_model(f)


def test_prune_stage_balances_only_the_layers_named(mnist_dir):
    """load_balance_pes={"fc1/kernel": 8}: fc1 keeps equal non-zeros per PE group (DESIGN
    §4.1), fc2 and fc3 are pruned by plain magnitude; every layer at its exact sparsity."""
    from jaxcomp.pipeline import prune_stage
    from jaxcomp.zoo.models import make_model
    from jaxcomp.zoo.train import functional

    data = load_mnist(mnist_dir.parent)
    data = data._replace(x_train=data.x_train[:1024], y_train=data.y_train[:1024])
    cfg = default_config(
        "lenet-300-100",
        load_balance_pes={"fc1/kernel": 8},
        prune_epochs=2,
        epochs_per_step=1,
        prune_fractions=(0.5, 1.0),
    )
    apply, params = functional(make_model("lenet-300-100", seed=0))
    pruned, _ = prune_stage(apply, params, data, cfg, progress=False)
    for layer in ("fc1", "fc2", "fc3"):
        w = np.asarray(pruned[layer]["kernel"])
        assert np.count_nonzero(w == 0) == math.floor(cfg.sparsity[f"{layer}/kernel"] * w.size)
    w = np.asarray(pruned["fc1"]["kernel"])  # (in, out): PE k holds outputs k, k + 8, ...
    per_pe = [np.count_nonzero(w[:, k::8]) for k in range(8)]
    # 300 outputs over 8 PEs: groups 0-3 hold 38 rows, 4-7 hold 37; equal quotas (+-1)
    assert max(per_pe) - min(per_pe) <= 1, per_pe
