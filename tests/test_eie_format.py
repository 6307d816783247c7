"""EIE format: round trips, filler accounting, the real layer's published encoding facts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eie_model.format import Encoding, decode_layer, encode_layer, storage_bits


def _naive_encode(codes, bias, N, r):
    """Obviously-correct loop transcription of design.md (small layers only)."""
    m, n = codes.shape
    n_pad = -(-n // N) * N
    cols = [codes[:, j] for j in range(n)] + [np.zeros(m, codes.dtype)] * (n_pad - n)
    if bias is not None:
        cols.append(bias)
    per_pe = []
    for pe in range(N):
        entries, ptr = [], [0]
        for col in cols:
            local = col[pe::N]
            last = -1
            for l, c in enumerate(local):
                if c:
                    gap = l - last - 1
                    while gap >= 2**r:
                        entries.append((0, 2**r - 1))
                        gap -= 2**r
                    entries.append((int(c), gap))
                    last = l
            ptr.append(len(entries))
        per_pe.append((entries, ptr))
    return per_pe


def _random_codes(rng, m, n, density, bits=4):
    keep = rng.random((m, n)) < density
    return (keep * rng.integers(1, 2**bits, (m, n))).astype(np.uint8 if bits <= 8 else np.uint16)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 70),
    n=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    N=st.integers(1, 9),
    r=st.integers(1, 5),
    bias=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_round_trip_and_naive_oracle(m, n, density, N, r, bias, seed):
    rng = np.random.default_rng(seed)
    codes = _random_codes(rng, m, n, density)
    b = _random_codes(rng, m, 1, density)[:, 0] if bias else None
    enc = encode_layer(codes, b, n_pes=N, index_bits=r)
    back, bb = decode_layer(enc)
    np.testing.assert_array_equal(back, codes)
    if bias:
        np.testing.assert_array_equal(bb, b)
    else:
        assert bb is None
    assert enc.n_cols == -(-n // N) * N + bias
    naive = _naive_encode(codes, b, N, r)
    for pe, (entries, ptr) in enumerate(naive):
        code, z = enc.pe_entries(pe)
        assert [(int(c), int(x)) for c, x in zip(code, z, strict=True)] == entries
        np.testing.assert_array_equal(enc.col_ptr[pe], ptr)
    assert enc.nnz == int((codes != 0).sum()) + (int((b != 0).sum()) if bias else 0)
    assert enc.n_fillers == int((enc.code == 0).sum())
    assert (enc.rel_index < 2**r).all()


def test_filler_count_matches_formula():
    # one PE, a gap of g zero rows costs g // 2**r fillers; trailing zeros cost nothing
    for g in range(0, 70):
        codes = np.zeros((g + 5, 1), np.uint8)
        codes[g, 0] = 1
        enc = encode_layer(codes, n_pes=1, index_bits=4)
        assert enc.n_fillers == g // 16
        assert enc.n_entries == g // 16 + 1


def test_padded_matches_pe_entries():
    rng = np.random.default_rng(3)
    enc = encode_layer(_random_codes(rng, 30, 7, 0.3), n_pes=4, index_bits=2)
    code, z = enc.padded()
    for pe in range(4):
        c, zz = enc.pe_entries(pe)
        np.testing.assert_array_equal(code[pe, : c.size], c)
        np.testing.assert_array_equal(z[pe, : c.size], zz)
        assert not code[pe, c.size :].any()


def test_storage_bits():
    rng = np.random.default_rng(1)
    enc = encode_layer(_random_codes(rng, 50, 9, 0.2), np.ones(50, np.uint8), n_pes=4)
    s = storage_bits(enc)
    np.testing.assert_array_equal(s.spmat_bits, enc.entries_per_pe * 8)
    np.testing.assert_array_equal(s.pointer_bits, np.full(4, (12 + 1 + 1) * 16))
    assert s.codebook_bits == 16 * 32
    assert s.total_bits == s.spmat_bits.sum() + s.pointer_bits.sum() + 512


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        (dict(codes=np.zeros(3, np.uint8), n_pes=2), ValueError, "codes"),
        (dict(codes=np.zeros((3, 3), np.float32), n_pes=2), TypeError, "codes"),
        (dict(codes=np.full((3, 3), 16, np.uint8), n_pes=2), ValueError, "code_bits"),
        (dict(codes=np.zeros((3, 3), np.uint8), n_pes=0), ValueError, "n_pes"),
        (dict(codes=np.zeros((3, 3), np.uint8), n_pes=2, index_bits=0), ValueError, "index_bits"),
        (
            dict(codes=np.zeros((3, 3), np.uint8), bias_codes=np.zeros(4, np.uint8), n_pes=2),
            ValueError,
            "bias_codes",
        ),
    ],
)
def test_bad_input(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        encode_layer(**kwargs)


def test_decode_rejects_wrong_type():
    with pytest.raises(TypeError, match="Encoding"):
        decode_layer(np.zeros(3))


def test_real_layer_encoding(eie_layer_path):
    d = np.load(eie_layer_path)
    # Facts published with the layer (README): no fillers at N = 64, 17,879 at N = 1, 5,336 at
    # N = 32; 4098 pointers per PE at N = 64 (4096 columns, bias, end).
    for N, fillers in ((64, 0), (32, 5336), (1, 17879)):
        enc = encode_layer(d["codes"], d["bias_codes"], n_pes=N)
        assert isinstance(enc, Encoding)
        assert enc.n_fillers == fillers
        assert enc.col_ptr.shape == (N, 4098)
        assert enc.bias_col == 4096
        back, b = decode_layer(enc)
        np.testing.assert_array_equal(back, d["codes"])
        np.testing.assert_array_equal(b, d["bias_codes"])
    enc = encode_layer(d["codes"], d["bias_codes"], n_pes=64)
    assert enc.nnz == 1_051_032 + 959
    # rows 1000..1023 (local row 15 of PEs 40..63) are empty
    assert enc.local_rows == 16
