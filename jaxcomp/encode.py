"""Relative-index sparse storage of weight codes, with filler entries (``docs/conventions.md``).

A compressed layer is a ``codes`` array (``0`` = pruned, see docs/conventions.md). It is stored as
a list of *entries* ``(code, gap)``: ``gap`` counts the zeros skipped since the previous entry of
the same row (or since the row's start) and takes ``index_bits`` bits. A run of ``g`` zeros that
does not fit costs ``g // 2**index_bits`` *filler* entries ``(0, 2**index_bits - 1)``, each
standing for ``2**index_bits - 1`` skipped zeros plus itself (a zero); trailing zeros of a row
cost nothing. Each row's number of entries is kept (the CSR row pointers, stored as deltas).

Order (documented, used by every module): the codes array of shape ``(d0, ..., dk)`` is viewed in
C order as a matrix of ``rows = d0 * ... * d(k-1)`` by ``cols = dk``, and stored CSR over those
rows. For a Flax ``Dense`` kernel ``(in, out)`` a row is one *input* neuron's fan-out -- the same
order as EIE's CSC over the ``(out, in)`` matrix (one column per input activation). A Flax
``Conv`` kernel ``(kh, kw, c_in, c_out)`` becomes ``(kh * kw * c_in, c_out)``: one row per
(spatial tap, input channel). A 1-D array is one row; a scalar is a 1 x 1 matrix.

:func:`encode_relative` / :func:`decode_relative` run on the host (NumPy; the entry count depends
on the data). :func:`relative_index_counts` gives the entry and filler counts as a jittable,
vmappable JAX function for accounting inside sweeps.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "RelativeIndex",
    "decode_relative",
    "encode_relative",
    "matrix_shape",
    "relative_index_counts",
]


class RelativeIndex(NamedTuple):
    """A layer's codes in relative-index form (one entry per non-zero or filler).

    Attributes:
      codes: ``(E,)`` weight code of each entry, dtype of the input codes; 0 for a filler.
      index: ``(E,)`` uint8 (``index_bits <= 8``) or uint16 gap before each entry.
      row_lengths: ``(rows,)`` int64 number of entries of each row (CSR pointer deltas).
      shape: the codes array's shape.
      index_bits: bits per relative index.
    """

    codes: np.ndarray
    index: np.ndarray
    row_lengths: np.ndarray
    shape: tuple[int, ...]
    index_bits: int

    @property
    def num_entries(self) -> int:
        """Entries stored, fillers included."""
        return int(self.codes.size)

    @property
    def num_nonzero(self) -> int:
        """Entries with a non-zero code."""
        return int(np.count_nonzero(self.codes))

    @property
    def num_fillers(self) -> int:
        """Filler entries (code 0)."""
        return self.num_entries - self.num_nonzero


def _check_index_bits(index_bits) -> int:
    if not isinstance(index_bits, int | np.integer) or not 1 <= index_bits <= 16:
        raise ValueError(f"index_bits must be an int in 1..16, got {index_bits!r}")
    return int(index_bits)


def matrix_shape(shape) -> tuple[int, int]:
    """The ``(rows, cols)`` matrix a codes array of ``shape`` is stored as (C order).

    Args:
      shape: the array's shape.

    Returns:
      ``(prod(shape[:-1]), shape[-1])`` as Python ints (exact, never wrapping); ``(1, 1)``
      for a scalar.

    Raises:
      TypeError: a dimension is not an integer.
      ValueError: a dimension is negative.

    Example:
      >>> matrix_shape((5, 5, 1, 20)), matrix_shape((784, 300)), matrix_shape((10,))
      ((25, 20), (784, 300), (1, 10))
      >>> matrix_shape((2**40, 2**40, 5))
      (1208925819614629174706176, 5)
    """
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must not have negative dimensions, got {shape}")
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


def encode_relative(codes, *, index_bits: int) -> RelativeIndex:
    """Encode a codes array (0 = pruned) as relative-index entries with fillers.

    Args:
      codes: integer array of any shape (uint8/uint16 by convention), 0 where pruned.
      index_bits: keyword-only Python int in 1..16, bits per relative index.

    Returns:
      a :class:`RelativeIndex`; ``decode_relative`` of it gives ``codes`` back exactly.

    Example:
      >>> enc = encode_relative(np.array([[0, 0, 0, 0, 0, 3, 0, 1]], np.uint8), index_bits=2)
      >>> enc.codes.tolist(), enc.index.tolist(), enc.row_lengths.tolist()
      ([0, 3, 1], [3, 1, 1], [3])
    """
    index_bits = _check_index_bits(index_bits)
    arr = np.asarray(codes)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"codes must be an integer array (uint8/uint16), got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("codes must be non-negative (0 = pruned)")
    rows, cols = matrix_shape(arr.shape)
    mat = arr.reshape(rows, cols)
    r, c = np.nonzero(mat)
    prev = np.empty_like(c)
    if c.size:
        prev[0] = -1
        same_row = r[1:] == r[:-1]
        prev[1:] = np.where(same_row, c[:-1], -1)
    gap = c - prev - 1
    span = 1 << index_bits
    fill = gap // span
    per = fill + 1  # entries spent on each non-zero
    ends = np.cumsum(per)
    total = int(ends[-1]) if ends.size else 0
    idx_dtype = np.uint8 if index_bits <= 8 else np.uint16
    out_codes = np.zeros(total, arr.dtype)
    out_index = np.full(total, span - 1, idx_dtype)
    out_codes[ends - 1] = mat[r, c]
    out_index[ends - 1] = gap - fill * span
    row_lengths = np.bincount(r, weights=per, minlength=rows).astype(np.int64)
    return RelativeIndex(out_codes, out_index, row_lengths, tuple(arr.shape), index_bits)


def decode_relative(enc: RelativeIndex) -> np.ndarray:
    """Rebuild the codes array from its relative-index form.

    Args:
      enc: a :class:`RelativeIndex` (from :func:`encode_relative` or read from a file).

    Returns:
      the codes array, ``enc.shape``, dtype of ``enc.codes``.

    Raises:
      ValueError: inconsistent entries (a gap past the end of its row, a filler that does not
        skip the full span, row lengths that do not add up).

    Example:
      >>> enc = encode_relative(np.array([0, 0, 0, 0, 0, 3, 0, 1], np.uint8), index_bits=2)
      >>> decode_relative(enc).tolist()
      [0, 0, 0, 0, 0, 3, 0, 1]
    """
    index_bits = _check_index_bits(enc.index_bits)
    codes = np.asarray(enc.codes)
    index = np.asarray(enc.index).astype(np.int64)
    row_lengths = np.asarray(enc.row_lengths).astype(np.int64)
    rows, cols = matrix_shape(enc.shape)
    if codes.shape != index.shape or codes.ndim != 1:
        raise ValueError(f"codes {codes.shape} and index {index.shape} must be equal 1-D shapes")
    if row_lengths.shape != (rows,) or (rows and row_lengths.min() < 0):
        raise ValueError(f"row_lengths must be {rows} non-negative counts")
    if int(row_lengths.sum()) != codes.size:
        raise ValueError(f"row lengths add to {row_lengths.sum()}, but there are {codes.size}")
    span = 1 << index_bits
    if index.size and (index.min() < 0 or index.max() >= span):
        raise ValueError(f"relative indices must lie in 0..{span - 1}")
    if np.any((codes == 0) & (index != span - 1)):
        raise ValueError("a filler entry (code 0) must skip the full span of its index")
    out = np.zeros((rows, cols), codes.dtype)
    if codes.size:
        step = index + 1
        csum = np.cumsum(step)
        row_start = np.cumsum(row_lengths) - row_lengths  # first entry of each row
        row_of = np.repeat(np.arange(rows), row_lengths)
        base = np.where(row_start > 0, csum[np.maximum(row_start - 1, 0)], 0)
        pos = csum - base[row_of] - 1
        if pos.max() >= cols:
            raise ValueError(f"an entry lands past the end of its row of {cols} columns")
        out[row_of, pos] = codes
    return out.reshape(enc.shape)


def relative_index_counts(codes: jax.Array, *, index_bits: int) -> tuple[jax.Array, jax.Array]:
    """Number of non-zero entries and filler entries of the relative-index form (jittable).

    Same order and filler rule as :func:`encode_relative`; batch it with ``jax.vmap``.

    Args:
      codes: integer (or any) array of shape ``(..., cols)``; non-zero = kept.
      index_bits: keyword-only Python int in 1..16.

    Returns:
      ``(nonzeros, fillers)``, int32 scalars.

    Example:
      >>> nz, fill = relative_index_counts(jnp.array([0, 0, 0, 0, 0, 3, 0, 1]), index_bits=2)
      >>> int(nz), int(fill)
      (2, 1)
    """
    index_bits = _check_index_bits(index_bits)
    codes = jnp.asarray(codes)
    rows, cols = matrix_shape(codes.shape)
    kept = codes.reshape(rows, cols) != 0
    col = jnp.arange(cols, dtype=jnp.int32)[None, :]
    last = jax.lax.cummax(jnp.where(kept, col, -1), axis=1)
    prev = jnp.concatenate([jnp.full((rows, 1), -1, jnp.int32), last[:, :-1]], axis=1)
    gap = col - prev - 1
    fillers = jnp.sum(jnp.where(kept, gap // (1 << index_bits), 0), dtype=jnp.int32)
    return jnp.sum(kept, dtype=jnp.int32), fillers
