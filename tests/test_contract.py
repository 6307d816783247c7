"""The contract every jaxcomp optax transform keeps, in every setting users put optax in.

Parametrized over the transforms (``prune``, ``share_weights``, ``dsd``, the L1 / L2
regularizers) and over the settings: ``optax.chain`` in the orders the docs allow,
``inject_hyperparams``, ``MultiSteps`` inside and outside, ``masked`` / ``multi_transform``,
``apply_if_finite``, eager and ``jit``, ``vmap`` over seeds, ``nnx.Optimizer(model, tx,
wrt=nnx.Param)`` with every helper taking its state as the optimizer holds it, a Linen
``TrainState``, an orbax round trip resumed bit for bit, and float32 / bfloat16 / float16 params.

What each transform guarantees after an update (checked by :func:`_check`):

* prune / dsd: exactly ``floor(0.5 * n)`` entries of each pruned leaf are 0, where its mask says.
* share_weights: every shared weight is ``codebook[code]`` bit for bit, 0 exactly for code 0.
* regularizers: the run equals the same run with the penalty added to the loss instead.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import jaxcomp

TRANSFORMS = ["prune", "share_weights", "dsd", "add_l1_regularization", "add_l2_regularization"]
STRENGTH = 1e-2
STEPS = 4
FC1 = {"fc1": {"kernel": True, "bias": True}, "fc2": {"kernel": False, "bias": False}}


def _make(name):
    """``inner -> transform`` for ``name``; the regularizers act on fc1's kernel only."""
    return {
        "prune": lambda inner: jaxcomp.prune(inner, 0.5),
        "share_weights": lambda inner: jaxcomp.share_weights(inner, bits=2),
        "dsd": lambda inner: jaxcomp.dsd(inner, 1, 100, 0, 0.5),
        "add_l1_regularization": lambda inner: optax.chain(
            jaxcomp.add_l1_regularization(STRENGTH, include="fc1/*"), inner
        ),
        "add_l2_regularization": lambda inner: optax.chain(
            jaxcomp.add_l2_regularization(STRENGTH, include="fc1/*"), inner
        ),
    }[name]


def _penalty(name, params):
    if name == "add_l1_regularization":
        return STRENGTH * jaxcomp.l1_penalty(params, include="fc1/*")
    if name == "add_l2_regularization":
        return STRENGTH * jaxcomp.l2_penalty(params, include="fc1/*")
    return 0.0


def _adam():
    return optax.adam(1e-2)


# Each setting builds an optimizer from ``make`` (inner -> jaxcomp transform); the allowed chain
# orders put jaxcomp's transform last or wrap the other transforms inside it.
SETTINGS = {
    "plain": lambda make: make(_adam()),
    "chain_before": lambda make: optax.chain(optax.clip_by_global_norm(10.0), make(_adam())),
    "chain_inside": lambda make: make(optax.chain(optax.clip_by_global_norm(10.0), _adam())),
    "inject_hyperparams": lambda make: make(
        optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
    ),
    "multisteps_inside": lambda make: make(optax.MultiSteps(_adam(), every_k_schedule=2)),
    "multisteps_outside": lambda make: optax.MultiSteps(make(_adam()), every_k_schedule=2),
    "masked": lambda make: optax.masked(make(_adam()), FC1),
    "multi_transform": lambda make: optax.multi_transform(
        {"c": make(_adam()), "d": optax.sgd(0.1)},
        jax.tree.map(lambda m: "c" if m else "d", FC1),
    ),
    "apply_if_finite": lambda make: optax.apply_if_finite(make(_adam()), 3),
}


def _params(seed=0, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "fc1": {
            "kernel": jax.random.normal(k1, (8, 16), dtype),
            "bias": 0.1 * jax.random.normal(k3, (16,), dtype),
        },
        "fc2": {"kernel": jax.random.normal(k2, (16, 4), dtype), "bias": jnp.zeros(4, dtype)},
    }


X = jax.random.normal(jax.random.key(7), (32, 8))
Y = jax.random.normal(jax.random.key(8), (32, 4))


def _loss(params, name=None):
    p = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    h = jnp.tanh(X @ p["fc1"]["kernel"] + p["fc1"]["bias"][None, :])
    out = h @ p["fc2"]["kernel"] + p["fc2"]["bias"][None, :]
    return jnp.mean((out - Y) ** 2) + _penalty(name, p)


def _step_fn(tx, name=None, nan_at=None):
    def step(params, state, i):
        grads = jax.grad(_loss)(params, name)
        if nan_at is not None:
            grads = jax.tree.map(lambda g: jnp.where(i == nan_at, jnp.nan, g), grads)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def _run(tx, params, steps=STEPS, *, name=None, jit=True, nan_at=None):
    step = _step_fn(tx, name, nan_at)
    step = jax.jit(step) if jit else step
    state = tx.init(params)
    for i in range(steps):
        params, state = step(params, state, jnp.int32(i))
    return params, state


def _find(state, cls):
    found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, cls))
    found = [s for s in found if isinstance(s, cls)]
    assert found, f"no {cls.__name__} in the optimizer state"
    return found[0]


def _check(name, params, state):
    """The transform's own guarantee after an update, on the leaves it acts on."""
    if name in ("prune", "dsd"):
        ps = _find(state, jaxcomp.PruneState)
        masks = jaxcomp.tree.align_leaves(params, ps.masks, "masks")
        acted = 0
        for (path, w), m in zip(jaxcomp.leaves_with_paths(params), masks, strict=True):
            if m is None:
                continue
            m, w = np.asarray(m), np.asarray(w.astype(jnp.float32))
            assert int((~m).sum()) == math.floor(0.5 * m.size), path
            assert np.all(w[~m] == 0), path
            acted += 1
        assert acted
    elif name == "share_weights":
        ss = _find(state, jaxcomp.ShareState)
        rebuilt = jaxcomp.shared_params(params, ss)
        codes = jaxcomp.tree.align_leaves(params, ss.codes, "codes")
        acted = 0
        for (path, w), r, c in zip(
            jaxcomp.leaves_with_paths(params), jax.tree.leaves(rebuilt), codes, strict=True
        ):
            if c is None:
                continue
            np.testing.assert_array_equal(np.asarray(r), np.asarray(w), err_msg=path)
            np.testing.assert_array_equal(np.asarray(c) == 0, np.asarray(w) == 0, err_msg=path)
            acted += 1
        assert acted


def _reference(name, setting, params, **kw):
    """The regularizers' oracle: the same setting without the transform, penalty in the loss."""
    tx = SETTINGS[setting](lambda inner: inner)
    return _run(tx, params, name=name, **kw)[0]


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", TRANSFORMS)
def test_transform_keeps_its_contract_in_every_setting(name, setting):
    tx = SETTINGS[setting](_make(name))
    nan_at = 2 if setting == "apply_if_finite" else None
    params0 = _params()
    params, state = _run(tx, params0, nan_at=nan_at)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params0), strict=True)
    )
    if name.startswith("add_"):
        expected = _reference(name, setting, params0, nan_at=nan_at)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), params, expected
        )
    else:
        _check(name, params, state)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_eager_equals_its_own_contract(name):
    params, state = _run(_make(name)(_adam()), _params(), jit=False)
    if name.startswith("add_"):
        expected = _reference(name, "plain", _params(), jit=False)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5), params, expected)
    else:
        _check(name, params, state)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_vmap_over_seeds_equals_each_seed_alone(name):
    tx = _make(name)(_adam())
    seeds = 3
    batch = jax.vmap(lambda s: _params(s))(jnp.arange(seeds))
    step = jax.jit(jax.vmap(_step_fn(tx, name), in_axes=(0, 0, None)))
    state = jax.vmap(tx.init)(batch)
    params = batch
    for i in range(STEPS):
        params, state = step(params, state, jnp.int32(i))
    for s in range(seeds):
        one = jax.tree.map(lambda x, s=s: x[s], params)
        alone, alone_state = _run(tx, _params(s), name=name)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), one, alone
        )
        if not name.startswith("add_"):
            _check(name, one, jax.tree.map(lambda x, s=s: x[s], state))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=str)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_params_keep_their_dtype(name, dtype):
    params0 = _params(dtype=dtype)
    # momentum SGD: Adam's default eps (1e-8) is 0 in float16, whatever wraps it
    params, state = _run(_make(name)(optax.sgd(1e-2, momentum=0.9)), params0)
    for a in jax.tree.leaves(params):
        assert a.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(a)))
    if not name.startswith("add_"):
        _check(name, params, state)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_orbax_round_trip_resumes_bit_for_bit(name, tmp_path):
    tx = _make(name)(_adam())
    step = jax.jit(_step_fn(tx, name))
    params, state = _params(), tx.init(_params())
    for i in range(2):
        params, state = step(params, state, jnp.int32(i))
    jaxcomp.save_checkpoint(tmp_path / "ckpt", {"params": params, "opt_state": state}, step=2)
    target = {"params": params, "opt_state": state}
    restored = jaxcomp.restore_checkpoint(tmp_path / "ckpt", target, step=2)
    straight = (params, state)
    resumed = (restored["params"], restored["opt_state"])
    for i in range(2, STEPS):
        straight = step(*straight, jnp.int32(i))
        resumed = step(*resumed, jnp.int32(i))
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _CNN(nnx.Module):
    """The NNX tutorial's CNN shape, shrunk: conv, BatchNorm, Dropout, conv, dense."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(4, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.conv2 = nnx.Conv(4, 8, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(8 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.avg_pool(self.dropout(x), (2, 2), (2, 2))
        x = nnx.relu(self.conv2(x))
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("name", TRANSFORMS)
def test_nnx_optimizer_and_helpers_take_its_state_as_it_is(name):
    model = _CNN(nnx.Rngs(0))
    make = _make(name)
    if name == "dsd":
        make = lambda inner: jaxcomp.dsd(inner, 1, 100, 0, 0.5, first_conv_dense="conv1/kernel")  # noqa: E731
    if name.startswith("add_"):
        make = {
            "add_l1_regularization": lambda inner: optax.chain(
                jaxcomp.add_l1_regularization(STRENGTH), inner
            ),
            "add_l2_regularization": lambda inner: optax.chain(
                jaxcomp.add_l2_regularization(STRENGTH), inner
            ),
        }[name]
    optimizer = nnx.Optimizer(model, make(_adam()), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
    y = jax.random.randint(jax.random.key(2), (8,), 0, 3)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = nnx.grad(loss_fn)(model)
        optimizer.update(model, grads)

    before = nnx.state(model, nnx.Param)
    before = jax.tree.map(np.asarray, before)
    for _ in range(3):
        train_step(model, optimizer, x, y)
    params = nnx.state(model, nnx.Param)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before), strict=True)
    )
    if name in ("prune", "dsd"):
        _check(name, params, optimizer.opt_state)
        masks = _find(optimizer.opt_state, jaxcomp.PruneState).masks
        out = jaxcomp.apply_masks(params, masks)  # OptVariable masks on Param state, as held
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(a, b)
        nnx.update(model, out)  # the result is the params' own structure
    if name == "share_weights":
        _check(name, params, optimizer.opt_state)
        rebuilt = jaxcomp.shared_params(params, _find(optimizer.opt_state, jaxcomp.ShareState))
        nnx.update(model, rebuilt)
    summary = jaxcomp.sparsity_summary(params)
    assert set(summary.layers) == {"conv1/kernel", "conv2/kernel", "fc/kernel"}


class _LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(16)(x))
        return nn.Dense(4)(x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_linen_train_state(name):
    model = _LinenMLP()
    variables = model.init(jax.random.key(0), X)
    make = _make(name)
    if name.startswith("add_"):
        reg = getattr(jaxcomp, name)
        make = lambda inner: optax.chain(reg(STRENGTH), inner)  # noqa: E731
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=make(_adam())
    )

    @jax.jit
    def train_step(state):
        def loss_fn(params):
            return jnp.mean((state.apply_fn({"params": params}, X) - Y) ** 2)

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    p0 = state.params
    for _ in range(STEPS):
        state = train_step(state)
    assert int(state.step) == STEPS
    assert not np.array_equal(state.params["Dense_0"]["kernel"], p0["Dense_0"]["kernel"])
    if not name.startswith("add_"):
        _check(name, state.params, state.opt_state)
