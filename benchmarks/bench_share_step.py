"""Weight-sharing fine-tuning step vs a dense step on LeNet-300-100 (goal <= 1.15x).

Both steps are ``jaxcomp.zoo.make_train_step`` (forward, backward, optimizer, apply) on the same
batch, SGD with momentum; the shared one wraps it in ``share_weights(..., bits=6)`` on every
kernel (centroid gradients by one scatter-add per kernel, centroid update, ``codebook[codes]``).
The two are timed interleaved, many steps each; the ratio of the median per-step times is the
result (the ratio of the best times is printed too).

Run: ``PYTHONPATH=. python benchmarks/bench_share_step.py [--batch 128]``.
The last line is the ratio (shared step time / dense step time).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


def _time(step, params, state, x, y, n):
    t0 = time.perf_counter()
    for _ in range(n):
        params, state, loss, _ = step(params, state, x, y)
    jax.block_until_ready((params, state, loss))
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> float:
    import jaxcomp
    import jaxcomp.zoo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)

    apply, params = jaxcomp.zoo.functional(jaxcomp.zoo.LeNet300100(rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((args.batch, 28, 28)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32)

    dense_tx = optax.sgd(1e-2, momentum=0.9)
    share_tx = jaxcomp.share_weights(optax.sgd(1e-3, momentum=0.9), bits=args.bits)
    dense_step = jaxcomp.zoo.make_train_step(apply, dense_tx)
    share_step = jaxcomp.zoo.make_train_step(apply, share_tx)
    dense_state = dense_tx.init(params)
    share_state = share_tx.init(params)
    share_params = jaxcomp.shared_params(params, share_state)
    for step, p, s in ((dense_step, params, dense_state), (share_step, share_params, share_state)):
        _time(step, p, s, x, y, 5)  # compile + warm up

    dense_t, share_t = [], []
    for _ in range(args.rounds):
        dense_t.append(_time(dense_step, params, dense_state, x, y, args.steps))
        share_t.append(_time(share_step, share_params, share_state, x, y, args.steps))
    d, s = float(np.median(dense_t)), float(np.median(share_t))
    print(
        f"LeNet-300-100, batch {args.batch}, {args.bits}-bit sharing of every kernel, "
        f"device: {jax.devices()[0].device_kind}, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"dense step:  median {d * 1e3:.3f} ms, best {min(dense_t) * 1e3:.3f} ms")
    print(f"shared step: median {s * 1e3:.3f} ms, best {min(share_t) * 1e3:.3f} ms")
    print(f"best-of ratio: {min(share_t) / min(dense_t):.3f}x")
    ratio = s / d
    print(f"shared / dense step time (medians): {ratio:.3f}x")
    return ratio


if __name__ == "__main__":
    main()
