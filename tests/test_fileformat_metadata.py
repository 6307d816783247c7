"""The ``.dcz`` manifest's optional metadata (the model's name, so a file loads alone)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcomp.fileformat import (
    DczFormatError,
    dumps_compressed,
    load_metadata,
    loads_compressed,
    loads_metadata,
    save_compressed,
)


def _model():
    params = {"fc": {"kernel": np.zeros((3, 4), np.float32), "bias": np.ones(4, np.float32)}}
    codes = {"fc/kernel": np.array([[0, 1, 0, 0], [2, 0, 0, 3], [0, 0, 0, 1]], np.uint8)}
    cbs = {"fc/kernel": np.array([0.0, 0.5, -1.0, 2.0], np.float32)}
    return params, cbs, codes


def test_metadata_round_trip_and_weights_unchanged(tmp_path):
    params, cbs, codes = _model()
    meta = {"model": "lenet-300-100", "stages": [1, 2], "x": {"y": 0.5}}
    f = tmp_path / "m.dcz"
    size = save_compressed(f, params, cbs, codes, metadata=meta)
    assert size == f.stat().st_size
    assert load_metadata(f) == meta
    plain = dumps_compressed(params, cbs, codes)
    assert loads_metadata(plain) == {}
    a, b = loads_compressed(f.read_bytes()), loads_compressed(plain)
    assert np.array_equal(a["fc"]["kernel"], b["fc"]["kernel"])
    assert np.array_equal(a["fc"]["bias"], b["fc"]["bias"])
    # the metadata costs only its JSON bytes in the manifest
    assert size - len(plain) == len(',"m":{"model":"lenet-300-100","stages":[1,2],"x":{"y":0.5}}')


def test_metadata_is_crc_checked():
    params, cbs, codes = _model()
    data = bytearray(dumps_compressed(params, cbs, codes, metadata={"model": "lenet-5"}))
    i = bytes(data).index(b"lenet-5")
    data[i] ^= 1
    with pytest.raises(DczFormatError, match="CRC32"):
        loads_metadata(bytes(data))


@pytest.mark.parametrize(
    "meta, err", [(["model"], TypeError), ({1: "a"}, TypeError), ({"a": object()}, TypeError)]
)
def test_bad_metadata_raises(meta, err):
    params, cbs, codes = _model()
    with pytest.raises(err, match="metadata"):
        dumps_compressed(params, cbs, codes, metadata=meta)


def test_compact_manifest_round_trip_smaller_and_checked():
    params, cbs, codes = _model()
    meta = {"model": "lenet-300-100"}
    plain = dumps_compressed(params, cbs, codes, metadata=meta)
    small = dumps_compressed(params, cbs, codes, metadata=meta, compact_manifest=True)
    assert len(small) < len(plain)
    assert loads_metadata(small) == meta
    a, b = loads_compressed(small), loads_compressed(plain)
    assert np.array_equal(a["fc"]["kernel"], b["fc"]["kernel"])
    assert np.array_equal(a["fc"]["bias"], b["fc"]["bias"])
    # every single-bit flip in the header flags or the deflated manifest is caught
    mlen = int.from_bytes(small[8:12], "little")
    for pos in [6, 7, *range(16, 16 + mlen)]:
        for bit in range(8):
            blob = bytearray(small)
            blob[pos] ^= 1 << bit
            with pytest.raises(DczFormatError, match="^(header|manifest)"):
                loads_compressed(bytes(blob))


def test_compact_manifest_on_a_lenet_sized_model_is_a_few_hundred_bytes():
    rng = np.random.default_rng(0)
    params, cbs, codes = {}, {}, {}
    for name, (n, m) in {"fc1": (784, 300), "fc2": (300, 100), "fc3": (100, 10)}.items():
        params[name] = {"kernel": np.zeros((n, m), np.float32), "bias": np.ones(m, np.float32)}
        c = rng.integers(1, 64, size=(n, m)) * (rng.random((n, m)) < 0.08)
        codes[f"{name}/kernel"] = c.astype(np.uint8)
        cbs[f"{name}/kernel"] = np.concatenate([[0.0], rng.normal(size=63)]).astype(np.float32)
    meta = {"model": "lenet-300-100"}
    plain = dumps_compressed(params, cbs, codes, index_bits=5, metadata=meta)
    small = dumps_compressed(params, cbs, codes, index_bits=5, metadata=meta, compact_manifest=True)
    mlen_plain = int.from_bytes(plain[8:12], "little")
    mlen_small = int.from_bytes(small[8:12], "little")
    assert len(plain) - len(small) == mlen_plain - mlen_small
    assert mlen_small < mlen_plain / 2


def test_report_file_bytes_follow_metadata_and_compact_manifest():
    from jaxcomp.report import compression_report

    params, cbs, codes = _model()
    for compact in (False, True):
        meta = {"model": "lenet-5"}
        rep = compression_report(params, cbs, codes, metadata=meta, compact_manifest=compact)
        data = dumps_compressed(params, cbs, codes, metadata=meta, compact_manifest=compact)
        assert rep.file_bytes == len(data)
        assert rep.total_bytes == compression_report(params, cbs, codes).total_bytes
