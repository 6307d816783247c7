"""Functional model: float32 bit-identity with broadcast-order sums and y_sim; exact fixed point."""

from fractions import Fraction
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eie_model.functional import (
    _mul_round_sat,
    frac_bits_for,
    quantize_fixed,
    spmv_fixed,
    spmv_float,
)


def _layer(rng, m, n, wd=0.4, ad=0.5):
    codes = ((rng.random((m, n)) < wd) * rng.integers(1, 16, (m, n))).astype(np.uint8)
    cb = np.concatenate([[0.0], rng.normal(size=15)]).astype(np.float32)
    act = ((rng.random(n) < ad) * rng.random(n) * 3).astype(np.float32)
    bias = rng.integers(0, 16, m).astype(np.uint8)
    return codes, cb, act, bias


def _ordered_sum(codes, cb, act, bias):
    y = np.zeros(codes.shape[0], np.float32)
    w = cb[codes]
    for j in np.flatnonzero(act):
        y = y + (w[:, j] * act[j]).astype(np.float32)
    return y + cb[bias] if bias is not None else y


def test_float_is_broadcast_order_sum_eager_and_jit():
    rng = np.random.default_rng(0)
    codes, cb, act, bias = _layer(rng, 33, 70)
    want = _ordered_sum(codes, cb, act, bias)
    np.testing.assert_array_equal(np.asarray(spmv_float(codes, cb, act, bias)), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(spmv_float)(codes, cb, act, bias)), want)
    np.testing.assert_allclose(
        np.asarray(spmv_float(codes, cb, act, bias, relu=True)), np.maximum(want, 0)
    )
    np.testing.assert_allclose(
        np.asarray(spmv_float(codes, cb, act)),
        cb[codes].astype(np.float64) @ act,
        rtol=1e-5,
        atol=1e-5,
    )


def test_float_vmap_over_activations():
    rng = np.random.default_rng(1)
    codes, cb, act, bias = _layer(rng, 20, 30)
    acts = np.stack([act, act[::-1], np.zeros_like(act)])
    batched = jax.vmap(lambda a: spmv_float(codes, cb, a, bias))(acts)
    for i in range(3):
        np.testing.assert_array_equal(
            np.asarray(batched[i]), _ordered_sum(codes, cb, acts[i], bias)
        )


def test_float_real_layer_bit_identical(eie_layer_path):
    d = np.load(eie_layer_path)
    y = jax.jit(spmv_float)(d["codes"], d["codebook"], d["act"], d["bias_codes"])
    np.testing.assert_array_equal(np.asarray(y), d["y_sim"])


def _ref_mul(a, b, s, bits):
    v = Fraction(int(a) * int(b)) / Fraction(2) ** int(s)
    q = v.numerator // v.denominator
    rem = v - q
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and q % 2):
        q += 1
    return max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, q))


@settings(max_examples=40, deadline=None)
@given(
    bits=st.sampled_from([8, 16, 32]),
    s=st.integers(-40, 70),
    seed=st.integers(0, 2**31),
)
def test_exact_product_rounding_and_saturation(bits, s, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**31), 2**31, 64)
    b = rng.integers(-(2**31), 2**31, 64)
    a[:16] = rng.integers(-400, 400, 16)
    b[:16] = rng.integers(-400, 400, 16)
    a[0] = b[0] = -(2**31)
    f = jax.jit(_mul_round_sat, static_argnums=3)
    got = np.asarray(f(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32), jnp.int32(s), bits))
    want = [_ref_mul(x, y, s, bits) for x, y in zip(a, b, strict=True)]
    np.testing.assert_array_equal(got, want)


def test_quantize_and_frac_bits():
    assert quantize_fixed([0.5, 1.5, 2.5, -0.5], 8, 0).tolist() == [0, 2, 2, 0]  # half-even
    assert quantize_fixed([1e10, -1e10], 32, 0).tolist() == [2**31 - 1, -(2**31)]
    assert quantize_fixed([300.0], 16, 7).tolist() == [32767]
    assert int(frac_bits_for([0.0], 16)) == 15
    x = np.array([0.9, -5.1], np.float32)
    for bits in (8, 16, 32):
        f = int(frac_bits_for(x, bits))
        q = np.asarray(quantize_fixed(x, bits, f))
        assert np.abs(q).max() < 2 ** (bits - 1)  # fits
        q1 = np.asarray(quantize_fixed(x, bits, f + 1)).astype(np.int64)
        assert np.abs(q1).max() >= 2 ** (bits - 1) - 1  # one more fraction bit saturates


def _fixed_oracle(codes, cb, act, bias, bits, fa, fw, fy, relu=False):
    """Python-int transcription of the documented fixed-point arithmetic."""
    qcb = np.asarray(quantize_fixed(cb, bits, fw)).astype(object)
    qa = np.asarray(quantize_fixed(act, bits, fa)).astype(object)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    acc = [0] * codes.shape[0]
    for j in range(codes.shape[1]):
        if qa[j] == 0:
            continue
        for i in range(codes.shape[0]):
            p = _ref_mul(qcb[codes[i, j]], qa[j], fw + fa - fy, bits)
            acc[i] = max(lo, min(hi, acc[i] + p))
    if bias is not None:
        for i in range(codes.shape[0]):
            acc[i] = max(lo, min(hi, acc[i] + _ref_mul(qcb[bias[i]], 1, fw - fy, bits)))
    if relu:
        acc = [max(0, v) for v in acc]
    return np.array(acc, np.int64)


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_fixed_matches_integer_oracle(bits):
    rng = np.random.default_rng(bits)
    codes, cb, act, bias = _layer(rng, 12, 25, ad=0.7)
    for fa, fw, fy in ((None, None, None), (bits - 4, bits - 2, bits - 5), (2, bits - 1, 0)):
        f = jax.jit(
            partial(
                spmv_fixed,
                act_bits=bits,
                weight_bits=bits,
                relu=True,
                act_frac=fa,
                weight_frac=fw,
                out_frac=fy,
            )
        )
        r = f(codes, cb, act, bias)
        want = _fixed_oracle(
            codes,
            cb,
            act,
            bias,
            bits,
            int(r.act_frac),
            int(r.weight_frac),
            int(r.out_frac),
            relu=True,
        )
        np.testing.assert_array_equal(np.asarray(r.y_int), want)
        np.testing.assert_array_equal(
            np.asarray(r.y), (want * 2.0 ** -int(r.out_frac)).astype(np.float32)
        )


def test_fixed_precision_improves_with_bits(eie_layer_path):
    d = np.load(eie_layer_path)
    rows = slice(0, 64)  # a slice of the real layer keeps the test fast
    args = (d["codes"][rows], d["codebook"], d["act"], d["bias_codes"][rows])
    errs = []
    for bits in (8, 16, 32):
        r = jax.jit(partial(spmv_fixed, act_bits=bits, weight_bits=bits))(*args)
        errs.append(float(np.abs(np.asarray(r.y) - d["y_sim"][rows]).max()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-4


def test_fixed_vmap():
    rng = np.random.default_rng(7)
    codes, cb, act, bias = _layer(rng, 10, 16)
    acts = np.stack([act, act * 0.5])
    f = partial(spmv_fixed, act_bits=16, weight_bits=16, act_frac=10, weight_frac=12)
    g = jax.jit(lambda a: f(codes, cb, a, bias).y_int)
    batched = jax.jit(jax.vmap(g))(acts)
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(g(acts[i])))


def test_bad_input():
    codes = np.ones((3, 4), np.uint8)
    cb = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="act"):
        spmv_float(codes, cb, np.ones(3))
    with pytest.raises(ValueError, match="bias_codes"):
        spmv_float(codes, cb, np.ones(4), np.ones(4, np.uint8))
    with pytest.raises(TypeError, match="codes"):
        spmv_float(codes.astype(np.float32), cb, np.ones(4))
    with pytest.raises(ValueError, match="act_bits"):
        spmv_fixed(codes, cb, np.ones(4), act_bits=12)
    with pytest.raises(ValueError, match="bits"):
        quantize_fixed([1.0], 4, 0)


@pytest.mark.slow
def test_precision_example_runs(mnist_dir, load_example):
    mod = load_example("eie_precision")
    # "allow": jaxcomp.quantize.kmeans_fit broadcasts (n,) against
    # (k, 1) in _segment_means, which the suite's rank-promotion="raise" rejects.
    with jax.numpy_rank_promotion("allow"):
        r = mod.main(["--quick", "--n-train", "3000", "--n-test", "300", "--json"])
    assert r["n_test"] == 300
    # 32-bit fixed point is as good as float32 within a couple of test images
    assert abs(r["eie_fixed32_error"] - r["eie_float32_error"]) <= 2 / 300
    assert 0 <= r["eie_fixed8_error"] <= 1
