"""Relative-index storage: exact round trips, fillers as docs/conventions.md counts them, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcomp.encode import (
    decode_relative,
    encode_relative,
    matrix_shape,
    relative_index_counts,
)


def _reference_entries(codes: np.ndarray, index_bits: int):
    """Slow, obvious per-row encoder: a list of (code, gap) per row."""
    rows, cols = matrix_shape(codes.shape)
    mat = codes.reshape(rows, cols)
    span = 2**index_bits
    out = []
    for r in range(rows):
        row, gap = [], 0
        for c in range(cols):
            v = int(mat[r, c])
            if v == 0:
                gap += 1
                continue
            while gap >= span:
                row.append((0, span - 1))
                gap -= span
            row.append((v, gap))
            gap = 0
        out.append(row)  # trailing zeros cost nothing
    return out


def _random_codes(rng, shape, density, bits):
    dtype = np.uint8 if bits <= 8 else np.uint16
    vals = rng.integers(1, 2**bits, size=shape)
    return np.where(rng.random(shape) < density, vals, 0).astype(dtype)


shapes = st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(shapes, st.floats(0.0, 1.0), st.integers(1, 16), st.integers(1, 10), st.integers(0, 999))
def test_round_trip_and_reference(shape, density, bits, index_bits, seed):
    codes = _random_codes(np.random.default_rng(seed), shape, density, bits)
    enc = encode_relative(codes, index_bits=index_bits)
    back = decode_relative(enc)
    assert back.shape == codes.shape and back.dtype == codes.dtype
    assert np.array_equal(back, codes)
    ref = _reference_entries(codes, index_bits)
    assert enc.row_lengths.tolist() == [len(r) for r in ref]
    flat = [e for row in ref for e in row]
    assert enc.codes.tolist() == [c for c, _ in flat]
    assert enc.index.tolist() == [g for _, g in flat]
    assert enc.num_nonzero == np.count_nonzero(codes)
    assert enc.index.dtype == (np.uint8 if index_bits <= 8 else np.uint16)


def test_filler_rule_of_the_storage_accounting():
    # a run of g zeros before a non-zero costs g // 2**index_bits fillers; trailing zeros free
    for g in range(0, 40):
        row = np.zeros(g + 1 + 25, np.uint8)
        row[g] = 7
        enc = encode_relative(row, index_bits=4)
        assert enc.num_fillers == g // 16
        assert enc.num_entries == g // 16 + 1
        assert enc.index[-1] == g % 16
    assert encode_relative(np.zeros((3, 100), np.uint8), index_bits=1).num_entries == 0


def test_rows_are_all_but_the_last_axis():
    # a conv kernel (kh, kw, c_in, c_out) is stored as (kh * kw * c_in, c_out), C order
    codes = np.zeros((2, 2, 3, 5), np.uint8)
    codes[1, 0, 2, 4] = 3
    enc = encode_relative(codes, index_bits=4)
    assert matrix_shape(codes.shape) == (12, 5)
    assert enc.row_lengths.tolist() == [0] * 8 + [1] + [0] * 3  # row 1*6 + 0*3 + 2 = 8
    assert enc.index.tolist() == [4]
    assert matrix_shape(()) == (1, 1) and matrix_shape((7,)) == (1, 7)


@pytest.mark.parametrize("index_bits", [1, 3, 5])
def test_counts_jit_eager_and_vmap(index_bits):
    rng = np.random.default_rng(index_bits)
    batch = np.stack([_random_codes(rng, (30, 20), d, 4) for d in (0.02, 0.1, 0.5, 1.0)])
    f = jax.jit(relative_index_counts, static_argnames="index_bits")
    vm = jax.vmap(lambda c: relative_index_counts(c, index_bits=index_bits))(jnp.asarray(batch))
    for i, codes in enumerate(batch):
        enc = encode_relative(codes, index_bits=index_bits)
        eager = relative_index_counts(jnp.asarray(codes), index_bits=index_bits)
        jitted = f(jnp.asarray(codes), index_bits=index_bits)
        for nz, fill in (eager, jitted, (vm[0][i], vm[1][i])):
            assert (int(nz), int(fill)) == (enc.num_nonzero, enc.num_fillers)


def test_decode_rejects_inconsistent_entries():
    codes = np.array([[0, 0, 0, 0, 0, 3, 0, 1], [1, 0, 0, 0, 0, 0, 0, 2]], np.uint8)
    enc = encode_relative(codes, index_bits=2)
    with pytest.raises(ValueError, match="past the end"):
        decode_relative(enc._replace(index=np.full_like(enc.index, 3)))
    with pytest.raises(ValueError, match="row lengths"):
        decode_relative(enc._replace(row_lengths=enc.row_lengths + 1))
    with pytest.raises(ValueError, match="filler"):
        decode_relative(enc._replace(index=np.where(enc.codes == 0, 0, enc.index)))
    with pytest.raises(ValueError, match="0..3"):
        decode_relative(enc._replace(index=enc.index + 4))


def test_bad_inputs():
    with pytest.raises(TypeError, match="integer"):
        encode_relative(np.ones(3, np.float32), index_bits=4)
    with pytest.raises(ValueError, match="index_bits"):
        encode_relative(np.ones(3, np.uint8), index_bits=0)
    with pytest.raises(ValueError, match="index_bits"):
        relative_index_counts(jnp.ones(3), index_bits=17)
    with pytest.raises(ValueError, match="non-negative"):
        encode_relative(np.array([-1, 2]), index_bits=4)


def test_matrix_shape_is_exact_for_huge_shapes():
    assert matrix_shape((2**40, 2**40, 5)) == (2**80, 5)
    assert matrix_shape((2**64, 3)) == (2**64, 3)
    assert matrix_shape(np.array([7, 2**33, 2])) == (7 * 2**33, 2)
    with pytest.raises(ValueError, match="negative"):
        matrix_shape((3, -1))
    with pytest.raises(TypeError, match="sequence of ints"):
        matrix_shape((2.5, 3))
    # still usable on static shapes under jit
    f = jax.jit(lambda c: relative_index_counts(c, index_bits=2))
    assert [int(v) for v in f(jnp.zeros((2, 3, 4), jnp.uint8))] == [0, 0]
