"""Regenerate the 45 nm SpMat SRAM table of ``eie_model/sram.py`` with CACTI 7.

CACTI 7 is not a dependency of the project: its C++ sources ship in the ``hwcomponents-cacti``
package on PyPI (``hwcomponents_cacti/cacti/``, built with ``make opt``). This script takes the
built ``cacti`` binary and the ``cache.cfg`` shipped beside it, changes only

* ``-size (bytes)`` (the capacity), ``-block size (bytes)`` and ``-output/input bus width``
  (the line width), ``-associativity 1``, ``-technology (u) 0.045``, ``-cache type "ram"``,
* the cell and peripheral device types, ``itrs-hp`` -> ``itrs-lop``
  (why: docs/guides/eie-sram-energy.md),

runs every (capacity, width) of the grid and prints the three tables as ``eie_model/sram.py``
holds them: dynamic read energy per access (pJ), leakage power of the bank (mW), data-array
area (mm^2).

Usage::

    python examples/cacti_sram_table.py --cacti /path/to/hwcomponents_cacti/cacti
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

WIDTHS = (16, 32, 64, 128, 256, 512)
CAPACITIES_KB = (32, 64, 128, 256, 512)
DEVICE = "itrs-lop"

_SUBS = (
    (r"^-size \(bytes\) .*$", "-size (bytes) {size}"),
    (r"^-block size \(bytes\) .*$", "-block size (bytes) {block}"),
    (r"^-associativity .*$", "-associativity 1"),
    (r"^-technology \(u\) .*$", "-technology (u) 0.045"),
    (r"^-output/input bus width .*$", "-output/input bus width {width}"),
    (r"^-cache type .*$", '-cache type "ram"'),
)
_OUT = {
    "read_pj": (r"Total dynamic read energy per access \(nJ\): ([0-9.eE+-]+)", 1e3),
    "leak_mw": (r"Total leakage power of a bank \(mW\): ([0-9.eE+-]+)", 1.0),
    "area_mm2": (r"Data array: Area \(mm2\): ([0-9.eE+-]+)", 1.0),
    "cycle_ns": (r"Cycle time \(ns\):\s+([0-9.eE+-]+)", 1.0),
}


def config(shipped: str, size: int, width: int, device: str = DEVICE) -> str:
    """CACTI's shipped ``cache.cfg`` with the changes listed in the module docstring."""
    out = shipped
    for pat, rep in _SUBS:
        new = rep.format(size=size, block=width // 8, width=width)
        out, n = re.subn(pat, new, out, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"cache.cfg has no line matching {pat!r}")
    return out.replace('"itrs-hp"', f'"{device}"')


def run(cacti_dir: str, size: int, width: int, device: str = DEVICE) -> dict[str, float]:
    """One CACTI run: ``{read_pj, leak_mw, area_mm2, cycle_ns}``."""
    with open(os.path.join(cacti_dir, "cache.cfg")) as f:
        cfg = config(f.read(), size, width, device)
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write(cfg)
    try:
        log = subprocess.run(
            ["./cacti", "-infile", f.name], cwd=cacti_dir, capture_output=True, text=True,
            timeout=300, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    res = {}
    for k, (pat, scale) in _OUT.items():
        m = re.search(pat, log)
        if m is None:
            raise RuntimeError(f"CACTI output for {size} B x {width} b has no {k}:\n{log[-2000:]}")
        res[k] = float(m.group(1)) * scale
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cacti", required=True, help="folder with the built cacti and cache.cfg")
    ap.add_argument("--device", default=DEVICE, help="CACTI device type (itrs-hp/lstp/lop)")
    args = ap.parse_args()
    rows = {
        (c, w): run(args.cacti, c * 1024, w, args.device) for c in CAPACITIES_KB for w in WIDTHS
    }
    print(f"# widths {WIDTHS} (bits), capacities {CAPACITIES_KB} (KB), device {args.device}")
    for k in ("read_pj", "leak_mw", "area_mm2", "cycle_ns"):
        print(f"{k.upper()} = (")
        for c in CAPACITIES_KB:
            vals = ", ".join(f"{rows[c, w][k]:.6g}" for w in WIDTHS)
            print(f"    ({vals}),  # {c} KB")
        print(")")


if __name__ == "__main__":
    main()
