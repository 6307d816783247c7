"""The ``jaxcomp`` command line: flag parsing, clear errors, the console-script entry."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcomp import cli
from jaxcomp.fileformat import save_compressed

LAYERS = ["fc1/kernel", "fc2/kernel", "fc3/kernel"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None


@pytest.mark.parametrize(
    "text, kind, want",
    [
        ("6", int, {p: 6 for p in LAYERS}),
        ("fc1=5", int, {"fc1/kernel": 5}),
        ("fc1/kernel=0.9, fc3=0.5", float, {"fc1/kernel": 0.9, "fc3/kernel": 0.5}),
    ],
)
def test_parse_layer_values(text, kind, want):
    assert cli.parse_layer_values(text, kind, layers=LAYERS, name="--x") == want


@pytest.mark.parametrize("text, match", [("fc9=3", "unknown layer 'fc9'"), ("fc1=a", "parse")])
def test_parse_layer_values_errors_name_the_flag(text, match):
    with pytest.raises(ValueError, match=match) as e:
        cli.parse_layer_values(text, int, layers=LAYERS, name="--bits")
    assert str(e.value).startswith("--bits")


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--bits", "fc9=4"], "--bits: unknown layer"),
        (["--sparsity", "fc1=1.5"], "sparsity"),
        (["--prune-epochs", "2"], "prune_epochs"),
        (["--prune-fractions", "0.5,x"], "--prune-fractions"),
        (["--load-balance-pes", "0"], "load_balance_pes"),
        (["--load-balance-pes", "x"], "--load-balance-pes"),
        (["--load-balance-pes", "fc9=4"], "--load-balance-pes: unknown layer"),
    ],
)
def test_compress_bad_flags_exit_2_with_a_message(extra, match, tmp_path, capsys):
    argv = ["compress", "--model", "lenet-300-100", "--out", str(tmp_path), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxcomp compress: error:") and match in err


def test_evaluate_rejects_a_damaged_or_foreign_file(tmp_path, capsys):
    f = tmp_path / "m.dcz"
    save_compressed(f, {"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "lenet-300-100"})
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    assert cli.main(["evaluate", str(f)]) == 2
    assert "CRC32" in capsys.readouterr().err
    g = tmp_path / "n.dcz"
    save_compressed(g, {"b": np.ones(2, np.float32)}, {}, {}, metadata={"model": "lenet-300-100"})
    assert cli.main(["evaluate", str(g)]) == 2  # leaves are not lenet-300-100's
    assert "do not match" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "missing.dcz")]) == 2


def test_console_script_entry_point():
    if tomllib is None:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["jaxcomp"] == "jaxcomp.cli:main"
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0


@pytest.mark.parametrize("module", ["jaxcomp.cli", "jaxcomp.pipeline"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
