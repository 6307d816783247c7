"""The typed spine: EIEStatic (hashable), EIEParams (validated pytree leaves), Counters (the one
home of the derived figures), under jit and vmap."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model.types import Counters, EIEParams, EIEStatic


def test_defaults_are_eie():
    p, s = EIEParams(), EIEStatic()
    assert (int(p.n_pes), int(p.fifo_depth), int(p.index_bits), int(p.sram_width)) == (64, 8, 4, 64)
    assert int(p.acc_regs) == 64  # EIE's accumulators per PE; 0 is the one spelling of unlimited
    assert (s.code_bits, s.ptr_bits, s.bcast_latency, s.write_latency) == (4, 16, 2, 5)
    assert (s.spmat_bytes, s.act_regs) == (128 * 1024, 64)  # EIE's 128 KB SpMat, 64 registers
    assert int(p.entries_per_line(s)) == 8
    assert p.batch_shape == ()
    assert hash(s) == hash(EIEStatic()) and s == EIEStatic()


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        (dict(n_pes=0), ValueError, "n_pes"),
        (dict(n_pes=True), TypeError, "n_pes"),
        (dict(index_bits=0), ValueError, "index_bits"),
        (dict(fifo_depth=0), ValueError, "fifo_depth"),
        (dict(fifo_depth=2.5), ValueError, "fifo_depth"),
        (dict(act_bits=12), ValueError, "act_bits"),
        (dict(weight_bits=4), ValueError, "weight_bits"),
        (dict(clock_hz=0.0), ValueError, "clock_hz"),
        (dict(clock_hz=float("nan")), ValueError, "clock_hz"),
        (dict(acc_regs=-1), ValueError, "acc_regs"),
        (dict(fifo_depth="8"), TypeError, "fifo_depth"),
        (dict(fifo_depth=np.array([2, 4]), sram_width=np.array([8, 16, 32])), ValueError, "batch"),
    ],
)
def test_bad_params_raise_clear_errors(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        EIEParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        (dict(max_pes=0), ValueError, "max_pes"),
        (dict(max_pes=2.0), TypeError, "max_pes"),
        (dict(code_bits=17), ValueError, "code_bits"),
        (dict(write_latency=0), ValueError, "write_latency"),
    ],
)
def test_bad_static_raise_clear_errors(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        EIEStatic(**kwargs)


def test_check_against_static():
    with pytest.raises(ValueError, match="max_fifo"):
        EIEParams(fifo_depth=9).check(EIEStatic(max_fifo=8))
    with pytest.raises(ValueError, match="max_pes"):
        EIEParams(n_pes=[1, 65]).check(EIEStatic())
    with pytest.raises(ValueError, match="sram_width"):
        EIEParams(sram_width=4).check(EIEStatic())
    assert EIEStatic.covering(EIEParams(n_pes=[3, 9], fifo_depth=5)) == EIEStatic(9, 5)


def test_params_are_leaves_static_is_hashable():
    p = EIEParams(n_pes=16, fifo_depth=4)
    assert len(jax.tree.leaves(p)) == len(EIEParams.names())
    assert jax.tree.structure(p) == jax.tree.structure(p.replace(n_pes=32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        EIEStatic().max_pes = 3


def test_jit_and_vmap_over_params():
    static = EIEStatic()

    def f(p):
        return p.fifo_depth * p.entries_per_line(static) + p.n_pes

    batch = EIEParams.stack([EIEParams(fifo_depth=d, sram_width=w) for d, w in [(1, 8), (4, 64)]])
    assert batch.batch_shape == (2,)
    out = jax.jit(jax.vmap(f))(batch)
    for i in range(2):
        assert int(out[i]) == int(jax.jit(f)(batch[i])) == int(f(batch[i]))
    traced = jax.jit(lambda p: p.replace(sram_width=p.sram_width * 2).sram_width)(EIEParams())
    assert int(traced) == 128 and isinstance(traced, jax.Array)


def test_counters_derived_figures_numpy_and_jit():
    p = EIEParams(n_pes=np.array([2, 4]))
    c = Counters(
        EIEStatic(max_pes=4),
        p,
        cycles=np.array([10, 0]),
        useful_macs=np.array([8, 0]),
        fillers=np.array([2, 0]),
        pointer_reads=np.array([6, 0]),
        spm_line_reads=np.array([3, 0]),
        stall_cycles=np.array([1, 0]),
        starvation_cycles=np.array([0, 0]),
        busy=np.array([[6, 4, 0, 0], [0, 0, 0, 0]]),
    )
    assert c.mac_efficiency.tolist() == [0.4, 0.0]
    assert c.load_efficiency.tolist() == [0.5, 0.0]
    assert c.load_balance.tolist() == [10 / 12, 1.0]
    assert c.broadcasts.tolist() == [3, 0]
    assert c.latency_us.tolist() == [10 / 800e6 * 1e6, 0.0]
    t = c.table()
    assert t["mac_efficiency"].tolist() == [0.4, 0.0] and "energy_j" in t
    j = jax.jit(lambda c: (c.mac_efficiency, c.energy.energy_j))(c)
    np.testing.assert_allclose(np.asarray(j[0]), [0.4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(j[1]), t["energy_j"], rtol=1e-6)
    one = c[0]
    assert one.batch_shape == () and int(one.params.n_pes) == 2
    assert jnp.asarray(one.busy).shape == (4,)


@pytest.mark.parametrize("module", ["types", "format", "reference", "energy", "layers", "cli"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"eie_model.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
