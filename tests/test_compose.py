"""Pruning composed with weight sharing and with optax wrappers: exact or refused, never silent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp
from jaxcomp import schedules


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "fc1": {"kernel": jax.random.normal(k1, (32, 64)), "bias": jnp.zeros(64)},
        "fc2": {"kernel": jax.random.normal(k2, (64, 16)), "bias": jnp.zeros(16)},
    }


def _grads(params, i):
    key = jax.random.key(100 + i)
    return jax.tree.map(lambda x: jax.random.normal(key, x.shape, x.dtype), params)


def _train(tx, params, steps, jit=True):
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    for i in range(steps):
        updates, state = update(_grads(params, i), state, params)
        params = optax.apply_updates(params, updates)
    jax.block_until_ready((params, state))
    return params, state


def _assert_codes_match_params(params, share_state):
    """Code 0 exactly where the weight is 0, and codebook[codes] == params bit for bit."""
    rebuilt = jaxcomp.shared_params(params, share_state)
    for layer in ("fc1", "fc2"):
        w = np.asarray(params[layer]["kernel"])
        codes = np.asarray(share_state.codes[layer]["kernel"])
        np.testing.assert_array_equal(codes == 0, w == 0)
        np.testing.assert_array_equal(np.asarray(rebuilt[layer]["kernel"]), w)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_prune_around_share_from_dense_gives_pruned_weights_code_0(jit):
    # 1,024 of 2,048 fc1 weights end exactly 0 after 3 steps: each must carry code 0, and a
    # model rebuilt from the state's codebooks and codes must equal the trained params.
    params = _params()
    tx = jaxcomp.prune(jaxcomp.share_weights(optax.adam(1e-3), bits=3), 0.5)
    params, state = _train(tx, params, 3, jit)
    assert int((params["fc1"]["kernel"] == 0).sum()) == 1024
    _assert_codes_match_params(params, state.inner_state)


def test_prune_around_share_with_a_rising_schedule_codes_follow_each_new_mask():
    params = _params()
    ramp = schedules.polynomial(0.8, begin_step=0, end_step=4)
    tx = jaxcomp.prune(jaxcomp.share_weights(optax.sgd(1e-2), bits=4), ramp)
    update = jax.jit(tx.update)
    state = tx.init(params)
    # start on the centroids: from there every step lands on them bit for bit
    params = jaxcomp.shared_params(params, state.inner_state)
    for i in range(6):
        updates, state = update(_grads(params, i), state, params)
        params = optax.apply_updates(params, updates)
        _assert_codes_match_params(params, state.inner_state)
    assert int((params["fc1"]["kernel"] == 0).sum()) == int(0.8 * 2048)


@pytest.mark.parametrize("order", ["prune_then_share", "share_then_prune"])
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_chain_of_prune_and_share_is_refused_naming_the_right_order(order, jit):
    # optax.chain(prune, share) kept 100 % of the weights; chain(share, prune) left pruned
    # weights with non-zero codes. Both now raise, and say to put prune outside.
    prune = jaxcomp.prune(optax.identity(), 0.5)
    share = jaxcomp.share_weights(optax.adam(1e-3), bits=3)
    tx = optax.chain(prune, share) if order == "prune_then_share" else optax.chain(share, prune)
    with pytest.raises(Exception, match=r"jaxcomp\.prune\(jaxcomp\.share_weights") as info:
        _train(tx, _params(), 3, jit)
    assert isinstance(info.value, (ValueError, jax.errors.JaxRuntimeError))


def test_prune_inside_share_is_refused_at_init():
    for inner in (
        jaxcomp.prune(optax.adam(1e-3), 0.5, predicate=lambda p, x: True),
        jaxcomp.dsd(optax.sgd(0.1), 1, 1, 1, 0.5),
    ):
        tx = jaxcomp.share_weights(inner, bits=3)
        with pytest.raises(ValueError, match=r"jaxcomp\.prune\(jaxcomp\.share_weights"):
            tx.init(_params())


def test_prune_accepts_any_object_with_init_and_update():
    # optax.MultiSteps is a class with init/update, not a GradientTransformation; optax.chain
    # takes it, so do the jaxcomp factories.
    params = _params()
    for tx in (
        jaxcomp.prune(optax.MultiSteps(optax.adam(1e-2), every_k_schedule=4), 0.5),
        jaxcomp.dsd(optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2), 0, 4, 0, 0.5),
        jaxcomp.prune(
            jaxcomp.share_weights(optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2), bits=2),
            0.5,
        ),
    ):
        out, state = _train(tx, params, 4)
        assert int((out["fc1"]["kernel"] == 0).sum()) == 1024
        assert np.any(np.asarray(out["fc1"]["kernel"]) != np.asarray(params["fc1"]["kernel"]))
    _assert_codes_match_params(out, state.inner_state)
    with pytest.raises(TypeError, match="inner must be an optax.GradientTransformation"):
        jaxcomp.prune(object(), 0.5)
    with pytest.raises(TypeError, match="inner must be"):
        jaxcomp.share_weights(42, bits=3)


def test_jaxcomp_prune_is_the_optax_factory():
    tx = jaxcomp.prune(optax.adam(1e-3), 0.5)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert callable(jaxcomp.masks.magnitude_mask)
    assert not hasattr(jaxcomp, "prune_weights")


@pytest.mark.parametrize("factory", ["prune", "share_weights", "dsd"])
def test_integer_params_are_refused_naming_the_leaf(factory):
    params = {"w": jnp.arange(8).reshape(2, 4), "f": jnp.ones((2, 4))}
    tx = {
        "prune": lambda: jaxcomp.prune(optax.sgd(0.1), 0.5),
        "share_weights": lambda: jaxcomp.share_weights(optax.sgd(0.1), bits=2),
        "dsd": lambda: jaxcomp.dsd(optax.sgd(0.1), 1, 1, 1, 0.5),
    }[factory]()
    with pytest.raises(TypeError, match=r"params\['w'\] has dtype int32"):
        tx.init(params)
