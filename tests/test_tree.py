"""Leaf selection and mask-pytree helpers (jaxcomp.tree)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp import tree


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(6, 5, rngs=rngs)
        self.fc2 = nnx.Linear(5, 3, rngs=rngs)


def _forms():
    """The same params as an NNX State, its pure dict and a Linen-style dict."""
    state = nnx.state(_MLP(nnx.Rngs(0)), nnx.Param)
    pure = nnx.to_pure_dict(state)
    linen = {"params": {"Dense_0": pure["fc1"], "Dense_1": pure["fc2"]}}
    return state, pure, linen


def test_default_selection_is_kernels_on_every_form():
    state, pure, linen = _forms()
    assert tree.selected_paths(state) == ["fc1/kernel", "fc2/kernel"]
    assert tree.selected_paths(pure) == ["fc1/kernel", "fc2/kernel"]
    assert tree.selected_paths(linen) == ["params/Dense_0/kernel", "params/Dense_1/kernel"]


def test_include_exclude_glob_regex_predicate():
    _, pure, _ = _forms()
    assert tree.selected_paths(pure, include="fc2/*") == ["fc2/kernel"]
    assert tree.selected_paths(pure, include=re.compile(r"^fc1/")) == ["fc1/kernel"]
    assert tree.selected_paths(pure, exclude=["fc1/*"]) == ["fc2/kernel"]
    everything = tree.selected_paths(pure, predicate=lambda p, x: True)
    assert everything == ["fc1/bias", "fc1/kernel", "fc2/bias", "fc2/kernel"]
    only_bias = tree.selected_paths(pure, predicate=lambda p, x: x.ndim == 1, include="*/bias")
    assert only_bias == ["fc1/bias", "fc2/bias"]
    # a tuple / list pytree
    assert tree.selected_paths((jnp.ones((2, 2)), [jnp.ones(3), jnp.ones((1, 1))])) == ["0", "1/1"]


def test_bad_patterns_raise_naming_the_argument():
    _, pure, _ = _forms()
    with pytest.raises(TypeError, match="include"):
        tree.selected_paths(pure, include=3)
    with pytest.raises(TypeError, match="exclude"):
        tree.selected_paths(pure, exclude=[re.compile("a"), 1.5])
    with pytest.raises(TypeError, match="predicate"):
        tree.selected_paths(pure, predicate="ndim")


def test_selection_tree_and_full_masks():
    _, pure, _ = _forms()
    sel = tree.selection_tree(pure)
    assert sel == {"fc1": {"bias": False, "kernel": True}, "fc2": {"bias": False, "kernel": True}}
    masks = tree.full_masks(pure)
    assert masks["fc1"]["bias"] is None
    assert masks["fc1"]["kernel"].dtype == jnp.bool_
    assert masks["fc1"]["kernel"].shape == (6, 5) and bool(masks["fc1"]["kernel"].all())
    assert len(tree.mask_leaves(masks)) == 2
    tree.check_masks(pure, masks)


def test_masks_on_nnx_state_pure_dict_and_linen_agree():
    state, pure, linen = _forms()

    def mk(path, x):
        return None if x.ndim < 2 else jnp.abs(x) > 0.3

    m_state = tree.map_with_path_str(mk, state)
    m_pure = tree.map_with_path_str(mk, pure)
    m_linen = tree.map_with_path_str(mk, linen)
    got_state = [(p, np.asarray(m)) for p, m in tree.leaves_with_paths(m_state)]
    got_pure = [(p, np.asarray(m)) for p, m in tree.leaves_with_paths(m_pure)]
    got_linen = [np.asarray(m) for _, m in tree.leaves_with_paths(m_linen)]
    assert [p for p, _ in got_state] == [p for p, _ in got_pure] == ["fc1/kernel", "fc2/kernel"]
    for (_, a), (_, b), c in zip(got_state, got_pure, got_linen, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    tree.check_masks(state, m_state)
    tree.check_masks(linen, m_linen)
    # applying them gives the same values on every form
    f = jax.jit(lambda p, m: tree.tree_map_masked(lambda x, k: jnp.where(k, x, 0.0), p, m))
    out_state = nnx.to_pure_dict(f(state, m_state))
    out_pure = f(pure, m_pure)
    jax.tree.map(np.testing.assert_array_equal, out_state, out_pure)
    np.testing.assert_array_equal(out_pure["fc1"]["bias"], pure["fc1"]["bias"])


def test_tree_map_masked_jit_equals_eager():
    _, pure, _ = _forms()
    masks = tree.map_with_path_str(lambda p, x: None if x.ndim < 2 else x > 0, pure)

    def fn(p, m):
        return tree.tree_map_masked(lambda x, k: jnp.where(k, x, 0.0), p, m)

    jax.tree.map(np.testing.assert_array_equal, fn(pure, masks), jax.jit(fn)(pure, masks))


def test_check_masks_errors_name_the_problem():
    _, pure, _ = _forms()
    masks = tree.full_masks(pure)
    bad_shape = {**masks, "fc2": {"bias": None, "kernel": jnp.ones((3, 5), bool)}}
    with pytest.raises(ValueError, match="fc2/kernel.*shape"):
        tree.check_masks(pure, bad_shape)
    bad_dtype = {**masks, "fc2": {"bias": None, "kernel": jnp.ones((5, 3), jnp.float32)}}
    with pytest.raises(ValueError, match="bool"):
        tree.check_masks(pure, bad_dtype)
    with pytest.raises(ValueError, match=r"does not match params leaf by leaf.*'fc2/kernel'"):
        tree.check_masks(pure, {"fc1": masks["fc1"]})
