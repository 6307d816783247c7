"""The weight-sharing optax factory (jaxcomp.share_weights): invariants after every step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp
from jaxcomp import quantize as q
from jaxcomp.sharing import ShareState, share_weights, shared_params


def _params(seed=0, prune=0.5):
    rng = np.random.default_rng(seed)
    p = {
        "fc1": {"kernel": rng.standard_normal((12, 16)) * 0.3, "bias": np.zeros(16)},
        "fc2": {"kernel": rng.standard_normal((16, 4)) * 0.3, "bias": np.zeros(4)},
    }
    p = jax.tree.map(lambda a: np.asarray(a, np.float32), p)
    for layer in ("fc1", "fc2"):
        k = p[layer]["kernel"]
        k[np.abs(k) < np.quantile(np.abs(k), prune)] = 0.0
    return jax.tree.map(jnp.asarray, p)


_rng = np.random.default_rng(1)
X = jnp.asarray(_rng.standard_normal((32, 12)), jnp.float32)
Y = jnp.asarray(_rng.standard_normal((32, 4)), jnp.float32)


def _loss(p):
    h = jnp.tanh(X @ p["fc1"]["kernel"] + p["fc1"]["bias"][None, :])
    return jnp.mean(jnp.square(h @ p["fc2"]["kernel"] + p["fc2"]["bias"][None, :] - Y))


def _step_fn(tx):
    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(_loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return step


def _share_state(state):
    """The ShareState inside a (possibly chained) optimizer state."""
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ShareState)):
        if isinstance(s, ShareState):
            return s
    raise AssertionError("no ShareState")


def _assert_on_centroids(params, state, zeros0):
    s = _share_state(state)
    for layer in ("fc1", "fc2"):
        w = np.asarray(params[layer]["kernel"])
        cb = np.asarray(s.codebooks[layer]["kernel"])
        codes = np.asarray(s.codes[layer]["kernel"])
        assert cb[0] == 0.0
        np.testing.assert_array_equal(w, cb[codes])  # exactly on a centroid
        assert np.array_equal(codes == 0, zeros0[layer])  # pruned: code 0 ...
        assert np.all(w[zeros0[layer]] == 0.0)  # ... and exactly zero


OPTIMIZERS = {
    "sgd": lambda: optax.sgd(1e-2),
    "momentum": lambda: optax.sgd(1e-2, momentum=0.9),
    "adamw": lambda: optax.adamw(1e-3, weight_decay=1e-2),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_weights_stay_exactly_on_centroids_with_any_optimizer(name):
    params = _params()
    zeros0 = {k: np.asarray(params[k]["kernel"]) == 0 for k in ("fc1", "fc2")}
    tx = share_weights(OPTIMIZERS[name](), bits=3)
    state = tx.init(params)
    params = shared_params(params, state)  # bit-exact start
    codes0 = jax.tree.map(np.asarray, state.codes)
    cb0 = jax.tree.map(np.asarray, state.codebooks)
    step = _step_fn(tx)
    losses = []
    for _ in range(15):
        params, state, loss = step(params, state)
        losses.append(float(loss))
        _assert_on_centroids(params, state, zeros0)
    # codes never change without reassignment; centroids and biases do train
    for a, b in zip(jax.tree.leaves(codes0), jax.tree.leaves(state.codes), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(cb0["fc1"]["kernel"], state.codebooks["fc1"]["kernel"])
    assert np.any(np.asarray(params["fc1"]["bias"]) != 0)
    assert losses[-1] < losses[0]
    assert int(state.count) == 15


def test_first_update_snaps_dense_weights_onto_centroids():
    params = _params()
    tx = share_weights(optax.sgd(1e-2), bits=3)
    state = tx.init(params)
    new, state, _ = _step_fn(tx)(params, state)
    s = state
    for layer in ("fc1", "fc2"):
        p0 = np.asarray(params[layer]["kernel"])
        w = np.asarray(new[layer]["kernel"])
        t = np.asarray(s.codebooks[layer]["kernel"])[np.asarray(s.codes[layer]["kernel"])]
        # documented: exact where t/2 <= p <= 2t (Sterbenz), else one rounding of the update
        sterbenz = (np.abs(p0 - t) <= np.abs(t) / 2) & (np.sign(p0) == np.sign(t))
        np.testing.assert_array_equal(w[sterbenz], t[sterbenz])
        assert np.all(np.abs(w - t) <= np.spacing(np.abs(p0 - t).astype(np.float32)))
        assert np.all(w[p0 == 0] == 0.0)


def test_sgd_step_is_deep_compression_eq3():
    params = _params()
    lr = 0.05
    tx = share_weights(optax.sgd(lr), bits=2)
    state = tx.init(params)
    params = shared_params(params, state)
    grads = jax.grad(_loss)(params)
    _, new_state = tx.update(grads, state, params)
    for layer in ("fc1", "fc2"):
        cb = state.codebooks[layer]["kernel"]
        codes = state.codes[layer]["kernel"]
        g = q.centroid_grads(grads[layer]["kernel"], codes, cb.shape[0])
        want = np.array(cb - lr * g)
        want[0] = 0.0
        np.testing.assert_allclose(new_state.codebooks[layer]["kernel"], want, rtol=1e-6)
        # and the gradient used is autodiff through codebook[codes] (straight-through)
        g_auto = jax.grad(
            lambda c, layer=layer, codes=codes: _loss(_replace(params, layer, c[codes]))
        )(cb)
        np.testing.assert_allclose(g[1:], g_auto[1:], rtol=1e-5, atol=1e-7)


def _replace(params, layer, kernel):
    out = jax.tree.map(lambda a: a, params)
    out[layer] = dict(out[layer], kernel=kernel)
    return out


def test_per_layer_bits_by_mapping_and_predicate():
    params = _params()
    s = share_weights(optax.sgd(0.1), bits={"fc1/kernel": 3, "fc2/kernel": 5}).init(params)
    assert s.codebooks["fc1"]["kernel"].shape == (8,)
    assert s.codebooks["fc2"]["kernel"].shape == (32,)
    assert s.codebooks["fc1"]["bias"] is None and s.codes["fc2"]["bias"] is None
    s = share_weights(
        optax.sgd(0.1), bits=lambda path, x: 2 if path.startswith("fc1") and x.ndim == 2 else None
    ).init(params)
    assert s.codebooks["fc1"]["kernel"].shape == (4,)
    assert s.codebooks["fc2"]["kernel"] is None
    assert s.codes["fc1"]["kernel"].dtype == jnp.uint8
    s = share_weights(optax.sgd(0.1), bits=9).init(params)
    assert s.codes["fc2"]["kernel"].dtype == jnp.uint16


def test_bad_arguments():
    params = _params()
    with pytest.raises(ValueError, match=r"names leaves \['fc3/kernel'\]"):
        share_weights(optax.sgd(0.1), bits={"fc3/kernel": 4}).init(params)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        share_weights(optax.sgd(0.1), bits=0)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        share_weights(optax.sgd(0.1), bits=lambda p, x: 17).init(params)
    with pytest.raises(ValueError, match="selects no leaf"):
        share_weights(optax.sgd(0.1), bits={}).init(params)
    with pytest.raises(ValueError, match="init must be one of"):
        share_weights(optax.sgd(0.1), init="kmeans")
    with pytest.raises(ValueError, match="reassign_every must be >= 0"):
        share_weights(optax.sgd(0.1), reassign_every=-1)
    with pytest.raises(TypeError, match="bits must be an int"):
        share_weights(optax.sgd(0.1), bits=4.0)
    tx = share_weights(optax.sgd(0.1), bits=2)
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, state)
    with pytest.raises(TypeError, match="ShareState"):
        shared_params(params, (state,))


def _fixed_prune(masks):
    """A minimal pruning transform (the real one lives in the pruning issue): pruned -> -param."""

    def init_fn(params):
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        return jax.tree.map(lambda u, p, m: jnp.where(m, u, -p), updates, params, masks), state

    return optax.GradientTransformation(init_fn, update_fn)


@pytest.mark.parametrize("order", ["prune_first", "share_first"])
def test_composes_with_pruning_in_chain(order):
    params = _params(prune=0.0)
    # prune a further 40 % of each kernel at fine-tuning time: those weights are non-zero now
    masks = jax.tree.map(lambda a: jnp.abs(a) >= jnp.quantile(jnp.abs(a), 0.4), params)
    masks = {k: dict(v, bias=jnp.ones_like(v["bias"], bool)) for k, v in masks.items()}
    params = jax.tree.map(lambda p, m: jnp.where(m, p, 0.0), params, masks)
    zeros0 = {k: ~np.asarray(masks[k]["kernel"]) for k in ("fc1", "fc2")}
    share = share_weights(optax.adam(1e-3), bits=4)
    prune = _fixed_prune(masks)
    tx = optax.chain(prune, share) if order == "prune_first" else optax.chain(share, prune)
    state = tx.init(params)
    params = shared_params(params, _share_state(state))
    step = _step_fn(tx)
    for _ in range(5):
        params, state, _ = step(params, state)
        _assert_on_centroids(params, state, zeros0)


def test_reassign_every_moves_codes_and_stays_on_centroids():
    params = _params()
    zeros0 = {k: np.asarray(params[k]["kernel"]) == 0 for k in ("fc1", "fc2")}
    tx = share_weights(optax.sgd(0.5), bits=2, reassign_every=2)
    state = tx.init(params)
    params = shared_params(params, state)
    codes0 = np.asarray(state.codes["fc1"]["kernel"])
    step = _step_fn(tx)
    changed_at = []
    for i in range(1, 9):
        prev = np.asarray(state.codes["fc1"]["kernel"])
        params, state, _ = step(params, state)
        now = np.asarray(state.codes["fc1"]["kernel"])
        if not np.array_equal(prev, now):
            changed_at.append(i)
        s = state
        for layer in ("fc1", "fc2"):
            w = np.asarray(params[layer]["kernel"])
            cb = np.asarray(s.codebooks[layer]["kernel"])
            codes = np.asarray(s.codes[layer]["kernel"])
            assert np.array_equal(codes == 0, zeros0[layer])
            # the codes are the nearest centroids of the latent weights right after a reassignment
            if i % 2 == 0:
                lt = s.latent[layer]["kernel"]
                np.testing.assert_array_equal(codes, q.nearest_codes(lt, cb, mask=codes != 0))
            np.testing.assert_allclose(w, cb[codes], rtol=0, atol=1e-6)
    assert changed_at and all(i % 2 == 0 for i in changed_at)
    assert not np.array_equal(codes0, np.asarray(state.codes["fc1"]["kernel"]))


def test_frozen_codebooks_and_uniform_init():
    params = _params()
    tx = share_weights(optax.sgd(0.1), bits=3, init="uniform", train_centroids=False)
    state = tx.init(params)
    cb0 = np.asarray(state.codebooks["fc1"]["kernel"])
    k = np.asarray(params["fc1"]["kernel"])
    kept = k[k != 0]
    np.testing.assert_allclose(cb0[1:], np.linspace(kept.min(), kept.max(), 7), rtol=1e-6)
    params, state, _ = _step_fn(tx)(params, state)
    np.testing.assert_array_equal(state.codebooks["fc1"]["kernel"], cb0)
    np.testing.assert_array_equal(
        params["fc1"]["kernel"], cb0[np.asarray(state.codes["fc1"]["kernel"])]
    )
    assert np.any(np.asarray(params["fc1"]["bias"]) != 0)  # the rest still trains


def test_jitted_step_traces_once_and_init_is_jittable():
    params = _params()
    tx = share_weights(optax.adam(1e-3), bits=3, init="kmeans++", seed=3)
    state = tx.init(params)
    state_j = jax.jit(tx.init)(params)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_j), strict=True):
        np.testing.assert_array_equal(a, b)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        grads = jax.grad(_loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)


def test_nnx_lenet_paths():
    from flax import nnx

    model = jaxcomp.zoo.LeNet300100(rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx = share_weights(optax.sgd(0.1), bits={"fc1/kernel": 2, "fc3/kernel": 2})
    state = tx.init(params)
    assert state.codes["fc1"]["kernel"].shape == (784, 300)
    assert state.codebooks["fc2"]["kernel"] is None


def test_exported():
    assert jaxcomp.share_weights is share_weights
    assert jaxcomp.ShareState is ShareState
    assert jaxcomp.shared_params is shared_params


def test_composes_with_the_pruning_wrapper():
    from jaxcomp import schedules
    from jaxcomp.pruning import prune

    params = _params(prune=0.5)
    zeros0 = {k: np.asarray(params[k]["kernel"]) == 0 for k in ("fc1", "fc2")}
    tx = prune(share_weights(optax.adamw(1e-3, weight_decay=1e-2), bits=3), schedules.constant(0.5))
    state = tx.init(params)
    params = shared_params(params, _share_state(state))
    step = _step_fn(tx)
    for _ in range(5):
        params, state, _ = step(params, state)
        _assert_on_centroids(params, state, zeros0)
        for k in ("fc1", "fc2"):  # the pruning masks agree with the codes
            assert np.array_equal(~np.asarray(state.masks[k]["kernel"]), zeros0[k])


def _edge_floats():
    # float32 values at and next to powers of two, both signs, many binades: where
    # ``old + ((old + step) - old)`` can miss ``old + step`` (e.g. a centroid near 0 whose step
    # crosses a binade), so the new centroid must be chosen with care.
    u = np.float32(2.0**-23)
    m = [1, 1 + u, 1 + 2 * u, 2 - u, 2 - 2 * u, 1.5, 1.5 + u, 1.5 - u, 1.25, 1 + 2**-12]
    mants = np.array(m, np.float32)
    vals = (mants[:, None] * np.exp2(np.arange(-40, 9, dtype=np.float32))[None, :]).ravel()
    vals = np.concatenate([vals, -vals, [np.float32(0.0)]]).astype(np.float32)
    return np.repeat(vals, len(vals)), np.tile(vals, len(vals))


def test_landing_centroids_make_on_centroid_updates_exact():
    from jaxcomp.sharing import _landing_centroids

    old, step = _edge_floats()
    target = old + step
    assert np.any(old + (target - old) != target)  # the case the choice of centroid is for
    for f in (_landing_centroids, jax.jit(_landing_centroids)):
        new = np.asarray(f(jnp.asarray(old), jnp.asarray(target)))
        np.testing.assert_array_equal(old + (new - old), new)  # lands bit for bit
        # next to the inner optimizer's target: within an ulp of it, except that a centroid
        # other than entry 0 never lands on 0.0 (that means "pruned"): it keeps its old value
        near = np.abs(new - target) <= np.spacing(np.abs(target))
        assert np.all(near | (new == old))
        assert np.all((new != 0)[1:] | (old == 0)[1:])
    nan = _landing_centroids(jnp.array([1.0, 2.0]), jnp.array([np.nan, 3.0]))
    assert np.isnan(nan[0]) and nan[1] == 3.0  # divergence stays visible


def test_on_centroid_weights_land_exactly_on_edge_case_centroids():
    # weights on centroids near 0 that SGD moves across powers of two: after apply_updates
    # every weight is still bit-exactly codebook[codes]
    old, step = _edge_floats()
    target = old + step
    hard = (old != 0) & (old + (target - old) != target)  # target itself would be missed
    old, step = old[hard], step[hard]
    assert len(old) > 20
    k = 4
    codes = jnp.asarray(np.tile(np.arange(1, k, dtype=np.uint8), 3)[None, :].repeat(2, 0))
    tx = share_weights(optax.sgd(1.0), bits=2)
    params = {"w": jnp.ones(codes.shape, jnp.float32)}
    state = tx.init(params)
    for i in range(0, len(old) - k, max(1, len(old) // 20)):
        cb = jnp.asarray(np.concatenate([[0.0], old[i : i + k - 1]]), jnp.float32)
        st = state._replace(codebooks={"w": cb}, codes={"w": codes})
        p = {"w": cb[codes]}
        g = jnp.zeros(codes.shape).at[0, : k - 1].set(-step[i : i + k - 1])  # one per code
        updates, new = tx.update({"w": g}, st, p)
        w = optax.apply_updates(p, updates)["w"]
        np.testing.assert_array_equal(w, new.codebooks["w"][codes])


@pytest.mark.parametrize("init", ["linear", "density"])
def test_init_compiles_kmeans_once_per_bits_and_fits_each_leaf_as_alone(init, monkeypatch):
    from jaxcomp.sharing import _bucketed_kmeans

    rng = np.random.default_rng(3)
    shapes = [(3, 3, 1, 8), (3, 3, 8, 16), (200, 64), (64, 10), (17, 3)]
    leaves = [jnp.asarray(rng.normal(size=s) * (rng.random(s) > 0.3), jnp.float32) for s in shapes]
    params = {f"l{i}": w for i, w in enumerate(leaves)}
    traces = []
    real = q._kmeans_jit

    def counting(*args):
        traces.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(q, "_kmeans_jit", counting)
    state = share_weights(optax.sgd(0.1), bits=3, init=init).init(params)
    assert len(traces) == 1  # five shapes, one bits value: one k-means program
    monkeypatch.undo()
    for i, w in enumerate(leaves):
        cb, cd = q.kmeans_fit(w, 3, init=init)
        np.testing.assert_array_equal(state.codebooks[f"l{i}"], cb)
        np.testing.assert_array_equal(state.codes[f"l{i}"], cd)
    # split by size bucket when one padded batch would be much larger than the leaves
    small = [leaves[0], leaves[1], leaves[3]]
    fits = _bucketed_kmeans([*small, jnp.ones((600, 1000))], [3] * 4, init=init, iters=50, tol=0)
    for i, w in enumerate(small):
        np.testing.assert_array_equal(fits[i][1], q.kmeans_fit(w, 3, init=init)[1])
