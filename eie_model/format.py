"""EIE storage format: weight codes -> per-PE interleaved CSC with relative indices.

For N PEs and ``index_bits`` r:

* Row ``i`` of the ``(m, n)`` code matrix lives in PE ``i % N`` at local row ``i // N``.
* Each PE stores its slice column by column (CSC). An entry is ``(code, z)`` with z the number
  of zero local rows skipped since the previous entry of that column (or since local row 0).
  A gap of g zero rows costs ``g // 2**r`` filler entries ``(code 0, z = 2**r - 1)``, each
  covering ``2**r`` rows (its own included); the real entry then has ``z = g % 2**r``.
  Trailing zeros cost nothing.
* Columns ``n .. ceil(n/N)*N - 1`` are empty padding; a bias, when given, is one more column
  at index ``ceil(n/N)*N`` (its activation is 1.0). So ``n_cols = ceil(n/N)*N + has_bias``.
* Per-PE column pointers ``col_ptr[i, j] .. col_ptr[i, j+1]`` index PE i's own entry array
  (``n_cols + 1`` pointers per PE, 16-bit in EIE).

This is byte-for-byte the encoding of the EIE authors' simulator data for the shared real layer
(see ``/work/shared/data/eie-layer/README.md``). Encoding and decoding are vectorized NumPy
(host side, no Python loop over entries or PEs).

Example:
    >>> import numpy as np
    >>> from eie_model.format import encode_layer, decode_layer
    >>> codes = np.zeros((40, 3), np.uint8); codes[37, 0] = 5
    >>> enc = encode_layer(codes, n_pes=1, index_bits=4)
    >>> enc.code.tolist(), enc.rel_index.tolist()   # 37 zeros before row 37: two fillers
    ([0, 0, 5], [15, 15, 5])
    >>> np.array_equal(decode_layer(enc)[0], codes)
    True
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

__all__ = ["Encoding", "StorageBits", "decode_layer", "encode_layer", "storage_bits"]


@dataclasses.dataclass(frozen=True, eq=False)
class Encoding:
    """A layer in EIE's per-PE interleaved CSC format (host-side NumPy arrays).

    Entries of all PEs are concatenated PE-major: PE i's entries are
    ``code[pe_offset[i]:pe_offset[i+1]]``; within a PE, column by column, rows ascending.

    Attributes:
        n_pes: number of PEs N.
        index_bits: relative-index bits r.
        code_bits: weight-code bits.
        shape: ``(m, n)`` of the code matrix (outputs x inputs), bias not included.
        has_bias: whether column ``n_cols - 1`` is the bias column.
        code: ``(T,)`` uint8/uint16, entry codes; 0 only for fillers.
        rel_index: ``(T,)`` uint8/uint16, relative index z of each entry.
        pe_offset: ``(N + 1,)`` int64, start of each PE's entries in ``code``/``rel_index``.
        col_ptr: ``(N, n_cols + 1)`` int64, per-PE column pointers into the PE's own entries.
        fillers_per_col: ``(N, n_cols)`` int64, filler entries of each PE's slice of each column.
    """

    n_pes: int
    index_bits: int
    code_bits: int
    shape: tuple[int, int]
    has_bias: bool
    code: np.ndarray
    rel_index: np.ndarray
    pe_offset: np.ndarray
    col_ptr: np.ndarray
    fillers_per_col: np.ndarray

    @property
    def n_cols(self) -> int:
        """Stored columns: ``ceil(n/N)*N`` (padding included) plus 1 for the bias."""
        return self.col_ptr.shape[1] - 1

    @property
    def local_rows(self) -> int:
        """Local rows per PE: ``ceil(m/N)``."""
        return -(-self.shape[0] // self.n_pes)

    @property
    def bias_col(self) -> int | None:
        """Index of the bias column (``ceil(n/N)*N``) or ``None`` without a bias."""
        return self.n_cols - 1 if self.has_bias else None

    @property
    def entries_per_col(self) -> np.ndarray:
        """``(N, n_cols)`` int64: entries (fillers included) of each PE's slice of each column."""
        return np.diff(self.col_ptr, axis=1)

    @property
    def entries_per_pe(self) -> np.ndarray:
        """``(N,)`` int64: entries (fillers included) stored in each PE."""
        return np.diff(self.pe_offset)

    @property
    def n_entries(self) -> int:
        """Total entries over all PEs, fillers included."""
        return int(self.code.shape[0])

    @property
    def n_fillers(self) -> int:
        """Total filler entries over all PEs."""
        return int(self.fillers_per_col.sum())

    @property
    def nnz(self) -> int:
        """Non-zero weights stored (bias included): entries that are not fillers."""
        return self.n_entries - self.n_fillers

    def pe_entries(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(code, rel_index)`` of PE ``i``, each ``(entries_per_pe[i],)``."""
        if not 0 <= i < self.n_pes:
            raise ValueError(f"pe_entries: i must be in 0..{self.n_pes - 1}, got {i}")
        a, b = self.pe_offset[i], self.pe_offset[i + 1]
        return self.code[a:b], self.rel_index[a:b]

    def entry_rows(self) -> np.ndarray:
        """``(T,)`` int64: the local row each entry sits on (fillers: the row they cover last).

        Example:
            >>> import numpy as np
            >>> from eie_model.format import encode_layer
            >>> codes = np.zeros((40, 1), np.uint8); codes[37, 0] = 5
            >>> encode_layer(codes, n_pes=1).entry_rows().tolist()
            [15, 31, 37]
        """
        counts = self.entries_per_col.reshape(-1)
        group = np.repeat(np.arange(counts.size), counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        cs = np.cumsum(self.rel_index.astype(np.int64) + 1)
        base = np.concatenate([[0], cs])[starts]  # cumsum before each group's first entry
        return cs - base[group] - 1

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Entries as dense ``(N, max_entries)`` arrays, padded with code 0 / z 0.

        Returns:
            ``(code, rel_index)``, each ``(N, max(entries_per_pe))``; position p of row i is
            PE i's entry at address p (the address the SRAM line count uses).
        """
        counts = self.entries_per_pe
        width = int(counts.max()) if counts.size else 0
        pe = np.repeat(np.arange(self.n_pes), counts)
        addr = np.arange(self.n_entries) - self.pe_offset[pe]
        code = np.zeros((self.n_pes, width), self.code.dtype)
        z = np.zeros((self.n_pes, width), self.rel_index.dtype)
        code[pe, addr] = self.code
        z[pe, addr] = self.rel_index
        return code, z


class StorageBits(NamedTuple):
    """Storage of an encoded layer, in bits.

    Attributes:
        spmat_bits: ``(N,)`` int64, sparse-matrix SRAM bits per PE (entries x entry bits).
        pointer_bits: ``(N,)`` int64, column-pointer bits per PE ((n_cols + 1) x ptr_bits).
        codebook_bits: int, one codebook (``2**code_bits`` x ``codebook_entry_bits``).
        total_bits: int, ``sum(spmat_bits) + sum(pointer_bits) + codebook_bits``.
    """

    spmat_bits: np.ndarray
    pointer_bits: np.ndarray
    codebook_bits: int
    total_bits: int


def _check_codes(name: str, codes: np.ndarray, ndim: int, code_bits: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {codes.shape}")
    if codes.dtype == bool or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"{name} must be an unsigned integer array of codes, got {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << code_bits)):
        raise ValueError(
            f"{name} must lie in 0..{(1 << code_bits) - 1} for code_bits={code_bits}, got "
            f"{int(codes.min())}..{int(codes.max())}; raise code_bits"
        )
    return codes


def _uint(bits: int) -> type:
    return np.uint8 if bits <= 8 else np.uint16


def encode_layer(
    codes: np.ndarray,
    bias_codes: np.ndarray | None = None,
    *,
    n_pes: int,
    index_bits: int = 4,
    code_bits: int = 4,
) -> Encoding:
    """Encode weight codes into EIE's per-PE interleaved CSC format.

    Args:
        codes: ``(m, n)`` unsigned ints (m outputs x n inputs), 0 = pruned.
        bias_codes: optional ``(m,)`` unsigned ints, the bias column's codes.
        n_pes: number of PEs N (keyword-only Python int).
        index_bits: relative-index bits r (keyword-only Python int, 1..16).
        code_bits: weight-code bits; codes must be < ``2**code_bits``.

    Returns:
        The ``Encoding``.

    Raises:
        ValueError, TypeError: on bad shapes, dtypes, code ranges or knobs.

    Example:
        >>> import numpy as np
        >>> from eie_model.format import encode_layer
        >>> codes = np.array([[1, 0], [0, 2], [3, 0]], np.uint8)
        >>> enc = encode_layer(codes, n_pes=2)
        >>> enc.col_ptr.tolist()            # PE 0 holds rows 0, 2; PE 1 holds row 1
        [[0, 2, 2], [0, 0, 1]]
    """
    for name, v, lo, hi in (
        ("n_pes", n_pes, 1, 1 << 16),
        ("index_bits", index_bits, 1, 16),
        ("code_bits", code_bits, 1, 16),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"encode_layer: {name} must be a Python int, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"encode_layer: {name} must be in {lo}..{hi}, got {v}")
    n_pes, index_bits, code_bits = int(n_pes), int(index_bits), int(code_bits)
    codes = _check_codes("codes", codes, 2, code_bits)
    m, n = codes.shape
    has_bias = bias_codes is not None
    if has_bias:
        bias_codes = _check_codes("bias_codes", bias_codes, 1, code_bits)
        if bias_codes.shape != (m,):
            raise ValueError(f"bias_codes must have shape ({m},) = (m,), got {bias_codes.shape}")
    N = n_pes
    n_pad = -(-n // N) * N
    n_cols = n_pad + int(has_bias)
    run = 1 << index_bits

    # Dense (N, n_cols, L) view: [pe, col, local row]; row i = l*N + pe. One transposed copy
    # and one flatnonzero give every non-zero already in (pe, col, local row) order (faster
    # than sorting the non-zeros' coordinates).
    L = -(-m // N)  # local rows per PE
    full = np.zeros((L * N, n_cols), _uint(code_bits))
    full[:m, :n] = codes
    if has_bias:
        full[:m, n_pad] = bias_codes
    cube = np.ascontiguousarray(full.reshape(L, N, n_cols).transpose(1, 2, 0)).reshape(-1)
    flat = np.flatnonzero(cube)  # sorted by (pe, col, l)
    vals = cube[flat]
    group = flat // max(L, 1)
    lrow = flat - group * L
    prev = np.empty_like(lrow)
    prev[:1] = -1
    prev[1:] = np.where(group[1:] == group[:-1], lrow[:-1], -1)
    gap = lrow - prev - 1
    nfill = gap >> index_bits
    z_real = gap & (run - 1)
    step = nfill + 1
    pos = np.cumsum(step) - 1  # address of each real entry in the flat entry array
    total = int(pos[-1]) + 1 if pos.size else 0

    code = np.zeros(total, _uint(code_bits))
    z = np.full(total, run - 1, _uint(index_bits))
    code[pos] = vals
    z[pos] = z_real

    n_groups = N * n_cols
    per_col = np.bincount(group, weights=step, minlength=n_groups).astype(np.int64)
    fill_col = np.bincount(group, weights=nfill, minlength=n_groups).astype(np.int64)
    per_col = per_col.reshape(N, n_cols)
    col_ptr = np.zeros((N, n_cols + 1), np.int64)
    np.cumsum(per_col, axis=1, out=col_ptr[:, 1:])
    pe_offset = np.zeros(N + 1, np.int64)
    np.cumsum(col_ptr[:, -1], out=pe_offset[1:])
    return Encoding(
        n_pes=N,
        index_bits=index_bits,
        code_bits=code_bits,
        shape=(m, n),
        has_bias=has_bias,
        code=code,
        rel_index=z,
        pe_offset=pe_offset,
        col_ptr=col_ptr,
        fillers_per_col=fill_col.reshape(N, n_cols),
    )


def decode_layer(enc: Encoding) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an ``Encoding`` back to dense codes (exact inverse of ``encode_layer``).

    Args:
        enc: the encoded layer.

    Returns:
        ``(codes, bias_codes)``: ``(m, n)`` codes and ``(m,)`` bias codes (``None`` without a
        bias), dtype uint8 (code_bits <= 8) or uint16.

    Raises:
        ValueError: when the entries address a row beyond the layer (corrupt input).

    Example:
        >>> import numpy as np
        >>> from eie_model.format import encode_layer, decode_layer
        >>> codes = np.eye(5, dtype=np.uint8) * 3
        >>> back, _ = decode_layer(encode_layer(codes, n_pes=2, index_bits=1))
        >>> np.array_equal(back, codes)
        True
    """
    if not isinstance(enc, Encoding):
        raise TypeError(f"decode_layer: expected Encoding, got {type(enc).__name__}")
    N, n_cols = enc.n_pes, enc.n_cols
    m, n = enc.shape
    L = enc.local_rows
    group = np.repeat(np.arange(N * n_cols), enc.entries_per_col.reshape(-1))
    lrow = enc.entry_rows()
    keep = enc.code != 0
    if lrow.size and (lrow.min() < 0 or lrow[keep].max(initial=-1) >= L):
        raise ValueError("decode_layer: an entry addresses a row beyond the layer (corrupt)")
    pe, col = np.divmod(group[keep], n_cols)
    row = lrow[keep] * N + pe
    if row.size and row.max() >= m:
        raise ValueError("decode_layer: an entry addresses a padding row (corrupt)")
    full = np.zeros((m, n_cols), _uint(enc.code_bits))
    full[row, col] = enc.code[keep]
    codes = full[:, :n].copy()
    bias = full[:, n_cols - 1].copy() if enc.has_bias else None
    return codes, bias


def storage_bits(
    enc: Encoding, *, ptr_bits: int = 16, codebook_entry_bits: int = 32
) -> StorageBits:
    """Storage of an encoded layer: SpMat and pointer bits per PE, one codebook, total.

    SpMat: every entry (fillers included) costs ``code_bits + index_bits``. Pointers: each PE
    keeps ``n_cols + 1`` pointers of ``ptr_bits`` (16 in EIE). Codebook: ``2**code_bits``
    entries of ``codebook_entry_bits`` (32, as the compression report counts them), counted once.

    Args:
        enc: the encoded layer.
        ptr_bits: bits per column pointer.
        codebook_entry_bits: bits per codebook entry.

    Returns:
        ``StorageBits``.

    Example:
        >>> import numpy as np
        >>> from eie_model.format import encode_layer, storage_bits
        >>> s = storage_bits(encode_layer(np.ones((4, 2), np.uint8), n_pes=2))
        >>> s.spmat_bits.tolist(), s.pointer_bits.tolist(), s.codebook_bits
        ([32, 32], [48, 48], 512)
    """
    if ptr_bits < 1 or codebook_entry_bits < 1:
        raise ValueError("storage_bits: ptr_bits and codebook_entry_bits must be >= 1")
    spmat = enc.entries_per_pe * (enc.code_bits + enc.index_bits)
    ptr = np.full(enc.n_pes, (enc.n_cols + 1) * ptr_bits, np.int64)
    cb = (1 << enc.code_bits) * codebook_entry_bits
    return StorageBits(spmat, ptr, cb, int(spmat.sum() + ptr.sum() + cb))
