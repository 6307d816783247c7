"""``jaxcomp.compress`` on users' models: NNX with BatchNorm + Dropout, a Linen CNN, resume,
import strings on the command line, and data-parallel training on 4 host devices.

Everything runs at a tiny size (a 6x6 image task of 3 classes, 1-2 epochs per stage); the
LeNet presets' results are held by ``tests/test_presets.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxcomp
from jaxcomp import cli
from jaxcomp.fileformat import DczFormatError, load_compressed, load_compressed_codes

ROOT = Path(__file__).resolve().parents[1]
driver = importlib.import_module("jaxcomp.compress")  # the module; jaxcomp.compress is the function

#: A user's model file and data loader, as the command line imports them (also exec'd here).
USER_CODE = textwrap.dedent(
    '''
    import numpy as np
    from flax import nnx


    class Net(nnx.Module):
        def __init__(self, *, rngs):
            self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.drop = nnx.Dropout(0.25, rngs=rngs)
            self.fc = nnx.Linear(4 * 6 * 6, 3, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn(self.conv(x)))
            return self.fc(self.drop(x).reshape(x.shape[0], -1))


    def make(*, rngs):
        return Net(rngs=rngs)


    def load(n_train=256, n_test=64):
        """Images whose class is the brightest third of the picture (learnable in an epoch)."""
        rng = np.random.default_rng(0)
        n = n_train + n_test
        y = rng.integers(0, 3, n).astype(np.int32)
        x = rng.normal(0.0, 0.3, (n, 6, 6, 1)).astype(np.float32)
        for k in range(3):
            x[y == k, 2 * k : 2 * k + 2, :, 0] += 1.0
        return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


    def not_a_module(*, rngs):
        return {"w": 1}


    def wrong_lengths():
        x, y, xt, yt = load()
        return x, y[:-1], xt, yt


    def wrong_shapes():
        x, y, xt, yt = load()
        return x, y, xt[:, :5], yt


    def three_arrays():
        return load()[:3]


    def flat_images():
        x, y, xt, yt = load()
        return x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt
    '''
)

user: dict = {}
exec(compile(USER_CODE, "user_code", "exec"), user)

TINY = dict(
    batch_size=32,
    dense_epochs=2,
    dense_lr=0.1,
    prune_epochs=2,
    epochs_per_step=1,
    prune_fractions=(0.5, 1.0),
    finetune_epochs=1,
    kmeans_iters=2,
    default_sparsity=0.5,
    default_bits=3,
)


def _run(model, out, config=None, data=None, **kw):
    lines: list[str] = []
    r = jaxcomp.compress(
        model,
        user["load"]() if data is None else data,
        config or jaxcomp.CompressConfig(**TINY),
        out,
        progress=False,
        plots=False,
        log=lines.append,
        **kw,
    )
    return r, lines


@pytest.fixture(scope="module")
def nnx_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nnx")
    model = user["make"](rngs=nnx.Rngs(0))
    initial_mean = np.asarray(model.bn.mean[...]).copy()
    report, lines = _run(model, out, jaxcomp.CompressConfig(**TINY, sparsity={"fc": 0.75}))
    return out, model, report, lines, initial_mean


def test_nnx_model_with_batchnorm_and_dropout(nnx_run):
    out, model, report, lines, initial_mean = nnx_run
    assert set(report["test_error"]) == set(driver.STAGES)
    assert report["test_error"]["final"] == report["test_error"]["quantized"]
    assert report["test_error"]["dense"] < 0.5  # it learned something (3 classes: chance 2/3)
    assert report["model"] == "Net" and report["file_bytes"] == os.path.getsize(out / "model.dcz")
    assert report["compressed_bytes"] < report["file_bytes"]
    # compressed leaves: the kernels (ndim >= 2), at their own sparsity and bits
    rows = {r["layer"]: r for r in report["layers"]}
    assert set(rows) == {"conv/kernel", "fc/kernel"}
    for path, s in (("conv/kernel", 0.5), ("fc/kernel", 0.75)):
        n = rows[path]["weights"]
        assert rows[path]["kept"] == n - math.floor(s * n) == rows[path]["kept_after_quantization"]
        assert rows[path]["bits"] == 3 and rows[path]["codebook_size"] == 8
    # BatchNorm statistics were trained and are in the file, bit for bit
    stored = load_compressed(out / "model.dcz")
    assert not np.array_equal(np.asarray(model.bn.mean[...]), initial_mean)
    assert np.array_equal(np.asarray(stored["bn"]["mean"]), np.asarray(model.bn.mean[...]))
    assert np.array_equal(np.asarray(stored["bn"]["var"]), np.asarray(model.bn.var[...]))
    # the model read back into a fresh instance is the in-memory compressed model
    fresh = jaxcomp.load_model(out / "model.dcz", user["make"](rngs=nnx.Rngs(7)))
    x = user["load"]()[2]
    fresh.eval()
    model.eval()
    assert np.array_equal(np.asarray(fresh(x)), np.asarray(model(x)))
    cb, cd = load_compressed_codes(out / "model.dcz")["fc/kernel"]
    assert np.array_equal(np.asarray(model.fc.kernel[...]), cb[cd])
    assert jaxcomp.evaluate_model(fresh, x, user["load"]()[3]) == report["test_error"]["final"]
    # per-epoch losses are reported for every trained stage
    assert len(report["stages"]["pruned"]["loss"]) == 2
    assert any(line.startswith("data: arrays, 256 train / 64 test") for line in lines)


def test_load_model_refuses_another_architecture(nnx_run):
    out = nnx_run[0]
    with pytest.raises(DczFormatError, match="target: leaf"):
        jaxcomp.load_model(out / "model.dcz", nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="nnx.Module or a Linen"):
        jaxcomp.load_model(out / "model.dcz", object())


def test_rerun_resumes_and_dense_epochs_0_keeps_the_given_model(nnx_run, tmp_path):
    out, _, report, _, _ = nnx_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again, lines = _run(
        user["make"](rngs=nnx.Rngs(0)), copy, jaxcomp.CompressConfig(**TINY, sparsity={"fc": 0.75})
    )
    assert {k: v["resumed"] for k, v in again["stages"].items()} == {
        "dense": True,
        "pruned": True,
        "quantized": True,
        "final": False,
    }
    assert again["test_error"] == report["test_error"]
    assert again["file_bytes"] == report["file_bytes"]
    # another model (other initial weights) on the same folder is other settings
    with pytest.raises(ValueError, match="written with other settings.*model"):
        _run(
            user["make"](rngs=nnx.Rngs(1)),
            copy,
            jaxcomp.CompressConfig(**TINY, sparsity={"fc": 0.75}),
        )
    # dense_epochs=0: the given model is the baseline (its own test error)
    model = user["make"](rngs=nnx.Rngs(3))
    x_test, y_test = user["load"]()[2:]
    before = jaxcomp.evaluate_model(model, x_test, y_test)
    r, _ = _run(model, tmp_path / "given", jaxcomp.CompressConfig(**{**TINY, "dense_epochs": 0}))
    assert r["test_error"]["dense"] == before
    assert r["stages"]["dense"]["loss"] == []


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.25, deterministic=not train)(nn.relu(x))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_linen_module_and_variables(tmp_path):
    module = LinenCNN()
    x_train, y_train, x_test, y_test = user["load"]()
    variables = module.init(jax.random.key(0), x_train[:2])
    config = jaxcomp.CompressConfig(**TINY, bits={"Dense_0": 4})
    r, _ = _run((module, variables), tmp_path / "linen", config)
    assert {row["layer"]: row["bits"] for row in r["layers"]} == {
        "Conv_0/kernel": 3,
        "Dense_0/kernel": 4,
    }
    _, back = jaxcomp.load_model(tmp_path / "linen" / "model.dcz", (module, variables))
    assert set(back) == {"params", "batch_stats"}
    assert not np.array_equal(
        np.asarray(back["batch_stats"]["BatchNorm_0"]["mean"]),
        np.asarray(variables["batch_stats"]["BatchNorm_0"]["mean"]),
    )
    k = np.asarray(back["params"]["Dense_0"]["kernel"])
    assert np.count_nonzero(k == 0) == math.floor(0.5 * k.size)
    assert len(np.unique(k)) <= 16
    err = jaxcomp.evaluate_model((module, back), x_test, y_test)
    assert err == r["test_error"]["final"] == r["test_error"]["quantized"]


def test_batch_iterables_and_custom_loss_and_metric(tmp_path):
    """Data as (train_batches, test_batches): a zero-argument callable for training (a fresh
    iterable per epoch), a list for the test set; loss_fn / eval_fn replace the defaults."""
    x, y, xt, yt = user["load"]()
    train = lambda: ((x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32))  # noqa: E731
    test = [(xt[:32], yt[:32]), (xt[32:], yt[32:])]
    calls = []

    def loss_fn(logits, labels):
        calls.append("loss")
        return jnp.mean((jax.nn.one_hot(labels, 3) - jax.nn.softmax(logits)) ** 2)

    def eval_fn(logits, labels):
        return 1.0 - jnp.mean(jnp.argmax(logits, -1) == labels)

    model = user["make"](rngs=nnx.Rngs(0))
    r, lines = _run(model, tmp_path / "it", data=(train, test), loss_fn=loss_fn, eval_fn=eval_fn)
    assert "loss" in calls
    assert r["data"] == "batches" and r["n_train"] is None
    assert r["test_error"]["final"] == pytest.approx(jaxcomp.evaluate_model(model, xt, yt))
    with pytest.raises(TypeError, match="one-shot iterator"):
        _run(model, tmp_path / "gen", data=(iter(test), test))


@pytest.mark.parametrize(
    "data, match",
    [
        ((np.zeros((4, 6, 6, 1)), np.zeros(3, np.int32), np.zeros((2, 6, 6, 1)),
          np.zeros(2, np.int32)), "x_train has 4 examples but y_train has 3"),
        ((np.zeros((4, 6, 6, 1)), np.zeros(4, np.int32), np.zeros((2, 5, 6, 1)),
          np.zeros(2, np.int32)), r"x_train examples have shape \(6, 6, 1\) but x_test"),
        ((np.zeros((64, 36)), np.zeros(64, np.int32), np.zeros((2, 36)),
          np.zeros(2, np.int32)), "the model cannot take inputs of shape"),
        ((np.zeros((64, 6, 6, 1)), np.full(64, 3, np.int32), np.zeros((2, 6, 6, 1)),
          np.zeros(2, np.int32)), "labels run from 0 to 3 but the model gives 3 logits"),
        ((1, 2, 3), "data must be"),
    ],
    ids=["lengths", "shapes", "model-input", "labels", "structure"],
)  # fmt: skip
def test_bad_data_is_refused_before_any_work(data, match, tmp_path):
    with pytest.raises((ValueError, TypeError), match=match):
        _run(user["make"](rngs=nnx.Rngs(0)), tmp_path / "o", data=data)
    assert not (tmp_path / "o").exists()


def test_config_mappings_resolve_by_path_module_and_glob():
    params = {
        "enc": {"a": {"kernel": np.ones((4, 8))}, "b": {"kernel": np.ones((8, 8))}},
        "head": {"kernel": np.ones((8, 2)), "bias": np.ones(2)},
        "emb": {"embedding": np.ones((10, 4))},
    }
    cfg = jaxcomp.CompressConfig(
        sparsity={"enc/b/kernel": 0.9, "enc": 0.7},
        bits={"head": 6},
        exclude="emb/*",
        default_sparsity=0.5,
    )
    got = {p: (r["sparsity"], r["bits"]) for p, r in cfg.layers(params).items()}
    assert got == {"enc/a/kernel": (0.7, 5), "enc/b/kernel": (0.9, 5), "head/kernel": (0.5, 6)}
    with pytest.raises(ValueError, match=r"sparsity names \['\*embedding'\]"):
        jaxcomp.CompressConfig(sparsity={"*embedding": 0.3}, exclude="emb/*").layers(params)
    assert jaxcomp.CompressConfig(sparsity=0.6).layers(params)["emb/embedding"]["sparsity"] == 0.6


# ------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("user") / "tinynet.py"
    f.write_text(USER_CODE)
    return f


def _cli_tiny(f: Path, out: Path, *extra: str) -> list[str]:
    return [
        "compress", "--model", f"{f}:make", "--data", f"{f}:load", "--out", str(out),
        "--batch-size", "32", "--dense-epochs", "1", "--prune-epochs", "2",
        "--epochs-per-step", "1", "--prune-fractions", "0.5,1", "--finetune-epochs", "1",
        "--kmeans-iters", "2", "--no-progress", "--no-plots", *extra,
    ]  # fmt: skip


def test_cli_compresses_and_evaluates_a_user_model_by_import_string(user_file, tmp_path):
    out = tmp_path / "run"
    argv = _cli_tiny(user_file, out, "--sparsity", "0.5", "--sparsity", "fc=0.8", "--bits", "4")
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert {r["layer"]: (r["sparsity"], r["bits"]) for r in report["layers"]} == {
        "conv/kernel": (0.5, 4),
        "fc/kernel": (0.8, 4),
    }
    assert report["model"] == f"{user_file}:make"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        argv = ["evaluate", str(out / "model.dcz"), "--model", f"{user_file}:make"]
        assert cli.main([*argv, "--data", f"{user_file}:load", "--json"]) == 0
    assert json.loads(buf.getvalue().strip().splitlines()[-1])["test_error"] == pytest.approx(
        report["test_error"]["final"]
    )


@pytest.mark.parametrize(
    "model, data, match",
    [
        ("{f}", "{f}:load", "--model: '{f}' is not an import string"),
        ("{d}/missing.py:make", "{f}:load", "--model: no file '{d}/missing.py'"),
        ("no_such_pkg_xyz.mod:make", "{f}:load", "--model: no module named 'no_such_pkg_xyz'"),
        ("{f}:nope", "{f}:load", "--model: {f} has no attribute 'nope'"),
        ("{f}:not_a_module", "{f}:load", "returned a dict, not an nnx.Module"),
        ("{f}:load", "{f}:load", "--model: {f}:load(rngs=nnx.Rngs(0)) raised TypeError"),
        ("{f}:make", None, "--data: required with --model"),
        ("{f}:make", "{f}:three_arrays", "--data: {f}:three_arrays() returned a tuple of length 3"),
        ("{f}:make", "{f}:wrong_lengths", "x_train has 256 examples but y_train has 255"),
        ("{f}:make", "{f}:wrong_shapes", "x_train examples have shape (6, 6, 1) but x_test"),
        ("{f}:make", "{f}:flat_images", "--data: {f}:flat_images(): the model cannot take"),
        ("{f}:make", "os:getcwd", "--data: os:getcwd() returned a str"),
    ],
    ids=["no-colon", "no-file", "no-module", "no-attribute", "not-a-module", "factory-raises",
         "no-data", "three-arrays", "lengths", "shapes", "model-input", "not-arrays"],
)  # fmt: skip
def test_cli_import_string_errors_are_one_line(model, data, match, user_file, tmp_path, capsys):
    f, d = str(user_file), str(tmp_path)
    out = tmp_path / "out"
    argv = ["compress", "--model", model.format(f=f, d=d), "--out", str(out), "--no-progress"]
    if data is not None:
        argv += ["--data", data.format(f=f, d=d)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("jaxcomp compress: error: ") and match.format(f=f, d=d) in err, err
    assert not out.exists()


def test_cli_evaluate_a_user_file_with_another_model_is_one_line(nnx_run, user_file, capsys):
    out = nnx_run[0]
    argv = ["evaluate", str(out / "model.dcz"), "--model", "jaxcomp.zoo:LeNet300100"]
    assert cli.main([*argv, "--data", f"{user_file}:load"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxcomp evaluate: error: target: leaf") and err.count("\n") == 1


# ------------------------------------------------------------------------- data parallel

PARALLEL = """
import json, sys
import numpy as np
from flax import nnx
import jax, jaxcomp
user = {}
exec(compile(open(sys.argv[1]).read(), "user", "exec"), user)
cfg = jaxcomp.CompressConfig(batch_size=32, dense_epochs=1, dense_lr=0.1, prune_epochs=2,
    epochs_per_step=1, prune_fractions=(0.5, 1.0), finetune_epochs=1, kmeans_iters=2,
    default_sparsity=0.6, default_bits=3)
r = jaxcomp.compress(user["make"](rngs=nnx.Rngs(0)), user["load"](), cfg, sys.argv[2],
                     progress=False, plots=False, log=lambda s: None)
codes = jaxcomp.load_compressed_codes(sys.argv[2] + "/model.dcz")
print(json.dumps({"devices": len(jax.local_devices()), "report": r,
                  "masks": {p: (cd != 0).astype(int).tolist() for p, (cb, cd) in codes.items()},
                  "codebooks": {p: cb.tolist() for p, (cb, cd) in codes.items()}}))
"""


def _parallel_run(user_file: Path, out: Path, devices: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    p = subprocess.run(
        [sys.executable, "-c", PARALLEL, str(user_file), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_four_devices_give_the_masks_and_losses_of_one(user_file, tmp_path):
    """The same run on 4 host CPU devices (batch split 4 ways, params replicated) and on 1:
    identical masks, losses and codebooks within float32 rounding."""
    one = _parallel_run(user_file, tmp_path / "one", 1)
    four = _parallel_run(user_file, tmp_path / "four", 4)
    assert (one["devices"], four["devices"]) == (1, 4)
    assert four["report"]["devices"] == 4
    assert one["masks"] == four["masks"]
    for stage in ("dense", "pruned", "quantized"):
        a, b = one["report"]["stages"][stage]["loss"], four["report"]["stages"][stage]["loss"]
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a, b, rtol=1e-4)
    for p in one["codebooks"]:
        np.testing.assert_allclose(one["codebooks"][p], four["codebooks"][p], rtol=1e-4, atol=1e-6)
    errors = [r["report"]["test_error"] for r in (one, four)]
    for stage in driver.STAGES:
        assert abs(errors[0][stage] - errors[1][stage]) <= 1 / 64  # at most one test example


def test_a_batch_that_does_not_split_over_the_devices_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(driver.jax, "local_devices", lambda: [jax.devices()[0]] * 3)
    with pytest.raises(ValueError, match="batch_size 32 does not split over the 3 local devices"):
        _run(user["make"](rngs=nnx.Rngs(0)), tmp_path / "o")
    assert not (tmp_path / "o").exists()
