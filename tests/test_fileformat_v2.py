"""A .dcz holds a whole model (every collection, every dtype); NNX and Linen models restore."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp import fileformat as ff
from jaxcomp.fileformat import DczFormatError

ROOT = Path(__file__).resolve().parents[1]


def _share(w, bits: int, keep: float):
    """Codes/codebook of ``w`` (host-side oracle: linear centroids over the kept weights)."""
    w = np.asarray(w, np.float32)
    thr = np.quantile(np.abs(w), 1 - keep)
    kept = np.abs(w) >= thr
    centroids = np.linspace(w[kept].min(), w[kept].max(), 2**bits - 1, dtype=np.float32)
    codebook = np.concatenate([[0.0], centroids]).astype(np.float32)
    nearest = np.abs(w[..., None] - centroids).argmin(-1) + 1
    return codebook, np.where(kept, nearest, 0).astype(np.uint8)


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}") if x.dtype != np.bool_ else x


def _manifest(data: bytes) -> dict:
    mlen = struct.unpack_from("<I", data, 8)[0]
    return json.loads(data[16 : 16 + mlen])


# ------------------------------------------------------------------------------------------ NNX


class _CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, channels: int = 8, dtype=jnp.float32):
        self.conv = nnx.Conv(1, channels, (3, 3), param_dtype=dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(channels, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.fc = nnx.Linear(channels * 16, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return self.fc(self.drop(x.reshape(x.shape[0], -1)))


def _trained_nnx(steps: int = 3):
    model = _CNN(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=16))

    @nnx.jit
    def step(model, opt, x, y):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        opt.update(model, nnx.grad(loss)(model))

    model.train()
    for _ in range(steps):
        step(model, opt, x, y)
    # weight sharing of both kernels, as share_weights leaves them: kernel == codebook[codes]
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    cbs, codes = {}, {}
    for layer, bits in (("conv", 3), ("fc", 4)):
        cb, c = _share(pure[layer]["kernel"], bits, keep=0.4)
        cbs[f"{layer}/kernel"], codes[f"{layer}/kernel"] = cb, c
        pure[layer]["kernel"] = jnp.asarray(cb[c])
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    model.eval()
    return model, cbs, codes, x


def test_nnx_cnn_with_batchnorm_restores_exactly(tmp_path):
    model, cbs, codes, x = _trained_nnx()
    assert np.abs(np.asarray(model.bn.mean[...])).max() > 0  # trained statistics, not init
    f = tmp_path / "cnn.dcz"
    ff.save_compressed(f, nnx.state(model), cbs, codes)

    fresh = _CNN(nnx.Rngs(123))
    fresh.eval()
    assert not np.array_equal(fresh(x), model(x))
    state = nnx.state(fresh)
    tree = ff.load_compressed(f, target=state)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(fresh, state)
    assert np.array_equal(np.asarray(fresh(x)), np.asarray(model(x)))
    assert np.array_equal(fresh.bn.var[...], model.bn.var[...])
    assert np.array_equal(
        jax.random.key_data(fresh.drop.rngs.key[...]), jax.random.key_data(model.drop.rngs.key[...])
    )
    # the file records each leaf's NNX variable type and dtype
    recs = {r["p"]: r for r in _manifest(f.read_bytes())["l"]}
    assert recs["bn/mean"]["g"] == "BatchStat" and recs["conv/kernel"]["g"] == "Param"
    assert recs["drop/rngs/key"]["t"] == "key" and recs["drop/rngs/count"]["t"] == "uint32"

    # negative control: restoring only the Params (today's recipe) does change the outputs
    only = _CNN(nnx.Rngs(123))
    only.eval()
    p_state = nnx.state(only, nnx.Param)
    nnx.replace_by_pure_dict(p_state, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    nnx.update(only, p_state)
    assert not np.array_equal(np.asarray(only(x)), np.asarray(model(x)))


def test_target_mismatches_name_the_leaf(tmp_path):
    model, cbs, codes, _ = _trained_nnx(steps=1)
    data = ff.dumps_compressed(nnx.state(model), cbs, codes)
    with pytest.raises(
        DczFormatError, match=r"target: leaf 'bn/bias' has shape \(4,\), the file \(8,\)"
    ):
        ff.loads_compressed(data, target=nnx.state(_CNN(nnx.Rngs(0), channels=4)))
    with pytest.raises(
        DczFormatError, match=r"target: leaf 'conv/bias' has dtype bfloat16, the file float32"
    ):
        ff.loads_compressed(data, target=nnx.state(_CNN(nnx.Rngs(0), dtype=jnp.bfloat16)))
    with pytest.raises(DczFormatError, match=r"target: the file's leaf 'bn/mean' is not in"):
        ff.loads_compressed(data, target=nnx.state(_CNN(nnx.Rngs(0)), nnx.Param))
    params_only = ff.dumps_compressed(nnx.state(model, nnx.Param), cbs, codes)
    with pytest.raises(DczFormatError, match=r"target: leaf 'bn/mean' is missing from the file"):
        ff.loads_compressed(params_only, target=nnx.state(_CNN(nnx.Rngs(0))))
    # an abstract target (no arrays allocated) works too; so does a pure dict
    abstract = nnx.state(nnx.eval_shape(lambda: _CNN(nnx.Rngs(0))))
    tree = ff.loads_compressed(data, target=abstract)
    assert tree["bn"]["mean"].dtype == jnp.float32
    ff.loads_compressed(data, target=nnx.to_pure_dict(nnx.state(model)))
    # a leaf saved as a BatchStat is not restored into a Param
    swapped = ff.dumps_compressed(
        {"bn": {"mean": nnx.Param(jnp.zeros(8))}}, {}, {}
    )  # recorded as Param
    target = {"bn": {"mean": nnx.BatchStat(jnp.zeros(8))}}
    with pytest.raises(DczFormatError, match=r"'bn/mean' is an nnx.BatchStat, the file's an nnx"):
        ff.loads_compressed(swapped, target=target)


# ---------------------------------------------------------------------------------------- Linen


class _LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(6, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(10)(x)


def test_linen_model_with_batch_stats_restores_exactly(tmp_path):
    m = _LinenCNN()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(8, 6, 6, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=8))
    variables = m.init(jax.random.key(0), x, train=False)
    params, stats = variables["params"], variables["batch_stats"]

    @jax.jit
    def step(params, stats):
        def loss(p):
            logits, upd = m.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd

        g, upd = jax.grad(loss, has_aux=True)(params)
        return jax.tree.map(lambda p, d: p - 0.1 * d, params, g), upd["batch_stats"]

    for _ in range(3):
        params, stats = step(params, stats)
    cb, c = _share(params["Conv_0"]["kernel"], 3, keep=0.5)
    params = jax.tree.map(lambda a: a, params)
    params["Conv_0"]["kernel"] = jnp.asarray(cb[c])
    trained = {"params": params, "batch_stats": stats}
    assert np.abs(np.asarray(stats["BatchNorm_0"]["mean"])).max() > 0

    f = tmp_path / "linen.dcz"
    # codebooks keyed like the variables dict: a path dict or a {"params": ...} pytree
    ff.save_compressed(f, trained, {"params/Conv_0/kernel": cb}, {"params/Conv_0/kernel": c})
    tree = ff.load_compressed(f, target=trained)
    out = m.apply(tree, x, train=False)
    assert np.array_equal(np.asarray(out), np.asarray(m.apply(trained, x, train=False)))
    pytree_form = ff.dumps_compressed(
        trained, {"params": {"Conv_0": {"kernel": cb}}}, {"params": {"Conv_0": {"kernel": c}}}
    )
    assert pytree_form == f.read_bytes()
    with pytest.raises(ValueError, match=r"pass \{'params': codebooks\}"):
        ff.dumps_compressed(trained, {"Conv_0/kernel": cb}, {"Conv_0/kernel": c})


# --------------------------------------------------------------------------------------- dtypes


def test_every_dtype_round_trips_bit_for_bit():
    rng = np.random.default_rng(3)
    w16 = jnp.asarray(rng.normal(size=(6, 5)), jnp.bfloat16)
    cb, codes = _share(np.asarray(w16, np.float32), 3, keep=0.5)
    state = {
        "bf16": {"kernel": w16, "bias": jnp.asarray(rng.normal(size=5), jnp.bfloat16)},
        "f16": jnp.asarray(rng.normal(size=(3, 2)), jnp.float16),
        "f32": np.asarray([np.nan, -0.0, np.inf, 1e-45], np.float32),
        "f64": rng.normal(size=3),
        "i8": np.asarray([-128, 0, 127], np.int8),
        "i32": jnp.arange(-3, 3, dtype=jnp.int32),
        "i64": np.asarray([2**62, -(2**63)], np.int64),
        "u8": np.asarray([0, 255], np.uint8),
        "u64": np.asarray([2**64 - 1], np.uint64),
        "flag": np.asarray([True, False]),
        "scalar": np.float32(2.5),
        "key": jax.random.key(7),
        "rbg": jax.random.split(jax.random.key(3, impl="rbg"), 2),
        "raw_key": jax.random.PRNGKey(1),
    }
    for huffman_coding in (True, False):
        data = ff.dumps_compressed(
            state, {"bf16/kernel": cb}, {"bf16/kernel": codes}, huffman_coding=huffman_coding
        )
        out = ff.loads_compressed(data)
        kernel = out["bf16"]["kernel"]
        assert kernel.dtype == jnp.bfloat16 and isinstance(kernel, jax.Array)
        assert np.array_equal(_bits(kernel), _bits(cb.astype(jnp.bfloat16)[codes]))
        flat = dict(ff.loads_compressed_codes(data))
        for path, want in [
            ("bf16/bias", state["bf16"]["bias"]),
            *((k, v) for k, v in state.items() if k not in ("bf16", "key", "rbg")),
        ]:
            got = out
            for part in path.split("/"):
                got = got[part]
            want = np.asarray(want)
            assert np.asarray(got).dtype == want.dtype, path
            assert np.asarray(got).shape == want.shape, path
            assert np.array_equal(_bits(got), _bits(want)), path
            assert np.array_equal(_bits(flat[path]), _bits(want)), path
        for k in ("key", "rbg"):
            assert jax.random.key_impl(out[k]) == jax.random.key_impl(state[k])
            assert np.array_equal(jax.random.key_data(out[k]), jax.random.key_data(state[k]))
        # 64-bit leaves stay NumPy (JAX without x64 would truncate them)
        assert isinstance(out["i64"], np.ndarray) and isinstance(out["f64"], np.ndarray)


def test_writer_refuses_what_it_cannot_store_exactly():
    cb = np.array([0.0, 1.0], np.float32)
    with pytest.raises(TypeError, match=r"params\['w'\] has dtype int32; a weight-shared leaf"):
        ff.dumps_compressed({"w": np.zeros(2, np.int32)}, {"w": cb}, {"w": np.zeros(2, np.uint8)})
    with pytest.raises(TypeError, match=r"params\['c'\] has dtype complex64"):
        ff.dumps_compressed({"c": np.zeros(2, np.complex64)}, {}, {})
    with pytest.raises(ValueError, match="float32 cannot hold exactly"):
        ff.dumps_compressed(
            {"w": np.zeros(2)}, {"w": np.array([0.0, 0.1])}, {"w": np.zeros(2, np.uint8)}
        )
    for bad in ({"": np.ones(1)}, {"a/b": np.ones(1)}, {"..": np.ones(1)}, {"a\n": np.ones(1)}):
        with pytest.raises(ValueError, match="a .dcz leaf path is made of non-empty names"):
            ff.dumps_compressed(bad, {}, {})
    with pytest.raises(ValueError, match="nests deeper"):
        deep: dict = {}
        node = deep
        for _ in range(40):
            node["x"] = {}
            node = node["x"]
        ff.dumps_compressed({"b": np.ones(1)}, {}, {}, metadata=deep)


# ------------------------------------------------------------------------- version-1 files


def _v1_model():
    """The arrays of tests/data/v1_model*.dcz, rebuilt from the seed (see tests/data/README.md)."""
    rng = np.random.default_rng(2026)
    params = {
        "conv": {
            "kernel": np.zeros((3, 3, 2, 8), np.float32),
            "bias": rng.normal(size=8).astype(np.float32),
        },
        "fc": {
            "kernel": np.zeros((40, 10), np.float32),
            "bias": rng.normal(size=10).astype(np.float32),
        },
    }
    codes, cbs = {}, {}
    for p, shape, bits in (("conv/kernel", (3, 3, 2, 8), 3), ("fc/kernel", (40, 10), 4)):
        kept = rng.random(shape) < 0.3
        codes[p] = np.where(kept, rng.integers(1, 2**bits, size=shape), 0).astype(np.uint8)
        cbs[p] = np.concatenate([[0.0], rng.normal(size=2**bits - 1)]).astype(np.float32)
    return params, cbs, codes


@pytest.mark.parametrize("name", ["v1_model.dcz", "v1_model_plain.dcz"])
def test_version_1_files_still_load(name):
    data = (ROOT / "tests" / "data" / name).read_bytes()
    assert struct.unpack_from("<H", data, 4)[0] == 1  # really a version-1 file
    params, cbs, codes = _v1_model()
    out = ff.loads_compressed(data, target=params)
    for layer in ("conv", "fc"):
        p = f"{layer}/kernel"
        assert out[layer]["kernel"].dtype == jnp.float32
        assert np.array_equal(_bits(out[layer]["kernel"]), _bits(cbs[p][codes[p]]))
        assert np.array_equal(_bits(out[layer]["bias"]), _bits(params[layer]["bias"]))
    raw = ff.loads_compressed_codes(data)
    assert np.array_equal(raw["fc/kernel"][1], codes["fc/kernel"])
    meta = ff.loads_metadata(data)
    assert meta == ({"model": "v1-fixture"} if name == "v1_model.dcz" else {})
    # the same model written today is version 2 and decodes to the same arrays
    new = ff.loads_compressed(ff.dumps_compressed(params, cbs, codes, index_bits=3))
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(_bits(a), _bits(b)), new, out))


# ------------------------------------------------------------------------------ the doc recipe


def test_the_guide_recipe_runs_verbatim(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "guides" / "dcz-format.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "docs/guides/dcz-format.md has no python block"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "dcz-format.md", "exec"), {"__name__": "recipe"})
