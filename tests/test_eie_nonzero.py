"""Non-zero detection: EIE's LNZD broadcasts every activation with ``a != 0``, so negative
inputs (NeuralTalk's signed activations) are broadcast and counted exactly like positive ones,
and ``-0.0`` is a zero. The fast model (simulate), both sweep engines, the cycle-by-cycle
reference and the functional model agree on that rule."""

from __future__ import annotations

import importlib
from functools import partial

import jax
import numpy as np
import pytest

from eie_model import reference, sim
from eie_model.functional import spmv_fixed, spmv_float
from eie_model.types import _COUNTER_FIELDS, EIEParams, EIEStatic, Layer

sweep = importlib.import_module("eie_model.sweep")

# every counter a run returns (the fresh-fetch line reads are Counters' optional leaf)
COUNTERS = (*_COUNTER_FIELDS, "spm_line_reads_fresh")


def _signed_layer(seed=0, m=40, n=36):
    """Activations: a third negative, a third positive, the rest +0.0 or -0.0."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, n)) < 0.3, rng.integers(1, 16, (m, n)), 0).astype(np.uint8)
    kind = rng.permutation(np.arange(n) % 4)  # 0: -0.0, 1: +0.0, 2: negative, 3: positive
    mag = (rng.random(n) + 0.1).astype(np.float32)
    act = np.select([kind == 0, kind == 1, kind == 2], [np.float32(-0.0), 0.0, -mag], mag)
    act = act.astype(np.float32)
    cb = np.concatenate([[0.0], np.sort(rng.normal(0, 0.5, 15))]).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    return Layer(codes, cb, act, bias), kind


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_negative_activations_are_broadcast_and_counted(engine):
    layer, kind = _signed_layer()
    assert np.signbit(layer.act[kind == 0]).all()  # the -0.0 inputs really are negative zeros
    on = kind >= 2  # what the LNZD must broadcast: a != 0
    g = EIEParams.grid(n_pes=[1, 4, 8], fifo_depth=[1, 4])
    static = EIEStatic.covering(g)
    c = sweep.sweep(static, g, layer, engine=engine)
    # |a| has the same non-zero pattern: every counter equals; ReLU(a) drops the negatives
    mag = Layer(layer.codes, layer.codebook, np.abs(layer.act), layer.bias_codes)
    relu = Layer(layer.codes, layer.codebook, np.maximum(layer.act, 0), layer.bias_codes)
    c_mag = sweep.sweep(static, g, mag, engine=engine)
    nz = layer.codes != 0
    want_macs = int(nz[:, on].sum()) + int(np.count_nonzero(layer.bias_codes))
    for i in range(len(g)):
        ref = reference.simulate(static, g[i], layer)
        fast = sim.simulate(static, g[i], layer)  # jitted inside
        for k in COUNTERS:
            assert int(getattr(c, k)[i]) == int(getattr(ref, k)) == int(getattr(fast, k)), (k, i)
            assert int(getattr(c_mag, k)[i]) == int(getattr(c, k)[i]), (k, i)
        assert int(ref.broadcasts) == int(on.sum()) + 1  # + the bias column
        assert int(c.useful_macs[i]) == want_macs
        assert int(reference.simulate(static, g[i], relu).useful_macs) < want_macs


def test_functional_and_reference_outputs_include_negative_inputs():
    layer, kind = _signed_layer(1)
    w = layer.codebook[layer.codes].astype(np.float64)
    want = w @ layer.act.astype(np.float64) + layer.codebook[layer.bias_codes]
    y = jax.jit(spmv_float)(layer.codes, layer.codebook, layer.act, layer.bias_codes)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    _, y_ref = reference.run(EIEStatic(max_pes=4), EIEParams(n_pes=4, fifo_depth=2), layer)
    np.testing.assert_array_equal(y_ref, np.asarray(y))  # same broadcast order, bit for bit
    fixed = jax.jit(partial(spmv_fixed, act_bits=32, weight_bits=32, act_frac=16, weight_frac=16))
    fx = fixed(layer.codes, layer.codebook, layer.act, layer.bias_codes)
    np.testing.assert_allclose(fx.y, want, rtol=1e-4, atol=1e-4)
    # dropping the negative inputs changes the output: they are not skipped
    pos = np.maximum(layer.act, 0)
    assert not np.allclose(spmv_float(layer.codes, layer.codebook, pos, layer.bias_codes), want)
