"""Weight-sharing kernels (jaxcomp.quantize): oracles are a float64 NumPy brute-force Lloyd and
autodiff of ``codebook[codes]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcomp
from jaxcomp import quantize as q

INITS = ["linear", "density", "random", "kmeans++"]
N = 1500  # most tests share one size / bits / iters: each new configuration compiles


def _layer(seed, n=2000, prune=0.5, offset=0.0, scale=0.05):
    rng = np.random.default_rng(seed)
    w = (offset + scale * rng.standard_normal(n)).astype(np.float32)
    if prune:
        w[np.abs(w - offset) < np.quantile(np.abs(w - offset), prune)] = 0.0
    return w


def _brute_assign(x, c):
    """Nearest of centroids ``c`` (float64), ties to the lowest value."""
    order = np.argsort(c, kind="stable")
    cs = c[order]
    d = np.abs(x[:, None].astype(np.float64) - cs[None, :].astype(np.float64))
    return order[np.argmin(d, axis=1)]


def _brute_lloyd(x, c, iters):
    """Plain O(n K) Lloyd in float64; empty clusters relocated as scikit-learn does."""
    x = np.sort(x.astype(np.float64))
    c = np.sort(c.astype(np.float64))
    k = c.size
    for _ in range(iters):
        a = _brute_assign(x, c)
        cnt = np.bincount(a, minlength=k).astype(float)
        tot = np.bincount(a, weights=x, minlength=k)
        empty = np.flatnonzero(cnt == 0)
        new = c.copy()
        if empty.size and x.size > k:
            far = np.argsort(-np.abs(x - c[a]), kind="stable")[: empty.size]
            for j, i in zip(empty, far, strict=True):
                tot[a[i]] -= x[i]
                cnt[a[i]] -= 1
                new[j] = x[i]
        full = cnt > 0
        new[full] = tot[full] / cnt[full]
        c = np.sort(new)
    return c


def _fit(w, bits, init, **kw):
    return q.kmeans_fit(w, bits, init=init, key=jax.random.key(3), **kw)


# ------------------------------------------------------------------ straight-through gradient


def test_centroid_grads_equal_autodiff_of_codebook_gather():
    rng = np.random.default_rng(0)
    k = 16
    codes = jnp.asarray(rng.integers(0, k, size=(30, 20)), jnp.uint8)
    cb = jnp.asarray(rng.standard_normal(k), jnp.float32)
    x = jnp.asarray(rng.standard_normal((8, 30)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((8, 20)), jnp.float32)

    def loss_w(w):
        return jnp.mean(jnp.square(jnp.tanh(x @ w) - y))

    def loss_cb(cb):
        return loss_w(cb[codes.astype(jnp.int32)])

    g_cb = jax.grad(loss_cb)(cb)
    g_w = jax.grad(loss_w)(q.shared_weight(cb, codes))
    for f in (q.centroid_grads, jax.jit(q.centroid_grads, static_argnums=2)):
        got = f(g_w, codes, k)
        np.testing.assert_allclose(got, g_cb, rtol=1e-5, atol=1e-7)
    # shared_weight's own autodiff is the same straight-through gradient.
    g_sw = jax.grad(lambda cb: loss_w(q.shared_weight(cb, codes)))(cb)
    np.testing.assert_allclose(g_sw, g_cb, rtol=1e-5, atol=1e-7)
    # and it is a per-code sum of the weight gradient (Deep Compression eq. 3), code 0 included
    gw = np.asarray(g_w, np.float64)
    cn = np.asarray(codes)
    np.testing.assert_allclose(got, [gw[cn == j].sum() for j in range(k)], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.int32])
def test_centroid_grads_code_dtypes_drop_out_of_range_and_vmap(dtype):
    # The scatter indexes with the codes' own dtype; sums equal a float64 per-code oracle and
    # codes outside 0 .. k-1 (negative or too large) are dropped, as segment_sum drops them.
    rng = np.random.default_rng(1)
    k = 8
    lo = -3 if np.issubdtype(dtype, np.signedinteger) else 0
    codes = rng.integers(lo, k + 3, size=(2, 13, 7)).astype(dtype)
    grads = rng.standard_normal((2, 13, 7)).astype(np.float32)
    want = np.stack(
        [[grads[b][codes[b] == j].astype(np.float64).sum() for j in range(k)] for b in range(2)]
    )
    f = jax.jit(q.centroid_grads, static_argnums=2)
    for b in range(2):
        np.testing.assert_allclose(f(grads[b], codes[b], k), want[b], rtol=1e-5, atol=1e-6)
    batched = jax.vmap(lambda g, c: q.centroid_grads(g, c, k))(grads, codes)
    for b in range(2):
        np.testing.assert_array_equal(batched[b], q.centroid_grads(grads[b], codes[b], k))
    # no weights: all-zero sums; a scalar weight: its own gradient
    np.testing.assert_array_equal(q.centroid_grads(np.zeros((0, 3)), np.zeros((0, 3), dtype), k), 0)
    np.testing.assert_array_equal(
        q.centroid_grads(np.float32(2.5), dtype(3), k), [0, 0, 0, 2.5, 0, 0, 0, 0]
    )


def test_centroid_grads_shape_mismatch():
    with pytest.raises(ValueError, match="codes shape"):
        q.centroid_grads(jnp.ones(3), jnp.ones(4, jnp.uint8), 4)


# ------------------------------------------------------------------ k-means oracles


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_bruteforce_lloyd(init, seed):
    w = _layer(seed, n=N)
    cb0, _ = _fit(w, 4, init, iters=0)
    cb, codes = _fit(w, 4, init, iters=8)
    assert cb[0] == 0.0
    kept = w != 0
    ref = _brute_lloyd(w[kept], np.asarray(cb0[1:]), 8)
    np.testing.assert_allclose(cb[1:], ref, rtol=1e-5, atol=1e-6)
    # codes: 0 exactly where pruned, else the nearest centroid (by a float64 brute force)
    codes = np.asarray(codes)
    assert np.array_equal(codes == 0, ~kept)
    np.testing.assert_array_equal(codes[kept], 1 + _brute_assign(w[kept], np.asarray(cb[1:])))
    assert np.all(np.diff(np.asarray(cb[1:])) >= 0)
    # linear init on a pruned (bimodal) layer starts with empty clusters; relocation fills them
    assert np.all(np.bincount(codes[kept], minlength=16)[1:] > 0)


@pytest.mark.parametrize("init", INITS)
def test_inertia_never_increases(init):
    w = _layer(5, n=N, prune=0.3)
    cb, codes, info = _fit(w, 4, init, iters=8, return_info=True)
    hist = np.asarray(info.inertia)[: int(info.n_iter) + 1]
    assert int(info.n_iter) >= 1
    assert np.all(np.isfinite(hist))
    assert np.all(np.diff(hist) <= 1e-6 * hist[:-1]), hist
    np.testing.assert_allclose(hist[-1], q.kmeans_inertia(w, cb, codes), rtol=1e-5)
    # the history starts at the inertia of the initial centroids
    cb0, codes0 = _fit(w, 4, init, iters=0)
    np.testing.assert_allclose(hist[0], q.kmeans_inertia(w, cb0, codes0), rtol=1e-5)


def test_no_prefix_sum_drift_on_many_large_weights():
    # 300k weights around 100: a float32 prefix sum would drift by ~ulp(3e7) = 2 over the array,
    # ~1e-4 in a cluster mean; the compensated sums must match float64 to ~ulp(100) = 7.6e-6.
    rng = np.random.default_rng(7)
    w = (100.0 + rng.standard_normal(300_000)).astype(np.float32)
    cb0, _ = q.kmeans_fit(w, 4, iters=0)
    cb, _ = q.kmeans_fit(w, 4, iters=1)
    x = np.sort(w.astype(np.float64))
    cf = np.asarray(cb0[1:])
    mids = (np.float32(0.5) * cf[:-1] + np.float32(0.5) * cf[1:]).astype(np.float64)
    edges = np.concatenate([[0], np.searchsorted(x, mids, side="right"), [x.size]])
    want = [x[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    np.testing.assert_allclose(cb[1:], want, rtol=0, atol=2 * np.spacing(np.float32(100.0)))


def test_tol_stops_early_and_zero_tol_reaches_fixed_point():
    w = _layer(2, n=N)
    kept = w[w != 0]
    cb, _, info = q.kmeans_fit(w, 4, iters=200, tol=0.0, return_info=True)
    assert int(info.n_iter) < 200  # converged: the last iteration moved nothing
    # a fixed point: one more brute-force Lloyd step leaves it where it is
    np.testing.assert_allclose(_brute_lloyd(kept, np.asarray(cb[1:]), 1), cb[1:], rtol=1e-6)
    _, _, info_loose = q.kmeans_fit(w, 4, iters=200, tol=0.05, return_info=True)
    assert 1 <= int(info_loose.n_iter) < int(info.n_iter)


def test_inits_place_centroids_as_documented():
    w = _layer(4, n=N)
    x = np.sort(w[w != 0])
    k = 15
    cb, _ = q.kmeans_fit(w, 4, init="linear", iters=0)
    np.testing.assert_allclose(cb[1:], np.linspace(x[0], x[-1], k), rtol=1e-6, atol=1e-7)
    cb, _ = q.kmeans_fit(w, 4, init="density", iters=0)
    np.testing.assert_array_equal(
        cb[1:], x[np.floor((np.arange(k) + 0.5) / k * x.size).astype(int)]
    )
    for init in ("random", "kmeans++"):
        cb, _ = _fit(w, 4, init, iters=0)
        assert np.all(np.isin(np.asarray(cb[1:]), x)), init  # centroids are sampled weights
        assert len(set(np.asarray(cb[1:]).tolist())) == k
        cb2, _ = q.kmeans_fit(w, 4, init=init, iters=0, key=jax.random.key(4))
        assert not np.array_equal(cb, cb2)  # the key matters


def test_one_bit_is_the_mean_of_kept_weights():
    w = _layer(9, n=500)
    cb, codes = q.kmeans_fit(w, 1)
    assert cb.shape == (2,) and codes.dtype == jnp.uint8
    np.testing.assert_allclose(cb[1], w[w != 0].astype(np.float64).mean(), rtol=0, atol=1e-7)
    assert np.array_equal(np.asarray(codes), (w != 0).astype(np.uint8))


@pytest.mark.parametrize(("bits", "dtype"), [(8, jnp.uint8), (9, jnp.uint16)])
def test_shapes_and_code_dtypes(bits, dtype):
    w = _layer(1, n=1200).reshape(30, 40)
    cb, codes = q.kmeans_fit(w, bits, iters=1)
    assert cb.shape == (2**bits,) and cb.dtype == jnp.float32
    assert codes.shape == w.shape and codes.dtype == dtype
    assert q.codes_dtype(bits) == dtype


def test_mask_argument_decides_what_is_pruned():
    w = _layer(3, n=N, prune=0.0)
    mask = np.arange(N) % 3 != 0
    w[5] = 0.0  # a kept weight that happens to be 0 is still clustered
    mask[5] = True
    cb, codes = q.kmeans_fit(w, 4, mask=mask, iters=8)
    codes = np.asarray(codes)
    assert np.array_equal(codes == 0, ~mask)
    cb0, _ = q.kmeans_fit(w, 4, mask=mask, iters=0)
    want = _brute_lloyd(w[mask], np.asarray(cb0[1:]), 8)
    np.testing.assert_allclose(cb[1:], want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ documented edge cases


def test_fewer_distinct_values_than_clusters_is_lossless():
    w = np.array([0.0, 0.5, -1.0, 0.5, 2.0, 0.0, -1.0], np.float32)
    for init in ("linear",):
        cb, codes, info = _fit(w, 3, init, return_info=True)
        np.testing.assert_array_equal(cb, [0.0, -1.0, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0])
        np.testing.assert_array_equal(np.asarray(cb)[np.asarray(codes)], w)
        assert int(info.n_iter) == 0
    # fewer weights than clusters, under jit too
    cb, codes = jax.jit(lambda w: q.kmeans_fit(w, 4))(jnp.array([0.25, 0.0, -3.0]))
    np.testing.assert_array_equal(cb[:3], [0.0, -3.0, 0.25])
    np.testing.assert_array_equal(codes, [2, 0, 1])


def test_all_zero_layer():
    for f in (q.kmeans_fit, jax.jit(q.kmeans_fit, static_argnums=1)):
        cb, codes = f(jnp.zeros((4, 5)), 4)
        assert np.all(np.asarray(cb) == 0) and np.all(np.asarray(codes) == 0)
    cb, codes = q.uniform_fit(jnp.zeros(6), 2)
    assert np.all(np.asarray(cb) == 0) and np.all(np.asarray(codes) == 0)


@pytest.mark.parametrize("bad", [0, 17, -1])
def test_bits_out_of_range(bad):
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        q.kmeans_fit(jnp.ones(4), bad)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        q.uniform_fit(jnp.ones(4), bad)


@pytest.mark.parametrize("bad", [2.0, True, "4", None])
def test_bits_wrong_type(bad):
    with pytest.raises(TypeError, match="bits must be a Python int"):
        q.kmeans_fit(jnp.ones(4), bad)


_JIT_FIT3 = jax.jit(lambda w: q.kmeans_fit(w, 3))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(value):
    w = _layer(0, n=50)
    w[7] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        q.kmeans_fit(w, 3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        q.uniform_fit(w, 3)
    # under jit values are unknown at trace time: the codebook is poisoned with NaN instead
    cb, _ = _JIT_FIT3(w)
    assert cb[0] == 0.0 and np.all(np.isnan(np.asarray(cb[1:])))
    # a non-finite weight outside the mask is ignored
    mask = np.ones(50, bool)
    mask[7] = False
    cb, codes = q.kmeans_fit(w, 3, mask=mask)
    assert np.all(np.isfinite(np.asarray(cb))) and codes[7] == 0


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="init must be one of"):
        q.kmeans_fit(jnp.ones(4), 2, init="kmeans")
    with pytest.raises(ValueError, match="needs key="):
        q.kmeans_fit(jnp.ones(4), 2, init="random")
    with pytest.raises(ValueError, match="iters must be"):
        q.kmeans_fit(jnp.ones(4), 2, iters=-1)
    with pytest.raises(TypeError, match="floating-point"):
        q.kmeans_fit(jnp.ones(4, jnp.int32), 2)
    with pytest.raises(ValueError, match="mask shape"):
        q.kmeans_fit(jnp.ones(4), 2, mask=jnp.ones(3, bool))
    with pytest.raises(TypeError, match="mask must be a bool"):
        q.kmeans_fit(jnp.ones(4), 2, mask=jnp.ones(4))
    with pytest.raises(ValueError, match="codebook must be 1-D"):
        q.nearest_codes(jnp.ones(4), jnp.ones(3))


# ------------------------------------------------------------------ jit / vmap / sort paths


@pytest.mark.parametrize("init", ["linear", "random"])
def test_eager_equals_jit(init):
    w = _layer(11, n=N)

    def f(w, tol):
        return q.kmeans_fit(w, 4, init=init, iters=8, tol=tol, key=jax.random.key(1))

    eager = f(w, 0.0)
    jitted = jax.jit(f)(w, 0.0)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_array_equal(a, b)
    for fn in (q.uniform_fit, q.nearest_codes):
        arg = 3 if fn is q.uniform_fit else eager[0]
        e = fn(w, arg)
        j = jax.jit(fn, static_argnums=1 if fn is q.uniform_fit else ())(w, arg)
        for a, b in zip(jax.tree.leaves(e), jax.tree.leaves(j), strict=True):
            np.testing.assert_array_equal(a, b)


def test_vmap_over_layers():
    ws = np.stack([_layer(s, n=700) for s in range(3)])
    tols = jnp.array([0.0, 0.0, 0.01])

    def f(w, tol):
        return q.kmeans_fit(w, 3, iters=15, tol=tol)

    batched = jax.vmap(f)(ws, tols)
    for i in range(3):
        cb, codes = f(ws[i], tols[i])
        # batched reductions may round differently: equal to float32 rounding, same codes
        np.testing.assert_allclose(batched[0][i], cb, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(batched[1][i], codes)
    bu = jax.vmap(lambda w: q.uniform_fit(w, 3))(ws)
    for i in range(3):
        cb, codes = q.uniform_fit(ws[i], 3)
        np.testing.assert_allclose(bu[0][i], cb, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(bu[1][i], codes)


def test_xla_sort_path_equals_numpy_sort_path(monkeypatch):
    w = _layer(12, n=N, prune=0.2)
    w[:10] = -w[:10]  # negative and positive keys, some -0.0 handled as pruned zeros
    want = q.kmeans_fit(w, 4, iters=8)
    monkeypatch.setenv("JAXCOMP_XLA_SORT", "1")
    got = q.kmeans_fit(w, 4, iters=8)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ uniform baseline, helpers


def test_uniform_fit_is_an_even_grid_with_nearest_codes():
    w = _layer(6, n=N)
    cb, codes = q.uniform_fit(w, 4)
    kept = w != 0
    x = w[kept]
    np.testing.assert_allclose(cb[1:], np.linspace(x.min(), x.max(), 15), rtol=1e-6, atol=1e-7)
    codes = np.asarray(codes)
    assert np.array_equal(codes == 0, ~kept)
    np.testing.assert_array_equal(codes[kept], 1 + _brute_assign(x, np.asarray(cb[1:])))
    # k-means beats the uniform grid on a bell-shaped layer (the thesis' point)
    cbk, codesk = q.kmeans_fit(w, 4, iters=8)
    assert q.kmeans_inertia(w, cbk, codesk) < q.kmeans_inertia(w, cb, codes)


def test_nearest_codes_with_unsorted_codebook():
    cb = jnp.array([0.0, 1.0, -1.0, 0.1])
    w = jnp.array([0.0, 0.9, -3.0, 0.2, 0.05])
    np.testing.assert_array_equal(q.nearest_codes(w, cb), [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(
        q.nearest_codes(w, cb, mask=jnp.array([True, True, False, True, True])), [3, 1, 0, 3, 3]
    )


def test_plot_codebook_writes_png(tmp_path):
    w = _layer(0, n=N)
    cb, codes = q.kmeans_fit(w, 4, iters=8)
    path = tmp_path / "fig.png"
    fig = q.plot_codebook(w, cb, cb + 0.01, title="fc1", path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 200_000
    assert len(fig.axes[0].lines) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_exported():
    for name in q.__all__:
        if name != "INITS":
            assert getattr(jaxcomp, name) is getattr(q, name)


def test_shared_weight_refuses_codes_outside_the_codebook():
    cb = jnp.array([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="codes hold 7, outside 0 .. 3"):
        q.shared_weight(cb, jnp.array([1, 7], jnp.uint8))
    with pytest.raises(ValueError, match="codes hold -1"):
        q.shared_weight(cb, jnp.array([-1, 2], jnp.int32))
    with pytest.raises(TypeError, match="codes must be an integer array"):
        q.shared_weight(cb, jnp.array([1.0]))
    # under jit no exception can be raised: an out-of-range code gives NaN, never codebook[-1]
    out = jax.jit(q.shared_weight)(cb, jnp.array([1, 7], jnp.uint8))
    assert float(out[0]) == 1.0 and bool(jnp.isnan(out[1]))
