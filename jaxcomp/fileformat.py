"""The ``.dcz`` container: a compressed model on disk, every byte accounted for (DESIGN §4.3).

Layout (all integers little-endian)::

    header    16 bytes: magic b"\\x89DCZ", uint16 version, uint16 flags (0, or 0x8000 when
              the manifest is deflated), uint32 manifest length M, uint32 CRC32 of (manifest
              as stored + section table)
    manifest  M bytes of compact JSON: {"v": 1, "chunk": chunk size, "leaves": [leaf, ...],
              optionally "m": metadata}; with ``compact_manifest=True`` raw DEFLATE of that JSON
              with a preset dictionary of the manifest's usual words (about 3x smaller, which
              matters for small models: a LeNet's file is then within 1% of its P+Q+H size)
    table     8 bytes per section: uint32 length, uint32 CRC32 of its payload
    payloads  the sections, in manifest order, back to back; the file ends with the last one

Each leaf of the params pytree, in flattening order, is either

* ``"dense"`` -- one section ``values``: float32 values (C order); biases and any leaf without
  codes; or
* ``"sparse"`` -- a weight-shared, pruned leaf, four sections: ``codebook`` (``2**bits``
  float32), ``pointers`` (each row's entry count in the relative-index form of
  :mod:`jaxcomp.encode`, ``pw`` bits each), ``codes`` and ``index`` (the entries' weight codes and
  relative indices). With Huffman coding (the default) a stream section is its code table
  (:func:`jaxcomp.huffman.pack_lengths`), the bit offsets of its decode chunks after the first
  (``bit_length(nbits)`` bits each) and the coded bits; without, the values packed at ``bits``
  / ``index_bits`` bits each.

Reading checks everything (magic, version, sizes, every CRC, the decoded structure) and raises
:class:`DczFormatError` naming the part that is wrong; files are written atomically (temporary
file in the same folder, ``fsync``, rename).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxcomp import huffman
from jaxcomp.atomic import atomic_open
from jaxcomp.encode import RelativeIndex, decode_relative, encode_relative, matrix_shape
from jaxcomp.tree import leaves_with_paths

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "DczFormatError",
    "EncodedLeaf",
    "dumps_compressed",
    "encode_leaves",
    "load_compressed",
    "load_compressed_codes",
    "loads_compressed",
    "loads_compressed_codes",
    "load_metadata",
    "loads_metadata",
    "save_compressed",
    "serialize_leaves",
]

MAGIC = b"\x89DCZ"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHII")
_SECTION = struct.Struct("<II")
_SPARSE_SECTIONS = ("codebook", "pointers", "codes", "index")
_MAX_BITS = 16
#: Header flag: the manifest is raw DEFLATE (wbits -15) with the preset dictionary ``_ZDICT``.
FLAG_DEFLATED_MANIFEST = 0x8000
_ZDICT = (
    b'"p":"conv1/bias","k":"d","s":[20]},{"p":"conv2/kernel","k":"s","s":[5,5,20,50],'
    b'"p":"fc2/bias","k":"d","s":[100]},{"p":"fc3/kernel","k":"s","s":[100,10],"b":'
    b'"r":5,"n":,"pw":,"cn":,"xn":}],"m":{"model":"lenet-300-100","format":"jaxcomp.pipeline"}}'
    b'"l":[{"p":"fc1/bias","k":"d","s":[300]},{"p":"fc1/kernel","k":"s","s":[784,300],"b":6,'
    b'{"v":1,"h":1,"c":1024,'
)
_MAX_MANIFEST = 1 << 26


class DczFormatError(ValueError):
    """A ``.dcz`` file is malformed: truncated, corrupted, or of another format version.

    The message starts with the part of the file that is wrong (``header``, ``manifest``,
    ``section table``, ``<leaf path> <section>``, ``file end``).
    """


class EncodedLeaf(NamedTuple):
    """One params leaf ready to be written, with its exact bit accounting.

    Attributes:
      path: the leaf's path string (:func:`jaxcomp.tree.path_to_str`).
      entry: its manifest record (JSON-able dict).
      sections: ``[(name, payload bytes), ...]`` in file order.
      counts: the accounting of DESIGN §4.3 in bits (ints) and entry counts, see
        :func:`jaxcomp.report.compression_report`.
    """

    path: str
    entry: dict
    sections: list[tuple[str, bytes]]
    counts: dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _per_path(obj, param_paths: list[str], what: str) -> dict[str, Any]:
    """Normalize a ``{path: array}`` dict or a params-shaped pytree (None = absent) to a dict."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping) and all(isinstance(k, str) and k in param_paths for k in obj):
        return {k: v for k, v in obj.items() if v is not None}
    try:
        pairs = leaves_with_paths(obj)
    except Exception as e:  # pragma: no cover - jax raises on exotic inputs
        raise TypeError(f"{what} must be a {{path: array}} dict or a params-shaped pytree") from e
    out = {p: v for p, v in pairs if v is not None}
    unknown = sorted(set(out) - set(param_paths))
    if unknown:
        raise ValueError(
            f"{what} names leaves {unknown[:3]} that are not in params; key it by the params' "
            f"path strings (jaxcomp.tree.path_to_str), e.g. {param_paths[:2]}"
        )
    return out


def _knob(value, path: str, name: str, default=None):
    if isinstance(value, Mapping):
        if path not in value and default is None:
            raise ValueError(f"{name} has no entry for {path!r}; give an int or a per-path dict")
        value = value.get(path, default)
    if value is None:
        return default
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{name} for {path!r} must be a Python int, got {value!r}")
    return int(value)


def _check_layer(path, codes, codebook, bits):
    codebook = np.asarray(codebook)
    if codebook.ndim != 1 or codebook.size < 2 or codebook.size & (codebook.size - 1):
        raise ValueError(
            f"codebooks[{path!r}] must be 1-D of length 2**bits (>= 2), got {codebook.shape}"
        )
    inferred = codebook.size.bit_length() - 1
    if bits is None:
        bits = inferred
    if not 1 <= bits <= _MAX_BITS or inferred != bits:
        raise ValueError(
            f"codebooks[{path!r}] has {codebook.size} entries but bits={bits}; "
            f"it must have 2**bits entries with bits in 1..{_MAX_BITS}"
        )
    if not np.issubdtype(codebook.dtype, np.floating):
        raise TypeError(f"codebooks[{path!r}] must be floating point, got {codebook.dtype}")
    codebook = codebook.astype(np.float32)
    if codebook[0] != 0.0 or np.signbit(codebook[0]):
        raise ValueError(
            f"codebooks[{path!r}][0] must be +0.0 (code 0 = pruned, docs/conventions.md), "
            f"got {codebook[0]}"
        )
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes[{path!r}] must be an integer array, got {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes[{path!r}] must lie in 0..{(1 << bits) - 1} for bits={bits}")
    return codes.astype(np.uint8 if bits <= 8 else np.uint16), codebook, bits


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------


def _huffman_section(symbols: np.ndarray, alphabet: int, chunk: int) -> tuple[bytes, dict]:
    counts = np.bincount(symbols.astype(np.int64), minlength=alphabet)
    lengths = huffman.code_lengths(counts)
    table = huffman.pack_lengths(lengths)
    stream = huffman.huffman_encode(symbols, lengths, chunk_size=chunk)
    ow = max(1, stream.nbits.bit_length())
    offs, off_bits = huffman.pack_bits(stream.chunk_offsets[1:], ow)
    payload = table + offs.tobytes() + stream.data.tobytes()
    acc = {
        "stream": stream.nbits,
        "table": 8 * len(table),
        "offsets": off_bits,
        "entropy": huffman.entropy_bits(counts) * symbols.size,
    }
    return payload, acc


def _fixed_section(values: np.ndarray, width: int) -> bytes:
    data, _ = huffman.pack_bits(values, width)
    return data.tobytes()


def _check_metadata(metadata) -> dict:
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata must be a mapping with string keys (e.g. {{'model': 'lenet-5'}}), "
            f"got {type(metadata).__name__}"
        )
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata keys must be strings, got {bad!r}")
    out = dict(metadata)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"metadata must be JSON-serializable (str, int, float, lists, dicts): {e}"
        ) from None
    return out


def encode_leaves(
    params,
    codebooks,
    codes,
    *,
    bits=None,
    index_bits=4,
    huffman_coding: bool = True,
    chunk_size: int = huffman.DEFAULT_CHUNK_SIZE,
) -> list[EncodedLeaf]:
    """Encode every leaf of ``params`` for the ``.dcz`` file (no I/O).

    Args:
      params, codebooks, codes, bits, index_bits, huffman_coding, chunk_size: as
        :func:`save_compressed`.

    Returns:
      one :class:`EncodedLeaf` per params leaf, in flattening order, with its sections' bytes
      and its bit accounting (``counts``).

    Example:
      >>> params = {"w": np.zeros((2, 3), np.float32), "b": np.ones(3, np.float32)}
      >>> leaves = encode_leaves(params, {"w": np.array([0.0, 1.5], np.float32)},
      ...                        {"w": np.array([[0, 1, 0], [1, 1, 0]], np.uint8)}, index_bits=2)
      >>> [(leaf.path, [name for name, _ in leaf.sections]) for leaf in leaves]
      [('b', ['values']), ('w', ['codebook', 'pointers', 'codes', 'index'])]
      >>> leaves[1].counts["entries"], leaves[1].counts["codes_pq"]
      (3, 3)
    """
    pairs = leaves_with_paths(params)
    paths = [p for p, _ in pairs]
    if len(set(paths)) != len(paths):
        raise ValueError("params has two leaves with the same path string")
    cbs = _per_path(codebooks, paths, "codebooks")
    cds = _per_path(codes, paths, "codes")
    if set(cbs) != set(cds):
        raise ValueError(
            f"codebooks and codes must name the same leaves; only in one: "
            f"{sorted(set(cbs) ^ set(cds))}"
        )
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    out = []
    for path, leaf in pairs:
        shape = [int(d) for d in np.shape(leaf)]
        n = math.prod(shape)
        if path not in cbs:
            values = np.asarray(leaf)
            if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
                raise TypeError(f"params[{path!r}] must be numeric, got {values.dtype}")
            payload = np.ascontiguousarray(values, dtype="<f4").tobytes()
            counts = {"kind": "dense", "weights": n, "dense": 32 * n}
            out.append(
                EncodedLeaf(path, {"p": path, "k": "d", "s": shape}, [("values", payload)], counts)
            )
            continue
        bits_l = _knob(bits, path, "bits", default=None) if bits is not None else None
        ib = _knob(index_bits, path, "index_bits")
        c, cb, b = _check_layer(path, cds[path], cbs[path], bits_l)
        if list(c.shape) != shape:
            raise ValueError(f"codes[{path!r}] has shape {c.shape}, params leaf has {shape}")
        if not 1 <= ib <= 16:
            raise ValueError(f"index_bits for {path!r} must lie in 1..16, got {ib}")
        rel = encode_relative(c, index_bits=ib)
        rows, _ = matrix_shape(shape)
        pw = max(1, int(rel.row_lengths.max(initial=0)).bit_length())
        entries = rel.num_entries
        sections = [
            ("codebook", cb.astype("<f4").tobytes()),
            ("pointers", _fixed_section(rel.row_lengths, pw)),
        ]
        counts = {
            "kind": "sparse",
            "weights": n,
            "nonzero": rel.num_nonzero,
            "fillers": rel.num_fillers,
            "entries": entries,
            "bits": b,
            "index_bits": ib,
            "codebook": 32 * (1 << b),
            "pointers": rows * pw,
            "codes_pq": entries * b,
            "index_pq": entries * ib,
        }
        entry = {"p": path, "k": "s", "s": shape, "b": b, "r": ib, "n": entries, "pw": pw}
        if huffman_coding:
            cpay, cacc = _huffman_section(rel.codes, 1 << b, chunk_size)
            ipay, iacc = _huffman_section(rel.index, 1 << ib, chunk_size)
            sections += [("codes", cpay), ("index", ipay)]
            entry.update(cn=cacc["stream"], xn=iacc["stream"])
            counts.update(
                codes_h=cacc["stream"],
                index_h=iacc["stream"],
                tables=cacc["table"] + iacc["table"],
                stream_offsets=cacc["offsets"] + iacc["offsets"],
                codes_entropy=cacc["entropy"],
                index_entropy=iacc["entropy"],
            )
        else:
            sections += [("codes", _fixed_section(rel.codes, b))]
            sections += [("index", _fixed_section(rel.index, ib))]
        out.append(EncodedLeaf(path, entry, sections, counts))
    return out


def serialize_leaves(
    leaves: list[EncodedLeaf],
    *,
    huffman_coding: bool,
    chunk_size: int,
    metadata: Mapping[str, Any] | None = None,
    compact_manifest: bool = False,
) -> bytes:
    """The ``.dcz`` bytes of leaves from :func:`encode_leaves` (given the same two options).

    Args:
      leaves: the output of :func:`encode_leaves`.
      huffman_coding: keyword-only, as given to :func:`encode_leaves`.
      chunk_size: keyword-only, as given to :func:`encode_leaves`.
      metadata: keyword-only, optional JSON-serializable mapping with string keys stored in the
        manifest (e.g. ``{"model": "lenet-300-100"}``); read back by :func:`load_metadata`.
      compact_manifest: keyword-only; deflate the manifest (header flag 0x8000).

    Returns:
      the file's bytes.

    Example:
      >>> leaves = encode_leaves({"b": np.ones(2, np.float32)}, {}, {})
      >>> len(serialize_leaves(leaves, huffman_coding=True, chunk_size=1024))  # 16 + 54 + 8 + 8
      86
    """
    manifest = {"v": FORMAT_VERSION, "h": int(huffman_coding), "c": chunk_size}
    manifest["l"] = [leaf.entry for leaf in leaves]
    if metadata is not None:
        manifest["m"] = _check_metadata(metadata)
    mbytes = json.dumps(manifest, separators=(",", ":")).encode()
    flags = 0
    if compact_manifest:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=_ZDICT)
        mbytes = c.compress(mbytes) + c.flush()
        flags = FLAG_DEFLATED_MANIFEST
    payloads = [payload for leaf in leaves for _, payload in leaf.sections]
    table = b"".join(_SECTION.pack(len(p), zlib.crc32(p)) for p in payloads)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(mbytes), zlib.crc32(mbytes + table))
    return b"".join([header, mbytes, table, *payloads])


def dumps_compressed(
    params,
    codebooks,
    codes,
    *,
    bits=None,
    index_bits=4,
    huffman_coding: bool = True,
    chunk_size: int = huffman.DEFAULT_CHUNK_SIZE,
    metadata: Mapping[str, Any] | None = None,
    compact_manifest: bool = False,
) -> bytes:
    """The bytes :func:`save_compressed` would write (same arguments), without writing them.

    Example:
      >>> data = dumps_compressed({"b": np.ones(2, np.float32)}, {}, {})
      >>> data[:4], loads_compressed(data)["b"].tolist()
      (b'\x89DCZ', [1.0, 1.0])
    """
    leaves = encode_leaves(
        params,
        codebooks,
        codes,
        bits=bits,
        index_bits=index_bits,
        huffman_coding=huffman_coding,
        chunk_size=chunk_size,
    )
    return serialize_leaves(
        leaves,
        huffman_coding=huffman_coding,
        chunk_size=chunk_size,
        metadata=metadata,
        compact_manifest=compact_manifest,
    )


def save_compressed(
    path,
    params,
    codebooks,
    codes,
    *,
    bits=None,
    index_bits=4,
    huffman_coding: bool = True,
    chunk_size: int = huffman.DEFAULT_CHUNK_SIZE,
    metadata: Mapping[str, Any] | None = None,
    compact_manifest: bool = False,
) -> int:
    """Write a compressed model to a ``.dcz`` file, atomically.

    Leaves named in ``codebooks``/``codes`` are stored weight-shared in relative-index form
    (Huffman-coded by default); every other leaf of ``params`` is stored dense as float32.

    Args:
      path: the file to write (replaced atomically).
      params: the params pytree (e.g. an NNX pure dict); its compressed leaves' values are not
        read, only their shapes.
      codebooks: ``{path string: (2**bits,) float32}`` with ``codebook[0] == 0.0``, or a
        params-shaped pytree with ``None`` at uncompressed leaves.
      codes: same keys/structure: integer arrays of the leaf's shape, ``0`` = pruned.
      bits: keyword-only; ``None`` (infer from the codebook length), an int, or
        ``{path: int}``.
      index_bits: keyword-only int or ``{path: int}``, bits per relative index (1..16).
      huffman_coding: keyword-only; ``False`` stores fixed-width codes and indices (P+Q only).
      chunk_size: keyword-only int, symbols per independently decodable Huffman chunk.
      metadata: keyword-only, optional JSON-serializable mapping with string keys kept in the
        manifest (CRC-checked like the rest), e.g. the model architecture's name; read it back
        with :func:`load_metadata`. Counted in the file's overhead bytes.
      compact_manifest: keyword-only; store the manifest deflated (header flag 0x8000), about
        3x smaller. Readers of this version read both.

    Returns:
      the number of bytes written (the file's size).

    Example:
      >>> import tempfile, os
      >>> params = {"fc": {"kernel": np.zeros((3, 4), np.float32), "bias": np.ones(4)}}
      >>> codes = {"fc/kernel": np.array([[0, 1, 0, 0], [2, 0, 0, 3], [0, 0, 0, 1]], np.uint8)}
      >>> cbs = {"fc/kernel": np.array([0.0, 0.5, -1.0, 2.0], np.float32)}
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, params, cbs, codes, index_bits=2)
      >>> load_compressed(f)["fc"]["kernel"].tolist()[1]
      [-1.0, 0.0, 0.0, 2.0]
    """
    data = dumps_compressed(
        params,
        codebooks,
        codes,
        bits=bits,
        index_bits=index_bits,
        huffman_coding=huffman_coding,
        chunk_size=chunk_size,
        metadata=metadata,
        compact_manifest=compact_manifest,
    )
    with atomic_open(path) as f:
        f.write(data)
    return len(data)


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def _field(rec: dict, key: str, kind, where: str):
    if not isinstance(rec, dict) or key not in rec:
        raise DczFormatError(f"manifest: {where} lacks field {key!r}")
    value = rec[key]
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise DczFormatError(f"manifest: {where} field {key!r} has the wrong type")
    return value


def _int_field(rec, key, where, lo, hi):
    v = _field(rec, key, int, where)
    if not lo <= v <= hi:
        raise DczFormatError(f"manifest: {where} field {key!r} = {v} is outside {lo}..{hi}")
    return v


def _parse_stream(payload: bytes, n: int, nbits: int, alphabet: int, chunk: int):
    if len(payload) < 5:
        raise ValueError("too short for its code table")
    tn, tw = int.from_bytes(payload[:4], "little"), payload[4]
    tlen = 5 + (tn * tw + 7) // 8
    if tlen > len(payload):
        raise ValueError("code table runs past the section")
    lengths = huffman.unpack_lengths(payload[:tlen], alphabet)
    nchunks = -(-n // chunk)
    ow = max(1, nbits.bit_length())
    olen = ((nchunks - 1) * ow + 7) // 8 if nchunks else 0
    if len(payload) != tlen + olen + (nbits + 7) // 8:
        raise ValueError("section size disagrees with its stream length")
    obytes = np.frombuffer(payload, np.uint8, count=olen, offset=tlen)
    offs = huffman.unpack_fixed(obytes, ow, max(nchunks - 1, 0))
    offsets = np.concatenate([[0], offs]).astype(np.int64) if nchunks else np.zeros(0, np.int64)
    data = np.frombuffer(payload, np.uint8, offset=tlen + olen)
    return huffman.huffman_decode(huffman.HuffmanStream(data, nbits, n, offsets, chunk), lengths)


def _parse_manifest(data: bytes):
    """Check the header and the manifest's CRC; return ``(manifest, huff, chunk, leaves, nsec,
    tstart, pstart)``."""
    if len(data) < _HEADER.size:
        raise DczFormatError(f"header: truncated ({len(data)} of {_HEADER.size} bytes)")
    magic, version, flags, mlen, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DczFormatError(f"header: bad magic {magic!r}; this is not a .dcz file")
    if version != FORMAT_VERSION:
        raise DczFormatError(
            f"header: format version {version}, this reader reads version {FORMAT_VERSION}"
        )
    if flags & ~FLAG_DEFLATED_MANIFEST:
        raise DczFormatError(
            f"header: reserved flag bits set ({flags:#06x}); only 0x8000 (deflated manifest) is "
            "known"
        )
    if _HEADER.size + mlen > len(data):
        raise DczFormatError("manifest: truncated (file shorter than its manifest length)")
    mbytes = data[_HEADER.size : _HEADER.size + mlen]
    stored_manifest = mbytes
    if flags & FLAG_DEFLATED_MANIFEST:
        try:
            d = zlib.decompressobj(-15, zdict=_ZDICT)
            mbytes = d.decompress(mbytes, _MAX_MANIFEST)
            if d.unconsumed_tail or d.unused_data or not d.eof:
                raise zlib.error("incomplete or oversized stream")
        except zlib.error as e:
            raise DczFormatError(f"manifest: cannot inflate the deflated manifest ({e})") from None
    try:
        manifest = json.loads(mbytes.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise DczFormatError(f"manifest: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise DczFormatError("manifest: not a JSON object")
    if _field(manifest, "v", int, "header") != FORMAT_VERSION:
        raise DczFormatError("manifest: format version differs from the header's")
    huff = _int_field(manifest, "h", "header", 0, 1)
    chunk = _int_field(manifest, "c", "header", 1, 1 << 30)
    leaves = _field(manifest, "l", list, "header")
    nsec = sum(
        len(_SPARSE_SECTIONS) if isinstance(r, dict) and r.get("k") == "s" else 1 for r in leaves
    )
    tstart = _HEADER.size + len(stored_manifest)
    pstart = tstart + nsec * _SECTION.size
    if pstart > len(data):
        raise DczFormatError("section table: truncated")
    if zlib.crc32(stored_manifest + data[tstart:pstart]) != crc:
        raise DczFormatError("manifest: CRC32 mismatch (manifest or section table corrupted)")
    if "m" in manifest and not isinstance(manifest["m"], dict):
        raise DczFormatError("manifest: metadata field 'm' is not a JSON object")
    return manifest, huff, chunk, leaves, nsec, tstart, pstart


def _parse(data: bytes) -> list[tuple[str, Any]]:
    """Validate and decode a whole file: ``[(path, dense array | (codebook, codes)), ...]``."""
    _, huff, chunk, leaves, nsec, tstart, pstart = _parse_manifest(data)
    table = [_SECTION.unpack_from(data, tstart + i * _SECTION.size) for i in range(nsec)]
    end = pstart + sum(length for length, _ in table)
    if end < len(data):
        raise DczFormatError(f"file end: {len(data) - end} unexpected bytes after the last section")
    out: list[tuple[str, Any]] = []
    offset, k = pstart, 0
    seen = set()
    for i, rec in enumerate(leaves):
        where = f"leaf {i}"
        path = _field(rec, "p", str, where)
        if path in seen:
            raise DczFormatError(f"manifest: leaf path {path!r} appears twice")
        seen.add(path)
        kind = _field(rec, "k", str, path)
        shape = _field(rec, "s", list, path)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise DczFormatError(f"manifest: {path} shape {shape} is not a list of sizes")
        if kind not in ("d", "s"):
            raise DczFormatError(f"manifest: {path} has unknown kind {kind!r}")
        names = ("values",) if kind == "d" else _SPARSE_SECTIONS
        payloads = {}
        for name in names:
            length, scrc = table[k]
            k += 1
            if offset + length > len(data):
                raise DczFormatError(
                    f"{path} {name}: truncated ({len(data) - offset} of {length} bytes)"
                )
            payload = data[offset : offset + length]
            offset += length
            if zlib.crc32(payload) != scrc:
                raise DczFormatError(f"{path} {name}: CRC32 mismatch (corrupted)")
            payloads[name] = payload
        n = math.prod(shape)
        if kind == "d":
            if len(payloads["values"]) != 4 * n:
                raise DczFormatError(f"{path} values: {len(payloads['values'])} bytes for {n}")
            out.append((path, np.frombuffer(payloads["values"], "<f4").reshape(shape).copy()))
            continue
        b = _int_field(rec, "b", path, 1, _MAX_BITS)
        ib = _int_field(rec, "r", path, 1, 16)
        entries = _int_field(rec, "n", path, 0, 1 << 40)
        pw = _int_field(rec, "pw", path, 1, 32)
        rows, cols = matrix_shape(shape)
        name = "codebook"
        try:
            if len(payloads[name]) != 4 << b:
                raise ValueError(f"{len(payloads[name])} bytes, expected {4 << b}")
            codebook = np.frombuffer(payloads[name], "<f4").astype(np.float32)
            name = "pointers"
            if len(payloads[name]) != (rows * pw + 7) // 8:
                raise ValueError(f"{len(payloads[name])} bytes, expected {(rows * pw + 7) // 8}")
            row_lengths = huffman.unpack_fixed(payloads[name], pw, rows)
            if huff:
                name = "codes"
                cn = _int_field(rec, "cn", path, 0, 1 << 48)
                ecodes = _parse_stream(payloads[name], entries, cn, 1 << b, chunk)
                name = "index"
                xn = _int_field(rec, "xn", path, 0, 1 << 48)
                eindex = _parse_stream(payloads[name], entries, xn, 1 << ib, chunk)
            else:
                name = "codes"
                ecodes = huffman.unpack_fixed(payloads[name], b, entries)
                if len(payloads[name]) != (entries * b + 7) // 8:
                    raise ValueError("section size disagrees with its entry count")
                name = "index"
                eindex = huffman.unpack_fixed(payloads[name], ib, entries)
                if len(payloads[name]) != (entries * ib + 7) // 8:
                    raise ValueError("section size disagrees with its entry count")
            name = "pointers"
            dtype = np.uint8 if b <= 8 else np.uint16
            rel = RelativeIndex(ecodes.astype(dtype), eindex, row_lengths, tuple(shape), ib)
            codes = decode_relative(rel)
        except DczFormatError:
            raise
        except (ValueError, IndexError, TypeError, OverflowError, MemoryError) as e:
            raise DczFormatError(f"{path} {name}: {e}") from None
        if codebook[0] != 0.0:
            raise DczFormatError(f"{path} codebook: entry 0 is {codebook[0]}, must be 0.0")
        out.append((path, (codebook, codes)))
    return out


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _nest(pairs: list[tuple[str, Any]]) -> dict:
    tree: dict = {}
    for path, value in pairs:
        parts = path.split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DczFormatError(f"manifest: leaf path {path!r} clashes with another leaf")
        if parts[-1] in node:
            raise DczFormatError(f"manifest: leaf path {path!r} clashes with another leaf")
        node[parts[-1]] = value
    return tree


def loads_compressed(data: bytes) -> dict:
    """:func:`load_compressed` from bytes in memory.

    Example:
      >>> loads_compressed(dumps_compressed({"a": {"b": np.zeros(1, np.float32)}}, {}, {}))
      {'a': {'b': Array([0.], dtype=float32)}}
    """
    pairs = []
    for path, value in _parse(bytes(data)):
        if isinstance(value, tuple):
            codebook, codes = value
            value = codebook[codes]
        pairs.append((path, jnp.asarray(value)))
    return _nest(pairs)


def load_compressed(path) -> dict:
    """Read a ``.dcz`` file back to a params pytree.

    Args:
      path: the file.

    Returns:
      nested dicts keyed by the parts of each leaf's path string (``"fc1/kernel"`` ->
      ``tree["fc1"]["kernel"]``), float32 ``jax.Array`` leaves; a compressed leaf equals
      ``codebook[codes]`` bit for bit (pruned entries ``0.0``).

    Raises:
      DczFormatError: the file is truncated, corrupted, or of another format version.

    Example: see :func:`save_compressed`.
    """
    return loads_compressed(_read(path))


def loads_compressed_codes(data: bytes) -> dict[str, Any]:
    """:func:`load_compressed_codes` from bytes in memory.

    Example:
      >>> data = dumps_compressed({"w": np.zeros(4, np.float32)},
      ...                         {"w": np.array([0.0, 2.0], np.float32)},
      ...                         {"w": np.array([0, 1, 1, 0], np.uint8)})
      >>> codebook, codes = loads_compressed_codes(data)["w"]
      >>> codebook.tolist(), codes.tolist(), codes.dtype
      ([0.0, 2.0], [0, 1, 1, 0], dtype('uint8'))
    """
    return dict(_parse(bytes(data)))


def load_compressed_codes(path) -> dict[str, Any]:
    """Read a ``.dcz`` file without expanding the codes (e.g. to feed ``eie_model``).

    Args:
      path: the file.

    Returns:
      ``{path string: (codebook float32 (2**bits,), codes uint8/uint16) or dense float32}``.

    Raises:
      DczFormatError: as :func:`load_compressed`.
    """
    return loads_compressed_codes(_read(path))


def loads_metadata(data: bytes) -> dict:
    """:func:`load_metadata` from bytes in memory.

    Example:
      >>> data = dumps_compressed({"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "x"})
      >>> loads_metadata(data)
      {'model': 'x'}
    """
    manifest = _parse_manifest(bytes(data))[0]
    return dict(manifest.get("m", {}))


def load_metadata(path) -> dict:
    """Read the metadata stored by ``save_compressed(..., metadata=...)`` (``{}`` when none).

    The header and the manifest are checked (magic, version, CRC); the payloads are not
    decoded.

    Args:
      path: the ``.dcz`` file.

    Returns:
      the metadata dict, e.g. ``{"model": "lenet-300-100"}``.

    Raises:
      DczFormatError: bad header, or a corrupted manifest.

    Example:
      >>> import tempfile, os
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, {"b": np.ones(1, np.float32)}, {}, {}, metadata={"model": "m"})
      >>> load_metadata(f)["model"]
      'm'
    """
    return loads_metadata(_read(path))
