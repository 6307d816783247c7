"""``make demo``: train LeNet-300-100 on the MNIST that is available and print its test accuracy.

Uses full MNIST when found (see :func:`jaxcomp.data.load_mnist`), else the embedded 5,000-image
subset, and says which. Run ``python -m jaxcomp.demo --help`` for options.
"""

from __future__ import annotations

import argparse

from jaxcomp.data import load_mnist
from jaxcomp.train import train_baseline


def main(argv: list[str] | None = None) -> int:
    """Train a dense LeNet-300-100 for a few epochs and print its test accuracy."""
    p = argparse.ArgumentParser(prog="python -m jaxcomp.demo", description=main.__doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir)
    print(f"data: {data.source} MNIST, {len(data.x_train)} train / {len(data.x_test)} test images")
    _, _, err = train_baseline("lenet-300-100", data, epochs=args.epochs)
    print(f"LeNet-300-100 after {args.epochs} epochs: test accuracy {100 * (1 - err):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
