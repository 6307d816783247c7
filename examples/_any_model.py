"""What the four any-model examples share: MNIST as arrays, the ``main()`` around
:func:`jaxcomp.compress`, the ``--tiny`` schedule, and importing an example file by name.

``examples/{resnet,lstm,vit,linen_cnn}_mnist.py`` import it as a sibling (``import _any_model``):
``python examples/X.py``, ``jaxcomp compress --model examples/X.py:model`` and the tests put this
folder on ``sys.path`` while an example is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import jaxcomp
from jaxcomp.zoo import load_mnist

HERE = Path(__file__).resolve().parent

#: the schedule of every example's ``--tiny`` run (the tests' smoke size): one epoch per stage
#: on 512 training images, pruning straight to the target
TINY_SCHEDULE = dict(
    train_limit=512,
    dense_epochs=1,
    prune_epochs=1,
    epochs_per_step=1,
    prune_fractions=(1.0,),
    finetune_epochs=1,
)


def mnist_data(data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, ...]:
    """MNIST ``(x_train, y_train, x_test, y_test)``: float32 (n, 28, 28) in [0, 1], int32 labels.

    ``data_dir`` holds ``mnist/`` (default: ``$JAXCOMP_DATA_DIR``, see
    :func:`jaxcomp.zoo.load_mnist`).
    """
    m = load_mnist(data_dir)
    return m.x_train, m.y_train, m.x_test, m.y_test


def run_example(
    argv: list[str] | None,
    *,
    description: str,
    out: str,
    build: Callable[[argparse.Namespace], object],
    config: Callable[..., jaxcomp.CompressConfig],
    tiny_test: int,
    label: Callable[[argparse.Namespace], str],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    describe: Callable[[dict], str] | None = None,
) -> int:
    """An example's ``main``: ``[--out DIR] [--tiny] [--data-dir DIR] [--seed N]`` (and the
    example's own flags), MNIST, :func:`jaxcomp.compress` of ``build(args)`` with
    ``config(tiny=, seed=)``, then one summary line (after ``describe(report)`` when given)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=out, help="output folder (model.dcz, report.json)")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/")
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run")
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    x_tr, y_tr, x_te, y_te = mnist_data(args.data_dir)
    if args.tiny:
        x_te, y_te = x_te[:tiny_test], y_te[:tiny_test]
    t0 = time.perf_counter()
    report = jaxcomp.compress(
        build(args),
        (x_tr, y_tr, x_te, y_te),
        config(tiny=args.tiny, seed=args.seed),
        args.out,
        progress=not args.tiny,
        plots=not args.tiny,
    )
    if describe is not None:
        print(describe(report))
    e = report["test_error"]
    print(
        f"{label(args)}: dense {100 * e['dense']:.2f}% -> final {100 * e['final']:.2f}% test "
        f"error; {report['compression_rate']:.1f}x (P+Q+H), file {report['file_bytes']:,} B "
        f"({report['compression_rate_file']:.1f}x); {time.perf_counter() - t0:.0f} s"
    )
    return 0


def load_example(name: str):
    """Import ``examples/<name>.py`` (a file beside this one, not a package) as a module."""
    path = HERE / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"example: no file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # a Linen dataclass resolves its annotations through it
    spec.loader.exec_module(mod)
    return mod
