"""Huffman coding: optimal lengths (vs a reference), Kraft's equality, exact stream round trips."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcomp import huffman as hf


def _huffman_cost(counts) -> int:
    """Reference: total coded bits of an optimal prefix code = sum of all merge weights."""
    heap = [int(c) for c in counts if c > 0]
    if len(heap) < 2:
        return sum(heap)  # one symbol: 1 bit each
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


def _bits_py(values, widths) -> str:
    return "".join(
        format(int(v), f"0{int(w)}b")[-int(w) :] for v, w in zip(values, widths, strict=True)
    )


counts_st = st.lists(st.integers(0, 1000), min_size=0, max_size=70)


@settings(max_examples=60, deadline=None)
@given(counts_st)
def test_lengths_are_optimal_and_kraft_exact(counts):
    lengths = hf.code_lengths(np.array(counts, np.int64))
    used = np.flatnonzero(np.array(counts, np.int64))
    assert np.all((lengths > 0) == (np.array(counts) > 0)) if counts else lengths.size == 0
    if used.size >= 2:
        kraft = sum(2.0 ** -int(lengths[i]) for i in used)
        assert kraft == 1.0
    cost = int(np.sum(np.array(counts, np.int64) * lengths.astype(np.int64))) if counts else 0
    assert cost == _huffman_cost(counts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=40), st.integers(1, 8))
def test_length_limit_keeps_kraft_equality(counts, max_length):
    counts = np.array(counts, np.int64)
    if counts.size > 2**max_length:
        with pytest.raises(ValueError, match="max_length"):
            hf.code_lengths(counts, max_length=max_length)
        return
    lengths = hf.code_lengths(counts, max_length=max_length)
    assert lengths.max() <= max_length and lengths.min() >= 1
    assert np.sum(np.ldexp(1.0, -lengths.astype(np.int64))) == 1.0
    # never better than the unlimited optimum
    assert np.sum(counts * lengths) >= _huffman_cost(counts)


def test_fibonacci_counts_hit_the_limit():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    unlimited = hf.code_lengths(fib, max_length=24)
    assert unlimited.max() == 24  # the limit binds even at 24 bits
    lengths = hf.code_lengths(fib, max_length=10)
    assert lengths.max() == 10 and np.sum(np.ldexp(1.0, -lengths.astype(np.int64))) == 1.0


def test_degenerate_alphabets():
    assert hf.code_lengths([]).tolist() == []
    assert hf.code_lengths([0, 0]).tolist() == [0, 0]
    assert hf.code_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    one = hf.huffman_encode([1, 1, 1], [0, 1, 0])
    assert one.nbits == 3 and hf.huffman_decode(one, [0, 1, 0]).tolist() == [1, 1, 1]
    empty = hf.huffman_encode([], [0, 0])
    assert empty.nbits == 0 and hf.huffman_decode(empty, [0, 0]).size == 0


@settings(max_examples=30, deadline=None)
@given(counts_st)
def test_canonical_codes_are_prefix_free(counts):
    lengths = hf.code_lengths(np.array(counts, np.int64))
    codes = hf.canonical_codes(lengths)
    words = sorted(format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths, strict=True) if n)
    for a, b in zip(words, words[1:], strict=False):
        assert not b.startswith(a)
    # canonical: within a length, codes increase with the symbol
    for n in set(lengths.tolist()) - {0}:
        sel = codes[lengths == n]
        assert np.all(np.diff(sel.astype(np.int64)) == 1)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(0, 3000),
    st.integers(1, 600),
    st.floats(0.05, 3.0),
    st.integers(0, 2**31),
)
def test_stream_round_trip(alphabet, n, chunk, skew, seed):
    rng = np.random.default_rng(seed)
    p = np.exp(-skew * np.arange(alphabet))
    symbols = rng.choice(alphabet, size=n, p=p / p.sum())
    lengths = hf.code_lengths(np.bincount(symbols, minlength=alphabet))
    stream = hf.huffman_encode(symbols, lengths, chunk_size=chunk)
    assert stream.nbits == int(np.sum(lengths[symbols].astype(np.int64)))
    assert stream.chunk_offsets.size == -(-n // chunk)
    assert np.array_equal(hf.huffman_decode(stream, lengths), symbols)
    # the bits are exactly the canonical codes, concatenated
    codes = hf.canonical_codes(lengths)
    want = _bits_py(codes[symbols[:200]], lengths[symbols[:200]])
    got = "".join(format(b, "08b") for b in stream.data.tolist())[: len(want)]
    assert got == want


def test_limited_table_round_trip():
    rng = np.random.default_rng(0)
    symbols = rng.zipf(1.3, size=20000) % 5000
    lengths = hf.code_lengths(np.bincount(symbols, minlength=5000), max_length=13)
    assert lengths.max() == 13
    stream = hf.huffman_encode(symbols, lengths, chunk_size=333)
    assert np.array_equal(hf.huffman_decode(stream, lengths), symbols)


def test_bits_per_symbol_within_one_bit_of_entropy():
    rng = np.random.default_rng(1)
    symbols = rng.geometric(0.3, size=50000) - 1
    counts = np.bincount(symbols)
    lengths = hf.code_lengths(counts)
    h = hf.entropy_bits(counts)
    bps = hf.huffman_encode(symbols, lengths).nbits / symbols.size
    assert h <= bps < h + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 32)), max_size=200))
def test_pack_bits_matches_reference(pairs):
    values = np.array([v & ((1 << w) - 1) for v, w in pairs], np.uint64)
    widths = np.array([w for _, w in pairs], np.int64)
    data, nbits = hf.pack_bits(values, widths)
    ref = _bits_py(values, widths)
    assert nbits == len(ref) and data.size == (nbits + 7) // 8
    assert "".join(format(b, "08b") for b in data.tolist()) == ref + "0" * (8 * data.size - nbits)
    if pairs and len(set(widths.tolist())) == 1:
        assert np.array_equal(hf.unpack_fixed(data, int(widths[0]), len(pairs)), values)


def test_table_serialization_round_trip():
    lengths = hf.code_lengths(np.bincount(np.arange(100) % 37, minlength=256))
    blob = hf.pack_lengths(lengths)
    assert len(blob) == 5 + (37 * 3 + 7) // 8  # 37 used symbols, lengths <= 6 need 3 bits
    assert np.array_equal(hf.unpack_lengths(blob, 256), lengths)
    assert hf.unpack_lengths(hf.pack_lengths([0, 0]), 2).tolist() == [0, 0]
    with pytest.raises(ValueError, match="alphabet"):
        hf.unpack_lengths(blob, 16)
    with pytest.raises(ValueError, match="size"):
        hf.unpack_lengths(blob + b"\0")
    with pytest.raises(ValueError, match="Kraft"):
        hf.unpack_lengths(b"\x03\x00\x00\x00\x01\xe0")  # three 1-bit codes


def test_decode_rejects_inconsistent_streams():
    rng = np.random.default_rng(2)
    symbols = rng.integers(0, 6, size=5000)
    lengths = hf.code_lengths(np.bincount(symbols))
    s = hf.huffman_encode(symbols, lengths, chunk_size=1000)
    bad_offsets = s._replace(chunk_offsets=s.chunk_offsets + np.array([0, 1, 0, 0, 0]))
    with pytest.raises(ValueError, match="chunk"):
        hf.huffman_decode(bad_offsets, lengths)
    with pytest.raises(ValueError, match="bytes"):
        hf.huffman_decode(s._replace(nbits=s.nbits + 64), lengths)
    with pytest.raises(ValueError):
        hf.huffman_decode(s._replace(num_symbols=4999), lengths)
    one = hf.huffman_encode([0] * 10, [1, 0])
    flipped = one._replace(data=one.data | np.uint8(0x10))  # '1' is no code of a 1-symbol table
    with pytest.raises(ValueError, match="no code"):
        hf.huffman_decode(flipped, [1, 0])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no code"):
        hf.huffman_encode([0, 2], [1, 1, 0])
    with pytest.raises(ValueError, match="alphabet"):
        hf.huffman_encode([5], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        hf.code_lengths([1, -1])
    with pytest.raises(TypeError, match="integers"):
        hf.code_lengths([0.5, 1.0])
    with pytest.raises(ValueError, match="Kraft"):
        hf.canonical_codes([1, 1, 1])
    with pytest.raises(ValueError, match="max_length"):
        hf.code_lengths([1, 1], max_length=40)
    with pytest.raises(ValueError, match="chunk_size"):
        hf.huffman_encode([0], [1], chunk_size=0)


def test_pack_bits_refuses_values_wider_than_their_field():
    with pytest.raises(ValueError, match=r"values\[1\] = 300 does not fit in 4 bits"):
        hf.pack_bits([3, 300], 4)
    with pytest.raises(ValueError, match=r"values\[0\] = 8 does not fit in 3 bits"):
        hf.pack_bits([8, 1], [3, 5])
    with pytest.raises(ValueError, match="non-negative"):
        hf.pack_bits([-1], 8)
    with pytest.raises(TypeError, match="integers"):
        hf.pack_bits([1.5], 8)
    data, nbits = hf.pack_bits([15, 2**32 - 1], [4, 32])  # the widest values that fit
    assert nbits == 36 and hf.unpack_fixed(data, 4, 1).tolist() == [15]
    assert hf.unpack_fixed(data, 32, 1, offset=4).tolist() == [2**32 - 1]


def test_decode_checks_counts_against_bits_before_looping():
    # 2**40 symbols declared in 8 bits, and a chunk size of 2**30: refused at once, not looped
    lengths = np.array([1, 1], np.uint8)
    stream = hf.HuffmanStream(np.zeros(1, np.uint8), 8, 2**40, np.zeros(1, np.int64), 2**40)
    with pytest.raises(ValueError, match="cannot fit in 8 bits"):
        hf.huffman_decode(stream, lengths)
    # each chunk's bit span must fit its symbol count (1..L bits per symbol)
    good = hf.huffman_encode(np.arange(40) % 2, lengths, chunk_size=10)
    bad = good._replace(chunk_offsets=np.array([0, 5, 20, 30]))
    with pytest.raises(ValueError, match="chunk offsets"):
        hf.huffman_decode(bad, lengths)
    assert hf.huffman_decode(good, lengths).tolist() == (np.arange(40) % 2).tolist()


@pytest.mark.parametrize(
    "alphabet, n, chunk", [(2, 5000, 4096), (16, 30000, 10**6), (300, 9000, 3000)]
)
def test_long_chunks_decode_by_jumps_like_the_step_loop(monkeypatch, alphabet, n, chunk):
    rng = np.random.default_rng(alphabet)
    symbols = np.minimum(rng.geometric(0.3, size=n) - 1, alphabet - 1)
    lengths = hf.code_lengths(np.bincount(symbols, minlength=alphabet))
    stream = hf.huffman_encode(symbols, lengths, chunk_size=chunk)
    corrupt = []
    for _ in range(20):
        data = stream.data.copy()
        data[rng.integers(data.size)] ^= 1 << int(rng.integers(8))
        corrupt.append(stream._replace(data=data))

    def run():
        out = []
        for s in [stream, *corrupt]:
            try:
                out.append(hf.huffman_decode(s, lengths).tobytes())
            except ValueError:  # the message may differ: past the end, no symbol vs padding
                out.append("refused")
        return out

    by_jumps = run()  # min(chunk, n) > 2048 steps in < 64 chunks: the binary-lifting path
    monkeypatch.setattr(hf, "_JUMP_STEPS", 10**12)
    assert by_jumps == run()  # the step loop: same symbols, same refusals
    assert by_jumps[0] == symbols.astype(np.uint8 if alphabet <= 256 else np.uint16).tobytes()
