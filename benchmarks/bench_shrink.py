"""Forward pass of a filter-pruned CNN: masked (zeros kept) vs ``jaxcomp.shrink`` (removed).

The model is the CNN of the Flax NNX MNIST tutorial (conv 1->32, BatchNorm, avg-pool, conv
32->64, BatchNorm, avg-pool, dense 3136->256, dense 256->10). ``--sparsity`` of the filters of
both convolutions are pruned by L2 norm (``jaxcomp.structured_mask(axis=-1)``), with their
biases and BatchNorm scale and bias (what ``jaxcomp.prune(..., dependents=...)`` holds at 0).
Both models run jitted on the CPU on the same batch in the same process; the last line is the
speed-up (masked time / shrunk time) and the largest output difference.

Run: ``python benchmarks/bench_shrink.py [--sparsity 0.75 --batch 256]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxcomp


class CNN(nnx.Module):
    """The NNX tutorial's MNIST CNN."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.batch_norm1(self.conv1(x))), (2, 2), (2, 2))
        x = nnx.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))), (2, 2), (2, 2))
        x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
        return self.linear2(x)


def prune_filters(model: CNN, sparsity: float) -> None:
    """Zero the filters of smallest L2 norm, with their bias and BatchNorm scale and bias."""
    for conv, bn in ((model.conv1, model.batch_norm1), (model.conv2, model.batch_norm2)):
        keep = jaxcomp.structured_mask(conv.kernel[...], sparsity, axis=-1)
        conv.kernel[...] = jnp.where(keep, conv.kernel[...], 0.0)
        channel = keep.reshape(-1, keep.shape[-1])[0]
        for var in (conv.bias, bn.scale, bn.bias):
            var[...] = jnp.where(channel, var[...], 0.0)


def _time(fn, model, x, reps: int) -> float:
    jax.block_until_ready(fn(model, x))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(model, x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.75)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    model = CNN(rngs=nnx.Rngs(0))
    prune_filters(model, args.sparsity)
    model.eval()
    small = jaxcomp.shrink(
        model, {"conv1": ["batch_norm1", "conv2"], "conv2": ["batch_norm2", "linear1"]}
    )
    x = jax.random.normal(jax.random.key(1), (args.batch, 28, 28, 1))
    forward = nnx.jit(lambda m, x: m(x))
    masked_t = _time(forward, model, x, args.reps)
    small_t = _time(forward, small, x, args.reps)
    diff = float(jnp.max(jnp.abs(forward(model, x) - forward(small, x))))
    print(
        f"device: {jax.devices()[0].platform}, batch {args.batch}, filters pruned {args.sparsity}"
    )
    print(
        f"conv channels: masked 32/64, shrunk {small.conv1.kernel.shape[-1]}/"
        f"{small.conv2.kernel.shape[-1]}; dense inputs {small.linear1.kernel.shape[0]}/3136"
    )
    print(f"masked model: {1e3 * masked_t:8.2f} ms per batch")
    print(f"shrunk model: {1e3 * small_t:8.2f} ms per batch")
    print(f"speed-up {masked_t / small_t:.2f}x, max |output difference| {diff:.2e}")
    return masked_t / small_t


if __name__ == "__main__":
    main()
