"""jaxpruner's mask-calculator tests (google-research/jaxpruner, mask_calculator_test.py), ported.

The scores and expected masks are jaxpruner's. Where jaxcomp's documented conventions differ
(docs/guides/conventions-vs-jaxpruner.md: ``floor(s * n)`` pruned instead of ``round((1 - s) *
n)`` kept, the lower index pruned first among ties), the test states the difference and checks
jaxcomp's rule on the same data; everything else must match jaxpruner exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp import masks as M

SCORE_1 = [
    [[0.69, 0.37, 0.96, 0.81], [0.79, 0.55, 0.88, 0.53], [0.66, 0.88, 0.4, 0.83],
     [0.13, 0.8, 0.91, 0.96]],
    [[0.34, 0.17, 0.07, 0.74], [0.13, 0.13, 0.83, 0.76], [0.13, 0.92, 0.25, 0.75],
     [0.37, 0.42, 0.65, 0.46]],
]  # fmt: skip
MASK_N2_M4_1 = [
    [[0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]],
    [[1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1]],
]
MASK_N2_M4_AXIS1_1 = [
    [[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 1], [0, 1, 1, 1]],
    [[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 0]],
]
SCORE_2 = [1.0] * 8
SCORE_4 = [1, 0.5, 0.3, 0.2, 1, 1.5, 1.8, 2.0, 1, 1]
BLOCK_SCORES = [
    [0.69, 0.37, 0.96, 0.81, 0.79, 0.55, 0.88, 0.53],
    [0.66, 0.88, 0.4, 0.83, 0.13, 0.8, 0.91, 0.96],
    [0.34, 0.17, 0.07, 0.74, 0.13, 0.13, 0.83, 0.76],
    [0.13, 0.92, 0.25, 0.75, 0.37, 0.42, 0.65, 0.46],
]
EXPECTED_BLOCK_AVG = [[1] * 8, [1] * 8, [0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]]


def _both(fn, *args, **kw):
    eager = np.asarray(fn(*args, **kw))
    jitted = np.asarray(jax.jit(lambda *a: fn(*a, **kw))(*args))
    np.testing.assert_array_equal(eager, jitted)
    return eager


def test_unstructured_topk_keeps_the_largest_with_jaxcomps_count():
    # jaxpruner keeps round(0.2 * 32) = 6 (its MASK_UNS_1); jaxcomp prunes floor(0.8 * 32) = 25
    # and keeps 7: jaxpruner's six plus the next largest score
    w = jnp.array(SCORE_1)
    mask = _both(M.magnitude_mask, w, 0.8)
    assert mask.sum() == 32 - math.floor(0.8 * 32) == 7
    flat = np.asarray(w).ravel()
    # the 7 largest; among equal scores the higher index is kept (lower pruned first)
    largest = np.lexsort((-np.arange(flat.size), -flat))[:7]
    assert set(np.flatnonzero(mask.ravel())) == set(largest)


def test_ties_prune_the_lower_index_first():
    # all equal, s = 0.5: jaxpruner keeps the first four (MASK_UNS_2 = 1,1,1,1,0,0,0,0);
    # jaxcomp prunes the lower indices first and keeps the last four
    np.testing.assert_array_equal(
        _both(M.magnitude_mask, jnp.array(SCORE_2), 0.5), [0] * 4 + [1] * 4
    )
    # SCORE_4: four scores tie at 1; jaxpruner keeps indices 0 and 4 (MASK_UNS_4), jaxcomp 8 and 9
    np.testing.assert_array_equal(
        _both(M.magnitude_mask, jnp.array(SCORE_4), 0.5), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    )


@pytest.mark.parametrize(
    ("axis", "expected"), [(-1, MASK_N2_M4_1), (1, MASK_N2_M4_AXIS1_1)], ids=["last", "axis1"]
)
def test_n_by_m_matches_jaxpruner(axis, expected):
    np.testing.assert_array_equal(
        _both(M.nm_mask, jnp.array(SCORE_1), n=2, m=4, axis=axis), np.array(expected, bool)
    )


def test_n_by_m_refuses_n_above_m():
    with pytest.raises(ValueError):
        M.nm_mask(jnp.arange(1.0, 9.0), n=4, m=2)


def test_block_2d_with_an_edge_block_matches_jaxpruners_average_pooling():
    # (4, 8) in (2, 3) blocks: the last column of blocks is 2 wide; 6 blocks, one pruned
    mask = _both(M.block_mask, jnp.array(BLOCK_SCORES), 0.2, block=(2, 3), norm="l1")
    np.testing.assert_array_equal(mask, np.array(EXPECTED_BLOCK_AVG, bool))


def test_block_1d_with_an_edge_block_matches_jaxpruners_average_pooling():
    # 8 scores in blocks of 3 (the last one 2 long). jaxpruner keeps round(0.8 * 3) = 2 blocks;
    # jaxcomp prunes floor(s * 3) blocks, so s = 1/3 prunes the same one block
    mask = _both(M.block_mask, jnp.array(BLOCK_SCORES[0]), 1 / 3, block=(3,), norm="l1")
    np.testing.assert_array_equal(mask, np.array([0, 0, 0, 1, 1, 1, 1, 1], bool))


def test_block_3d_pools_whole_trailing_axes_like_jaxpruner():
    # jaxpruner's 3-D case: (2, 2) blocks over the first two axes, the third pooled whole. Its
    # s = 0.2 keeps round(3.2) = 3 of 4 blocks; jaxcomp's floor(0.2 * 4) = 0 prunes none, so
    # s = 0.25 (one block in both) is the same request
    scores = jnp.array(BLOCK_SCORES).reshape(4, 4, 2)
    assert not np.any(~np.asarray(M.block_mask(scores, 0.2, block=(2, 2, 2))))
    mask = _both(M.block_mask, scores, 0.25, block=(2, 2, 2), norm="l1")
    expected = np.ones((4, 4, 2), bool)
    expected[2:, :2] = False  # jaxpruner's expected_mask_avg of its 3-D case
    np.testing.assert_array_equal(mask, expected)
