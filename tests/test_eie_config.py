"""EIEConfig: validation, static/array split, pytree behaviour under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model.config import ARRAY_FIELDS, STATIC_FIELDS, EIEConfig, stack_configs


def test_defaults_are_eie():
    c = EIEConfig()
    assert (c.n_pes, c.index_bits, c.code_bits, c.ptr_bits) == (64, 4, 4, 16)
    assert int(c.fifo_depth) == 8 and c.max_fifo_depth == 8
    assert c.entry_bits == 8 and c.filler_run == 16
    assert int(c.entries_per_line()) == 8
    assert c.batch_shape == ()
    assert c.acc_regs is None


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        (dict(n_pes=0), ValueError, "n_pes"),
        (dict(n_pes=2.0), TypeError, "n_pes"),
        (dict(n_pes=True), TypeError, "n_pes"),
        (dict(index_bits=0), ValueError, "index_bits"),
        (dict(code_bits=17), ValueError, "code_bits"),
        (dict(fifo_depth=0), ValueError, "fifo_depth"),
        (dict(fifo_depth=9, max_fifo_depth=8), ValueError, "max_fifo_depth"),
        (dict(fifo_depth=2.5), ValueError, "fifo_depth"),
        (dict(sram_width=4), ValueError, "sram_width"),
        (dict(act_bits=12), ValueError, "act_bits"),
        (dict(weight_bits=4), ValueError, "weight_bits"),
        (dict(clock_hz=0.0), ValueError, "clock_hz"),
        (dict(clock_hz=float("nan")), ValueError, "clock_hz"),
        (dict(acc_regs=0), ValueError, "acc_regs"),
        (dict(fifo_depth="8"), TypeError, "fifo_depth"),
        (
            dict(fifo_depth=np.array([2, 4]), sram_width=np.array([8, 16, 32])),
            ValueError,
            "broadcast",
        ),
    ],
)
def test_bad_configs_raise_clear_errors(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        EIEConfig(**kwargs)


def test_replace_revalidates_and_recomputes_bound():
    c = EIEConfig(fifo_depth=4)
    assert c.replace(fifo_depth=16).max_fifo_depth == 16
    with pytest.raises(ValueError, match="sram_width"):
        c.replace(sram_width=2)


def test_tree_split_static_vs_array():
    c = EIEConfig(n_pes=16, fifo_depth=4)
    leaves, treedef = jax.tree.flatten(c)
    assert len(leaves) == len(ARRAY_FIELDS)
    # static fields in the treedef: different n_pes -> different treedef
    assert treedef != jax.tree.structure(c.replace(n_pes=32))
    assert treedef == jax.tree.structure(c.replace(fifo_depth=2, max_fifo_depth=4))
    assert set(c.static()) == set(STATIC_FIELDS)


def test_jit_and_vmap_over_configs():
    def f(cfg):
        return cfg.fifo_depth * cfg.entries_per_line() + cfg.n_pes

    batch = stack_configs(
        [EIEConfig(fifo_depth=d, sram_width=w) for d, w in [(1, 8), (4, 64), (8, 128)]]
    )
    assert batch.batch_shape == (3,) and batch.max_fifo_depth == 8
    out = jax.jit(jax.vmap(f))(batch)
    for i in range(3):
        single = jax.tree.map(lambda x, i=i: x[i], batch)
        assert int(out[i]) == int(jax.jit(f)(single)) == int(f(single))


def test_stack_rejects_mixed_static():
    with pytest.raises(ValueError, match="n_pes"):
        stack_configs([EIEConfig(n_pes=4), EIEConfig(n_pes=8)])
    with pytest.raises(ValueError, match="non-empty"):
        stack_configs([])
    with pytest.raises(TypeError, match="EIEConfig"):
        stack_configs([1])


def test_traced_fields_are_not_validated():
    c = EIEConfig(fifo_depth=4)
    out = jax.jit(lambda cfg: cfg.replace(sram_width=cfg.sram_width * 2).sram_width)(c)
    assert int(out) == 128
    assert isinstance(jnp.asarray(out), jax.Array)


@pytest.mark.parametrize(
    "module", ["config", "format", "functional", "reference", "energy", "layers"]
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"eie_model.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
