"""Canonical Huffman coding of integer streams, vectorized in NumPy (host side, never jitted).

Deep Compression's third stage codes the weight-code stream and the relative-index stream of each
layer with Huffman codes (the accounting is in ``docs/conventions.md``). Everything here runs on
the host on NumPy arrays:

* :func:`code_lengths` -- Huffman code lengths from symbol counts, limited to ``max_length`` bits
  (a Huffman tree, then a length-limiting pass that keeps Kraft's sum exactly 1).
* :func:`canonical_codes` -- the canonical code of each symbol from the lengths alone, so a code
  table is stored as its lengths only (:func:`pack_lengths` / :func:`unpack_lengths`).
* :func:`huffman_encode` / :func:`huffman_decode` -- whole streams at once. Encoding places every
  code with a few vectorized operations (no per-symbol Python loop). The stream is cut into
  chunks of ``chunk_size`` symbols whose starting bit offsets are kept (:class:`HuffmanStream`),
  so decoding walks all chunks in parallel: one vectorized table look-up per step,
  ``chunk_size`` steps.
* :func:`pack_bits` / :func:`unpack_fixed` -- MSB-first bit packing shared with the file format.

Bit order: codes are written most significant bit first, bytes are filled from their most
significant bit (``np.packbits`` order); the last byte is padded with zero bits.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_LENGTH",
    "HuffmanStream",
    "canonical_codes",
    "code_lengths",
    "entropy_bits",
    "huffman_decode",
    "huffman_encode",
    "pack_bits",
    "pack_lengths",
    "unpack_fixed",
    "unpack_lengths",
]

DEFAULT_MAX_LENGTH = 16
"""Default code-length limit: decode tables have ``2**16`` entries."""

DEFAULT_CHUNK_SIZE = 1024
"""Default number of symbols per independently decodable chunk of a stream."""

_MAX_TABLE_BITS = 24  # decode tables beyond 2**24 entries are refused
_PACK_BLOCK = 1 << 16
# A stream of fewer than _JUMP_CHUNKS chunks of more than _JUMP_STEPS symbols is decoded by
# binary lifting (_decode_by_jumps) instead of one Python-level step per symbol of a chunk.
_JUMP_STEPS = 2048
_JUMP_CHUNKS = 64


class HuffmanStream(NamedTuple):
    """A Huffman-coded stream of symbols.

    Attributes:
      data: ``(ceil(nbits / 8),)`` uint8, the packed codes (MSB first, zero-padded last byte).
      nbits: number of meaningful bits in ``data``.
      num_symbols: number of coded symbols.
      chunk_offsets: ``(ceil(num_symbols / chunk_size),)`` int64, the bit offset where each chunk
        of ``chunk_size`` symbols starts (``chunk_offsets[0] == 0``).
      chunk_size: symbols per chunk.
    """

    data: np.ndarray
    nbits: int
    num_symbols: int
    chunk_offsets: np.ndarray
    chunk_size: int


# ----------------------------------------------------------------------------------------------
# Code construction
# ----------------------------------------------------------------------------------------------


def _check_counts(counts) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-D (one count per symbol), got shape {counts.shape}")
    if counts.size and not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(f"counts must be integers, got dtype {counts.dtype}")
    counts = counts.astype(np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    return counts


def _huffman_depths(weights: np.ndarray) -> np.ndarray:
    """Depths of the leaves of a Huffman tree over ``weights`` (k >= 2 leaves)."""
    k = weights.size
    heap = [(int(w), i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = np.zeros(2 * k - 1, np.int64)
    nxt = k
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    depth = np.zeros(2 * k - 1, np.int64)
    for node in range(2 * k - 3, -1, -1):  # parents are numbered after their children
        depth[node] = depth[parent[node]] + 1
    return depth[:k]


def _limit_lengths(lengths: np.ndarray, weights: np.ndarray, max_length: int) -> np.ndarray:
    """Clamp lengths to ``max_length`` and restore Kraft's sum to exactly 1.

    Overfull after clamping: lengthen the least frequent codes still shorter than the limit.
    Underfull afterwards: shorten the most frequent codes while the sum stays <= 1. Kraft's sum
    is kept in integer units of ``2**-max_length``.
    """
    lengths = np.minimum(lengths, max_length).astype(np.int64)
    target = 1 << max_length
    kraft = int(np.sum(np.left_shift(1, max_length - lengths)))
    order = np.lexsort((-np.arange(weights.size), weights))  # least frequent first
    while kraft > target:
        for i in order:
            if kraft <= target:
                break
            if lengths[i] < max_length:
                lengths[i] += 1
                kraft -= 1 << (max_length - lengths[i])
    changed = True
    while changed and kraft < target:
        changed = False
        for i in order[::-1]:  # most frequent first
            while lengths[i] > 1 and kraft + (1 << (max_length - lengths[i])) <= target:
                kraft += 1 << (max_length - lengths[i])
                lengths[i] -= 1
                changed = True
    return lengths


def code_lengths(counts, *, max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """Huffman code lengths for symbols ``0 .. len(counts) - 1``, at most ``max_length`` bits.

    Unused symbols (count 0) get length 0. One used symbol gets length 1 (a 1-bit code: Kraft's
    sum is 1/2). With two or more used symbols Kraft's sum is exactly 1. Without the limit
    binding, the lengths are those of a Huffman tree (optimal); when it binds, a heuristic pass
    lengthens the rarest codes and then shortens the most frequent ones until Kraft's sum is 1.

    Args:
      counts: ``(n,)`` non-negative integers, the count of each symbol.
      max_length: keyword-only Python int, 1 .. 24; ``2**max_length`` must cover the number of
        used symbols.

    Returns:
      ``(n,)`` uint8 code lengths.

    Example:
      >>> code_lengths([5, 0, 1, 1]).tolist()
      [1, 0, 2, 2]
    """
    counts = _check_counts(counts)
    if not isinstance(max_length, int | np.integer) or not 1 <= max_length <= _MAX_TABLE_BITS:
        raise ValueError(f"max_length must be an int in 1..{_MAX_TABLE_BITS}, got {max_length!r}")
    lengths = np.zeros(counts.size, np.uint8)
    used = np.flatnonzero(counts)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    if used.size > (1 << max_length):
        raise ValueError(
            f"{used.size} used symbols need codes longer than max_length={max_length}; "
            f"raise max_length to at least {int(used.size - 1).bit_length()}"
        )
    depth = _huffman_depths(counts[used])
    if depth.max() > max_length:
        depth = _limit_lengths(depth, counts[used], max_length)
    lengths[used] = depth
    return lengths


def _check_lengths(lengths) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    lengths = lengths.astype(np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > _MAX_TABLE_BITS):
        raise ValueError(f"code lengths must lie in 0..{_MAX_TABLE_BITS}")
    if lengths.size and np.sum(np.ldexp(1.0, -lengths[lengths > 0])) > 1.0:
        raise ValueError("code lengths violate Kraft's inequality (sum of 2**-length > 1)")
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """Canonical Huffman codes (as integers, MSB first) for the given code lengths.

    Symbols are ordered by (length, symbol); each gets the next code of its length, as in
    DEFLATE. Unused symbols (length 0) get code 0.

    Args:
      lengths: ``(n,)`` integer code lengths (0 = unused) satisfying Kraft's inequality.

    Returns:
      ``(n,)`` uint32 codes; symbol ``i`` is the low ``lengths[i]`` bits of ``codes[i]``.

    Example:
      >>> canonical_codes([1, 0, 2, 2]).tolist()  # '0', -, '10', '11'
      [0, 0, 2, 3]
    """
    lengths = _check_lengths(lengths)
    codes = np.zeros(lengths.size, np.uint32)
    used = np.flatnonzero(lengths)
    if used.size == 0:
        return codes
    max_len = int(lengths.max())
    bl_count = np.bincount(lengths[used], minlength=max_len + 1)
    next_code = np.zeros(max_len + 1, np.int64)
    code = 0
    for n in range(1, max_len + 1):  # DEFLATE's rule (bl_count[0] == 0)
        code = (code + int(bl_count[n - 1])) << 1
        next_code[n] = code
    order = used[np.lexsort((used, lengths[used]))]  # by length, then symbol
    ls = lengths[order]
    first = np.searchsorted(ls, ls, side="left")  # index of the first symbol of that length
    rank = np.arange(order.size) - first
    codes[order] = (next_code[ls] + rank).astype(np.uint32)
    return codes


def entropy_bits(counts) -> float:
    """Empirical entropy, in bits per symbol, of a symbol histogram (0.0 for < 2 symbols used).

    Args:
      counts: ``(n,)`` non-negative integer counts.

    Returns:
      ``-sum(p * log2(p))`` as a Python float.

    Example:
      >>> entropy_bits([1, 1, 2])
      1.5
    """
    counts = _check_counts(counts)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum() + 0.0)


# ----------------------------------------------------------------------------------------------
# Bit packing
# ----------------------------------------------------------------------------------------------


def pack_bits(values, widths) -> tuple[np.ndarray, int]:
    """Concatenate the low ``widths[i]`` bits of each ``values[i]``, MSB first, into bytes.

    Vectorized: each value is OR-ed into one or two big-endian 64-bit words with
    ``np.bitwise_or.reduceat`` over the (sorted) word indices.

    Args:
      values: ``(n,)`` non-negative integers, each below ``2**widths[i]``.
      widths: ``(n,)`` integers in 1..32, or a Python int for a fixed width.

    Returns:
      ``(data, nbits)``: ``(ceil(nbits / 8),)`` uint8 and the total bit count ``sum(widths)``.

    Raises:
      ValueError: a value is negative or does not fit its width (300 in 4 bits), or a width is
        outside 1..32. Nothing is truncated silently.

    Example:
      >>> data, nbits = pack_bits([1, 2, 3], 2)  # '01' '10' '11' -> 0b01101100
      >>> data.tolist(), nbits
      ([108], 6)
    """
    values = np.asarray(values).ravel()
    n = values.size
    widths = np.broadcast_to(np.asarray(widths), (n,))
    if n == 0:
        return np.zeros(0, np.uint8), 0
    if not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        raise TypeError(f"pack_bits values must be integers, got dtype {values.dtype}")
    if not np.issubdtype(widths.dtype, np.integer):
        raise TypeError(f"pack_bits widths must be integers, got dtype {widths.dtype}")
    if widths.min() < 1 or widths.max() > 32:
        raise ValueError("pack_bits widths must lie in 1..32")
    if values.min() < 0:
        raise ValueError(f"pack_bits values must be non-negative, got {values.min()}")
    over = (values.astype(np.uint64) >> widths.astype(np.uint64)) != 0
    if over.any():
        i = int(np.argmax(over))
        raise ValueError(
            f"pack_bits values[{i}] = {values[i]} does not fit in {int(widths[i])} bits "
            f"(at most {(1 << int(widths[i])) - 1}); widen that field"
        )
    nbits = int(widths.sum(dtype=np.int64))
    words = np.zeros(nbits // 64 + 2, np.uint64)
    base = 0
    u64 = np.uint64(64)
    for i in range(0, n, _PACK_BLOCK):  # blocks keep the temporaries in cache
        v = values[i : i + _PACK_BLOCK].astype(np.uint64)
        w = widths[i : i + _PACK_BLOCK].astype(np.uint64)
        starts = np.cumsum(w)
        end = base + int(starts[-1])
        starts -= w
        starts += np.uint64(base)
        v <<= u64 - w  # the code left-aligned in a 64-bit word
        r = starts & np.uint64(63)
        first = v >> r  # its part in the word where it starts
        v <<= u64 - r  # its spill into the next word (0 if none; 0 for r == 0)
        # Codes are <= 32 bits, so every word up to the one holding the last code's start holds
        # some code's start: the codes starting in word k form the k-th group of word indices.
        starts >>= np.uint64(6)
        q0, q1 = int(starts[0]), int(starts[-1]) + 1
        group = np.searchsorted(starts, np.arange(q0, q1, dtype=np.uint64))
        words[q0:q1] |= np.bitwise_or.reduceat(first, group)
        words[q0 + 1 : q1 + 1] |= np.bitwise_or.reduceat(v, group)
        base = end
    data = words.astype(">u8").view(np.uint8)[: (nbits + 7) // 8].copy()
    return data, nbits


def unpack_fixed(data, width: int, count: int, *, offset: int = 0) -> np.ndarray:
    """Read ``count`` fixed-width unsigned integers packed MSB first (inverse of pack_bits).

    Args:
      data: uint8 array (or bytes) holding the bits.
      width: bits per value, 1..32.
      count: number of values.
      offset: bit offset of the first value.

    Returns:
      ``(count,)`` int64.

    Example:
      >>> unpack_fixed(np.array([108], np.uint8), 2, 3).tolist()
      [1, 2, 3]
    """
    data = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    if not 1 <= width <= 32:
        raise ValueError(f"width must lie in 1..32, got {width}")
    if offset + width * count > 8 * data.size:
        raise ValueError(f"{count} values of {width} bits do not fit in {data.size} bytes")
    if count == 0:
        return np.zeros(0, np.int64)
    bits = np.unpackbits(data)[offset : offset + width * count].reshape(count, width)
    weights = np.left_shift(np.int64(1), np.arange(width - 1, -1, -1, dtype=np.int64))
    return bits.astype(np.int64) @ weights


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def pack_lengths(lengths) -> bytes:
    """Serialize a code table compactly: its lengths only (the codes are canonical).

    Layout: uint32 little-endian ``n`` (symbols up to the last used one), uint8 ``w`` (bits per
    length), then ``n`` lengths of ``w`` bits packed MSB first.

    Args:
      lengths: ``(alphabet,)`` integer code lengths.

    Returns:
      ``bytes`` of ``5 + ceil(n * w / 8)`` bytes.

    Example:
      >>> unpack_lengths(pack_lengths([1, 0, 2, 2])).tolist()
      [1, 0, 2, 2]
    """
    lengths = _check_lengths(lengths)
    used = np.flatnonzero(lengths)
    n = int(used[-1]) + 1 if used.size else 0
    w = max(1, int(lengths.max()).bit_length()) if n else 1
    body, _ = pack_bits(lengths[:n], w) if n else (np.zeros(0, np.uint8), 0)
    return n.to_bytes(4, "little") + bytes([w]) + body.tobytes()


def unpack_lengths(blob: bytes, alphabet: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_lengths`.

    Args:
      blob: the bytes written by :func:`pack_lengths` (exactly).
      alphabet: optional alphabet size to pad to; a table naming a symbol beyond it is an error.

    Returns:
      uint8 code lengths, ``(alphabet,)`` when given.

    Raises:
      ValueError: malformed table (wrong size, lengths out of range, Kraft's inequality broken).

    Example:
      >>> unpack_lengths(pack_lengths([1, 0, 2, 2]), alphabet=6).tolist()
      [1, 0, 2, 2, 0, 0]
    """
    if len(blob) < 5:
        raise ValueError(f"code table needs at least 5 bytes, got {len(blob)}")
    n = int.from_bytes(blob[:4], "little")
    w = blob[4]
    if not 1 <= w <= 5:
        raise ValueError(f"code table length width must lie in 1..5, got {w}")
    if len(blob) != 5 + (n * w + 7) // 8:
        raise ValueError(f"code table of {n} lengths x {w} bits has the wrong size {len(blob)}")
    if alphabet is not None and n > alphabet:
        raise ValueError(f"code table names {n} symbols, more than the alphabet of {alphabet}")
    lengths = unpack_fixed(np.frombuffer(blob, np.uint8, offset=5), w, n)
    if alphabet is not None:
        lengths = np.concatenate([lengths, np.zeros(alphabet - n, np.int64)])
    _check_lengths(lengths)
    return lengths.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------------------------------


def huffman_encode(symbols, lengths, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> HuffmanStream:
    """Huffman-code a whole stream of symbols with the canonical code of ``lengths``.

    Args:
      symbols: ``(n,)`` non-negative integers, each with a non-zero length in ``lengths``.
      lengths: ``(alphabet,)`` code lengths (e.g. from :func:`code_lengths` of the stream's
        histogram).
      chunk_size: keyword-only Python int, symbols per chunk (decode parallelism).

    Returns:
      a :class:`HuffmanStream`.

    Example:
      >>> s = huffman_encode([0, 0, 2, 3], [1, 0, 2, 2])  # '0' '0' '10' '11'
      >>> s.data.tolist(), s.nbits
      ([44], 6)
    """
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    lengths = _check_lengths(lengths)
    symbols = np.asarray(symbols).ravel()
    if symbols.size and not np.issubdtype(symbols.dtype, np.integer):
        raise TypeError(f"symbols must be integers, got dtype {symbols.dtype}")
    if symbols.size == 0:
        return HuffmanStream(np.zeros(0, np.uint8), 0, 0, np.zeros(0, np.int64), chunk_size)
    if symbols.min() < 0 or symbols.max() >= lengths.size:
        raise ValueError(f"symbols must lie in 0..{lengths.size - 1} (the code table's alphabet)")
    widths = lengths.astype(np.uint8)[symbols]
    if widths.min() == 0:
        bad = int(symbols[np.argmin(widths)])
        raise ValueError(f"symbol {bad} has no code (length 0); build lengths from these counts")
    codes = canonical_codes(lengths)[symbols]
    data, nbits = pack_bits(codes, widths)
    chunk_bits = np.add.reduceat(widths, np.arange(0, symbols.size, chunk_size), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(chunk_bits)[:-1]]).astype(np.int64)
    return HuffmanStream(data, nbits, int(symbols.size), offsets, chunk_size)


def _decode_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(symbol, length) for every ``L``-bit window; length 0 marks a window no code starts."""
    used = np.flatnonzero(lengths)
    L = int(lengths.max())
    codes = canonical_codes(lengths)
    ls = lengths[used].astype(np.int64)
    left = codes[used].astype(np.int64) << (L - ls)
    order = np.argsort(left, kind="stable")
    used, ls = used[order], ls[order]
    reps = np.left_shift(1, L - ls)
    tsym = np.zeros(1 << L, np.int64)
    tlen = np.zeros(1 << L, np.int64)
    filled = int(reps.sum())
    tsym[:filled] = np.repeat(used, reps)
    tlen[:filled] = np.repeat(ls, reps)
    return tsym, tlen, L


def _decode_by_jumps(data, table, offsets, n: int, cs: int, nbits: int, L: int, alphabet: int):
    """Decode a stream of few, long chunks without a Python loop of ``chunk_size`` steps.

    The code starting at every bit position is looked up at once; a symbol ``k`` of a chunk
    sits ``k`` hops (of one code each) after the chunk's offset, found by binary lifting:
    ``log2(chunk_size)`` gathers over the stream. Same result and checks as the step loop.
    """
    b = np.zeros(data.size + L // 8 + 8, np.uint32)
    b[: data.size] = data
    w32 = b[:-3] << 24
    w32 |= b[1:-2] << 16
    w32 |= b[2:-1] << 8
    w32 |= b[3:]
    size = nbits + L + 1  # positions past the end hop nowhere and decode to no symbol
    pos = np.arange(nbits, dtype=np.uint32)
    win = (w32[pos >> np.uint32(3)] << (pos & np.uint32(7))) >> np.uint32(32 - L)
    ent = np.full(size, alphabet << 5, table.dtype)
    ent[:nbits] = table[win]
    del win, w32
    hop = np.arange(size, dtype=np.uint32)
    hop[:nbits] += (ent[:nbits] & table.dtype.type(31)).astype(np.uint32)
    k = np.arange(n, dtype=np.int64)
    cur = offsets.astype(np.uint32)[k // cs]
    k %= cs
    jump = hop
    for bit in range(int(k.max()).bit_length()):
        sel = ((k >> bit) & 1).astype(bool)
        cur[sel] = jump[cur[sel]]
        jump = jump[jump]
    del jump
    sym = ent[cur] >> table.dtype.type(5)
    if int(sym.max()) >= alphabet:
        raise ValueError("stream holds a bit pattern that is no code of its table")
    lasts = np.minimum((np.arange(offsets.size) + 1) * cs, n) - 1
    if not np.array_equal(hop[cur[lasts]].astype(np.int64), np.append(offsets[1:], nbits)):
        raise ValueError("stream chunks do not end where the next one starts")
    return sym.astype(_symbol_dtype(alphabet))


def _symbol_dtype(alphabet: int):
    return np.uint8 if alphabet <= 1 << 8 else np.uint16 if alphabet <= 1 << 16 else np.uint32


def huffman_decode(stream: HuffmanStream, lengths) -> np.ndarray:
    """Decode a whole :class:`HuffmanStream` (table-driven, all chunks in parallel).

    Each step looks up the next ``L`` bits (``L`` = longest code) of every chunk in a
    ``2**L``-entry table giving the symbol and its length, for all chunks at once; there are
    ``chunk_size`` steps. Every chunk must end exactly where the next starts (and the last at
    ``nbits``), which catches most corrupt streams.

    Args:
      stream: the coded stream.
      lengths: the code lengths it was coded with.

    Returns:
      ``(num_symbols,)`` symbols, the smallest of uint8 / uint16 / uint32 that holds the
      alphabet ``len(lengths)``.

    Raises:
      ValueError: the stream is inconsistent with its table, offsets or length. Every count
        is checked against the bits that carry it before decoding (a symbol takes 1..L bits),
        so the work is bounded by ``8 * len(stream.data)``.

    Example:
      >>> huffman_decode(huffman_encode([0, 0, 2, 3], [1, 0, 2, 2]), [1, 0, 2, 2]).tolist()
      [0, 0, 2, 3]
    """
    lengths = _check_lengths(lengths)
    data = np.asarray(stream.data, np.uint8)
    n, nbits, cs = int(stream.num_symbols), int(stream.nbits), int(stream.chunk_size)
    offsets = np.asarray(stream.chunk_offsets, np.int64)
    if cs < 1:
        raise ValueError(f"chunk_size must be positive, got {cs}")
    if data.size != (nbits + 7) // 8:
        raise ValueError(f"stream of {nbits} bits needs {(nbits + 7) // 8} bytes, has {data.size}")
    nchunks = -(-n // cs)
    if offsets.shape != (nchunks,):
        raise ValueError(f"stream of {n} symbols needs {nchunks} chunk offsets, has {offsets.size}")
    if n == 0:
        if nbits:
            raise ValueError("an empty stream must have 0 bits")
        return np.zeros(0, _symbol_dtype(lengths.size))
    if not lengths.any():
        raise ValueError("a non-empty stream needs a non-empty code table")
    if n > nbits:
        raise ValueError(f"{n} symbols cannot fit in {nbits} bits (a code takes at least 1 bit)")
    L = int(lengths.max())
    spans = np.diff(np.append(offsets, nbits))  # bits of each chunk
    sizes = np.full(nchunks, cs, np.int64)
    sizes[-1] = n - (nchunks - 1) * cs
    if offsets[0] != 0 or np.any(spans < sizes) or np.any(spans > sizes * L):
        raise ValueError(
            "chunk offsets must start at 0 and give each chunk of k symbols k..k*L bits "
            f"(L = {L}, the longest code)"
        )
    tsym, tlen, L = _decode_table(lengths)
    steps = min(cs, n)
    if nbits + steps * L >= 1 << 32:
        raise ValueError("streams of 2**32 bits or more are not supported")
    alphabet = lengths.size
    # one look-up gives symbol and length; a window no code starts gets the symbol `alphabet`
    edtype = np.uint16 if alphabet < 1 << 11 else np.uint32  # entries: symbol << 5 | length
    table = (np.where(tlen > 0, tsym, alphabet) << 5 | tlen).astype(edtype)
    if steps > _JUMP_STEPS and nchunks < _JUMP_CHUNKS:
        return _decode_by_jumps(data, table, offsets, n, cs, nbits, L, alphabet)
    pad = (steps * L) // 8 + 8
    b = np.zeros(data.size + pad, np.uint32)
    b[: data.size] = data
    # the 4 bytes from each byte on as a big-endian uint32; shifting it left by the bit offset
    # (<= 7, the top bits fall off) and right by 32 - L leaves exactly the next L bits.
    w32 = b[:-3] << 24
    w32 |= b[1:-2] << 16
    w32 |= b[2:-1] << 8
    w32 |= b[3:]
    del b
    shift = np.uint32(32 - L)
    p = offsets.astype(np.uint32)
    q = np.empty_like(p)
    s = np.empty_like(p)
    w = np.empty_like(p)
    ents = np.empty((steps, nchunks), edtype)
    three, seven, mask5 = np.uint32(3), np.uint32(7), np.uint32(31)
    for t in range(steps):
        np.right_shift(p, three, out=q)
        np.take(w32, q, out=w, mode="clip")  # in bounds by construction (padding)
        np.bitwise_and(p, seven, out=s)
        np.left_shift(w, s, out=w)
        np.right_shift(w, shift, out=w)
        e = ents[t]
        np.take(table, w, out=e, mode="clip")
        np.bitwise_and(e, mask5, out=s)
        p += s
    last = n - (nchunks - 1) * cs  # symbols in the last chunk
    last_bits = int(np.sum(ents[:last, -1] & mask5, dtype=np.int64))
    ent = ents.T.reshape(-1)[:n]
    del ents
    ent >>= edtype(5)
    if int(ent.max()) >= alphabet:
        raise ValueError("stream holds a bit pattern that is no code of its table")
    ends = np.append(p[:-1].astype(np.int64), offsets[-1] + last_bits)
    if not np.array_equal(ends, np.append(offsets[1:], nbits)):
        raise ValueError("stream chunks do not end where the next one starts")
    return ent.astype(_symbol_dtype(alphabet))
