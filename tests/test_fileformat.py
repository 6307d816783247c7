"""The .dcz container: exact round trips, every corruption caught and named, atomic writes."""

from __future__ import annotations

import json
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcomp import atomic
from jaxcomp import fileformat as ff
from jaxcomp.fileformat import DczFormatError


def _layer(rng, shape, density, bits):
    dtype = np.uint8 if bits <= 8 else np.uint16
    codes = np.where(rng.random(shape) < density, rng.integers(1, 2**bits, size=shape), 0)
    codebook = np.concatenate([[0.0], rng.normal(size=2**bits - 1)]).astype(np.float32)
    return codes.astype(dtype), codebook


def _model(seed=0):
    rng = np.random.default_rng(seed)
    c1, b1 = _layer(rng, (60, 40), 0.15, 4)
    c2, b2 = _layer(rng, (5, 5, 1, 6), 0.5, 3)
    params = {
        "conv": {"kernel": np.zeros((5, 5, 1, 6), np.float32), "bias": rng.normal(size=6)},
        "fc": {"kernel": np.zeros((60, 40), np.float32), "bias": rng.normal(size=40)},
    }
    params = {k: {n: np.asarray(v, np.float32) for n, v in d.items()} for k, d in params.items()}
    return params, {"fc/kernel": b1, "conv/kernel": b2}, {"fc/kernel": c1, "conv/kernel": c2}


def _bits_equal(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("huffman_coding", [True, False])
def test_round_trip_bit_exact(tmp_path, huffman_coding):
    params, cbs, codes = _model()
    path = tmp_path / "m.dcz"
    n = ff.save_compressed(
        path, params, cbs, codes, index_bits=3, huffman_coding=huffman_coding, chunk_size=64
    )
    assert n == os.path.getsize(path)
    out = ff.load_compressed(path)
    assert set(out) == {"conv", "fc"} and set(out["fc"]) == {"kernel", "bias"}
    for p in ("fc/kernel", "conv/kernel"):
        a, b = p.split("/")
        assert _bits_equal(out[a][b], cbs[p][codes[p]])
        assert out[a][b].dtype == jnp.float32
    assert _bits_equal(out["fc"]["bias"], params["fc"]["bias"])
    raw = ff.load_compressed_codes(path)
    assert np.array_equal(raw["fc/kernel"][1], codes["fc/kernel"])
    assert raw["fc/kernel"][1].dtype == np.uint8
    assert _bits_equal(raw["conv/bias"], params["conv"]["bias"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple),
    st.floats(0.0, 1.0),
    st.integers(1, 12),
    st.integers(1, 8),
    st.booleans(),
    st.integers(1, 50),
    st.integers(0, 999),
)
def test_round_trip_property(shape, density, bits, index_bits, huffman_coding, chunk, seed):
    rng = np.random.default_rng(seed)
    codes, cb = _layer(rng, shape, density, bits)
    params = {"w": np.zeros(shape, np.float32), "b": rng.normal(size=shape[-1:]).astype("f4")}
    data = ff.dumps_compressed(
        params,
        {"w": cb},
        {"w": codes},
        index_bits=index_bits,
        huffman_coding=huffman_coding,
        chunk_size=chunk,
    )
    out = ff.loads_compressed(data)
    assert _bits_equal(out["w"], cb[codes]) and _bits_equal(out["b"], params["b"])


def test_pytree_and_path_dict_inputs_agree():
    params, cbs, codes = _model()
    tree_cbs = {"conv": {"kernel": cbs["conv/kernel"], "bias": None}, "fc": {"kernel": None}}
    tree_cbs["fc"]["kernel"] = cbs["fc/kernel"]
    tree_codes = {"conv": {"kernel": codes["conv/kernel"]}, "fc": {"kernel": codes["fc/kernel"]}}
    assert ff.dumps_compressed(params, tree_cbs, tree_codes) == ff.dumps_compressed(
        params, cbs, codes
    )
    jparams = {k: {n: jnp.asarray(v) for n, v in d.items()} for k, d in params.items()}
    assert ff.dumps_compressed(jparams, cbs, codes, bits={"fc/kernel": 4, "conv/kernel": 3}) == (
        ff.dumps_compressed(params, cbs, codes)
    )


def _layout(data: bytes):
    """(payload start, [(leaf path, section name, offset, length)]) of a valid file."""
    _, _, _, mlen, _ = struct.unpack_from("<4sHHII", data)
    manifest = json.loads(data[16 : 16 + mlen])
    names = []
    for rec in manifest["l"]:
        secs = ["values"] if rec["k"] == "d" else ["codebook", "pointers", "codes", "index"]
        names += [(rec["p"], s) for s in secs]
    tstart = 16 + mlen
    off = tstart + 8 * len(names)
    out = []
    for i, (p, s) in enumerate(names):
        length, _ = struct.unpack_from("<II", data, tstart + 8 * i)
        out.append((p, s, off, length))
        off += length
    assert off == len(data)
    return out


def test_corruptions_name_their_section():
    params, cbs, codes = _model()
    data = ff.dumps_compressed(params, cbs, codes, index_bits=3, chunk_size=64)

    def err(blob) -> str:
        with pytest.raises(DczFormatError) as e:
            ff.loads_compressed(blob)
        return str(e.value)

    def flip(pos, bit=0):
        b = bytearray(data)
        b[pos] ^= 1 << bit
        return bytes(b)

    assert err(flip(0)).startswith("header: bad magic")
    assert err(flip(4, 1)).startswith("header: format version 0")
    assert err(flip(6)).startswith("header: reserved")
    assert err(flip(20)).startswith("manifest")
    assert err(data[:10]).startswith("header: truncated")
    assert err(data[:30]).startswith("manifest: truncated")
    assert err(data + b"\0").startswith("file end")
    for path, name, off, length in _layout(data):
        assert err(flip(off + length // 2, 5)).startswith(f"{path} {name}: CRC32")
        assert err(data[: off + length - 1]).startswith(f"{path} {name}: truncated")
    newer = bytearray(data)
    newer[4:6] = struct.pack("<H", ff.FORMAT_VERSION + 1)
    assert f"format version {ff.FORMAT_VERSION + 1}" in err(bytes(newer))


def test_fuzz_2000_corruptions_raise_only_dcz_errors():
    params, cbs, codes = _model(1)
    data = ff.dumps_compressed(params, cbs, codes, index_bits=3, chunk_size=64)
    size = len(data)
    rng = np.random.default_rng(123)
    seen = set()
    for i in range(2000):
        kind = i % 4
        b = bytearray(data)
        if kind == 0:  # one bit
            pos = int(rng.integers(size))
            b[pos] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # a burst of random bytes
            pos = int(rng.integers(size))
            n = int(rng.integers(1, 9))
            b[pos : pos + n] = rng.integers(
                0, 256, size=len(b[pos : pos + n]), dtype=np.uint8
            ).tobytes()
            if bytes(b) == data:
                b[pos] ^= 0xFF
        elif kind == 2:  # truncation
            b = b[: int(rng.integers(size))]
        else:  # several scattered bit flips
            for pos in rng.integers(size, size=int(rng.integers(2, 6))):
                b[int(pos)] ^= 1 << int(rng.integers(8))
            if bytes(b) == data:
                b = b[:-1]
        with pytest.raises(DczFormatError) as e:
            ff.loads_compressed(bytes(b))
        seen.add(str(e.value).split(":")[0])
    assert {"header", "manifest", "fc/kernel codes", "fc/bias values"} <= seen


def test_no_half_written_file_after_an_error(tmp_path, monkeypatch):
    params, cbs, codes = _model()
    path = tmp_path / "m.dcz"
    path.write_bytes(b"old contents")

    def boom(*_):
        raise OSError("disk full")

    for target in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(atomic.os, target, boom)  # the write path of save_compressed
            with pytest.raises(OSError, match="disk full"):
                ff.save_compressed(path, params, cbs, codes)
        assert os.listdir(tmp_path) == ["m.dcz"]
        assert path.read_bytes() == b"old contents"
    with pytest.raises(ValueError):  # bad input: nothing touched either
        ff.save_compressed(path, params, cbs, {**codes, "fc/kernel": codes["fc/kernel"] + 200})
    assert os.listdir(tmp_path) == ["m.dcz"] and path.read_bytes() == b"old contents"


def test_bad_inputs_raise_clear_errors():
    params, cbs, codes = _model()
    with pytest.raises(ValueError, match=r"codebooks\['fc/kernel'\]\[0\] must be \+0.0"):
        ff.dumps_compressed(params, {**cbs, "fc/kernel": cbs["fc/kernel"] + 1}, codes)
    with pytest.raises(ValueError, match="2\\*\\*bits"):
        ff.dumps_compressed(params, {**cbs, "fc/kernel": np.zeros(5, np.float32)}, codes)
    with pytest.raises(ValueError, match="bits=3"):
        ff.dumps_compressed(params, cbs, codes, bits=3)
    with pytest.raises(ValueError, match="not in params"):
        ff.dumps_compressed(params, {**cbs, "nope": cbs["fc/kernel"]}, codes)
    with pytest.raises(ValueError, match="same leaves"):
        ff.dumps_compressed(params, cbs, {"fc/kernel": codes["fc/kernel"]})
    with pytest.raises(ValueError, match="shape"):
        ff.dumps_compressed(params, cbs, {**codes, "fc/kernel": codes["fc/kernel"][:5]})
    with pytest.raises(TypeError, match="integer"):
        ff.dumps_compressed(params, cbs, {**codes, "fc/kernel": codes["fc/kernel"] * 1.0})
    with pytest.raises(ValueError, match="index_bits"):
        ff.dumps_compressed(params, cbs, codes, index_bits=0)


def _refresh_crcs(b: bytearray, layout) -> bytes:
    """Recompute every CRC so a corruption reaches the decoders behind them."""
    import zlib

    _, _, _, mlen, _ = struct.unpack_from("<4sHHII", b)
    tstart = 16 + mlen
    for i, (_, _, off, length) in enumerate(layout):
        struct.pack_into("<II", b, tstart + 8 * i, length, zlib.crc32(bytes(b[off : off + length])))
    struct.pack_into("<I", b, 12, zlib.crc32(bytes(b[16 : tstart + 8 * len(layout)])))
    return bytes(b)


def test_corruptions_behind_valid_crcs_never_crash():
    # An adversarial file (CRCs recomputed) must load or raise DczFormatError, nothing else.
    params, cbs, codes = _model(2)
    data = ff.dumps_compressed(params, cbs, codes, index_bits=3, chunk_size=64)
    layout = _layout(data)
    _, _, _, mlen, _ = struct.unpack_from("<4sHHII", data)
    rng = np.random.default_rng(7)
    raised = 0
    for i in range(600):
        b = bytearray(data)
        if i % 3 == 0:  # inside the JSON manifest
            pos = 16 + int(rng.integers(mlen))
        else:  # inside a section payload
            _, _, off, length = layout[int(rng.integers(len(layout)))]
            if length == 0:
                continue
            pos = off + int(rng.integers(length))
        b[pos] ^= 1 << int(rng.integers(8))
        try:
            ff.loads_compressed(_refresh_crcs(b, layout))
        except DczFormatError:
            raised += 1
    assert raised > 100
