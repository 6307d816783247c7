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
