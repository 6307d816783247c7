"""Cost of the pruning wrapper: a jitted LeNet-300-100 train step with and without it.

Both steps use the same inner optimizer (SGD + Nesterov momentum + weight decay, the baseline
recipe) and the same batches (128 MNIST-shaped inputs); the pruned step runs jaxcomp's
``prune`` wrapper at a constant 92% sparsity, in steady state (masks already computed, the
``lax.cond`` takes the cheap branch). The two are timed interleaved, best of several rounds, and
the final line prints the ratio (goal: <= 1.10x). A mask-recompute step (stable argsort of every
kernel) is timed too, for information: it runs only on schedule steps.

Run: ``python benchmarks/bench_prune_step.py [--steps 50 --rounds 30]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp import schedules
from jaxcomp.models import make_model
from jaxcomp.optim import prune
from jaxcomp.train import default_optimizer, functional, make_train_step


def _time(step, params, state, xs, ys, steps):
    t0 = time.perf_counter()
    for i in range(steps):
        params, state, loss, _ = step(params, state, xs[i % len(xs)], ys[i % len(ys)])
    jax.block_until_ready((params, loss))
    return (time.perf_counter() - t0) / steps, params, state


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)

    apply, params = functional(make_model("lenet-300-100", seed=0))
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.random((8, args.batch_size, 28, 28)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, 10, (8, args.batch_size)), jnp.int32)

    inner = default_optimizer(0.01, steps=10_000, weight_decay=1e-4)
    dense_tx = inner
    prune_tx = prune(inner, schedules.constant(0.92))
    dense_step = make_train_step(apply, dense_tx)
    prune_step = make_train_step(apply, prune_tx)

    # compile + first (mask-computing) step outside the timings
    p_d, s_d, _, _ = dense_step(params, dense_tx.init(params), xs[0], ys[0])
    p_p, s_p, _, _ = prune_step(params, prune_tx.init(params), xs[0], ys[0])
    jax.block_until_ready((p_d, p_p))

    dense_t, prune_t = [], []
    for r in range(args.rounds):  # interleaved, alternating order; min over rounds (noise)
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            if which == 0:
                t, p_d, s_d = _time(dense_step, p_d, s_d, xs, ys, args.steps)
                dense_t.append(t)
            else:
                t, p_p, s_p = _time(prune_step, p_p, s_p, xs, ys, args.steps)
                prune_t.append(t)

    # a step that recomputes the masks: reset the recorded target so the cond takes that branch
    recompute = []
    for _ in range(5):
        s_r = s_p._replace(target=jnp.full_like(s_p.target, jnp.nan))
        t0 = time.perf_counter()
        jax.block_until_ready(prune_step(p_p, s_r, xs[0], ys[0]))
        recompute.append(time.perf_counter() - t0)

    kept = sum(int(m.sum()) for m in jax.tree.leaves(s_p.masks))
    total = sum(int(m.size) for m in jax.tree.leaves(s_p.masks))
    d, p = min(dense_t), min(prune_t)
    print(
        f"device: {jax.devices()[0].platform}, batch {args.batch_size}, kernels kept "
        f"{kept}/{total} ({100 * kept / total:.1f}%)"
    )
    print(f"dense step (SGD+Nesterov+wd):        {1e3 * d:8.3f} ms")
    print(f"pruned step (same inner, 92%):       {1e3 * p:8.3f} ms")
    print(
        f"pruned step that recomputes masks:   {1e3 * min(recompute):8.3f} ms (schedule steps only)"
    )
    ratio = p / d
    print(f"prune/dense step time ratio: {ratio:.3f}x (goal <= 1.10x)")
    return ratio


if __name__ == "__main__":
    main()
