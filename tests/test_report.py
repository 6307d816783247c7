"""Compression report: design.md accounting by hand; the bytes on disk are the bytes claimed."""

from __future__ import annotations

import csv
import io
import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp import fileformat as ff
from jaxcomp.encode import relative_index_counts
from jaxcomp.report import compression_report


def _lenet_like_layer(seed=0, density=0.08, bits=5):
    """A 784 x 300 layer at 8% density, codes from a k-means-like quantization of N(0, 1)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(784, 300)).astype(np.float32)
    keep = rng.random(w.shape) < density
    edges = np.quantile(w[keep], np.linspace(0, 1, 2**bits)[1:-1])
    codes = np.where(keep, np.searchsorted(edges, w) + 1, 0).astype(np.uint8)
    centroids = np.array([w[codes == k].mean() for k in range(1, 2**bits)], np.float32)
    codebook = np.concatenate([[0.0], centroids]).astype(np.float32)
    params = {"fc1": {"kernel": w, "bias": rng.normal(size=300).astype(np.float32)}}
    return params, {"fc1/kernel": codebook}, {"fc1/kernel": codes}


def test_accounting_by_hand():
    params = {"fc": {"kernel": np.zeros((3, 8), np.float32), "bias": np.ones(8, np.float32)}}
    codes = np.zeros((3, 8), np.uint8)
    codes[0, 7] = 1  # gap 7 with index_bits=2: 1 filler
    codes[1, [0, 1]] = [2, 3]
    # row 2 empty
    cb = np.array([0.0, 0.5, -1.0, 2.0], np.float32)
    rep = compression_report(params, {"fc/kernel": cb}, {"fc/kernel": codes}, index_bits=2)
    bias, k = rep.layers
    assert (bias.path, bias.kind, bias.total_pq, bias.total_pqh) == ("fc/bias", "dense", 256, 256)
    assert (k.nonzero, k.fillers, k.entries) == (3, 1, 4)
    assert k.original == 24 * 32 and rep.original == 32 * 32
    assert k.codebook == 4 * 32
    assert k.pointers == 3 * 2  # row entry counts (2, 2, 0) at 2 bits each
    assert (k.codes_pq, k.index_pq) == (4 * 2, 4 * 2)
    assert k.total_pq == 8 + 8 + 128 + 6
    assert rep.total_pq == k.total_pq + 256
    assert k.total_pqh == (
        k.codes_pqh + k.index_pqh + k.tables + k.stream_offsets + k.codebook + k.pointers
    )
    # code stream [0, 1, 2, 3] -> 2 bits each; index stream [3, 3, 0, 0] -> 1 bit each
    assert (k.codes_pqh, k.index_pqh) == (8, 4)


def test_report_matches_the_file_on_disk(tmp_path):
    params, cbs, codes = _lenet_like_layer()
    for huffman_coding in (True, False):
        path = tmp_path / f"fc-{huffman_coding}.dcz"
        ff.save_compressed(path, params, cbs, codes, index_bits=4, huffman_coding=huffman_coding)
        rep = compression_report(params, cbs, codes, index_bits=4, huffman_coding=huffman_coding)
        size = os.path.getsize(path)
        assert rep.file_bytes == size
        assert rep.overhead_bytes >= 0
        assert abs(size - rep.total_bytes) <= 0.01 * size, (size, rep.total_bytes)
    k = rep.layers[1]
    nz, fill = relative_index_counts(jnp.asarray(codes["fc1/kernel"]), index_bits=4)
    assert (k.nonzero, k.fillers) == (int(nz), int(fill))
    assert 0.07 < k.density < 0.09
    # Huffman never loses to fixed width, and never beats the entropy
    assert k.codes_entropy <= k.codes_pqh <= k.codes_pq
    assert k.index_entropy <= k.index_pqh <= k.index_pq
    assert rep.total_pqh < rep.total_pq < rep.original


def test_outputs_markdown_csv_json():
    params, cbs, codes = _lenet_like_layer(density=0.2, bits=4)
    rep = compression_report(params, cbs, codes, index_bits=5)
    md = rep.to_markdown()
    assert "| fc1/kernel | 235,200 |" in md and "| fc1/bias | 300 | 100.0% | 32 " in md
    assert "compress rate (P+Q+H)" in md and f"{rep.file_bytes:,} B" in md
    rows = list(csv.DictReader(io.StringIO(rep.to_csv())))
    assert [r["path"] for r in rows] == ["fc1/bias", "fc1/kernel", "TOTAL"]
    assert int(rows[-1]["total_pqh"]) == rep.total_pqh
    doc = json.loads(rep.to_json())
    assert doc["totals"]["file_bytes"] == rep.file_bytes
    assert doc["totals"]["original_bits"] == 32 * (235200 + 300)
    assert math.isclose(doc["totals"]["ratio_pqh"], rep.original / rep.total_pqh)
    assert doc["layers"][1]["fillers"] == rep.layers[1].fillers


def test_bad_inputs_are_reported():
    params, cbs, codes = _lenet_like_layer()
    with pytest.raises(ValueError, match="index_bits"):
        compression_report(params, cbs, codes, index_bits={"other": 3})


def test_real_eie_layer_report_and_file(eie_layer_path, tmp_path):
    """The shared real layer (AlexNet fc8-like, 25.7% dense, 4-bit codes) stored as a .dcz."""
    z = np.load(eie_layer_path)
    kernel_codes = np.ascontiguousarray(z["codes"].T)  # Flax (in, out) = EIE's (m, n) transposed
    codebook = z["codebook"]
    params = {
        "fc8": {
            "kernel": np.zeros(kernel_codes.shape, np.float32),
            "bias": codebook[z["bias_codes"]],
        }
    }
    cbs, codes = {"fc8/kernel": codebook}, {"fc8/kernel": kernel_codes}
    path = tmp_path / "fc8.dcz"
    size = ff.save_compressed(path, params, cbs, codes, index_bits=4)
    rep = compression_report(params, cbs, codes, index_bits=4)
    assert rep.file_bytes == size == os.path.getsize(path)
    assert abs(size - rep.total_bytes) <= 0.01 * size
    k = rep.layers[1]
    assert k.nonzero == 1_051_032 and k.bits == 4
    # the data's README counts 17,879 fillers for EIE's CSC at N = 1 PE: the same entries
    assert k.fillers == 17_879
    assert rep.original / rep.total_pqh > 5  # 25.7% density x 4+4 bits, then Huffman
    out = ff.load_compressed(path)
    w = np.asarray(out["fc8"]["kernel"])
    assert np.array_equal(w.view(np.uint32), codebook[kernel_codes].view(np.uint32))


@pytest.mark.parametrize("module", ["encode", "huffman", "fileformat", "report", "checkpoint"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"jaxcomp.{module}"), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
