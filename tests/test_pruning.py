"""The pruning optax wrapper, apply_masks, sparsity_summary and the L1/L2 transforms."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcomp
from jaxcomp import schedules
from jaxcomp.masks import load_balanced_mask, magnitude_mask
from jaxcomp.tree import leaves_with_paths


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float32),
        {
            "fc1": {"kernel": rng.normal(size=(12, 10)), "bias": rng.normal(size=(10,))},
            "fc2": {"kernel": rng.normal(size=(10, 4)), "bias": rng.normal(size=(4,))},
        },
    )


def _loss(p, x, y):
    h = jnp.tanh(x @ p["fc1"]["kernel"] + p["fc1"]["bias"][None, :])
    out = h @ p["fc2"]["kernel"] + p["fc2"]["bias"][None, :]
    return jnp.mean((out - y) ** 2)


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(16, 12)), jnp.float32), jnp.asarray(
        rng.normal(size=(16, 4)), jnp.float32
    )


def _run(tx, params, steps, hook=None):
    x, y = _data()

    @jax.jit
    def step(p, s):
        g = jax.grad(_loss)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = tx.init(params)
    for i in range(steps):
        params, state = step(params, state)
        if hook is not None:
            hook(i, params, state)
    return params, state


@pytest.mark.parametrize(
    "inner",
    [
        optax.adamw(1e-2, weight_decay=0.1),
        optax.sgd(0.05, momentum=0.9, nesterov=True),
        optax.chain(optax.add_decayed_weights(0.01), optax.adam(1e-2)),
    ],
    ids=["adamw", "nesterov", "chain-wd-adam"],
)
def test_pruned_weights_stay_exactly_zero_for_100_steps(inner):
    tx = jaxcomp.prune(inner, schedules.constant(0.75))
    init = _params()

    def check(i, p, s):
        for path in ("fc1", "fc2"):
            m = np.asarray(s.masks[path]["kernel"])
            w = np.asarray(p[path]["kernel"])
            assert (w[~m] == 0.0).all(), (i, path)
            assert m.sum() == m.size - math.floor(0.75 * m.size)
        assert s.masks["fc1"]["bias"] is None

    params, _ = _run(tx, init, 100, check)
    # the kept weights did train (Adam/SGD moved them), the biases were not pruned
    assert not np.allclose(params["fc1"]["kernel"], 0)
    assert (np.asarray(params["fc1"]["bias"]) != 0).all()


def test_target_zero_is_bit_identical_to_inner():
    # Op by op (no XLA fusion, whose rounding depends on the whole program) the wrapper with
    # target 0 must not change a single bit of the inner optimizer's updates, over 10 steps.
    inner = optax.adamw(1e-2, weight_decay=0.1)
    wrapped = jaxcomp.prune(inner, 0.0)
    x, y = _data()
    grad = jax.jit(lambda p: jax.grad(_loss)(p, x, y))
    p_ref, p_prn = _params(), _params()
    s_ref, s_prn = inner.init(p_ref), wrapped.init(p_prn)
    for _ in range(10):
        g_ref, g_prn = grad(p_ref), grad(p_prn)
        with jax.disable_jit():
            u_ref, s_ref = inner.update(g_ref, s_ref, p_ref)
            u_prn, s_prn = wrapped.update(g_prn, s_prn, p_prn)
        jax.tree.map(np.testing.assert_array_equal, u_ref, u_prn)
        p_ref, p_prn = optax.apply_updates(p_ref, u_ref), optax.apply_updates(p_prn, u_prn)
    jax.tree.map(np.testing.assert_array_equal, p_ref, p_prn)
    jax.tree.map(np.testing.assert_array_equal, s_ref, s_prn.inner_state)
    # compiled, each program rounds on its own: equal to float32 rounding
    u_ref, _ = jax.jit(inner.update)(grad(p_ref), s_ref, p_ref)
    u_prn, _ = jax.jit(wrapped.update)(grad(p_prn), s_prn, p_prn)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), u_ref, u_prn)


def test_masks_recomputed_on_schedule_steps_without_retrace():
    sched = schedules.iterative([0, 3, 6], [0.25, 0.5, 0.75])
    tx = jaxcomp.prune(optax.adam(1e-2), sched)
    x, y = _data()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s):
        g = jax.grad(_loss)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    params, state = _params(), tx.init(_params())
    kept = []
    for _ in range(9):
        params, state = step(params, state)
        kept.append(int(state.masks["fc1"]["kernel"].sum()))
    assert kept == [90] * 3 + [60] * 3 + [30] * 3
    # newly pruned weights are zero at once; pruned weights never come back
    assert int((params["fc1"]["kernel"] != 0).sum()) == 30


def test_masks_follow_current_magnitudes_not_initial_ones():
    # recomputation ranks the params passed to update: an entry made small is pruned
    params = _params()
    params["fc1"]["kernel"] = params["fc1"]["kernel"].at[0, 0].set(1e-6)
    tx = jaxcomp.prune(optax.sgd(0.0), 0.01)
    state = tx.init(params)
    g = jax.tree.map(jnp.zeros_like, params)
    u, state = tx.update(g, state, params)
    assert not bool(state.masks["fc1"]["kernel"][0, 0])
    assert float(optax.apply_updates(params, u)["fc1"]["kernel"][0, 0]) == 0.0


def test_per_layer_targets_global_threshold_and_callable_criteria():
    params = _params()
    g = jax.tree.map(jnp.zeros_like, params)
    tx = jaxcomp.prune(optax.sgd(0.1), {"fc1/kernel": 0.9, "fc2/kernel": schedules.constant(0.5)})
    _, s = tx.update(g, tx.init(params), params)
    assert int(s.masks["fc1"]["kernel"].sum()) == 120 - 108
    assert int(s.masks["fc2"]["kernel"].sum()) == 20
    tx = jaxcomp.prune(optax.sgd(0.1), 0.5, "global")
    _, s = tx.update(g, tx.init(params), params)
    assert int(s.masks["fc1"]["kernel"].sum() + s.masks["fc2"]["kernel"].sum()) == 80
    tx = jaxcomp.prune(optax.sgd(0.1), 1.0, "threshold")
    _, s = tx.update(g, tx.init(params), params)
    w = np.asarray(params["fc1"]["kernel"])
    np.testing.assert_array_equal(s.masks["fc1"]["kernel"], np.abs(w) >= np.std(w))
    lba = functools.partial(load_balanced_mask, num_pes=4)
    tx = jaxcomp.prune(optax.sgd(0.1), 0.5, lba)
    _, s = tx.update(g, tx.init(params), params)
    per_pe = [int(s.masks["fc1"]["kernel"][:, k::4].sum()) for k in range(4)]
    assert sum(per_pe) == 60 and max(per_pe) - min(per_pe) <= 1


def test_works_inside_chain_and_inject_hyperparams():
    init = _params()
    # prune inside a chain, and a chain (with L1) inside prune
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        jaxcomp.prune(optax.chain(jaxcomp.add_l1_regularization(1e-3), optax.adam(1e-2)), 0.5),
    )
    p, _ = _run(tx, init, 5)
    assert int((p["fc2"]["kernel"] == 0).sum()) == 20
    # inner optimizer with injected hyperparams
    tx = jaxcomp.prune(optax.inject_hyperparams(optax.adam)(learning_rate=1e-2), 0.5)
    p, s = _run(tx, init, 3)
    assert float(s.inner_state.hyperparams["learning_rate"]) == pytest.approx(1e-2)
    assert int((p["fc2"]["kernel"] == 0).sum()) == 20
    # the sparsity itself as an injected hyperparameter, changed between steps
    tx = optax.inject_hyperparams(jaxcomp.prune)(inner=optax.adam(1e-2), schedule=0.25)
    x, y = _data()
    step = jax.jit(
        lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
            tx.update(jax.grad(_loss)(p, x, y), s, p)
        )
    )
    p, s = step(init, tx.init(init))
    assert int((p["fc2"]["kernel"] == 0).sum()) == 10
    s.hyperparams["schedule"] = jnp.asarray(0.75)
    p, s = step(p, s)
    assert int((p["fc2"]["kernel"] == 0).sum()) == 30


def test_nnx_state_and_pure_dict_params_give_the_same_training():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.fc1 = nnx.Linear(12, 10, rngs=rngs)
            self.fc2 = nnx.Linear(10, 4, rngs=rngs)

    state = nnx.state(MLP(nnx.Rngs(0)), nnx.Param)
    pure = nnx.to_pure_dict(state)
    tx = jaxcomp.prune(optax.adam(1e-2), 0.6)
    p_pure, s_pure = _run(tx, pure, 4)
    p_state, s_state = _run(tx, state, 4)
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(p_state), p_pure)
    a = [(k, np.asarray(v)) for k, v in leaves_with_paths(s_state.masks)]
    b = [(k, np.asarray(v)) for k, v in leaves_with_paths(s_pure.masks)]
    assert [k for k, _ in a] == [k for k, _ in b] == ["fc1/kernel", "fc2/kernel"]
    for (_, u), (_, v) in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_prune_argument_errors():
    params = _params()
    with pytest.raises(ValueError, match="criterion"):
        jaxcomp.prune(optax.sgd(0.1), 0.5, "largest")
    with pytest.raises(TypeError, match="inner"):
        jaxcomp.prune(lambda g: g, 0.5)
    with pytest.raises(ValueError, match="global"):
        jaxcomp.prune(optax.sgd(0.1), {"fc1/kernel": 0.5}, "global")
    with pytest.raises(ValueError, match="missing"):
        jaxcomp.prune(optax.sgd(0.1), {"fc1/kernel": 0.5}).init(params)
    with pytest.raises(ValueError, match="no leaf"):
        jaxcomp.prune(optax.sgd(0.1), 0.5, include="conv*").init(params)
    tx = jaxcomp.prune(optax.sgd(0.1), 0.5)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="sparsity"):
        tx2 = jaxcomp.prune(optax.sgd(0.1), 1.5)
        tx2.update(params, tx2.init(params), params)


def test_apply_masks_jit_and_errors():
    params = _params()
    masks = jax.tree.map(lambda x: None if x.ndim < 2 else x > 0, params)
    for fn in (jaxcomp.apply_masks, jax.jit(jaxcomp.apply_masks)):
        out = fn(params, masks)
        np.testing.assert_array_equal(
            out["fc1"]["kernel"], np.where(params["fc1"]["kernel"] > 0, params["fc1"]["kernel"], 0)
        )
        np.testing.assert_array_equal(out["fc1"]["bias"], params["fc1"]["bias"])
    bad = jax.tree.map(lambda x: None if x.ndim < 2 else x > 0, params)
    bad["fc2"]["kernel"] = jnp.ones((4, 10), bool)
    with pytest.raises(ValueError, match="masks.*fc2/kernel"):
        jaxcomp.apply_masks(params, bad)


def test_sparsity_summary_counts_and_jit():
    params = _params()
    params["fc1"]["kernel"] = params["fc1"]["kernel"].at[:6].set(0.0)
    for fn in (jaxcomp.sparsity_summary, jax.jit(jaxcomp.sparsity_summary)):
        s = fn(params)
        assert list(s.layers) == ["fc1/kernel", "fc2/kernel"]
        assert int(s.layers["fc1/kernel"].nonzero) == 60
        assert int(s.total.size) == 160 and int(s.total.nonzero) == 100
        assert float(s.total.density) == pytest.approx(100 / 160)
    table = jaxcomp.sparsity_summary(params).table()
    assert "fc1/kernel" in table and "62.50" in table
    everything = jaxcomp.sparsity_summary(params, predicate=lambda p, x: True)
    assert int(everything.total.size) == 174


def test_l1_l2_transforms_match_autodiff_of_the_penalties():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    for tx, pen in (
        (jaxcomp.add_l1_regularization(0.3), jaxcomp.l1_penalty),
        (jaxcomp.add_l2_regularization(0.3), jaxcomp.l2_penalty),
    ):
        got = jax.jit(lambda p, tx=tx: tx.update(zeros, tx.init(p), p)[0])(params)
        want = jax.tree.map(lambda g: 0.3 * g, jax.grad(pen)(params))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
        assert (np.asarray(got["fc1"]["bias"]) == 0).all()  # biases untouched by default
    inj = optax.inject_hyperparams(jaxcomp.add_l2_regularization)(strength=0.5)
    u, _ = inj.update(zeros, inj.init(params), params)
    np.testing.assert_allclose(u["fc2"]["kernel"], 0.5 * params["fc2"]["kernel"], rtol=1e-6)
    with pytest.raises(ValueError, match="strength"):
        jaxcomp.add_l1_regularization(-1.0)


def test_prune_lenet300_example_small(mnist_dir, tmp_path, capsys, load_example):
    """The README's example end to end at a small size: exact per-layer targets, exact zeros."""
    mod = load_example("prune_lenet300")
    out = mod.main(
        [
            "--data-dir", str(mnist_dir.parent),
            "--baseline", str(tmp_path / "baseline"),
            "--baseline-epochs", "1",
            "--train-limit", "512",
            "--epochs", "5",
            "--epochs-per-stage", "1",
            "--out", str(tmp_path / "result.json"),
            "--no-progress",
        ]
    )  # fmt: skip
    kept = {r["layer"]: r["kept"] for r in out["layers"]}
    assert kept == {"fc1/kernel": 18816, "fc2/kernel": 2700, "fc3/kernel": 260}
    assert out["exact_zeros"] is True
    assert (tmp_path / "result.json").exists()
    assert "| fc1/kernel | 235,200 | 18,816 | 8.00% | 8% |" in capsys.readouterr().out


def test_mask_gradients_off_still_keeps_exact_zeros():
    tx = jaxcomp.prune(optax.adam(1e-2), 0.5, mask_gradients=False)
    params, state = _run(tx, _params(), 5)
    m = np.asarray(state.masks["fc1"]["kernel"])
    assert (np.asarray(params["fc1"]["kernel"])[~m] == 0).all()
    # the inner moments saw the raw gradients of pruned entries (they are masked by default)
    mu = np.asarray(state.inner_state[0].mu["fc1"]["kernel"])
    assert (mu[~m] != 0).any()
    _, state_default = _run(jaxcomp.prune(optax.adam(1e-2), 0.5), _params(), 5)
    mu_d = np.asarray(state_default.inner_state[0].mu["fc1"]["kernel"])
    m_d = np.asarray(state_default.masks["fc1"]["kernel"])
    assert (mu_d[~m_d] == 0).all()


def test_per_leaf_criteria():
    """A criterion mapping: each layer pruned by its own kernel, one entry per selected leaf."""
    params = _params()
    g = jax.tree.map(jnp.ones_like, params)
    lba = functools.partial(load_balanced_mask, num_pes=4)
    tx = jaxcomp.prune(optax.sgd(0.1), 0.5, {"fc1/kernel": lba, "fc2/kernel": "magnitude"})
    _, s = jax.jit(tx.update)(g, tx.init(params), params)
    per_pe = [int(s.masks["fc1"]["kernel"][:, k::4].sum()) for k in range(4)]
    assert sum(per_pe) == 60 and max(per_pe) - min(per_pe) <= 1
    np.testing.assert_array_equal(s.masks["fc1"]["kernel"], lba(params["fc1"]["kernel"], 0.5))
    np.testing.assert_array_equal(
        s.masks["fc2"]["kernel"], magnitude_mask(params["fc2"]["kernel"], 0.5)
    )
    with pytest.raises(ValueError, match="one entry per selected leaf"):
        jaxcomp.prune(optax.sgd(0.1), 0.5, {"fc1/kernel": lba}).init(params)
    with pytest.raises(ValueError, match=r"criterion\['fc1/kernel'\].*global"):
        jaxcomp.prune(optax.sgd(0.1), 0.5, {"fc1/kernel": "global", "fc2/kernel": "magnitude"})
    with pytest.raises(ValueError, match=r"criterion\['fc2/kernel'\] must be one of"):
        jaxcomp.prune(optax.sgd(0.1), 0.5, {"fc1/kernel": lba, "fc2/kernel": "bogus"})


def test_per_leaf_criteria_with_one_scalar_schedule_check_the_sparsity():
    """A criterion mapping with one scalar schedule: the scalar is a sparsity for the leaves
    pruned by "magnitude", so it must lie in [0, 1] as it does with criterion="magnitude"."""
    lba = functools.partial(load_balanced_mask, num_pes=4)
    for crit in (
        {"fc1/kernel": "threshold", "fc2/kernel": "magnitude"},
        {"fc1/kernel": lba, "fc2/kernel": "magnitude"},
    ):
        with pytest.raises(ValueError, match=r"schedule: a sparsity must lie in \[0, 1\]"):
            jaxcomp.prune(optax.sgd(0.1), 1.5, crit)
    # a quality above 1 stays fine where no leaf reads the schedule as a sparsity
    jaxcomp.prune(optax.sgd(0.1), 1.5, {"fc1/kernel": "threshold", "fc2/kernel": "threshold"})


def test_apply_masks_takes_uint8_and_int_masks_like_bool():
    # jaxpruner keeps its masks as uint8; non-zero = kept
    params = _params()
    bool_masks = jax.tree.map(lambda x: None if x.ndim < 2 else x > 0, params)
    want = jaxcomp.apply_masks(params, bool_masks)
    for dtype in (jnp.uint8, jnp.int32, jnp.int8):
        masks = jax.tree.map(lambda m, d=dtype: m.astype(d), bool_masks)
        for fn in (jaxcomp.apply_masks, jax.jit(jaxcomp.apply_masks)):
            got = fn(params, masks)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_array_equal(a, b)
    floats = jax.tree.map(lambda m: m.astype(jnp.float32), bool_masks)
    with pytest.raises(ValueError, match="masks.*dtype float32; masks must be bool or integer"):
        jaxcomp.apply_masks(params, floats)


def test_sparsity_summary_counts_past_2_31_weights_exactly():
    # 3 leaves of 2**30 entries: int32 sums wrap; eager counts are exact Python ints. NumPy
    # views with zero strides keep the memory small (NumPy leaves are counted by NumPy).
    def view(v):
        return np.lib.stride_tricks.as_strided(np.full(1, v, np.float32), (2**15, 2**15), (0, 0))

    params = {"a": view(1.0), "b": view(-2.0), "c": view(0.0)}
    s = jaxcomp.sparsity_summary(params)
    assert s.total.size == 3 * 2**30 and isinstance(s.total.size, int)
    assert s.total.nonzero == 2 * 2**30 and isinstance(s.total.nonzero, int)
    assert s.total.density == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not fit int32 counts"):
        jax.eval_shape(jaxcomp.sparsity_summary, params)


def test_filter_pruning_masks_the_bias_and_batchnorm_of_each_pruned_channel():
    rng = np.random.default_rng(4)
    params = {
        "conv1": {
            "kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 6)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(6,)), jnp.float32),
        },
        "bn1": {"scale": jnp.ones(6), "bias": jnp.asarray(rng.normal(size=(6,)), jnp.float32)},
        "fc": {"kernel": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32), "bias": jnp.zeros(3)},
    }
    filters = functools.partial(jaxcomp.structured_mask, axis=-1)
    deps = {"conv1/kernel": ["conv1/bias", "bn1/scale", "bn1/bias"]}
    tx = jaxcomp.prune(optax.adam(1e-2), 0.5, filters, include="conv1/*", dependents=deps)
    state = tx.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    step = jax.jit(tx.update)
    for _ in range(3):
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
    pruned = np.all(np.asarray(params["conv1"]["kernel"]) == 0, axis=(0, 1, 2))
    assert pruned.sum() == 3
    for leaf in (params["conv1"]["bias"], params["bn1"]["scale"], params["bn1"]["bias"]):
        np.testing.assert_array_equal(np.asarray(leaf) == 0, pruned)  # exactly the pruned ones
    # without dependents the bias of a pruned filter keeps training: relu(bias) leaks out
    plain = jaxcomp.prune(optax.adam(1e-2), 0.5, filters, include="conv1/*")
    u, _ = plain.update(g, plain.init(params), params)
    assert np.all(np.asarray(u["conv1"]["bias"]) != 0)
    with pytest.raises(ValueError, match=r"dependents\['conv1/kernel'\]: 'fc/bias' has shape"):
        jaxcomp.prune(
            optax.sgd(0.1),
            0.5,
            filters,
            include="conv1/*",
            dependents={"conv1/kernel": ["fc/bias"]},
        ).init(params)
