"""The thesis presets on the driver, end to end on real MNIST at reduced epochs.

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
from jaxcomp.compress import STAGES
from jaxcomp.fileformat import load_compressed_codes, load_metadata
from jaxcomp.zoo import default_config, load_dcz_model, preset
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
    # compressed_bytes is the report's P+Q+H total (docs/design.md, storage accounting) ...
    assert report["compressed_bytes"] == math.ceil(report["report"]["totals"]["pqh_bits"] / 8)
    assert report["compression_rate"] == pytest.approx(
        report["original_bytes"] / report["compressed_bytes"]
    )
    # ... and the file on disk is that plus a small header, within 1%
    assert report["compressed_bytes"] < report["file_bytes"] <= 1.01 * report["compressed_bytes"]
    assert load_metadata(out / "model.dcz") == {"model": "lenet-300-100"}
    assert report["model"] == "lenet-300-100" and report["devices"] >= 1
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
    # and its test error, computed here, is the one the driver reported
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
    # a changed quantization setting is refused, unless asked: then it redoes that stage only
    argv2 = [a if a != "fc1=5,fc2=4,fc3=6" else "fc1=4,fc2=4,fc3=6" for a in argv]
    assert cli.main(argv2) == 2
    assert cli.main([*argv2, "--redo-changed"]) == 0
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
        ({"sparsity": {"fc9/kernel": 0.5}}, "fc9"),
        ({"sparsity": {"fc1/kernel": 1.0}}, "sparsity"),
        ({"bits": {"fc1/kernel": 0}}, "bits"),
        ({"bits": {"fc1/bias": 4}}, r"bits names \['fc1/bias'\], which match no compressed leaf"),
        ({"prune_epochs": 3}, "prune_epochs"),
        ({"prune_fractions": (0.5, 0.9)}, "prune_fractions"),
        ({"load_balance_pes": 0}, "load_balance_pes"),
        ({"load_balance_pes": 4.0}, "load_balance_pes"),
        ({"load_balance_pes": {"fc1/kernel": 0}}, "load_balance_pes"),
        ({"load_balance_pes": {"fc9/kernel": 8}}, "match no compressed leaf"),
        ({"load_balance_pes": 301}, "more PEs than fc1/kernel has"),
        ({"load_balance_pes": {"fc3/kernel": 11}}, r"outputs \(10\)"),
        ({"include": "fc3/*", "sparsity": {"fc3/kernel": 0.5}, "bits": {}, "index_bits": {},
          "load_balance_pes": 11}, r"fc3/kernel has outputs \(10\)"),
        ({"include": "nothing/*"}, "select no leaf"),
        ({"seed": -1}, "seed must be an int in 0..4294967295"),
        ({"seed": 2**70}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"batch_size": True}, "batch_size"),
        ({"dense_epochs": -1}, "dense_epochs must be an int >= 0"),
        ({"finetune_epochs": 2.5}, "finetune_epochs"),
        ({"kmeans_iters": -1}, "kmeans_iters"),
        ({"prune_lr": float("inf")}, "prune_lr must be a finite"),
        ({"prune_lr": float("nan")}, "prune_lr"),
        ({"dense_lr": 0.0}, "dense_lr"),
        ({"finetune_lr": 0.0}, "finetune_lr must be a finite number > 0"),
        ({"finetune_lr": "0.1"}, "finetune_lr"),
        ({"prune_weight_decay": -1e-4}, "prune_weight_decay"),
        ({"share_init": "best"}, "share_init must be one of"),
        ({"train_limit": 0}, "train_limit"),
        ({"default_bits": 17}, "default_bits must be an int in 1..16"),
        ({"default_sparsity": 1.0}, "default_sparsity"),
    ],
)  # fmt: skip
def test_bad_configs_raise_naming_the_field(kw, match):
    kw = dict(kw)
    with pytest.raises(ValueError, match=match):
        preset(kw.pop("model", "lenet-300-100"), **kw)


def test_one_pe_count_for_all_layers_is_bounded_by_the_widest():
    """64 PEs over LeNet-300-100 (300 / 100 / 10 outputs) is the co-design example's setting:
    fc3 leaves PEs idle. 301 exceeds every layer."""
    assert default_config("lenet-300-100", load_balance_pes=64).load_balance_pes == 64
    assert default_config("lenet-300-100", load_balance_pes=300).load_balance_pes == 300
    with pytest.raises(ValueError, match=r"more PEs than fc1/kernel has outputs \(300\)"):
        default_config("lenet-300-100", load_balance_pes=301)


def test_load_dcz_model_rejects_files_without_a_model_name(tmp_path):
    from jaxcomp.fileformat import save_compressed

    f = tmp_path / "x.dcz"
    save_compressed(f, {"b": np.ones(2, np.float32)}, {}, {})
    with pytest.raises(ValueError, match="names model None"):
        load_dcz_model(f)


def test_prune_stage_balances_only_the_layers_named(mnist_dir):
    """load_balance_pes={"fc1/kernel": 8}: fc1 keeps equal non-zeros per PE group
    (docs/design.md, pruning), fc2 and fc3 are pruned by plain magnitude; every layer at its
    exact sparsity."""
    from jaxcomp.compress import prune_stage
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


def _tiny_data(n=256):
    from jaxcomp.zoo.data import MNIST

    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return MNIST(x, y, x[:64], y[:64], "full")


def _params(seed=0):
    from jaxcomp.zoo.models import make_model
    from jaxcomp.zoo.train import functional

    return functional(make_model("lenet-300-100", seed=seed))


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda p: p.pop("fc2"), ValueError, r"names \['fc2/kernel'\], which match no"),
        (lambda p: p["fc1"].pop("bias"), ValueError, r"missing \[.*fc1.*bias"),
        (lambda p: p.update(fc9={"kernel": np.zeros(2, np.float32)}), ValueError, "extra"),
        (
            lambda p: p["fc3"].update(kernel=np.zeros((100, 9), np.float32)),
            ValueError,
            "wrong shape",
        ),
        (lambda p: p["fc3"].update(kernel=np.zeros((100, 10), np.int32)), TypeError, "float"),
        (lambda p: p["fc1"].update(bias=np.full(300, np.nan, np.float32)), ValueError, "NaN"),
    ],
    ids=["missing-layer", "missing-leaf", "extra-leaf", "shape", "int", "nan"],
)
def test_stages_refuse_a_params_tree_that_is_not_the_models(edit, error, match):
    """A tree with a missing layer would train/evaluate with the model's random initial weights
    in its place (the pure apply only overrides what it is given): refused, leaves named (by
    the config's per-layer settings, or by the model's apply when it is traced)."""
    from jaxcomp.compress import prune_stage, quantize_stage

    apply, params = _params()
    edit(params)
    cfg = default_config("lenet-300-100", prune_epochs=2, epochs_per_step=1,
                         prune_fractions=(0.5, 1.0))  # fmt: skip
    for stage in (prune_stage, quantize_stage):
        with pytest.raises(error, match=match):
            stage(apply, params, _tiny_data(), cfg, progress=False)


def test_stages_refuse_a_params_tree_that_is_not_a_dict():
    from jaxcomp.compress import prune_stage

    apply, params = _params()
    with pytest.raises(TypeError, match="params must be a nested dict"):
        prune_stage(apply, list(params.values()), _tiny_data(), default_config("lenet-300-100"))


def test_missing_layers_are_not_silently_replaced_by_initial_weights():
    """The pure apply itself refuses a tree with a layer missing (it used to fill the layer
    from the model's initial weights and compute something else)."""
    apply, params = _params(seed=0)
    _, other = _params(seed=1)
    x = _tiny_data().x_test[:8]
    partial = {k: v for k, v in other.items() if k != "fc2"}
    with pytest.raises(ValueError, match=r"missing \[.*fc2.*kernel"):
        apply(partial, x)


def test_compress_refuses_bad_arguments_before_any_work(tmp_path):
    from jaxcomp.compress import compress
    from jaxcomp.zoo import compress_preset, make_model

    (tmp_path / "f").write_text("keep")
    cfg = default_config("lenet-300-100")
    model = make_model("lenet-300-100")
    for out, match in (("", "out must name a folder"), (tmp_path / "f", "existing file"),
                       (tmp_path / "f" / "x", "below the file")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            compress(model, _tiny_data(), cfg, out)
        with pytest.raises(ValueError, match=match):
            compress_preset("lenet-300-100", out, cfg, data=_tiny_data())
    with pytest.raises(TypeError, match="config must be a CompressConfig"):
        compress(model, _tiny_data(), cfg.to_json(), tmp_path / "o")
    with pytest.raises(ValueError, match="data_dir 'no/such' is not a folder"):
        compress_preset("lenet-300-100", tmp_path / "o", data_dir="no/such")
    assert (tmp_path / "f").read_text() == "keep"
    assert not (tmp_path / "o").exists()
