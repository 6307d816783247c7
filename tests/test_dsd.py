"""Dense-Sparse-Dense: phases, masks, learning-rate drop, no retrace, Random-Cut."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp import schedules
from jaxcomp.dsd import dsd
from jaxcomp.masks import magnitude_mask, random_mask
from jaxcomp.zoo.models import make_model
from jaxcomp.zoo.train import functional


def _params(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "fc1": {"kernel": jax.random.normal(k1, (20, 30)), "bias": jnp.ones(30)},
        "fc2": {"kernel": jax.random.normal(k2, (30, 10)), "bias": jnp.ones(10)},
    }


def _grads(params, step):
    key = jax.random.fold_in(jax.random.key(99), step)
    leaves, tdef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tdef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def _run(tx, params, steps):
    state = tx.init(params)
    update = jax.jit(tx.update)
    history = []
    for t in range(steps):
        u, state = update(_grads(params, t), state, params)
        params = optax.apply_updates(params, u)
        history.append((params, u, state))
    return history


def test_phase_schedules_are_where_the_arguments_say():
    ph = schedules.dsd_phase(3, 2, 4, cycles=2)
    got = [int(ph(c)) for c in range(15)]
    assert got == [0, 0, 0, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 2, 2]
    sp = schedules.dsd_sparsity(0.7, 3, 2, 4, cycles=2)
    lr = schedules.dsd_lr_scale(0.1, 3, 2, 4, cycles=2)
    counts = jnp.arange(15)
    np.testing.assert_array_equal(jax.vmap(sp)(counts), [sp(c) for c in range(15)])
    np.testing.assert_allclose(
        jax.jit(jax.vmap(sp))(counts), np.where(np.array(got) == 1, 0.7, 0.0), rtol=1e-7
    )
    expect_lr = [1.0] * 5 + [0.1] * 6 + [0.01] * 4
    np.testing.assert_allclose(jax.jit(jax.vmap(lr))(counts), expect_lr, rtol=1e-6)


def test_sparse_phase_holds_exact_zeros_then_redense_releases_them():
    params = _params()
    inner = optax.chain(optax.add_decayed_weights(1e-2), optax.adam(1e-2))
    tx = dsd(inner, dense_steps=3, sparse_steps=5, redense_steps=4, sparsity=0.6)
    hist = _run(tx, params, 12)
    # Dense phase: nothing is zero.
    for p, _, _ in hist[:3]:
        assert all(int((p[k]["kernel"] == 0).sum()) == 0 for k in ("fc1", "fc2"))
    # Sparse phase: exactly floor(0.6 n) zeros per layer, the same entries every step.
    zeros0 = {k: np.asarray(hist[3][0][k]["kernel"] == 0) for k in ("fc1", "fc2")}
    for p, _, state in hist[3:8]:
        for k in ("fc1", "fc2"):
            z = np.asarray(p[k]["kernel"] == 0)
            assert z.sum() == int(0.6 * z.size)
            np.testing.assert_array_equal(z, zeros0[k])
            np.testing.assert_array_equal(~np.asarray(state.prune_state.masks[k]["kernel"]), z)
        assert state.prune_state.masks["fc1"]["bias"] is None
    # The pruned entries were the smallest at the moment of pruning (Keepmax-Cut).
    before = hist[2][0]["fc1"]["kernel"]
    np.testing.assert_array_equal(~zeros0["fc1"], magnitude_mask(before, 0.6))
    # Re-dense: masks all True, pruned weights start from 0 and then move.
    p8, _, s8 = hist[8]
    assert bool(jnp.all(s8.prune_state.masks["fc1"]["kernel"]))
    assert np.all(np.asarray(hist[7][0]["fc1"]["kernel"])[zeros0["fc1"]] == 0.0)
    moved = np.asarray(hist[11][0]["fc1"]["kernel"])[zeros0["fc1"]]
    assert np.count_nonzero(moved) == moved.size


def test_learning_rate_drops_by_the_stated_factor():
    params = _params()
    tx = dsd(
        optax.sgd(0.5), dense_steps=2, sparse_steps=2, redense_steps=2, sparsity=0.5, lr_drop=0.25
    )
    state = tx.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    updates = []
    for _ in range(6):
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
        updates.append(u)
    # Biases are never masked: their update is -lr * g, times 0.25 from the re-dense phase on.
    b = [float(u["fc2"]["bias"][0]) for u in updates]
    np.testing.assert_allclose(b, [-0.5] * 4 + [-0.125] * 2, rtol=1e-7)


def test_jit_does_not_retrace_across_phases():
    params = _params()
    tx = dsd(optax.sgd(0.1, momentum=0.9), 2, 3, 2, sparsity=0.5, cycles=2)
    state = tx.init(params)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, t):
        g = jax.tree.map(lambda x: jnp.sin(x + t), params)
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state

    for t in range(12):
        params, state = step(params, state, jnp.float32(t))
    assert int(state.prune_state.count) == 12


def test_first_conv_left_dense_by_default():
    _, params = functional(make_model("lenet-5"))
    g = jax.tree.map(jnp.ones_like, params)
    for first_dense, conv1_zeros in ((True, 0), (False, int(0.5 * 500))):
        tx = dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5, first_conv_dense=first_dense)
        u, _ = tx.update(g, tx.init(params), params)
        p = optax.apply_updates(params, u)
        assert int((p["conv1"]["kernel"] == 0).sum()) == conv1_zeros
        assert int((p["conv2"]["kernel"] == 0).sum()) == int(0.5 * 25000)
        assert int((p["fc1"]["kernel"] == 0).sum()) == 200000


def test_random_cut_prunes_the_same_count_elsewhere():
    w = jax.random.normal(jax.random.key(1), (40, 50))
    m = random_mask(w, 0.8, seed=3)
    assert int((~m).sum()) == int(0.8 * 2000)
    np.testing.assert_array_equal(m, jax.jit(lambda w: random_mask(w, 0.8, seed=3))(w))
    assert not np.array_equal(np.asarray(m), np.asarray(magnitude_mask(w, 0.8)))
    assert not np.array_equal(np.asarray(m), np.asarray(random_mask(w, 0.8, seed=4)))
    hist = _run(dsd(optax.sgd(0.01), 1, 2, 1, sparsity=0.8, cut="random"), _params(), 3)
    z = np.asarray(hist[2][0]["fc1"]["kernel"] == 0)
    assert z.sum() == int(0.8 * z.size)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cut": "keepmin"}, "cut must be one of"),
        ({"sparse_steps": 0}, "sparse_steps must be > 0"),
        ({"sparsity": 1.5}, r"sparsity must lie in \[0, 1\]"),
        ({"lr_drop": 0.0}, r"lr_drop must lie in \(0, 1\]"),
        ({"dense_steps": -1}, "dense_steps must be a Python int >= 0"),
        ({"cycles": 0}, "cycles must be a Python int >= 1"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"dense_steps": 1, "sparse_steps": 1, "redense_steps": 1, "sparsity": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dsd(optax.sgd(0.1), **args)


def test_first_conv_is_the_models_first_not_the_alphabetical_first():
    # Linen names convolutions Conv_0 .. Conv_10 in creation order; sorted as strings Conv_10
    # comes before Conv_2. Plain dicts keep the model's order; sorted keys get natural order.
    def conv(cin, cout):
        return {"kernel": jnp.ones((3, 3, cin, cout)), "bias": jnp.zeros(cout)}

    # a Linen dict keeps creation order, named layers included
    linen = {"stem": conv(1, 4), "block2_conv": conv(4, 4), "block10_conv": conv(4, 4)}
    masks = dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5).init(linen).prune_state.masks
    assert masks["stem"]["kernel"] is None
    assert masks["block10_conv"]["kernel"] is not None
    auto = {f"Conv_{i}": conv(1 if i == 0 else 2, 2) for i in range(11)}
    resorted = dict(sorted(auto.items()))  # as jit hands a dict over
    for params in (auto, resorted):
        masks = dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5).init(params).prune_state.masks
        assert masks["Conv_0"]["kernel"] is None
        assert all(masks[f"Conv_{i}"]["kernel"] is not None for i in range(1, 11))
    # NNX sorts its State: "block10_conv" before "stem". The order cannot be told from the
    # params, so the default refuses and asks for the name; a name keeps that kernel dense.
    nnx_like = {"block10_conv": conv(4, 4), "stem": conv(1, 4)}
    with pytest.raises(ValueError, match="first_conv_dense='<path>'.*stem/kernel"):
        dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5).init(nnx_like)
    tx = dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5, first_conv_dense="stem/kernel")
    masks = tx.init(nnx_like).prune_state.masks
    assert masks["stem"]["kernel"] is None and masks["block10_conv"]["kernel"] is not None
    with pytest.raises(ValueError, match="first_conv_dense='nope' names no 4-D kernel"):
        dsd(optax.sgd(0.0), 0, 1, 0, sparsity=0.5, first_conv_dense="nope").init(nnx_like)
