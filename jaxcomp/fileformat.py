"""The ``.dcz`` container: a whole compressed model on disk, every byte accounted for.

The full specification (every field, limit and refusal, the version history) is
``docs/guides/dcz-format.md``; the storage accounting is in ``docs/conventions.md``.

Layout (all integers little-endian)::

    header    16 bytes: magic b"\\x89DCZ", uint16 version, uint16 flags (0, or 0x8000 when
              the manifest is deflated), uint32 manifest length M, uint32 CRC32 of (manifest
              as stored + section table)
    manifest  M bytes of compact JSON: {"v": 2, "h": 0|1, "c": chunk size, "l": [leaf, ...],
              optionally "m": metadata}; with ``compact_manifest=True`` raw DEFLATE of that JSON
              with a preset dictionary of the manifest's usual words
    table     8 bytes per section: uint32 length, uint32 CRC32 of its payload
    payloads  the sections, in manifest order, back to back; the file ends with the last one

Each leaf of the model's state (every collection: NNX ``Param``, ``BatchStat``, RNG keys and
counts, Linen ``params`` and ``batch_stats``...), in flattening order, is either

* ``"dense"`` -- one section ``values``: the leaf's bytes, exactly, in its own dtype (C order,
  little-endian; a typed PRNG key array as its ``uint32`` key data); or
* ``"sparse"`` -- a weight-shared, pruned floating-point leaf, four sections: ``codebook``
  (``2**bits`` float32), ``pointers`` (each row's entry count in the relative-index form of
  :mod:`jaxcomp.encode`, ``pw`` bits each), ``codes`` and ``index`` (the entries' weight codes
  and relative indices). With Huffman coding (the default) a stream section is its code table
  (:func:`jaxcomp.huffman.pack_lengths`), the bit offsets of its decode chunks after the first
  (``bit_length(nbits)`` bits each) and the coded bits; without, the values packed at ``bits``
  / ``index_bits`` bits each. The manifest keeps the CRC32 of the decoded codes, and the leaf
  comes back as ``codebook[codes]`` in the leaf's own dtype.

Reading checks everything (magic, version, sizes, every CRC, every declared count against the
bytes that carry it, the decoded structure, the decoded size against ``max_ratio`` times the
file's size) and raises :class:`DczFormatError` naming the part that is wrong, before any loop
or allocation that a bad count would blow up. Files are written atomically
(:func:`jaxcomp.atomic.atomic_open`). Version 1 files (float32 leaves only) still load.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp import huffman
from jaxcomp.atomic import atomic_open
from jaxcomp.encode import RelativeIndex, decode_relative, encode_relative, matrix_shape
from jaxcomp.tree import _key_to_str

__all__ = [
    "DEFAULT_MAX_RATIO",
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
FORMAT_VERSION = 2
_READ_VERSIONS = (1, 2)
_HEADER = struct.Struct("<4sHHII")
_SECTION = struct.Struct("<II")
_SPARSE_SECTIONS = ("codebook", "pointers", "codes", "index")
_MAX_BITS = 16
#: Header flag: the manifest is raw DEFLATE (wbits -15) with the preset dictionary ``_ZDICT``.
FLAG_DEFLATED_MANIFEST = 0x8000
_ZDICT_V1 = (
    b'"p":"conv1/bias","k":"d","s":[20]},{"p":"conv2/kernel","k":"s","s":[5,5,20,50],'
    b'"p":"fc2/bias","k":"d","s":[100]},{"p":"fc3/kernel","k":"s","s":[100,10],"b":'
    b'"r":5,"n":,"pw":,"cn":,"xn":}],"m":{"model":"lenet-300-100","format":"jaxcomp.pipeline"}}'
    b'"l":[{"p":"fc1/bias","k":"d","s":[300]},{"p":"fc1/kernel","k":"s","s":[784,300],"b":6,'
    b'{"v":1,"h":1,"c":1024,'
)
_ZDICT_V2 = (
    b'"t":"uint32","g":"RngCount"},{"p":"dropout/rngs/key","k":"d","s":[],"t":"key",'
    b'"ki":"threefry2x32","g":"RngKey"},"t":"bfloat16","g":"BatchStat"},"s":[5,5,20,50],'
    b'"p":"conv1/bias","k":"d","s":[20],"t":"float32","g":"Param"},{"p":"fc1/kernel","k":"s",'
    b'"s":[784,300],"t":"float32","b":6,"r":5,"n":,"pw":,"cc":,"cn":,"xn":}],"m":{"model":'
    b'"lenet-300-100"}}{"v":2,"h":1,"c":1024,"l":[{"p":"fc1/bias","k":"d","s":[300],"t":"float32"'
)
_ZDICT = {1: _ZDICT_V1, 2: _ZDICT_V2}
_MAX_MANIFEST = 1 << 26
_MANIFEST_INFLATE_RATIO = 32  # an inflated manifest is at most this many times its stored size
_MANIFEST_INFLATE_FLOOR = 1 << 16
_MAX_DEPTH = 32  # JSON nesting of the whole manifest (the metadata sits at depth 2)
_MAX_NDIM = 32
_MAX_DIM = 1 << 48
_MAX_PATH = 4096
_MAX_COMPONENTS = 64  # names in a leaf path (keeps the prefix checks linear in the file)
_MAX_CODE_LENGTH = huffman.DEFAULT_MAX_LENGTH  # what the writer uses; longer codes are refused
_MIN_BUDGET = 1 << 20

DEFAULT_MAX_RATIO = 256
"""Default limit of the loaders: the decoded leaves may take at most this many times the file's
size in bytes (or 1 MiB, whichever is more). The Deep Compression paper reports 35x-49x; raise
it with ``max_ratio=`` for a file you trust that holds mostly-zero layers."""

#: dtypes a leaf may have, by the name stored in the manifest's ``"t"`` field.
_DTYPES = {
    name: np.dtype(getattr(jnp, name))
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    )
}
_DTYPES["bool"] = np.dtype(np.bool_)
_KEY_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
_V1_DENSE = {"p", "k", "s"}
_V1_SPARSE = {"p", "k", "s", "b", "r", "n", "pw", "cn", "xn"}
_V2_DENSE = _V1_DENSE | {"t", "g", "ki"}
_V2_SPARSE = _V1_SPARSE | {"t", "g", "cc"}
_TOP_KEYS = {"v", "h", "c", "l", "m"}


class DczFormatError(ValueError):
    """A ``.dcz`` file is malformed, or does not hold the model a ``target`` asks for.

    The message starts with the part of the file that is wrong (``header``, ``manifest``,
    ``section table``, ``<leaf path> <section>``, ``file end``, ``target``).
    """


class EncodedLeaf(NamedTuple):
    """One state leaf ready to be written, with its exact bit accounting.

    Attributes:
      path: the leaf's path string (:func:`jaxcomp.tree.path_to_str`).
      entry: its manifest record (JSON-able dict).
      sections: ``[(name, payload bytes), ...]`` in file order.
      counts: the storage accounting of ``docs/conventions.md`` in bits (ints) and entry
        counts, see :func:`jaxcomp.report.compression_report`.
    """

    path: str
    entry: dict
    sections: list[tuple[str, bytes]]
    counts: dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Leaves: paths, collections, dtypes
# ----------------------------------------------------------------------------------------------


def _is_variable(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _bad_component(part: str) -> str | None:
    """Why ``part`` cannot be one component of a leaf path (None when it can)."""
    if part == "":
        return "an empty component"
    if part in (".", ".."):
        return f"the component {part!r}"
    if "/" in part or "\\" in part:
        return f"a slash in the component {part!r}"
    if not part.isprintable():
        return f"a control or unpaired character in {part!r}"
    return None


def _check_path(path: str) -> str | None:
    """Why ``path`` is not a relative leaf path inside a model (None when it is)."""
    if not path:
        return "an empty path"
    if len(path) > _MAX_PATH:
        return f"a path of {len(path)} characters (at most {_MAX_PATH})"
    if path.count("/") >= _MAX_COMPONENTS:
        return f"more than {_MAX_COMPONENTS} components"
    for part in path.split("/"):
        why = _bad_component(part)
        if why:
            return why
    return None


def _state_leaves(tree, *, check: bool = True) -> list[tuple[str, Any, str | None]]:
    """``[(path, value, collection or None), ...]`` of a model state in flattening order.

    NNX ``Variable`` leaves give their value and their type's name (``"Param"``,
    ``"BatchStat"``...); ``None`` leaves are absent.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)
    out = []
    for kp, leaf in flat:
        parts = [s for s in (_key_to_str(k) for k in kp) if s is not None]
        for part in parts if check else ():
            why = _bad_component(part)
            if why:
                raise ValueError(
                    f"params leaf {'/'.join(parts)!r} has {why}; a .dcz leaf path is made of "
                    "non-empty names without '/' (rename the dict key)"
                )
        path = "/".join(parts)
        if check and (_check_path(path) if path else None):
            raise ValueError(f"params leaf {path[:80]!r} has {_check_path(path)}; shorten it")
        if not path and check:
            raise ValueError("params is a single array; give a dict of named leaves, e.g. {'w': x}")
        collection = None
        if _is_variable(leaf):
            collection = type(leaf).__name__
            leaf = leaf.get_value()
        if leaf is None:
            continue
        out.append((path, leaf, collection))
    return out


def _dtype_name(dtype) -> str | None:
    for name, dt in _DTYPES.items():
        if dt == dtype:
            return name
    return None


def _to_le_bytes(arr: np.ndarray) -> bytes:
    data = arr.tobytes(order="C")
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:  # pragma: no cover - big-endian hosts
        data = np.frombuffer(data, f"u{arr.dtype.itemsize}").byteswap().tobytes()
    return data


def _from_le_bytes(buf: bytes, dtype: np.dtype, shape) -> np.ndarray:
    u = np.frombuffer(buf, np.dtype(f"u{dtype.itemsize}"))
    if sys.byteorder == "big" and dtype.itemsize > 1:  # pragma: no cover - big-endian hosts
        u = u.byteswap()
    return u.copy().view(dtype).reshape(shape)


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
        pairs = [(p, v) for p, v, _ in _state_leaves(obj, check=False)]
    except Exception as e:  # pragma: no cover - jax raises on exotic inputs
        raise TypeError(f"{what} must be a {{path: array}} dict or a params-shaped pytree") from e
    out = {p: v for p, v in pairs if v is not None}
    unknown = sorted(set(out) - set(param_paths))
    if unknown:
        hint = ""
        if any(f"params/{u}" in param_paths for u in unknown):
            hint = f" (a Linen variables dict: pass {{'params': {what}}})"
        raise ValueError(
            f"{what} names leaves {unknown[:3]} that are not in params; key it by the params' "
            f"path strings (jaxcomp.tree.path_to_str), e.g. {param_paths[:2]}{hint}"
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
    if not jnp.issubdtype(codebook.dtype, jnp.floating):
        raise TypeError(f"codebooks[{path!r}] must be floating point, got {codebook.dtype}")
    cb32 = codebook.astype(np.float32)
    back = cb32.astype(codebook.dtype)
    if not np.array_equal(back, codebook, equal_nan=True):
        raise ValueError(
            f"codebooks[{path!r}] ({codebook.dtype}) has values that float32 cannot hold exactly; "
            "the file stores codebooks as float32: pass codebook.astype(np.float32)"
        )
    if cb32[0] != 0.0 or np.signbit(cb32[0]):
        raise ValueError(
            f"codebooks[{path!r}][0] must be +0.0 (code 0 = pruned, docs/conventions.md), "
            f"got {cb32[0]}"
        )
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes[{path!r}] must be an integer array, got {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes[{path!r}] must lie in 0..{(1 << bits) - 1} for bits={bits}")
    return codes.astype(np.uint8 if bits <= 8 else np.uint16), cb32, bits


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (strings skipped; linear, no recursion)."""
    # a string, or an unterminated one up to the end: every match consumes what it scans, so
    # the scan stays linear even for '"\\"\\"\\"...' (a plain string regex is quadratic there)
    bare = re.sub(r'"(?:[^"\\]+|\\.)*(?:"|\\?\Z)', "", text, flags=re.DOTALL)
    b = np.frombuffer(bare.encode("utf-8", "surrogatepass"), np.uint8)
    if b.size == 0:
        return 0
    step = np.isin(b, (0x5B, 0x7B)).astype(np.int64) - np.isin(b, (0x5D, 0x7D))
    return int(np.cumsum(step).max(initial=0))


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
        text = json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"metadata must be JSON-serializable (str, int, float, lists, dicts): {e}"
        ) from None
    if _json_depth(text) > _MAX_DEPTH - 1:
        raise ValueError(
            f"metadata nests deeper than {_MAX_DEPTH - 1} levels of lists/dicts; flatten it"
        )
    return out


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------


def _huffman_section(symbols: np.ndarray, alphabet: int, chunk: int) -> tuple[bytes, dict]:
    counts = np.bincount(symbols.astype(np.int64), minlength=alphabet)
    lengths = huffman.code_lengths(counts, max_length=_MAX_CODE_LENGTH)
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


def _codes_crc(codes: np.ndarray) -> int:
    return zlib.crc32(_to_le_bytes(np.ascontiguousarray(codes)))


def _dense_leaf(path: str, leaf, collection: str | None) -> EncodedLeaf:
    entry: dict[str, Any] = {"p": path, "k": "d"}
    if _is_key(leaf):
        impl = str(jax.random.key_impl(leaf))
        if impl not in _KEY_IMPLS:
            raise TypeError(f"params[{path!r}] is a PRNG key of impl {impl!r}; known: {_KEY_IMPLS}")
        values = np.asarray(jax.random.key_data(leaf)).astype(np.uint32)
        entry.update(s=[int(d) for d in leaf.shape], t="key", ki=impl)
    else:
        values = np.asarray(leaf)
        name = _dtype_name(values.dtype)
        if name is None:
            raise TypeError(
                f"params[{path!r}] has dtype {values.dtype}; a .dcz leaf is one of "
                f"{sorted(_DTYPES)} or a PRNG key array"
            )
        entry.update(s=[int(d) for d in values.shape], t=name)
    if collection is not None:
        entry["g"] = collection
    payload = _to_le_bytes(values)
    counts = {"kind": "dense", "weights": math.prod(entry["s"]), "dense": 8 * len(payload)}
    return EncodedLeaf(path, entry, [("values", payload)], counts)


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
    """Encode every leaf of a model state for the ``.dcz`` file (no I/O).

    Args:
      params, codebooks, codes, bits, index_bits, huffman_coding, chunk_size: as
        :func:`save_compressed`.

    Returns:
      one :class:`EncodedLeaf` per state leaf, in flattening order, with its sections' bytes
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
    triples = _state_leaves(params)
    paths = [p for p, _, _ in triples]
    if len(set(paths)) != len(paths):
        raise ValueError("params has two leaves with the same path string")
    cbs = _per_path(codebooks, paths, "codebooks")
    cds = _per_path(codes, paths, "codes")
    if set(cbs) != set(cds):
        raise ValueError(
            f"codebooks and codes must name the same leaves; only in one: "
            f"{sorted(set(cbs) ^ set(cds))}"
        )
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunk_size > 1 << 30:
        raise ValueError(f"chunk_size must be at most 2**30, got {chunk_size}")
    out = []
    for path, leaf, collection in triples:
        if path not in cbs:
            out.append(_dense_leaf(path, leaf, collection))
            continue
        dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        name = _dtype_name(dtype)
        if name is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params[{path!r}] has dtype {dtype}; a weight-shared leaf must be floating "
                "point (float16, bfloat16, float32, float64)"
            )
        shape = [int(d) for d in np.shape(leaf)]
        n = math.prod(shape)
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
        entry: dict[str, Any] = {"p": path, "k": "s", "s": shape, "t": name}
        if collection is not None:
            entry["g"] = collection
        entry.update(b=b, r=ib, n=entries, pw=pw, cc=_codes_crc(c))
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
      >>> len(serialize_leaves(leaves, huffman_coding=True, chunk_size=1024))  # 16 + 68 + 8 + 8
      100
    """
    manifest = {"v": FORMAT_VERSION, "h": int(huffman_coding), "c": chunk_size}
    manifest["l"] = [leaf.entry for leaf in leaves]
    if metadata is not None:
        manifest["m"] = _check_metadata(metadata)
    mbytes = json.dumps(manifest, separators=(",", ":")).encode()
    flags = 0
    if compact_manifest:
        zdict = _ZDICT[FORMAT_VERSION]
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
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
    """Write a whole compressed model to a ``.dcz`` file, atomically.

    Leaves named in ``codebooks``/``codes`` are stored weight-shared in relative-index form
    (Huffman-coded by default) and come back as ``codebook[codes]`` in the leaf's dtype; every
    other leaf is stored exactly, bit for bit, in its own dtype. Give the whole state so that
    nothing is lost: ``nnx.state(model)`` (parameters, BatchNorm statistics, RNG state; each
    leaf's NNX variable type is recorded) or a Linen variables dict
    (``{"params": ..., "batch_stats": ...}``).

    Args:
      path: the file to write (replaced atomically).
      params: the model state: any pytree of arrays (an NNX ``State`` or its pure dict, a Linen
        variables dict, nested dicts). Leaf dtypes: bool, (u)int8..64, float16, bfloat16,
        float32, float64, typed PRNG keys. Compressed leaves' values are not read, only their
        shapes and dtypes.
      codebooks: ``{path string: (2**bits,) float}`` with ``codebook[0] == +0.0`` (values that
        float32 holds exactly), or a params-shaped pytree with ``None`` at uncompressed leaves.
        Paths are those of ``params`` (for a Linen variables dict ``"params/Dense_0/kernel"``:
        pass ``{"params": codebooks}``).
      codes: same keys/structure: integer arrays of the leaf's shape, ``0`` = pruned.
      bits: keyword-only; ``None`` (infer from the codebook length), an int, or
        ``{path: int}``.
      index_bits: keyword-only int or ``{path: int}``, bits per relative index (1..16).
      huffman_coding: keyword-only; ``False`` stores fixed-width codes and indices (P+Q only).
      chunk_size: keyword-only int (1..2**30), symbols per independently decodable Huffman
        chunk.
      metadata: keyword-only, optional JSON-serializable mapping with string keys kept in the
        manifest (CRC-checked like the rest, at most 31 levels deep), e.g. the model
        architecture's name; read it back with :func:`load_metadata`. Counted in the file's
        overhead bytes.
      compact_manifest: keyword-only; store the manifest deflated (header flag 0x8000), about
        3x smaller. Readers of this version read both.

    Returns:
      the number of bytes written (the file's size).

    Raises:
      ValueError, TypeError: a leaf name, dtype, codebook or codes array the file cannot hold
        exactly; the message names the leaf. Nothing is written then.

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

_KEY_WORDS = {"threefry2x32": 2, "rbg": 4, "unsafe_rbg": 4}  # uint32 words per key


class _Manifest(NamedTuple):
    manifest: dict
    version: int
    huff: int
    chunk: int
    leaves: list
    nsec: int
    tstart: int
    pstart: int


class _Leaf(NamedTuple):
    """A decoded leaf: ``value`` is an array, a typed-key's ``uint32`` data, or
    ``(codebook, codes)``; ``dtype`` is a ``_DTYPES`` name or ``"key"``."""

    path: str
    value: Any
    shape: tuple[int, ...]
    dtype: str
    collection: str | None
    impl: str | None


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


def _check_max_ratio(max_ratio) -> float:
    if (
        not isinstance(max_ratio, int | float | np.integer | np.floating)
        or isinstance(max_ratio, bool)
        or not max_ratio > 0
    ):
        raise ValueError(
            f"max_ratio must be a positive number (decoded bytes per file byte; math.inf for no "
            f"limit), got {max_ratio!r}"
        )
    return float(max_ratio)


class _Budget:
    """The decoded bytes a file may still claim: ``max(max_ratio * file size, 1 MiB)``."""

    def __init__(self, file_bytes: int, max_ratio: float):
        self.file_bytes, self.max_ratio = file_bytes, max_ratio
        self.limit = max(max_ratio * file_bytes, _MIN_BUDGET)
        self.used = 0

    def take(self, path: str, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise DczFormatError(
                f"{path}: the leaves up to this one decode to {self.used:,} bytes, more than "
                f"max_ratio={self.max_ratio:g} x the file's {self.file_bytes:,} bytes (or 1 MiB); "
                "if you trust this file, pass a larger max_ratio"
            )


def _parse_stream(payload: bytes, n: int, nbits: int, alphabet: int, chunk: int):
    """Decode one Huffman stream section, its counts checked against its bytes first."""
    if len(payload) < 5:
        raise ValueError("too short for its code table")
    tn, tw = int.from_bytes(payload[:4], "little"), payload[4]
    if tn > alphabet:
        raise ValueError(f"code table names {tn} symbols, more than the alphabet of {alphabet}")
    tlen = 5 + (tn * tw + 7) // 8
    if tlen > len(payload):
        raise ValueError("code table runs past the section")
    lengths = huffman.unpack_lengths(payload[:tlen], alphabet)
    longest = int(lengths.max(initial=0))
    if longest > _MAX_CODE_LENGTH:
        raise ValueError(f"a code of {longest} bits; the format allows {_MAX_CODE_LENGTH}")
    if not n <= nbits <= n * longest:
        raise ValueError(
            f"{n} symbols cannot take {nbits} bits (each takes 1..{max(longest, 1)} bits)"
        )
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


def _inflate(stored: bytes, version: int) -> bytes:
    limit = min(_MAX_MANIFEST, _MANIFEST_INFLATE_RATIO * len(stored) + _MANIFEST_INFLATE_FLOOR)
    try:
        d = zlib.decompressobj(-15, zdict=_ZDICT[version])
        out = d.decompress(stored, limit)
        if d.unconsumed_tail:
            raise zlib.error(f"inflates to more than {limit:,} bytes")
        if d.unused_data or not d.eof:
            raise zlib.error("incomplete stream or data after its end")
    except zlib.error as e:
        raise DczFormatError(f"manifest: cannot inflate the deflated manifest ({e})") from None
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _parse_manifest(data: bytes) -> _Manifest:
    """Check the header, the manifest's size, depth and CRC; return its parts."""
    if len(data) < _HEADER.size:
        raise DczFormatError(f"header: truncated ({len(data)} of {_HEADER.size} bytes)")
    magic, version, flags, mlen, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DczFormatError(f"header: bad magic {magic!r}; this is not a .dcz file")
    if version not in _READ_VERSIONS:
        raise DczFormatError(
            f"header: format version {version}, this reader reads versions "
            f"{', '.join(map(str, _READ_VERSIONS))}"
        )
    if flags & ~FLAG_DEFLATED_MANIFEST:
        raise DczFormatError(
            f"header: reserved flag bits set ({flags:#06x}); only 0x8000 (deflated manifest) is "
            "known"
        )
    if _HEADER.size + mlen > len(data):
        raise DczFormatError("manifest: truncated (file shorter than its manifest length)")
    if mlen > _MAX_MANIFEST:
        raise DczFormatError(f"manifest: {mlen:,} bytes, more than the {_MAX_MANIFEST:,} allowed")
    stored = data[_HEADER.size : _HEADER.size + mlen]
    mbytes = _inflate(stored, version) if flags & FLAG_DEFLATED_MANIFEST else stored
    try:
        text = mbytes.decode()
        depth = _json_depth(text)
        if depth > _MAX_DEPTH:
            raise DczFormatError(f"manifest: JSON nested {depth} deep, more than {_MAX_DEPTH}")
        manifest = json.loads(text, parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError) as e:
        if isinstance(e, DczFormatError):
            raise
        raise DczFormatError(f"manifest: not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict):
        raise DczFormatError("manifest: not a JSON object")
    unknown = sorted(set(manifest) - _TOP_KEYS)
    if unknown:
        raise DczFormatError(f"manifest: unknown fields {unknown[:5]}")
    if _field(manifest, "v", int, "header") != version:
        raise DczFormatError("manifest: format version differs from the header's")
    huff = _int_field(manifest, "h", "header", 0, 1)
    chunk = _int_field(manifest, "c", "header", 1, 1 << 30)
    leaves = _field(manifest, "l", list, "header")
    nsec = sum(
        len(_SPARSE_SECTIONS) if isinstance(r, dict) and r.get("k") == "s" else 1 for r in leaves
    )
    tstart = _HEADER.size + len(stored)
    pstart = tstart + nsec * _SECTION.size
    if pstart > len(data):
        raise DczFormatError("section table: truncated")
    if zlib.crc32(stored + data[tstart:pstart]) != crc:
        raise DczFormatError("manifest: CRC32 mismatch (manifest or section table corrupted)")
    if "m" in manifest and not isinstance(manifest["m"], dict):
        raise DczFormatError("manifest: metadata field 'm' is not a JSON object")
    return _Manifest(manifest, version, huff, chunk, leaves, nsec, tstart, pstart)


def _record(rec, i: int, version: int, huff: int, seen: set) -> tuple[str, str, tuple[int, ...]]:
    """Check a leaf record's path, kind, shape and field names; return them."""
    path = _field(rec, "p", str, f"leaf {i}")
    why = _check_path(path)
    if why:
        raise DczFormatError(f"manifest: leaf {i} path {path[:80]!r} has {why}")
    if path in seen:
        raise DczFormatError(f"manifest: leaf path {path!r} appears twice")
    parts = path.split("/")
    prefixes = ["/".join(parts[:j]) for j in range(1, len(parts))]
    if f"{path}/" in seen or any(q in seen for q in prefixes):
        raise DczFormatError(f"manifest: leaf path {path!r} clashes with another leaf")
    seen.add(path)
    seen.update(f"{q}/" for q in prefixes)  # "a/" marks a folder: no leaf may be named "a"
    kind = _field(rec, "k", str, path)
    if kind not in ("d", "s"):
        raise DczFormatError(f"manifest: {path} has unknown kind {kind[:20]!r}")
    allowed = {
        (1, "d"): _V1_DENSE,
        (1, "s"): _V1_SPARSE,
        (2, "d"): _V2_DENSE,
        (2, "s"): _V2_SPARSE,
    }[version, kind]
    if kind == "s" and not huff:
        allowed = allowed - {"cn", "xn"}
    unknown = sorted(set(rec) - allowed)
    if unknown:
        raise DczFormatError(f"manifest: {path} has unknown fields {unknown[:5]}")
    shape = _field(rec, "s", list, path)
    ok = len(shape) <= _MAX_NDIM and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= _MAX_DIM for d in shape
    )
    if not ok or math.prod(max(d, 1) for d in shape) > _MAX_DIM:
        raise DczFormatError(
            f"manifest: {path} shape {str(shape)[:80]} is not a list of at most {_MAX_NDIM} "
            f"sizes whose product is at most 2**48"
        )
    return path, kind, tuple(shape)


def _leaf_dtype(rec, path: str, version: int, kind: str) -> tuple[str, str | None, str | None]:
    """``(dtype name, key impl, collection)`` of a record."""
    if version == 1:
        return "float32", None, None
    name = _field(rec, "t", str, path)
    impl = None
    if name == "key" and kind == "d":
        impl = _field(rec, "ki", str, path)
        if impl not in _KEY_IMPLS:
            raise DczFormatError(f"manifest: {path} key impl {impl[:40]!r} is not {_KEY_IMPLS}")
    elif name not in _DTYPES or (kind == "s" and not jnp.issubdtype(_DTYPES[name], jnp.floating)):
        allowed = sorted(_DTYPES) if kind == "d" else ["bfloat16", "float16", "float32", "float64"]
        raise DczFormatError(f"manifest: {path} dtype {name[:40]!r} is not one of {allowed}")
    elif "ki" in rec:
        raise DczFormatError(f"manifest: {path} has a key impl but dtype {name!r}")
    collection = None
    if "g" in rec:
        collection = _field(rec, "g", str, path)
        if not collection.isidentifier() or len(collection) > 128:
            raise DczFormatError(f"manifest: {path} collection {collection[:40]!r} is no name")
    return name, impl, collection


def _dense_value(path, payload, shape, name, impl, budget):
    words = _KEY_WORDS[impl] if name == "key" else 1
    dtype = np.dtype(np.uint32) if name == "key" else _DTYPES[name]
    nbytes = math.prod(shape) * words * dtype.itemsize
    if len(payload) != nbytes:
        raise DczFormatError(f"{path} values: {len(payload)} bytes for {nbytes} ({name} {shape})")
    budget.take(path, nbytes)
    if name == "bool" and payload.translate(None, b"\x00\x01"):
        raise DczFormatError(f"{path} values: a bool byte other than 0 or 1")
    full = (*shape, words) if name == "key" else shape
    return _from_le_bytes(payload, dtype, full)


def _sparse_value(path, rec, payloads, shape, name, version, huff, chunk, budget):
    b = _int_field(rec, "b", path, 1, _MAX_BITS)
    ib = _int_field(rec, "r", path, 1, 16)
    entries = _int_field(rec, "n", path, 0, 1 << 48)
    pw = _int_field(rec, "pw", path, 1, 32)
    crc = _int_field(rec, "cc", path, 0, (1 << 32) - 1) if version >= 2 else None
    if huff:
        cn = _int_field(rec, "cn", path, 0, 1 << 51)
        xn = _int_field(rec, "xn", path, 0, 1 << 51)
    rows, cols = matrix_shape(shape)
    budget.take(path, rows * cols * max(4, _DTYPES[name].itemsize))
    name_ = "codebook"
    try:
        if len(payloads[name_]) != 4 << b:
            raise ValueError(f"{len(payloads[name_])} bytes, expected {4 << b}")
        codebook = np.frombuffer(payloads[name_], "<f4").astype(np.float32)
        if codebook[0] != 0.0 or np.signbit(codebook[0]):
            raise ValueError(f"entry 0 is {codebook[0]}, must be +0.0 (code 0 = pruned)")
        name_ = "pointers"
        if len(payloads[name_]) != (rows * pw + 7) // 8:
            raise ValueError(f"{len(payloads[name_])} bytes, expected {(rows * pw + 7) // 8}")
        row_lengths = huffman.unpack_fixed(payloads[name_], pw, rows)
        if int(row_lengths.sum()) != entries:
            raise ValueError(f"row lengths add to {int(row_lengths.sum())}, not {entries} entries")
        if huff:
            name_ = "codes"
            ecodes = _parse_stream(payloads[name_], entries, cn, 1 << b, chunk)
            name_ = "index"
            eindex = _parse_stream(payloads[name_], entries, xn, 1 << ib, chunk)
        else:
            for name_, width in (("codes", b), ("index", ib)):
                if len(payloads[name_]) != (entries * width + 7) // 8:
                    raise ValueError("section size disagrees with its entry count")
            ecodes = huffman.unpack_fixed(payloads["codes"], b, entries)
            eindex = huffman.unpack_fixed(payloads["index"], ib, entries)
        name_ = "pointers"
        dtype = np.uint8 if b <= 8 else np.uint16
        rel = RelativeIndex(ecodes.astype(dtype), eindex, row_lengths, shape, ib)
        codes = decode_relative(rel)
    except (ValueError, IndexError, TypeError, OverflowError) as e:
        raise DczFormatError(f"{path} {name_}: {e}") from None
    if crc is not None and _codes_crc(codes) != crc:
        raise DczFormatError(f"{path} codes: CRC32 of the decoded codes mismatch (corrupted)")
    return codebook, codes


def _parse(data: bytes, max_ratio: float) -> list[_Leaf]:
    """Validate and decode a whole file, leaf by leaf."""
    m = _parse_manifest(data)
    budget = _Budget(len(data), max_ratio)
    table = [_SECTION.unpack_from(data, m.tstart + i * _SECTION.size) for i in range(m.nsec)]
    end = m.pstart + sum(length for length, _ in table)
    if end < len(data):
        raise DczFormatError(f"file end: {len(data) - end} unexpected bytes after the last section")
    out: list[_Leaf] = []
    offset, k = m.pstart, 0
    seen: set[str] = set()
    for i, rec in enumerate(m.leaves):
        path, kind, shape = _record(rec, i, m.version, m.huff, seen)
        name, impl, collection = _leaf_dtype(rec, path, m.version, kind)
        payloads = {}
        for section in ("values",) if kind == "d" else _SPARSE_SECTIONS:
            length, scrc = table[k]
            k += 1
            if offset + length > len(data):
                raise DczFormatError(
                    f"{path} {section}: truncated ({len(data) - offset} of {length} bytes)"
                )
            payload = data[offset : offset + length]
            offset += length
            if zlib.crc32(payload) != scrc:
                raise DczFormatError(f"{path} {section}: CRC32 mismatch (corrupted)")
            payloads[section] = payload
        if kind == "d":
            value = _dense_value(path, payloads["values"], shape, name, impl, budget)
        else:
            value = _sparse_value(
                path, rec, payloads, shape, name, m.version, m.huff, m.chunk, budget
            )
        out.append(_Leaf(path, value, shape, name, collection, impl))
    return out


def _guarded(fn, *args):
    """Run a parser: anything a malformed file can raise becomes :class:`DczFormatError`."""
    try:
        return fn(*args)
    except DczFormatError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, RecursionError) as e:
        raise DczFormatError(f"file: malformed ({type(e).__name__}: {e})") from None


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


def _as_jax(leaf: _Leaf, value: np.ndarray):
    """A ``jax.Array`` of ``value``; 64-bit values stay NumPy unless ``jax_enable_x64`` is on
    (JAX would silently truncate them)."""
    # jax.device_put, not jnp.asarray: the latter compiles a conversion per new shape and dtype
    # (~40 ms each, seconds for a model of many shapes)
    if leaf.dtype == "key":
        return jax.random.wrap_key_data(jax.device_put(value), impl=leaf.impl)
    if value.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        return value
    return jax.device_put(value)


def _target_dtype(x) -> tuple[str | None, str | None]:
    """``(dtype name or "key", key impl)`` of a target leaf; ``(None, None)`` when it has none."""
    if isinstance(x, bool | int | float | complex):
        return None, None
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return None, None
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(x)) if isinstance(x, jax.Array) else None
        return "key", impl
    return _dtype_name(np.dtype(dtype)) or str(dtype), None


def _check_target(leaves: list[_Leaf], target) -> None:
    try:
        want = {p: (v, g) for p, v, g in _state_leaves(target)}
    except ValueError as e:
        raise DczFormatError(f"target: {e}") from None
    have = {leaf.path: leaf for leaf in leaves}
    missing = [p for p in want if p not in have]
    if missing:
        raise DczFormatError(
            f"target: leaf {missing[0]!r} is missing from the file"
            + (f" (and {len(missing) - 1} more: {missing[1:4]})" if len(missing) > 1 else "")
            + f"; the file holds {sorted(have)[:6]}"
        )
    extra = [p for p in have if p not in want]
    if extra:
        raise DczFormatError(
            f"target: the file's leaf {extra[0]!r} is not in the target"
            + (f" (and {len(extra) - 1} more: {extra[1:4]})" if len(extra) > 1 else "")
            + "; load without target= to see everything"
        )
    for p, (x, collection) in want.items():
        leaf = have[p]
        shape = tuple(int(d) for d in np.shape(x))
        if shape != leaf.shape:
            raise DczFormatError(f"target: leaf {p!r} has shape {shape}, the file {leaf.shape}")
        name, impl = _target_dtype(x)
        if name is not None and (name, impl or leaf.impl) != (leaf.dtype, leaf.impl):
            raise DczFormatError(
                f"target: leaf {p!r} has dtype {name}, the file {leaf.dtype}"
                + (f" ({impl} vs {leaf.impl})" if name == "key" and leaf.dtype == "key" else "")
            )
        if collection and leaf.collection and collection != leaf.collection:
            raise DczFormatError(
                f"target: leaf {p!r} is an nnx.{collection}, the file's an nnx.{leaf.collection}"
            )


def loads_compressed(data: bytes, *, target=None, max_ratio: float = DEFAULT_MAX_RATIO) -> dict:
    """:func:`load_compressed` from bytes in memory.

    Example:
      >>> loads_compressed(dumps_compressed({"a": {"b": np.zeros(1, np.float32)}}, {}, {}))
      {'a': {'b': Array([0.], dtype=float32)}}
    """
    max_ratio = _check_max_ratio(max_ratio)
    leaves = _guarded(_parse, bytes(data), max_ratio)
    if target is not None:
        _check_target(leaves, target)
    pairs = []
    for leaf in leaves:
        value = leaf.value
        if isinstance(value, tuple):
            codebook, codes = value
            with np.errstate(
                over="ignore", invalid="ignore"
            ):  # to float16: inf, NaN, as the params
                value = codebook.astype(_DTYPES[leaf.dtype])[codes]
        pairs.append((leaf.path, _as_jax(leaf, value)))
    return _nest(pairs)


def load_compressed(path, *, target=None, max_ratio: float = DEFAULT_MAX_RATIO) -> dict:
    """Read a ``.dcz`` file back to the model state's pure dict.

    The result goes straight into a model: for NNX ``state = nnx.state(model)``,
    ``nnx.replace_by_pure_dict(state, tree)``, ``nnx.update(model, state)``; for Linen it is the
    variables dict (``model.apply(tree, x)``). See ``docs/guides/dcz-format.md``.

    Args:
      path: the file.
      target: keyword-only, optional: the state the file must hold (``nnx.state(model)``, a
        Linen variables dict, a pure dict, or their ``jax.eval_shape``); its values are never
        read. A leaf missing from the file, a file leaf the target lacks, or a shape, dtype or
        NNX variable type that differs raises :class:`DczFormatError` naming the leaf.
      max_ratio: keyword-only, the most decoded bytes allowed per byte of file (at least 1 MiB
        in all is allowed), :data:`DEFAULT_MAX_RATIO` by default; ``math.inf`` lifts the limit.
        A weight-shared leaf counts ``max(4, itemsize)`` bytes per element. Bounds the memory a
        hostile file can claim.

    Returns:
      nested dicts keyed by the parts of each leaf's path string (``"fc1/kernel"`` ->
      ``tree["fc1"]["kernel"]``; list indices become ``"0"``, ``"1"``...), ``jax.Array``
      leaves in the dtype they were saved with (64-bit ones stay NumPy arrays unless
      ``jax_enable_x64`` is on; typed PRNG keys come back typed). A dense leaf is bit for bit
      what was saved; a compressed leaf equals ``codebook[codes]`` in its dtype (pruned
      entries ``0``). Version 1 files give float32 leaves.

    Raises:
      DczFormatError: the file is truncated, corrupted, crafted, of another format version, too
        large for ``max_ratio``, or does not match ``target``. No other exception comes from
        the file's content (``OSError`` from opening ``path`` passes through).
      ValueError: ``max_ratio`` is not a positive number.

    Example:
      >>> import tempfile, os, jax.numpy as jnp
      >>> state = {"bn": {"mean": jnp.ones(2, jnp.bfloat16)}, "step": jnp.int32(7)}
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, state, {}, {})
      >>> tree = load_compressed(f, target=state)
      >>> tree["bn"]["mean"].dtype, int(tree["step"])
      (dtype(bfloat16), 7)
      >>> load_compressed(f, target={"bn": {"mean": jnp.ones(3)}})  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      jaxcomp.fileformat.DczFormatError: target: the file's leaf 'step' is not in the target; ...
    """
    return loads_compressed(_read(path), target=target, max_ratio=max_ratio)


def loads_compressed_codes(data: bytes, *, max_ratio: float = DEFAULT_MAX_RATIO) -> dict[str, Any]:
    """:func:`load_compressed_codes` from bytes in memory.

    Example:
      >>> data = dumps_compressed({"w": np.zeros(4, np.float32)},
      ...                         {"w": np.array([0.0, 2.0], np.float32)},
      ...                         {"w": np.array([0, 1, 1, 0], np.uint8)})
      >>> codebook, codes = loads_compressed_codes(data)["w"]
      >>> codebook.tolist(), codes.tolist(), codes.dtype
      ([0.0, 2.0], [0, 1, 1, 0], dtype('uint8'))
    """
    max_ratio = _check_max_ratio(max_ratio)
    out = {}
    for leaf in _guarded(_parse, bytes(data), max_ratio):
        value = leaf.value
        if leaf.dtype == "key":
            value = _as_jax(leaf, value)
        out[leaf.path] = value
    return out


def load_compressed_codes(path, *, max_ratio: float = DEFAULT_MAX_RATIO) -> dict[str, Any]:
    """Read a ``.dcz`` file without expanding the codes (e.g. to feed ``eie_model``).

    Args:
      path: the file.
      max_ratio: keyword-only, as :func:`load_compressed`.

    Returns:
      A dict from each leaf's path string to ``(codebook, codes)`` (codebook float32
      ``(2**bits,)``, codes uint8/uint16) for a compressed leaf, or to a dense NumPy array in its
      saved dtype (typed PRNG keys as typed jax arrays).

    Raises:
      DczFormatError: as :func:`load_compressed`.

    Example:
      >>> import tempfile, os
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, {"w": np.zeros(3, np.float32)},
      ...                     {"w": np.array([0.0, 2.0], np.float32)},
      ...                     {"w": np.array([1, 0, 1], np.uint8)})
      >>> codebook, codes = load_compressed_codes(f)["w"]
      >>> codes.tolist()
      [1, 0, 1]
    """
    return loads_compressed_codes(_read(path), max_ratio=max_ratio)


def loads_metadata(data: bytes) -> dict:
    """:func:`load_metadata` from bytes in memory.

    Example:
      >>> data = dumps_compressed({"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "x"})
      >>> loads_metadata(data)
      {'model': 'x'}
    """
    manifest = _guarded(_parse_manifest, bytes(data)).manifest
    return dict(manifest.get("m", {}))


def load_metadata(path) -> dict:
    """Read the metadata stored by ``save_compressed(..., metadata=...)`` (``{}`` when none).

    The header and the manifest are checked (magic, version, size, depth, CRC); the payloads
    are not decoded.

    Args:
      path: the ``.dcz`` file.

    Returns:
      the metadata dict, e.g. ``{"model": "lenet-300-100"}``.

    Raises:
      DczFormatError: bad header, or a corrupted manifest (nothing else from the content).

    Example:
      >>> import tempfile, os
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, {"b": np.ones(1, np.float32)}, {}, {}, metadata={"model": "m"})
      >>> load_metadata(f)["model"]
      'm'
    """
    return loads_metadata(_read(path))
