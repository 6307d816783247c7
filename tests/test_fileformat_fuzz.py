"""Crafted .dcz files with valid CRCs: refused with DczFormatError or decoded exactly, nothing else.

The cases (tests/dcz_fuzz.py) edit the manifest fields, the raw manifest text, the header and
the section payloads of three real small files, recompute every CRC, and know what a successful
load must give: the original model, or exactly the edited values (a renamed or reshaped leaf,
a dense leaf's bytes, a codebook entry). benchmarks/fuzz_dcz.py runs many more under time and
memory caps.
"""

from __future__ import annotations

import collections
import json
import random

import dcz_fuzz as fz
import pytest

from jaxcomp import fileformat as ff

N_CASES = 2400


@pytest.fixture(scope="module")
def bases():
    files = fz.base_files()
    return [(data, fz.flat_decode(data)) for data in files]


def test_crafted_files_are_refused_or_decoded_exactly(bases):
    outcomes = collections.Counter()
    failures = []
    for i in range(N_CASES):
        r = random.Random(i)
        data, original = bases[r.randrange(len(bases))]
        case = fz.craft(r, data, original)
        out = fz.check(case, full=i % 4 == 0)
        outcomes[out if out in ("refused", "exact") else "failed"] += 1
        if out not in ("refused", "exact"):
            failures.append((i, case.kind, out))
    assert not failures, failures[:10]
    # the cases reach past the CRCs: most are refused, many decode (edited values included)
    assert outcomes["refused"] > N_CASES // 2 and outcomes["exact"] > N_CASES // 10, outcomes


def test_the_oracle_can_fail(bases):
    # a case whose expected model differs from what the file holds is reported, not passed
    data, original = bases[0]
    wrong = dict(original)
    path = next(iter(wrong))
    kind, arr = wrong[path][0], wrong[path][-1]
    wrong[path] = (kind, arr + 1) if kind == "d" else wrong[path]
    assert fz.check(fz.Case("none", data, wrong)).startswith("decoded to something else")
    assert fz.check(fz.Case("none", data, fz.REFUSE)).startswith("decoded a file it must")
    assert fz.check(fz.Case("none", data, original)) == "exact"


def _with_manifest(edit) -> bytes:
    data = fz.base_files()[0]
    p = fz.parse(data)
    edit(p.manifest)
    text = json.dumps(p.manifest, separators=(",", ":")).encode()
    return fz.build(p.version, p.flags, text, [s for _, _, s in p.sections], deflate=False)


def _nested(depth: int) -> list:
    x: list = []
    for _ in range(depth - 1):
        x = [x]
    return x


def _leaf(m, path):
    return next(r for r in m["l"] if r["p"] == path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: _leaf(m, "fc/bias").update(p="../etc/passwd"), "has the component '..'"),
        (lambda m: _leaf(m, "fc/bias").update(p=""), "has an empty path"),
        (lambda m: _leaf(m, "fc/bias").update(p="/"), "has an empty component"),
        (lambda m: _leaf(m, "fc/bias").update(p="/abs"), "has an empty component"),
        (lambda m: _leaf(m, "fc/bias").update(p="fc"), "clashes with another leaf"),
        (lambda m: _leaf(m, "fc/kernel").update(s=[2**40, 2**40, 5]), "product is at most 2"),
        (lambda m: _leaf(m, "fc/kernel").update(s=[2**64]), "product is at most 2"),
        (lambda m: _leaf(m, "fc/kernel").update(s=[40, 10**9]), "max_ratio=256"),
        (lambda m: _leaf(m, "fc/kernel").update(n=2**40), "outside 0..|row lengths add"),
        (lambda m: _leaf(m, "fc/kernel").update(cn=2**40), "symbols cannot take|size"),
        (lambda m: m.update(c=2**30), "section size disagrees"),
        (lambda m: _leaf(m, "fc/bias").update(t="object"), "dtype 'object' is not one of"),
        (lambda m: _leaf(m, "fc/bias").update(zz=1), "unknown fields"),
        (lambda m: m.update(m={"a": _nested(32)}), "nested 34 deep"),
    ],
)
def test_crafted_fields_are_refused_by_name(edit, message):
    with pytest.raises(ff.DczFormatError, match=message):
        ff.loads_compressed(_with_manifest(edit))


def test_deep_json_is_refused_without_recursion():
    data = fz.base_files()[0]
    p = fz.parse(data)
    text = json.dumps(p.manifest, separators=(",", ":")).encode()
    deep = text[:-1] + b',"m":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    blob = fz.build(p.version, p.flags, deep, [s for _, _, s in p.sections], deflate=False)
    for load in (ff.loads_compressed, ff.loads_metadata, ff.loads_compressed_codes):
        with pytest.raises(ff.DczFormatError, match="manifest: JSON nested 200001 deep"):
            load(blob)


def test_negative_zero_codebook_entry_is_refused_like_the_writer_does():
    data = fz.base_files()[1]
    p = fz.parse(data)
    payloads = [bytearray(s) for _, _, s in p.sections]
    j = next(j for j, (_, s, _) in enumerate(p.sections) if s == "codebook")
    payloads[j][0:4] = b"\x00\x00\x00\x80"  # -0.0
    text = json.dumps(p.manifest, separators=(",", ":")).encode()
    blob = fz.build(p.version, p.flags, text, [bytes(b) for b in payloads], deflate=False)
    with pytest.raises(ff.DczFormatError, match=r"codebook: entry 0 is -0.0, must be \+0.0"):
        ff.loads_compressed(blob)


def test_max_ratio_bounds_the_decoded_size_and_can_be_raised():
    import numpy as np

    # a legitimately all-zero 3000 x 3000 layer: 36 MB of float32 from a file of ~400 bytes
    codes = np.zeros((3000, 3000), np.uint8)
    data = ff.dumps_compressed(
        {"w": np.zeros((3000, 3000), np.float32)},
        {"w": np.array([0.0, 1.0], np.float32)},
        {"w": codes},
        index_bits=16,
    )
    assert len(data) < 2000
    with pytest.raises(ff.DczFormatError, match="w: the leaves up to this one decode to"):
        ff.loads_compressed(data)
    out = ff.loads_compressed(data, max_ratio=float("inf"))
    assert out["w"].shape == (3000, 3000) and not out["w"].any()
    assert ff.loads_compressed_codes(data, max_ratio=1e6)["w"][1].shape == (3000, 3000)
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="max_ratio must be a positive number"):
            ff.loads_compressed(data, max_ratio=bad)


def test_json_depth_scan_is_linear_on_escaped_quotes():
    # '"\"\"\"...' made a plain string regex restart at every quote: quadratic, hours for
    # this 1 MB (a regression hangs here; the linear scan takes ~0.1 s, see the benchmark)
    blob = '"' + '\\"' * 500_000
    assert ff._json_depth(blob) == 0
    assert ff._json_depth('{"a":[1,{"b":"[[[\\"]]"}]}') == 3
