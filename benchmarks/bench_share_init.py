"""share_weights init on the Flax NNX tutorial CNN: one k-means compilation per bits value.

The model is the CNN of the Flax NNX MNIST tutorial (conv 1->32, BatchNorm, conv 32->64,
BatchNorm, dense 3136->256, dense 256->10; four kernel shapes). Measured in the same process:

* ``per shape``: the previous behaviour, :func:`jaxcomp.kmeans_fit` on each kernel as it is,
  which compiles one k-means program per kernel shape;
* ``bucketed``: ``jaxcomp.share_weights(...).init``, which pads the kernels of one bits value to
  a common size and fits them with one program (the same codebooks and codes, bit for bit).

Both start from empty compilation caches (``jax.clear_caches()``); the warm times repeat the
same call. Run: ``python benchmarks/bench_share_init.py [--bits 5]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax
from flax import nnx

import jaxcomp


class CNN(nnx.Module):
    """The NNX tutorial's MNIST CNN."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=5)
    args = ap.parse_args(argv)
    params = nnx.state(CNN(rngs=nnx.Rngs(0)), nnx.Param)
    kernels = [x for x in jax.tree.leaves(params) if x.ndim >= 2]
    shapes = sorted({tuple(x.shape) for x in kernels})

    def per_shape():
        return [jaxcomp.kmeans_fit(x, args.bits) for x in kernels]

    def bucketed():
        return jaxcomp.share_weights(optax.sgd(0.1), bits=args.bits).init(params).codes

    jax.clear_caches()
    old_cold, old_warm = _timed(per_shape), _timed(per_shape)
    jax.clear_caches()
    new_cold, new_warm = _timed(bucketed), _timed(bucketed)
    same = all(
        np.array_equal(np.asarray(a[1]), np.asarray(b))
        for a, b in zip(
            per_shape(), [c for c in jax.tree.leaves(bucketed()) if c.ndim >= 2], strict=True
        )
    )
    print(f"NNX tutorial CNN, {len(kernels)} kernels of {len(shapes)} shapes, bits={args.bits}")
    print(f"per shape : first init {old_cold:6.2f} s, again {old_warm:6.2f} s")
    print(f"bucketed  : first init {new_cold:6.2f} s, again {new_warm:6.2f} s")
    print(f"first-init speed-up {old_cold / new_cold:.2f}x; codes identical: {same}")
    return old_cold / new_cold


if __name__ == "__main__":
    main()
