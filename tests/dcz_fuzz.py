"""Crafted ``.dcz`` files with valid CRCs: the engine of tests/test_fileformat_fuzz.py and
benchmarks/fuzz_dcz.py.

A case starts from a real small file (:func:`base_files`), edits its manifest fields, its raw
manifest text, its header or its section payloads (:func:`craft`), and recomputes every CRC so
that the edit reaches the decoders behind them. Each case carries what a correct loader may
return besides refusing it with ``DczFormatError``: the original model (structural edits), or
the model with exactly that edit (edits of value bytes: a dense leaf's bytes, a codebook entry).
:func:`check` runs the loaders on a case and classifies the outcome.
"""

from __future__ import annotations

import json
import math
import random
import struct
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcomp import fileformat as ff

_HEADER = struct.Struct("<4sHHII")
_SPARSE = ("codebook", "pointers", "codes", "index")


class Parsed(NamedTuple):
    version: int
    flags: int
    manifest: dict
    sections: list[tuple[int, str, bytes]]  # (leaf index, section name, payload)


class Case(NamedTuple):
    kind: str  # the mutation's name
    data: bytes
    expected: dict | None  # flat {path: value} a successful load must equal; None = original


def parse(data: bytes) -> Parsed:
    """Split a valid file into its parts."""
    _, version, flags, mlen, _ = _HEADER.unpack_from(data)
    stored = data[16 : 16 + mlen]
    text = ff._inflate(stored, version) if flags & ff.FLAG_DEFLATED_MANIFEST else stored
    manifest = json.loads(text)
    names = []
    for i, rec in enumerate(manifest["l"]):
        names += [(i, s) for s in (("values",) if rec["k"] == "d" else _SPARSE)]
    tstart = 16 + mlen
    off = tstart + 8 * len(names)
    sections = []
    for j, (i, s) in enumerate(names):
        length, _ = struct.unpack_from("<II", data, tstart + 8 * j)
        sections.append((i, s, data[off : off + length]))
        off += length
    return Parsed(version, flags, manifest, sections)


def build(version: int, flags: int, mtext: bytes, payloads: list[bytes], *, deflate: bool) -> bytes:
    """A file with valid CRCs from a manifest's bytes and payloads (deflated when asked)."""
    if deflate:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY,
                             zdict=ff._ZDICT.get(version, ff._ZDICT[2]))  # fmt: skip
        mtext = c.compress(mtext) + c.flush()
        flags |= ff.FLAG_DEFLATED_MANIFEST
    table = b"".join(struct.pack("<II", len(p), zlib.crc32(p)) for p in payloads)
    header = _HEADER.pack(ff.MAGIC, version, flags, len(mtext), zlib.crc32(mtext + table))
    return b"".join([header, mtext, table, *payloads])


def base_files() -> list[bytes]:
    """Three real small files (a few KB) covering every leaf kind and both codings."""
    rng = np.random.default_rng(0)

    def layer(shape, bits, density):
        codes = np.where(rng.random(shape) < density, rng.integers(1, 2**bits, size=shape), 0)
        cb = np.concatenate([[0.0], rng.normal(size=2**bits - 1)]).astype(np.float32)
        return codes.astype(np.uint8 if bits <= 8 else np.uint16), cb

    c1, b1 = layer((40, 24), 4, 0.2)
    c2, b2 = layer((3, 3, 2, 6), 3, 0.5)
    c3, b3 = layer((12, 9), 9, 0.3)
    state = {
        "conv": {"kernel": nnx.Param(jnp.zeros((3, 3, 2, 6), jnp.bfloat16)),
                 "bias": nnx.Param(jnp.asarray(rng.normal(size=6), jnp.bfloat16))},
        "bn": {"mean": nnx.BatchStat(jnp.asarray(rng.normal(size=6), jnp.float32)),
               "var": nnx.BatchStat(jnp.asarray(rng.random(6), jnp.float32))},
        "fc": {"kernel": np.zeros((40, 24), np.float32), "bias": rng.normal(size=24).astype("f4")},
        "wide": {"kernel": np.zeros((12, 9), np.float16)},
        "steps": np.asarray([3, -1], np.int32),
        "flag": np.asarray([True, False, True]),
        "rng": jax.random.key(5),
    }  # fmt: skip
    cbs = {"conv/kernel": b2, "fc/kernel": b1, "wide/kernel": b3}
    codes = {"conv/kernel": c2, "fc/kernel": c1, "wide/kernel": c3}
    return [
        ff.dumps_compressed(state, cbs, codes, index_bits=3, chunk_size=16),
        ff.dumps_compressed(state, cbs, codes, index_bits=2, huffman_coding=False),
        ff.dumps_compressed(state, cbs, codes, index_bits=4, chunk_size=7, compact_manifest=True,
                            metadata={"model": "fuzz", "n": [1, 2, {"a": None}]}),
    ]  # fmt: skip


def flat_decode(data: bytes) -> dict[str, Any]:
    """``{path: ("s", codebook, codes) | ("d", array)}`` as NumPy, for exact comparison."""
    out = {}
    for path, v in ff.loads_compressed_codes(data).items():
        if isinstance(v, tuple):
            out[path] = ("s", np.asarray(v[0]), np.asarray(v[1]))
        elif isinstance(v, jax.Array) and jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            out[path] = ("k", str(jax.random.key_impl(v)), np.asarray(jax.random.key_data(v)))
        else:
            out[path] = ("d", np.asarray(v))
    return out


def _same(a, b) -> bool:
    if a[0] != b[0] or len(a) != len(b):
        return False
    for x, y in zip(a[1:], b[1:], strict=True):
        if isinstance(x, str) or isinstance(y, str):
            if x != y:
                return False
            continue
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------- values

_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 255, 256, 1023, 1024, 65535, 65536,
         2**30, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**48, 2**48 + 1, 2**63 - 1, 2**63,
         2**64, 10**30, -1, -2, -(2**31), -(2**63)]  # fmt: skip
_STRS = ["", "/", "..", "../etc/passwd", "/abs", "a//b", "a/./b", "a/../b", "x\x00y", "\ud800",
         "d", "s", "x", "key", "float32", "bfloat16", "float64", "int64", "bool", "object", "V8",
         "<f4", "complex64", "float8_e4m3fn", "threefry2x32", "rbg", "Param", "BatchStat",
         "no name", "a" * 5000, "fc/kernel", "bn",
         "/".join("a" * 64), "/".join("a" * 65)]  # fmt: skip
_OTHER = [None, True, False, 1.5, float("nan"), -0.0, [], {}, [1], {"a": 1}, "1", [2**64], [-1]]


def _value(r: random.Random, current=None):
    roll = r.random()
    if isinstance(current, int) and not isinstance(current, bool) and roll < 0.4:
        return current + r.choice([-2, -1, 1, 2, current, -current, 7, 1 << r.randrange(1, 70)])
    if isinstance(current, str) and roll < 0.3:
        return r.choice([current + "x", current[:-1], current.upper(), current + "/x"])
    pool = r.choice([_INTS, _INTS, _STRS, _OTHER])
    return r.choice(pool)


def _shape(r: random.Random, shape: list):
    ops = [
        lambda s: s[::-1],
        lambda s: [1, *s],
        lambda s: [*s, 1],
        lambda s: s[:-1],
        lambda s: s[1:],
        lambda s: [*s[:-1], s[-1] * 2] if s else [2],
        lambda s: [s[0] + 1, *s[1:]] if s else [1],
        lambda s: [*s[:-1], r.choice(_INTS)] if s else [r.choice(_INTS)],
        lambda s: [2**40, 2**40, 5],
        lambda s: [2**64],
        lambda s: [0, 2**60, 2**60],
        lambda s: [1] * 40,
        lambda s: [],
        lambda s: [r.choice(_INTS) for _ in s],
        lambda s: [*s[:-1], 10**9],
    ]
    return r.choice(ops)(list(shape))


# ---------------------------------------------------------------------------------- mutations
#
# The expected model is tracked per leaf record (list index = record index) as the flat_decode
# tuples; REFUSE means no load may succeed. The rules below are the specification's, written
# here independently of jaxcomp.fileformat: a renamed leaf keeps its value, a reshaped one its
# bytes (same element count, at most 32 dims), a dense leaf given another dtype of the same
# width reinterprets its bytes, edited value bytes are the new value.

REFUSE = "refuse"
_NAMES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
          "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8}  # fmt: skip
_FLOATS = {"float16", "bfloat16", "float32", "float64"}
_WORDS = {"threefry2x32": 2, "rbg": 4, "unsafe_rbg": 4}


def valid_path(path) -> bool:
    """The specification's rule for a leaf path (independent of the loader's code)."""
    if not isinstance(path, str) or not path or len(path) > 4096 or path.count("/") >= 64:
        return False
    for part in path.split("/"):
        if part in ("", ".", "..") or "\\" in part or not part.isprintable():
            return False
    return True


def _clash(paths: list[str]) -> bool:
    if len(set(paths)) != len(paths):
        return True
    s = set(paths)
    return any("/".join(p.split("/")[:j]) in s for p in paths for j in range(1, p.count("/") + 1))


def _dtype(name: str) -> np.dtype:
    return np.dtype(getattr(jnp, name)) if name != "bool" else np.dtype(np.bool_)


def _reinterpret(raw: bytes, name: str, shape) -> np.ndarray:
    dt = _dtype(name)
    return np.frombuffer(raw, f"<u{dt.itemsize}").astype(f"u{dt.itemsize}").view(dt).reshape(shape)


def _raw(value) -> bytes:
    arr = value[-1]
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes() if arr.dtype.itemsize > 1 else (
        arr.tobytes())  # fmt: skip


def _decode_as(raw: bytes, rec: dict):
    """A dense record's value from its payload bytes (sizes already equal)."""
    if rec.get("t") == "key":
        data = np.frombuffer(raw, "<u4").astype(np.uint32)
        return ("k", rec["ki"], data.reshape((*rec["s"], _WORDS[rec["ki"]])))
    return ("d", _reinterpret(raw, rec.get("t", "float32"), rec["s"]))


class _State:
    def __init__(self, p: Parsed, original: dict):
        self.p = p
        self.paths = list(original)
        self.values = list(original.values())
        self.refuse = False
        self.bad: dict[tuple[int, str], bool] = {}  # (record, field) -> its last edit is invalid


def _edit_field(r, st: _State):
    m = st.p.manifest
    i = r.randrange(len(m["l"]))
    rec = m["l"][i]
    key = r.choice([*rec.keys(), "zz", "t", "g", "ki", "cc"])
    if key == "p":
        return _edit_path(r, st, i)
    if key in rec and r.random() < 0.15:
        del rec[key]
        st.bad[i, key] = key not in ("g", "zz")  # a required field is gone (g is optional)
        return "del:" + key
    if key == "s":
        rec["s"] = new = _shape(r, rec["s"])
        v = st.values[i]
        ok = (isinstance(new, list) and len(new) <= 32
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in new)
              and math.prod(new) == v[-1].size // (_WORDS[v[1]] if v[0] == "k" else 1))  # fmt: skip
        if not ok:
            st.refuse = True
        elif v[0] == "k":
            st.values[i] = ("k", v[1], v[2].reshape((*new, _WORDS[v[1]])))
        else:
            st.values[i] = (*v[:-1], v[-1].reshape(new))
        return "field:s"
    old = rec.get(key)
    rec[key] = new = _value(r, old)
    if new == old and type(new) is type(old):
        return "field:" + key + "(same)"
    v = st.values[i]
    if key == "t":
        if v[0] == "s":
            st.bad[i, key] = not (isinstance(new, str) and new in _FLOATS)
        elif v[0] == "d" and isinstance(new, str) and _NAMES.get(new) == v[1].dtype.itemsize:
            st.values[i] = ("d", _reinterpret(_raw(v), new, v[1].shape))
            st.bad[i, key] = False
        else:
            st.bad[i, key] = True
    elif key == "g":
        st.bad[i, key] = not (isinstance(new, str) and new.isidentifier() and len(new) <= 128)
    elif key == "zz":
        st.bad[i, key] = True  # unknown field
    # any other field: determined by the payloads, so the file is refused or means the same
    return "field:" + key


def _edit_path(r, st: _State, i: int | None = None):
    leaves = st.p.manifest["l"]
    i = r.randrange(len(leaves)) if i is None else i
    others = [q["p"] for j, q in enumerate(leaves) if j != i]
    new = r.choice([*_STRS, *others, others[0].split("/")[0], leaves[i]["p"] + "/x", "n/e/w"])
    leaves[i]["p"] = new
    st.paths[i] = new  # judged once all edits are made (a later edit may fix a clash)
    return "path"


def _edit_top(r, st: _State):
    m = st.p.manifest
    key = r.choice(["v", "h", "c", "l", "m", "zz"])
    if key == "l":
        leaves = m["l"]
        op = r.randrange(4)
        if op == 2:  # swap two records: each takes the other's payloads positionally
            i, j = r.sample(range(len(leaves)), 2)
            ri, rj = leaves[i], leaves[j]
            leaves[i], leaves[j] = rj, ri
            vi, vj = st.values[i], st.values[j]
            same = ri["k"] == rj["k"] == "d" and len(_raw(vi)) == len(_raw(vj))
            if not same:
                st.refuse = True
            else:
                st.values[i] = _decode_as(_raw(vi), rj)
                st.values[j] = _decode_as(_raw(vj), ri)
                st.paths[i], st.paths[j] = st.paths[j], st.paths[i]
            return "top:l-swap"
        if op == 0:
            leaves.pop(r.randrange(len(leaves)))
        elif op == 1:
            leaves.insert(r.randrange(len(leaves) + 1), dict(r.choice(leaves)))
        else:
            m["l"] = _value(r)
        st.refuse = True
        return "top:l"
    if key == "m":
        depth = r.choice([5, 30, 31, 32, 40, 200])
        node: Any = {}
        m["m"] = node
        for _ in range(depth):
            node["x"] = {}
            node = node["x"]
        st.refuse |= depth > 30  # the metadata sits at depth 2; the manifest may nest 32 deep
        return "top:m"
    old = m.get(key)
    if key != "zz" and r.random() < 0.15:
        m.pop(key)
        st.refuse = True
        return "del:" + key
    m[key] = new = _value(r, old)
    if key == "c" and isinstance(new, int) and not isinstance(new, bool) and 1 <= new <= 2**30:
        return "top:c"  # another chunk size: the offsets no longer fit, or one chunk stays one
    if not (new == old and type(new) is type(old)):
        st.refuse = True
    return "top:" + key


def _to_v1(r, st: _State):
    for i, rec in enumerate(st.p.manifest["l"]):
        for k in ("t", "g", "ki", "cc"):
            rec.pop(k, None)
        v = st.values[i]
        if v[0] != "s":
            if len(_raw(v)) != 4 * math.prod(rec["s"]):
                st.refuse = True
            else:
                st.values[i] = ("d", _reinterpret(_raw(v), "float32", rec["s"]))
    st.p.manifest["v"] = 1
    return "to-v1"


def _payload_edit(r, p: Parsed, payloads: list[bytearray]):
    j = r.randrange(len(payloads))
    b = payloads[j]
    _, section, _ = p.sections[j]
    op = r.randrange(7)
    if op == 0 and b:  # bit flips
        for _ in range(r.randint(1, 4)):
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    elif op == 1:  # truncate or extend
        if b and r.random() < 0.5:
            del b[len(b) - r.randint(1, min(len(b), 16)) :]
        else:
            b.extend(r.randbytes(r.randint(1, 16)))
    elif op == 2:  # replace by random bytes
        payloads[j] = bytearray(r.randbytes(r.randint(0, 64)))
    elif op == 3 and section in ("codes", "index") and len(b) >= 5:  # code table header
        if r.random() < 0.5:
            b[0:4] = struct.pack("<I", r.choice([0, 1, 2, 7, 8, 9, 255, 256, 257, 2**32 - 1]))
        else:
            b[4] = r.choice([0, 1, 2, 4, 5, 6, 255])
    elif op == 4 and len(payloads) > 1:  # swap two payloads
        k = r.randrange(len(payloads))
        payloads[j], payloads[k] = payloads[k], payloads[j]
    elif op == 5 and b:  # overwrite a run with 0x00 or 0xff
        s = r.randrange(len(b))
        n = r.randint(1, 8)
        b[s : s + n] = bytes([r.choice([0, 255])]) * len(b[s : s + n])
    elif b:  # one random byte
        b[r.randrange(len(b))] = r.randrange(256)
    return "payload:" + section


def _value_edit(r, p: Parsed, payloads: list[bytearray]):
    """Edit value bytes only: a codebook entry or a dense leaf's byte."""
    options = [j for j, (_, s, _) in enumerate(p.sections) if s in ("values", "codebook")]
    j = r.choice(options)
    _, section, _ = p.sections[j]
    b = payloads[j]
    if section == "codebook":
        entry = r.randrange(len(b) // 4) if r.random() < 0.8 else 0
        new = r.choice([-0.0, 0.0, 1.0, float("nan"), float("inf"), r.uniform(-3, 3)])
        b[4 * entry : 4 * entry + 4] = struct.pack("<f", new)
    else:
        b[r.randrange(len(b))] = r.randrange(256)
    return "value:" + section


def _expect_payloads(st: _State, payloads: list[bytearray]) -> None:
    """Value sections whose bytes changed: the new bytes are the new value (same length),
    or the file must be refused (another length)."""
    for j, (i, section, old) in enumerate(st.p.sections):
        new = bytes(payloads[j])
        if new == old:
            continue
        v = st.values[i]
        if section not in ("values", "codebook") or len(new) != len(old):
            if section in ("values", "codebook"):
                st.refuse = True
            continue  # a structural section: the codes CRC makes it refused or exact
        if section == "codebook":
            st.values[i] = ("s", np.frombuffer(new, "<f4").astype(np.float32), v[2])
        elif v[0] == "k":
            st.values[i] = ("k", v[1], np.frombuffer(new, "<u4").astype(np.uint32).reshape(
                v[2].shape))  # fmt: skip
        else:
            st.values[i] = ("d", _reinterpret(new, _name_of(v[1].dtype), v[1].shape))


def _name_of(dtype) -> str:
    return next(n for n in _NAMES if _dtype(n) == dtype)


def _raw_manifest(r, text: bytes) -> tuple[str, bytes]:
    op = r.randrange(6)
    if op == 5:  # an unterminated string of escaped quotes (quadratic for a naive string scan)
        return "raw:quotes", text[:-1] + b',"zz":"' + b'\\"' * r.choice([10, 50_000]) + b"}"
    if op == 0:
        depth = r.choice([33, 1000, 100_000])
        return "raw:deep", text[:-1] + b',"m":' + b"[" * depth + b"]" * depth + b"}"
    if op == 1:
        return "raw:utf8", text[:-1] + b',"zz":"\xff\xfe"}'
    if op == 2:
        return "raw:trailing", text + r.choice([b" x", b"{}", b"\x00"])
    if op == 3:
        return "raw:nan", text.replace(b'"c":', b'"c":NaN,"y":', 1)
    return "raw:bignum", text.replace(b'"c":', b'"c":' + b"9" * 5000 + b',"y":', 1)


def craft(r: random.Random, base: bytes, original: dict) -> Case:
    """One crafted case from ``base`` (whose decode is ``original``)."""
    p = parse(base)
    st = _State(p, original)
    payloads = [bytearray(s) for _, _, s in p.sections]
    version, flags = p.version, p.flags & ~ff.FLAG_DEFLATED_MANIFEST
    deflate = bool(p.flags & ff.FLAG_DEFLATED_MANIFEST)
    kinds = []
    roll = r.random()
    if roll < 0.03:
        kinds.append(_to_v1(r, st))
        version = 1
    elif roll < 0.12:
        kinds.append(_edit_top(r, st))
    elif roll < 0.55:
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            op = _edit_path if r.random() < 0.2 else _edit_field
            kinds.append(op(r, st))
    elif roll < 0.85:
        for _ in range(r.choice([1, 1, 2])):
            kinds.append(_payload_edit(r, p, payloads))
    else:
        kinds.append(_value_edit(r, p, payloads))
    _expect_payloads(st, payloads)
    text = json.dumps(p.manifest, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if r.random() < 0.08:
        kind, text = _raw_manifest(r, text)
        kinds.append(kind)
        st.refuse = True
    if r.random() < 0.03:
        flags |= r.choice([1, 0x4000])
        kinds.append("header:flags")
        st.refuse = True
    if r.random() < 0.2:
        deflate = not deflate
    data = build(version, flags, text, [bytes(b) for b in payloads], deflate=deflate)
    paths_ok = all(valid_path(q) for q in st.paths) and not _clash(st.paths)
    refuse = st.refuse or any(st.bad.values()) or not paths_ok
    expected = REFUSE if refuse else dict(zip(st.paths, st.values, strict=True))
    return Case("+".join(kinds), data, expected)


def check(case: Case, *, full: bool = True) -> str:
    """Run the loaders on a case: ``"refused"``, ``"exact"``, or a failure description."""
    try:
        ff.loads_metadata(case.data)
    except ff.DczFormatError:
        pass
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        return f"foreign {type(e).__name__} from loads_metadata: {e}"[:300]
    try:
        got = flat_decode(case.data)
    except ff.DczFormatError:
        return "refused"
    except Exception as e:  # noqa: BLE001
        return f"foreign {type(e).__name__}: {e}"[:300]
    if case.expected is REFUSE:
        return f"decoded a file it must refuse ({case.kind})"
    if not equal(got, case.expected):
        return f"decoded to something else ({case.kind})"
    for path, v in got.items():
        if not valid_path(path):
            return f"accepted the leaf path {path!r}"
        if v[0] == "s" and (v[1][0] != 0 or np.signbit(v[1][0])):
            return "accepted a codebook whose entry 0 is not +0.0"
    if full:
        try:
            tree = ff.loads_compressed(case.data)
        except Exception as e:  # noqa: BLE001
            return f"loads_compressed refused what loads_compressed_codes read: {e}"[:300]
        if len(jax.tree.leaves(tree)) < len(got):
            return "loads_compressed lost leaves"
    return "exact"
