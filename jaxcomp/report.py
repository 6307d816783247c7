"""The compression report: Deep Compression's per-layer table, every stored bit shown (design.md).

Accounting (bits):

* original: every parameter (weights and biases) at 32 bits;
* a compressed (pruned + weight-shared) layer, P+Q: per entry (non-zero or filler) ``bits`` for
  its code and ``index_bits`` for its relative index, plus its codebook (``2**bits x 32``) and its
  row pointers (one per row of the stored matrix, :func:`jaxcomp.encode.matrix_shape`, at the
  width of the longest row's entry count);
* P+Q+H: the code and index streams replaced by their Huffman-coded lengths, plus the code tables
  (lengths only) and the bit offsets of the streams' decode chunks;
* a dense leaf (bias, or any leaf without codes): 32 bits per value, in both.

The report also gives the exact size of the ``.dcz`` file the same arguments produce
(:func:`jaxcomp.fileformat.save_compressed`); the difference (``overhead_bytes``: header, JSON
manifest, section table with CRCs, byte padding of each section) is shown, not hidden.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

from jaxcomp import fileformat, huffman

__all__ = [
    "CompressionReport",
    "LayerReport",
    "compression_report",
]


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One params leaf's storage, in bits (ints) unless named otherwise.

    Attributes:
      path: the leaf's path string.
      kind: ``"sparse"`` (pruned + weight-shared) or ``"dense"`` (stored as float32).
      weights: number of values.
      nonzero: stored non-zero values (``weights`` for a dense leaf).
      fillers: filler entries of the relative-index form (0 for dense).
      bits: bits per weight code (32 for dense).
      index_bits: bits per relative index (0 for dense).
      original: ``32 * weights``.
      codebook: ``32 * 2**bits`` (0 for dense).
      pointers: row pointers (0 for dense).
      codes_pq / index_pq: ``entries * bits`` / ``entries * index_bits``.
      codes_pqh / index_pqh: the Huffman-coded streams' lengths.
      tables: both streams' Huffman code tables.
      stream_offsets: both streams' decode-chunk bit offsets.
      dense: ``32 * weights`` for a dense leaf, else 0.
      codes_entropy / index_entropy: empirical entropy of the streams times their length (a
        float lower bound for ``codes_pqh`` / ``index_pqh``).
    """

    path: str
    kind: str
    weights: int
    nonzero: int
    fillers: int
    bits: int
    index_bits: int
    original: int
    codebook: int
    pointers: int
    codes_pq: int
    index_pq: int
    codes_pqh: int
    index_pqh: int
    tables: int
    stream_offsets: int
    dense: int
    codes_entropy: float
    index_entropy: float

    @property
    def entries(self) -> int:
        """Stored entries (non-zeros plus fillers)."""
        return self.nonzero + self.fillers if self.kind == "sparse" else 0

    @property
    def total_pq(self) -> int:
        """Bits after pruning + quantization."""
        return self.codes_pq + self.index_pq + self.codebook + self.pointers + self.dense

    @property
    def total_pqh(self) -> int:
        """Bits after pruning + quantization + Huffman coding."""
        return (
            self.codes_pqh
            + self.index_pqh
            + self.tables
            + self.stream_offsets
            + self.codebook
            + self.pointers
            + self.dense
        )

    @property
    def density(self) -> float:
        """Fraction of values kept (weights% (P))."""
        return self.nonzero / self.weights if self.weights else 0.0


def _div(a, b) -> float:
    return a / b if b else 0.0


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """The per-layer table and totals; see the module docstring for the accounting.

    Attributes:
      layers: one :class:`LayerReport` per params leaf, in flattening order.
      huffman_coding: whether the matching file is Huffman-coded (its size is ``total_pqh``
        plus overhead) or not (``total_pq`` plus overhead).
      file_bytes: exact size of the matching ``.dcz`` file.
    """

    layers: tuple[LayerReport, ...]
    huffman_coding: bool
    file_bytes: int

    @property
    def original(self) -> int:
        """Original size in bits."""
        return sum(r.original for r in self.layers)

    @property
    def total_pq(self) -> int:
        """Compressed size after P+Q, in bits."""
        return sum(r.total_pq for r in self.layers)

    @property
    def total_pqh(self) -> int:
        """Compressed size after P+Q+H, in bits."""
        return sum(r.total_pqh for r in self.layers)

    @property
    def total_bytes(self) -> int:
        """The reported compressed size of the file's encoding (P+Q+H or P+Q), in bytes."""
        return math.ceil((self.total_pqh if self.huffman_coding else self.total_pq) / 8)

    @property
    def overhead_bytes(self) -> int:
        """``file_bytes - total_bytes``: header, manifest, section table, byte padding."""
        return self.file_bytes - self.total_bytes

    def totals(self) -> dict:
        """Totals as a JSON-able dict."""
        return {
            "original_bits": self.original,
            "pq_bits": self.total_pq,
            "pqh_bits": self.total_pqh,
            "rate_pq": _div(self.total_pq, self.original),
            "rate_pqh": _div(self.total_pqh, self.original),
            "ratio_pq": _div(self.original, self.total_pq),
            "ratio_pqh": _div(self.original, self.total_pqh),
            "huffman_coding": self.huffman_coding,
            "total_bytes": self.total_bytes,
            "file_bytes": self.file_bytes,
            "overhead_bytes": self.overhead_bytes,
        }

    def rows(self) -> list[dict]:
        """One JSON-able dict per layer (every field, plus derived columns)."""
        out = []
        for r in self.layers:
            row = dataclasses.asdict(r)
            row.update(
                entries=r.entries,
                density=r.density,
                codes_bits_per_entry_pqh=_div(r.codes_pqh, r.entries),
                index_bits_per_entry_pqh=_div(r.index_pqh, r.entries),
                total_pq=r.total_pq,
                total_pqh=r.total_pqh,
                rate_pq=_div(r.total_pq, r.original),
                rate_pqh=_div(r.total_pqh, r.original),
            )
            out.append(row)
        return out

    def to_json(self) -> str:
        """``{"layers": [...], "totals": {...}}`` as a JSON string."""
        return json.dumps({"layers": self.rows(), "totals": self.totals()}, indent=1)

    def to_csv(self) -> str:
        """One CSV line per layer (all :meth:`rows` fields) and a ``TOTAL`` line."""
        rows = self.rows()
        fields = list(rows[0]) if rows else ["path"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        t = self.totals()
        total = {k: "" for k in fields}
        total.update(
            path="TOTAL",
            original=t["original_bits"],
            total_pq=t["pq_bits"],
            total_pqh=t["pqh_bits"],
            rate_pq=t["rate_pq"],
            rate_pqh=t["rate_pqh"],
        )
        w.writerow(total)
        return buf.getvalue()

    def to_markdown(self) -> str:
        """Deep Compression's table (its Table 2 columns, then the parts they are made of).

        "weight bits (P+Q+H)" and "index bits (P+Q+H)" are the Huffman streams' average bits per
        entry (fillers included); the code tables and chunk offsets are their own column, and
        every column adds up to the totals line.
        """
        head = (
            "| layer | #weights | weights% (P) | weight bits (P+Q) | weight bits (P+Q+H) "
            "| index bits (P+Q) | index bits (P+Q+H) | compress rate (P+Q) "
            "| compress rate (P+Q+H) | fillers | codebook bits | pointer bits "
            "| Huffman tables + offsets bits | dense bits |"
        )
        lines = [head, "|" + "---|" * 14]
        for r in self.layers:
            sparse = r.kind == "sparse"
            lines.append(
                f"| {r.path} | {r.weights:,} | {100 * r.density:.1f}% | {r.bits} "
                + (f"| {_div(r.codes_pqh, r.entries):.2f} " if sparse else "| 32 ")
                + (f"| {r.index_bits} " if sparse else "| - ")
                + (f"| {_div(r.index_pqh, r.entries):.2f} " if sparse else "| - ")
                + f"| {100 * _div(r.total_pq, r.original):.2f}% "
                + f"| {100 * _div(r.total_pqh, r.original):.2f}% "
                + f"| {r.fillers:,} | {r.codebook:,} | {r.pointers:,} "
                + f"| {r.tables + r.stream_offsets:,} | {r.dense:,} |"
            )
        t = self.totals()
        lines.append(
            f"| **total** | {sum(r.weights for r in self.layers):,} "
            f"| {100 * _div(sum(r.nonzero for r in self.layers), sum(r.weights for r in self.layers)):.1f}% "  # noqa: E501
            f"| | | | | {100 * t['rate_pq']:.2f}% | {100 * t['rate_pqh']:.2f}% "
            f"| {sum(r.fillers for r in self.layers):,} "
            f"| {sum(r.codebook for r in self.layers):,} "
            f"| {sum(r.pointers for r in self.layers):,} "
            f"| {sum(r.tables + r.stream_offsets for r in self.layers):,} "
            f"| {sum(r.dense for r in self.layers):,} |"
        )
        mode = "P+Q+H" if self.huffman_coding else "P+Q"
        lines += [
            "",
            f"original {t['original_bits'] / 8:,.0f} B; P+Q {t['pq_bits'] / 8:,.0f} B "
            f"({t['ratio_pq']:.1f}x); P+Q+H {t['pqh_bits'] / 8:,.0f} B ({t['ratio_pqh']:.1f}x); "
            f".dcz file ({mode}) {self.file_bytes:,} B = {self.total_bytes:,} B reported + "
            f"{self.overhead_bytes:,} B header, manifest, section CRCs and byte padding.",
        ]
        return "\n".join(lines)


def compression_report(
    params,
    codebooks,
    codes,
    *,
    bits=None,
    index_bits=4,
    huffman_coding: bool = True,
    chunk_size: int = huffman.DEFAULT_CHUNK_SIZE,
    metadata=None,
    compact_manifest: bool = False,
) -> CompressionReport:
    """Account for every bit of a compressed model (same arguments as ``save_compressed``).

    Args:
      params: the params pytree.
      codebooks: ``{path: (2**bits,) float32}`` or a params-shaped pytree (None = dense leaf).
      codes: matching integer codes arrays, 0 = pruned.
      bits: keyword-only; None (inferred from codebooks), int, or ``{path: int}``.
      index_bits: keyword-only int or ``{path: int}``.
      huffman_coding: keyword-only; which encoding ``file_bytes`` describes.
      chunk_size: keyword-only; Huffman decode chunk size (as the file).
      metadata: keyword-only; the file's manifest metadata (only ``file_bytes`` depends on it).
      compact_manifest: keyword-only; the file's manifest is deflated (only ``file_bytes``).

    Returns:
      a :class:`CompressionReport`; ``.to_markdown()``, ``.to_csv()``, ``.to_json()``.

    Example:
      >>> import numpy as np
      >>> params = {"fc": {"kernel": np.zeros((3, 4), np.float32), "bias": np.ones(4)}}
      >>> codes = {"fc/kernel": np.array([[0, 1, 0, 0], [2, 0, 0, 3], [0, 0, 0, 1]], np.uint8)}
      >>> cbs = {"fc/kernel": np.array([0.0, 0.5, -1.0, 2.0], np.float32)}
      >>> rep = compression_report(params, cbs, codes, index_bits=2)
      >>> rep.original, rep.layers[1].entries, rep.layers[1].codes_pq
      (512, 4, 8)
    """
    kw = dict(bits=bits, index_bits=index_bits, chunk_size=chunk_size)
    leaves = fileformat.encode_leaves(params, codebooks, codes, huffman_coding=True, **kw)
    rows = []
    for leaf in leaves:
        c = leaf.counts
        n = c["weights"]
        if c["kind"] == "dense":
            rows.append(
                LayerReport(leaf.path, "dense", n, n, 0, 32, 0, 32 * n, 0, 0, 0, 0, 0, 0, 0, 0,
                            32 * n, 0.0, 0.0)
            )  # fmt: skip
            continue
        rows.append(
            LayerReport(
                path=leaf.path,
                kind="sparse",
                weights=n,
                nonzero=c["nonzero"],
                fillers=c["fillers"],
                bits=c["bits"],
                index_bits=c["index_bits"],
                original=32 * n,
                codebook=c["codebook"],
                pointers=c["pointers"],
                codes_pq=c["codes_pq"],
                index_pq=c["index_pq"],
                codes_pqh=c["codes_h"],
                index_pqh=c["index_h"],
                tables=c["tables"],
                stream_offsets=c["stream_offsets"],
                dense=0,
                codes_entropy=float(c["codes_entropy"]),
                index_entropy=float(c["index_entropy"]),
            )
        )
    if huffman_coding:
        size = len(
            fileformat.serialize_leaves(
                leaves,
                huffman_coding=True,
                chunk_size=chunk_size,
                metadata=metadata,
                compact_manifest=compact_manifest,
            )
        )
    else:
        size = len(
            fileformat.dumps_compressed(
                params,
                codebooks,
                codes,
                huffman_coding=False,
                metadata=metadata,
                compact_manifest=compact_manifest,
                **kw,
            )
        )
    return CompressionReport(tuple(rows), bool(huffman_coding), size)
