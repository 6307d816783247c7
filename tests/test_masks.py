"""Mask kernels (jaxcomp.masks): exact counts, oracles, eager == jit, vmap, errors."""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp import masks as P

SPARSITIES = [0.0, 0.1, 0.29, 0.5, 0.57, 0.7, 0.9, 0.95, 1.0]


def _exact_count(s: float, n: int) -> int:
    return math.floor(Fraction(str(s)) * n)


def _np_magnitude(w: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(np.abs(w).reshape(-1), kind="stable")
    keep = np.ones(w.size, bool)
    keep[order[:k]] = False
    return keep.reshape(w.shape)


@pytest.mark.parametrize("n", [1, 7, 100, 784, 30000])
def test_num_pruned_matches_exact_decimal_count(n):
    traced = jax.jit(jax.vmap(lambda s: P.num_pruned(s, n)))(jnp.asarray(SPARSITIES))
    for s, k in zip(SPARSITIES, np.asarray(traced), strict=True):
        assert int(k) == _exact_count(s, n)
        assert int(P.num_pruned(s, n)) == _exact_count(s, n)  # eager Python float


@pytest.mark.parametrize("shape", [(7,), (13, 11), (4, 5, 6)])
def test_magnitude_mask_exact_count_oracle_and_jit(shape):
    w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    jit_mask = jax.jit(P.magnitude_mask)
    for s in SPARSITIES:
        k = _exact_count(s, w.size)
        eager = np.asarray(P.magnitude_mask(w, s))
        jitted = np.asarray(jit_mask(w, s))
        np.testing.assert_array_equal(eager, jitted)
        np.testing.assert_array_equal(eager, _np_magnitude(w, k))
        assert eager.sum() == w.size - k
        assert eager.dtype == np.bool_ and eager.shape == shape


def test_magnitude_mask_ties_broken_by_flat_index():
    w = jnp.asarray([[1.0, -1.0, 1.0], [1.0, 0.5, -1.0]])
    m = np.asarray(jax.jit(P.magnitude_mask)(w, 0.5))  # prune 3: 0.5 then flat 0, 1
    assert m.tolist() == [[False, False, True], [True, False, True]]


def test_magnitude_mask_vmap_over_weights_and_sparsity():
    ws = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6, 5)), jnp.float32)
    ss = jnp.asarray([0.0, 0.3, 0.6, 1.0])
    batched = jax.vmap(P.magnitude_mask)(ws, ss)
    for i in range(4):
        np.testing.assert_array_equal(batched[i], P.magnitude_mask(ws[i], ss[i]))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_sparsity_out_of_range_raises(bad):
    w = jnp.ones((3, 3))
    for fn in (
        lambda: P.magnitude_mask(w, bad),
        lambda: P.structured_mask(w, bad, axis=0),
        lambda: P.block_mask(w, bad, block=(1, 1)),
        lambda: P.load_balanced_mask(w, bad, num_pes=2),
        lambda: P.global_magnitude_masks({"w": w}, bad),
    ):
        with pytest.raises(ValueError, match="sparsity"):
            fn()


def test_global_magnitude_masks_oracle():
    rng = np.random.default_rng(2)
    params = {
        "a": {"kernel": rng.normal(size=(5, 4)).astype(np.float32), "bias": np.ones(4, np.float32)},
        "b": {"kernel": 3 * rng.normal(size=(4, 3)).astype(np.float32)},
    }
    params = jax.tree.map(jnp.asarray, params)
    flat = np.concatenate(
        [np.asarray(params["a"]["kernel"]).ravel(), np.asarray(params["b"]["kernel"]).ravel()]
    )
    for s in SPARSITIES:
        k = _exact_count(s, flat.size)
        want = _np_magnitude(flat, k)
        for fn in (P.global_magnitude_masks, jax.jit(P.global_magnitude_masks)):
            m = fn(params, s)
            assert m["a"]["bias"] is None
            got = np.concatenate(
                [np.asarray(m["a"]["kernel"]).ravel(), np.asarray(m["b"]["kernel"]).ravel()]
            )
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="no leaf selected"):
        P.global_magnitude_masks(params, 0.5, include="nothing")


def test_threshold_mask_oracle_and_recomputation():
    w = np.random.default_rng(3).normal(size=(20, 10)).astype(np.float32)
    for q in [0.0, 0.5, 1.0, 2.0]:
        want = np.abs(w) >= np.float32(q) * np.std(w)
        np.testing.assert_array_equal(P.threshold_mask(w, q), want)
        np.testing.assert_array_equal(jax.jit(P.threshold_mask)(w, q), want)
    # recomputed on the current weights: the std of the already-pruned layer sets the threshold
    w1 = np.where(P.threshold_mask(w, 1.0), w, 0)
    np.testing.assert_array_equal(P.threshold_mask(w1, 1.0), np.abs(w1) >= np.std(w1))
    # exclude_zeros: std over the non-zeros only
    nz = w1[w1 != 0]
    want = np.abs(w1) >= np.std(nz)
    np.testing.assert_array_equal(P.threshold_mask(w1, 1.0, exclude_zeros=True), want)
    with pytest.raises(ValueError, match="quality"):
        P.threshold_mask(w, -1.0)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_structured_rows_columns_filters_channels(norm):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(8, 6)).astype(np.float32)
    conv = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    nf = (
        (lambda x, ax: np.abs(x).sum(ax))
        if norm == "l1"
        else (lambda x, ax: np.sqrt((x * x).sum(ax)))
    )
    cases = [(w, 0, (1,)), (w, 1, (0,)), (conv, -1, (0, 1, 2)), (conv, -2, (0, 1, 3))]
    for x, axis, other in cases:
        for s in [0.0, 0.25, 0.5, 1.0]:
            m = np.asarray(
                jax.jit(P.structured_mask, static_argnames=("axis", "norm"))(
                    x, s, axis=axis, norm=norm
                )
            )
            score = nf(x, other)
            keep = _np_magnitude(score, _exact_count(s, score.size))
            shape = [1] * x.ndim
            shape[axis] = x.shape[axis]
            np.testing.assert_array_equal(m, np.broadcast_to(keep.reshape(shape), x.shape))
    with pytest.raises(ValueError, match="norm"):
        P.structured_mask(w, 0.5, axis=0, norm="l3")
    with pytest.raises(ValueError, match="axis"):
        P.structured_mask(w, 0.5, axis=2)


def test_block_mask_oracle_and_errors():
    w = np.random.default_rng(5).normal(size=(6, 8)).astype(np.float32)
    for s in [0.0, 0.5, 0.75, 1.0]:
        m = np.asarray(jax.jit(P.block_mask, static_argnames=("block", "norm"))(w, s, block=(2, 4)))
        score = np.sqrt((w.reshape(3, 2, 2, 4) ** 2).sum((1, 3)))
        keep = _np_magnitude(score, _exact_count(s, score.size))
        np.testing.assert_array_equal(m, np.kron(keep, np.ones((2, 4), bool)).astype(bool))
    with pytest.raises(ValueError, match="block"):
        P.block_mask(w, 0.5, block=(2,))


def test_block_mask_pads_edge_blocks_that_do_not_divide_the_shape():
    # (6, 8) in (4, 3) blocks: a 2 x 3 grid whose last row and column are smaller blocks, ranked
    # by the root mean square of their real entries (jaxpruner pads them and averages)
    w = np.random.default_rng(7).normal(size=(6, 8)).astype(np.float32)
    padded = np.zeros((8, 9), np.float32)
    padded[:6, :8] = w
    for s in [0.0, 0.3, 0.5, 1.0]:
        m = np.asarray(jax.jit(P.block_mask, static_argnames=("block", "norm"))(w, s, block=(4, 3)))
        counts = np.outer([4, 2], [3, 3, 2])  # real entries per block
        score = np.sqrt((padded.reshape(2, 4, 3, 3) ** 2).sum((1, 3)) / counts)
        keep = _np_magnitude(score, _exact_count(s, score.size))
        np.testing.assert_array_equal(m, np.kron(keep, np.ones((4, 3), bool))[:6, :8])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_nm_mask_keeps_n_largest_per_group(axis):
    w = np.random.default_rng(6).normal(size=(8, 12)).astype(np.float32)
    n, m = 2, 4
    mask = np.asarray(
        jax.jit(P.nm_mask, static_argnames=("n", "m", "axis"))(w, n=n, m=m, axis=axis)
    )
    np.testing.assert_array_equal(mask, P.nm_mask(w, n=n, m=m, axis=axis))
    wm = np.moveaxis(w, axis, -1)
    mm = np.moveaxis(mask, axis, -1)
    g = wm.reshape(wm.shape[:-1] + (-1, m))
    gm = mm.reshape(g.shape)
    assert (gm.sum(-1) == n).all()
    # every kept entry is at least as large as every pruned one in its group
    kept_min = np.where(gm, np.abs(g), np.inf).min(-1)
    pruned_max = np.where(gm, -np.inf, np.abs(g)).max(-1)
    assert (kept_min >= pruned_max).all()


def test_nm_mask_errors():
    w = jnp.ones((4, 6))
    with pytest.raises(ValueError, match="n <= m"):
        P.nm_mask(w, n=5, m=4)
    with pytest.raises(ValueError, match="does not divide"):
        P.nm_mask(w, n=2, m=4, axis=-1)
    with pytest.raises(TypeError, match="m must be a Python int"):
        P.nm_mask(w, n=1, m=2.0)


@pytest.mark.parametrize(
    ("rows", "cols", "pes"), [(12, 7, 4), (10, 7, 3), (300, 50, 64), (5, 3, 8)]
)
def test_load_balanced_mask_equal_per_pe(rows, cols, pes):
    rng = np.random.default_rng(rows)
    kernel = rng.normal(size=(cols, rows)).astype(np.float32)  # Flax (in, out): rows = outputs
    lba = jax.jit(P.load_balanced_mask, static_argnames=("num_pes", "row_axis"))
    for s in [0.0, 0.3, 0.5, 0.9, 1.0]:
        m = np.asarray(lba(kernel, s, num_pes=pes))
        assert m.sum() == kernel.size - _exact_count(s, kernel.size)
        per_pe = np.array([m[:, k::pes].sum() for k in range(pes)])
        cap = np.array([m[:, k::pes].size for k in range(pes)])
        full = per_pe == cap  # groups capped at their size (fewer rows) are exempt
        if (~full).any():
            assert per_pe[~full].max() - per_pe[~full].min() <= 1
            assert per_pe[~full].min() >= per_pe.max() - 1 or full.any()
        if rows % pes == 0:
            assert per_pe.max() - per_pe.min() <= 1
        # EIE (m, n) layout with row_axis=0 gives the transposed mask
        np.testing.assert_array_equal(
            np.asarray(P.load_balanced_mask(kernel.T, s, num_pes=pes, row_axis=0)), m.T
        )


def test_load_balanced_mask_within_group_is_magnitude_and_one_pe_is_global():
    w = np.random.default_rng(7).normal(size=(9, 8)).astype(np.float32)
    np.testing.assert_array_equal(
        P.load_balanced_mask(w, 0.6, num_pes=1, row_axis=0), P.magnitude_mask(w, 0.6)
    )
    m = np.asarray(P.load_balanced_mask(w, 0.6, num_pes=2, row_axis=0))
    for k in range(2):
        g, gm = np.abs(w[k::2]), m[k::2]
        assert g[gm].min() >= g[~gm].max()
    with pytest.raises(ValueError, match="num_pes"):
        P.load_balanced_mask(w, 0.5, num_pes=0)
    with pytest.raises(ValueError, match="row_axis"):
        P.load_balanced_mask(w, 0.5, num_pes=2, row_axis=3)


def test_load_balanced_vmap_over_sparsity():
    w = jnp.asarray(np.random.default_rng(8).normal(size=(16, 12)), jnp.float32)
    ss = jnp.asarray([0.1, 0.5, 0.8])
    b = jax.vmap(lambda s: P.load_balanced_mask(w, s, num_pes=4))(ss)
    for i in range(3):
        np.testing.assert_array_equal(b[i], P.load_balanced_mask(w, ss[i], num_pes=4))


def test_adjusted_dropout():
    assert float(P.adjusted_dropout(0.5, 25, 100)) == pytest.approx(0.25)
    got = jax.jit(jax.vmap(P.adjusted_dropout))(
        jnp.asarray([0.5, 0.2]), jnp.asarray([9.0, 100.0]), jnp.asarray([100.0, 100.0])
    )
    np.testing.assert_allclose(got, [0.15, 0.2], rtol=1e-6)
    with pytest.raises(ValueError, match="rate"):
        P.adjusted_dropout(1.0, 1, 2)
    with pytest.raises(ValueError, match="original"):
        P.adjusted_dropout(0.5, 1, 0)


KERNELS = {
    "magnitude": lambda w, s: P.magnitude_mask(w, s),
    "threshold": lambda w, s: P.threshold_mask(w, 2.0 * s),
    "rows-l1": lambda w, s: P.structured_mask(w, s, axis=0, norm="l1"),
    "cols-l2": lambda w, s: P.structured_mask(w, s, axis=1),
    "block": lambda w, s: P.block_mask(w, s, block=(2, 3)),
    "lba": lambda w, s: P.load_balanced_mask(w, s, num_pes=3),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_eager_equals_jit_and_vmaps_over_sparsity(name):
    fn = KERNELS[name]
    w = jnp.asarray(np.random.default_rng(9).normal(size=(8, 9)), jnp.float32)
    ss = jnp.asarray([0.0, 0.2, 0.55, 0.9])
    batched = jax.jit(jax.vmap(fn, in_axes=(None, 0)))(w, ss)
    jitted = jax.jit(fn)
    for i, s in enumerate([0.0, 0.2, 0.55, 0.9]):
        eager = np.asarray(fn(w, s))
        np.testing.assert_array_equal(eager, jitted(w, s))
        np.testing.assert_array_equal(eager, batched[i])


def test_load_balanced_mask_with_more_pes_than_rows_is_one_row_per_pe():
    # EIE's 64 PEs on a 10-output layer: each row in a PE of its own. The work is bounded by
    # the layer (num_pes=10**6 used to allocate 10**6 groups), the mask that of num_pes = rows.
    w = jnp.asarray(np.random.default_rng(9).normal(size=(8, 12)), jnp.float32)
    want = np.asarray(P.load_balanced_mask(w, 0.5, num_pes=12))
    for pes in (13, 64, 10**6):
        np.testing.assert_array_equal(np.asarray(P.load_balanced_mask(w, 0.5, num_pes=pes)), want)
