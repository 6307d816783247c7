"""The results table of docs/guides/any-model-results.md, from the examples' output folders.

Each folder is the ``--out`` of one any-model example run under ``/usr/bin/time -v`` with its
output in ``OUT/log.txt`` (the docs give the exact commands); this prints one Markdown row per
run: parameters, dense and final test error, P+Q+H rate, file size, wall and user CPU time, the
load average at the start and end of the run::

    python examples/any_model_table.py resnet_mnist=runs/resnet lstm_mnist=runs/lstm \
        vit_mnist=runs/vit linen_cnn_mnist=runs/linen-cnn
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import _any_model
import jax
from flax import nnx


def param_count(ex) -> int:
    """Trainable parameters of the example's default model (shapes only, nothing computed)."""
    net = ex.model(rngs=nnx.Rngs(0))
    if isinstance(net, tuple):
        return sum(x.size for x in jax.tree.leaves(net[1]["params"]))
    return sum(x.size for x in jax.tree.leaves(nnx.state(net, nnx.Param)))


def timing(log: Path) -> dict:
    """Wall and user seconds (``/usr/bin/time -v``) and the load averages of ``log.txt``."""
    text = log.read_text(errors="replace") if log.exists() else ""
    out: dict = {}
    m = re.search(r"User time \(seconds\): ([\d.]+)", text)
    out["user"] = float(m.group(1)) if m else None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(p) for p in m.group(1).split(":")]
        out["wall"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    else:
        out["wall"] = None
    loads = re.findall(r"load: ([\d.]+)", text)
    out["load"] = [float(x) for x in loads]
    return out


def row(name: str, run: Path) -> str:
    ex = _any_model.load_example(name)
    rep = json.loads((run / "report.json").read_text())
    e = rep["test_error"]
    t = timing(run / "log.txt")
    delta = 100 * (e["final"] - e["dense"])
    wall = f"{t['wall'] / 60:.1f}" if t["wall"] is not None else "?"
    user = f"{t['user'] / 60:.1f}" if t["user"] is not None else "?"
    load = " / ".join(f"{x:.1f}" for x in t["load"]) or "?"
    goal = rep["compression_rate"] >= 10 and delta <= 0.3
    return (
        f"| {name} | {param_count(ex):,} | {100 * e['dense']:.2f}% | {100 * e['final']:.2f}% "
        f"({delta:+.2f}) | {rep['compression_rate']:.1f}x | {rep['file_bytes']:,} B "
        f"({rep['compression_rate_file']:.1f}x, "
        f"+{100 * (rep['file_bytes'] / rep['compressed_bytes'] - 1):.1f}%) | {wall} / {user} | "
        f"{load} | {'yes' if goal else 'no'} |"
    )


def main(argv: list[str] | None = None) -> int:
    """``python examples/any_model_table.py NAME=RUN [NAME=RUN ...]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="example=folder, e.g. lstm_mnist=runs/lstm")
    args = p.parse_args(argv)
    print(
        "| example | params | dense error | final error (change, points) | P+Q+H | file "
        "(rate, over P+Q+H) | wall / user CPU (min) | load avg start / end | >= 10x at <= +0.3 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for item in args.runs:
        name, sep, folder = item.partition("=")
        if not sep:
            raise SystemExit(f"runs: give NAME=FOLDER (e.g. lstm_mnist=runs/lstm), got {item!r}")
        print(row(name, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
