"""Checkpoints: the whole compression training state round-trips; resuming is bit-identical."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.checkpoint import (
    CompressionTrainState,
    latest_step,
    restore_checkpoint,
    save_checkpoint,
)


def _init(seed: int):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "fc1": {"kernel": jax.random.normal(k1, (8, 16)) * 0.3, "bias": jnp.zeros(16)},
        "fc2": {"kernel": jax.random.normal(k2, (16, 3)) * 0.3, "bias": jnp.zeros(3)},
    }
    masks = jax.tree.map(lambda w: jnp.abs(w) > 0.15, params)
    masks["fc1"]["bias"] = None
    masks["fc2"]["bias"] = None
    return params, masks


_TX = optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.05, momentum=0.9))


def _loss(params, x, y):
    h = jnp.tanh(x @ params["fc1"]["kernel"] + params["fc1"]["bias"][None, :])
    logits = h @ params["fc2"]["kernel"] + params["fc2"]["bias"][None, :]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _apply_masks(tree, masks):
    return jax.tree.map(lambda t, m: t if m is None else t * m, tree, masks, is_leaf=_is_none)


def _is_none(x):
    return x is None


@jax.jit
def _step(state: CompressionTrainState) -> CompressionTrainState:
    key, sub = jax.random.split(state.key)
    kx, ky = jax.random.split(sub)
    x = jax.random.normal(kx, (32, 8))
    y = jax.random.randint(ky, (32,), 0, 3)
    grads = jax.grad(_loss)(state.params, x, y)
    updates, opt_state = _TX.update(grads, state.opt_state, state.params)
    updates = _apply_masks(updates, state.masks)
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, opt_state=opt_state, step=state.step + 1, key=key)


def _fresh_state(seed: int) -> CompressionTrainState:
    params, masks = _init(seed)
    params = _apply_masks(params, masks)
    codes = {"fc1/kernel": jnp.zeros((8, 16), jnp.uint8), "fc2/kernel": jnp.zeros((16, 3), "u2")}
    codebooks = {"fc1/kernel": jnp.linspace(0, 1, 16), "fc2/kernel": jnp.linspace(0, 1, 512)}
    return CompressionTrainState(
        params=params,
        opt_state=_TX.init(params),
        step=jnp.int32(0),
        key=jax.random.key(seed + 100),
        masks=masks,
        codebooks=codebooks,
        codes=codes,
    )


def _assert_identical(a, b):
    la, ta = jax.tree.flatten(a, is_leaf=_is_none)
    lb, tb = jax.tree.flatten(b, is_leaf=_is_none)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if x is None:
            assert y is None
            continue
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    total, cut = 12, 5
    state = _fresh_state(0)
    for _ in range(total):
        state = _step(state)
    straight = state

    state = _fresh_state(0)
    for _ in range(cut):
        state = _step(state)
    save_checkpoint(tmp_path / "ckpt", state, step=cut)
    del state
    # a new process: the target comes from a different init, only its structure is used
    resumed = restore_checkpoint(tmp_path / "ckpt", _fresh_state(1))
    assert int(resumed.step) == cut and latest_step(tmp_path / "ckpt") == cut
    for _ in range(total - cut):
        resumed = _step(resumed)
    _assert_identical(resumed, straight)
    assert not np.array_equal(
        straight.params["fc1"]["kernel"], _fresh_state(0).params["fc1"]["kernel"]
    )
    # pruned weights stayed zero through training and restore
    m = np.asarray(straight.masks["fc1"]["kernel"])
    assert np.all(np.asarray(resumed.params["fc1"]["kernel"])[~m] == 0)


def test_whole_state_round_trips_exactly(tmp_path):
    state = _step(_fresh_state(3))
    extra = {
        "state": state,
        "raw_key": jax.random.PRNGKey(5),
        "np_codes": np.arange(12, dtype=np.uint16).reshape(3, 4),
        "epoch": 7,
        "lr": 0.25,
        "np_scalar": np.float32(1.5),
    }
    save_checkpoint(tmp_path, extra, step=1)
    save_checkpoint(tmp_path, jax.tree.map(lambda x: x, extra), step=2)
    target = {**extra, "state": _fresh_state(4), "epoch": 0, "lr": 0.0, "np_scalar": np.float32(0)}
    back = restore_checkpoint(tmp_path, target, step=1)
    _assert_identical(back, extra)
    assert isinstance(back["np_codes"], np.ndarray) and isinstance(back["epoch"], int)
    assert isinstance(back["np_scalar"], np.float32) and back["np_scalar"] == 1.5
    assert back["state"].masks["fc2"]["bias"] is None
    assert back["state"].codes["fc2/kernel"].dtype == jnp.uint16
    assert latest_step(tmp_path) == 2


def test_missing_checkpoints_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_checkpoint(tmp_path / "none", {"a": jnp.zeros(2)})
    save_checkpoint(tmp_path, {"a": jnp.zeros(2)}, step=3)
    with pytest.raises(FileNotFoundError, match="no step 4"):
        restore_checkpoint(tmp_path, {"a": jnp.zeros(2)}, step=4)


def test_saving_an_existing_or_earlier_step_raises_and_keeps_the_data(tmp_path):
    save_checkpoint(tmp_path, {"w": jnp.arange(3.0)}, step=2)
    for step in (2, 1):
        with pytest.raises(FileExistsError, match=f"step {step} is"):
            save_checkpoint(tmp_path, {"w": jnp.zeros(3)}, step=step)
    back = restore_checkpoint(tmp_path, {"w": jnp.zeros(3)}, step=2)
    assert back["w"].tolist() == [0.0, 1.0, 2.0] and latest_step(tmp_path) == 2
    save_checkpoint(tmp_path, {"w": jnp.ones(3)}, step=3)  # a new step still saves
    assert restore_checkpoint(tmp_path, {"w": jnp.zeros(3)})["w"].tolist() == [1.0, 1.0, 1.0]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            save_checkpoint(tmp_path, {"w": jnp.ones(3)}, step=bad)
