"""Cost of the pruning wrapper: a jitted LeNet-300-100 train step with and without it.

Both steps use the same inner optimizer (SGD + Nesterov momentum + weight decay, the baseline
recipe) and the same batches (128 MNIST-shaped inputs); the pruned step runs jaxcomp's
``prune`` wrapper at a constant 92% sparsity, in steady state (masks computed, the ``lax.cond``
takes the cheap branch). Each is measured twice: as ``jaxcomp.zoo.make_train_step`` builds it
(no buffer donation: every step writes fresh params and optimizer state, including the masks)
and with ``donate_argnums`` (params and state updated in place, as production loops do). The
steps are timed interleaved in alternating order, best of many rounds (the CPU is shared), and
the last line prints both ratios (goal: <= 1.10x). A mask-recompute step (a stable argsort of
every kernel) is timed too, for information: it runs only when the schedule's value changes.

Run: ``python benchmarks/bench_prune_step.py [--steps 25 --rounds 40]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp import schedules
from jaxcomp.pruning import prune
from jaxcomp.zoo.models import make_model
from jaxcomp.zoo.train import default_optimizer, functional, make_train_step


def _donated_step(apply, tx):
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = apply(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, loss

    return jax.jit(step, donate_argnums=(0, 1))


def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


def main(argv=None) -> tuple[float, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=25, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)

    apply, params = functional(make_model("lenet-300-100", seed=0))
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.random((8, args.batch_size, 28, 28)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, 10, (8, args.batch_size)), jnp.int32)

    inner = default_optimizer(0.01, steps=10_000, weight_decay=1e-4)
    txs = {"dense": inner, "pruned": prune(inner, schedules.constant(0.92))}
    runs = {}
    for name, tx in txs.items():
        runs[(name, False)] = make_train_step(apply, tx)
        runs[(name, True)] = _donated_step(apply, tx)
    # compile + the first (mask-computing) step outside the timings
    state = {}
    for key, step in runs.items():
        tx = txs[key[0]]
        p, s, _, _ = step(_copy(params), _copy(tx.init(params)), xs[0], ys[0])
        state[key] = (p, s)
    jax.block_until_ready(state)

    times = {key: [] for key in runs}
    keys = list(runs)
    for r in range(args.rounds):
        for key in keys if r % 2 == 0 else keys[::-1]:
            p, s = state[key]
            t0 = time.perf_counter()
            for i in range(args.steps):
                p, s, loss, _ = runs[key](p, s, xs[i % len(xs)], ys[i % len(ys)])
            jax.block_until_ready((p, loss))
            times[key].append((time.perf_counter() - t0) / args.steps)
            state[key] = (p, s)

    # a step that recomputes the masks: reset the recorded target so the cond takes that branch
    p, s = state[("pruned", False)]
    recompute = []
    for _ in range(5):
        s_r = s._replace(target=jnp.full_like(s.target, jnp.nan))
        t0 = time.perf_counter()
        jax.block_until_ready(runs[("pruned", False)](p, s_r, xs[0], ys[0]))
        recompute.append(time.perf_counter() - t0)

    kept = sum(int(m.sum()) for m in jax.tree.leaves(s.masks))
    total = sum(int(m.size) for m in jax.tree.leaves(s.masks))
    best = {key: min(v) for key, v in times.items()}
    print(
        f"device: {jax.devices()[0].platform}, batch {args.batch_size}, kernels kept "
        f"{kept}/{total} ({100 * kept / total:.1f}%), best of {args.rounds} x {args.steps} steps"
    )
    for donate in (False, True):
        label = "donated" if donate else "make_train_step"
        d, q = best[("dense", donate)], best[("pruned", donate)]
        print(f"{label:>16}: dense {1e3 * d:7.3f} ms   pruned {1e3 * q:7.3f} ms   {q / d:.3f}x")
    print(f"pruned step that recomputes the masks: {1e3 * min(recompute):.3f} ms (schedule steps)")
    r_plain = best[("pruned", False)] / best[("dense", False)]
    r_don = best[("pruned", True)] / best[("dense", True)]
    print(
        f"prune/dense step time ratio: {r_plain:.3f}x (make_train_step), "
        f"{r_don:.3f}x (donated) (goal <= 1.10x)"
    )
    return r_plain, r_don


if __name__ == "__main__":
    main()
