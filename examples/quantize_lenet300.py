"""Trained quantization of the 12x-pruned LeNet-300-100 on MNIST (thesis §4.2, Figs 4.10, 4.12).

1. Loads the dense baseline (``python -m jaxcomp.zoo.train --model lenet-300-100 --out DIR``;
   trained with the same recipe when ``--baseline`` does not exist).
2. Prunes it to the thesis' 8% / 9% / 26% kept (the recipe of ``examples/prune_lenet300.py``:
   ``prune`` around SGD + Nesterov + L2, 5 iterative steps); the pruned params are cached in
   ``--cache`` so a second run skips this.
3. For each init (linear, density, random k-means, and the uniform grid) and 2..6 bits in every
   layer: fits the codebooks, then fine-tunes the centroids only (codes fixed) with
   ``prune(share_weights(adam), constant targets)``; biases train too. Prints the test error
   before and after fine-tuning and writes a JSON with every number.

Run (full MNIST in ``$JAXCOMP_DATA_DIR/mnist``)::

    python examples/quantize_lenet300.py --baseline runs/baselines/lenet-300-100 \\
        --figure docs/figures/lenet300_fc2_codebook.png --out runs/quantize/lenet300.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp import schedules
from jaxcomp.atomic import atomic_open
from jaxcomp.pruning import prune
from jaxcomp.quantize import plot_codebook
from jaxcomp.sharing import ShareState, share_weights, shared_params
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.train import evaluate, fit, load_baseline, train_baseline

MODEL = "lenet-300-100"
THESIS_SPARSITY = {"fc1/kernel": 0.92, "fc2/kernel": 0.91, "fc3/kernel": 0.74}
STAGES = (0.5, 0.75, 0.875, 0.9375, 1.0)
INITS = ("linear", "density", "random", "uniform")


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_open(path, make_parents=True) as f:
        f.write(data)


def _prune(apply, dense, data, args):
    cache = Path(args.cache)
    leaves, treedef = jax.tree.flatten(dense)
    if cache.exists():
        with np.load(cache) as z:
            return treedef.unflatten([jnp.asarray(z[f"a{i}"]) for i in range(len(leaves))])
    steps_per_epoch = len(data.x_train) // args.batch_size
    stage = args.prune_epochs_per_stage * steps_per_epoch
    sched = {
        p: schedules.iterative([i * stage for i in range(len(STAGES))], [s * f for f in STAGES])
        for p, s in THESIS_SPARSITY.items()
    }
    total = args.prune_epochs * steps_per_epoch
    inner = optax.chain(
        optax.add_decayed_weights(1e-4),
        optax.sgd(optax.cosine_decay_schedule(0.05, total), momentum=0.9, nesterov=True),
    )
    params, _, _ = fit(
        apply,
        dense,
        prune(inner, sched),
        data,
        epochs=args.prune_epochs,
        batch_size=args.batch_size,
        seed=1,
        progress=False,
        evaluate_each_epoch=False,
    )
    import io

    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))})
    _write_atomic(cache, buf.getvalue())
    return params


def _share_state(state):
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ShareState)):
        if isinstance(s, ShareState):
            return s
    raise RuntimeError("no ShareState")


def quantize(apply, pruned, data, *, init, bits, args):
    """Fit codebooks, fine-tune centroids; returns (error before, error after, states)."""
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    inner = optax.adam(optax.cosine_decay_schedule(args.lr, max(steps, 1)))
    share = share_weights(inner, bits=bits, init=init, seed=args.seed)
    tx = prune(share, {p: schedules.constant(s) for p, s in THESIS_SPARSITY.items()})
    state = tx.init(pruned)
    s0 = _share_state(state)
    start = shared_params(pruned, s0)
    err0 = evaluate(apply, start, data.x_test, data.y_test)
    params, state, _ = fit(
        apply,
        start,
        tx,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed + 2,
        opt_state=state,
        progress=False,
        evaluate_each_epoch=False,
    )
    s1 = _share_state(state)
    err1 = evaluate(apply, params, data.x_test, data.y_test)
    # invariants of the result: on the centroids, pruned weights zero, codes unchanged
    on = all(
        bool(jnp.all(params[k]["kernel"] == s1.codebooks[k]["kernel"][s1.codes[k]["kernel"]]))
        for k in ("fc1", "fc2", "fc3")
    )
    same_zeros = all(
        bool(jnp.all((params[k]["kernel"] == 0) == (pruned[k]["kernel"] == 0)))
        for k in ("fc1", "fc2", "fc3")
    )
    return err0, err1, on and same_zeros, s0, s1, params


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--baseline",
        default="runs/baselines/lenet-300-100",
        help="dense baseline checkpoint folder (trained and saved here if absent)",
    )
    ap.add_argument("--baseline-epochs", type=int, default=None, help="if it must be trained")
    ap.add_argument("--cache", default="runs/quantize/lenet300_pruned.npz")
    ap.add_argument("--prune-epochs", type=int, default=60)
    ap.add_argument("--prune-epochs-per-stage", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3, help="centroid fine-tuning epochs")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam lr on the centroids (cosine)")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    ap.add_argument("--inits", nargs="+", default=list(INITS))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--figure", default=None, help="PNG: fc2 histogram + 4-bit (linear init) centroids"
    )
    ap.add_argument("--out", default=None, help="JSON results")
    args = ap.parse_args(argv)

    t_start = time.time()
    data = load_mnist(args.data_dir)
    if (Path(args.baseline) / "params").exists():
        apply, dense = load_baseline(MODEL, args.baseline)
    else:
        print(f"no baseline in {args.baseline}: training it with the recipe")
        apply, dense, _ = train_baseline(
            MODEL,
            data,
            epochs=args.baseline_epochs,
            seed=args.seed,
            out=args.baseline,
            progress=False,
        )
    dense_err = evaluate(apply, dense, data.x_test, data.y_test)
    pruned = _prune(apply, dense, data, args)
    pruned_err = evaluate(apply, pruned, data.x_test, data.y_test)
    kept = {k: float(jnp.mean(pruned[k]["kernel"] != 0)) for k in ("fc1", "fc2", "fc3")}
    print(
        f"LeNet-300-100 on {data.source} MNIST: dense {100 * dense_err:.2f}%, "
        f"pruned {100 * pruned_err:.2f}% (kept "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in kept.items())
        + ")"
    )

    results = {"dense_err": dense_err, "pruned_err": pruned_err, "kept": kept, "runs": []}
    table = {}
    fig_bits = 4 if 4 in args.bits else args.bits[0]
    for init in args.inits:
        for bits in args.bits:
            t0 = time.time()
            err0, err1, ok, s0, s1, _ = quantize(
                apply, pruned, data, init=init, bits=bits, args=args
            )
            table[(init, bits)] = (err0, err1)
            results["runs"].append(
                {
                    "init": init,
                    "bits": bits,
                    "err_before": err0,
                    "err_after": err1,
                    "invariants": ok,
                }
            )
            print(
                f"{init:8s} {bits} bits: before fine-tuning {100 * err0:.2f}%, after "
                f"{100 * err1:.2f}%  (on centroids, zeros kept: {ok}; {time.time() - t0:.0f} s)",
                flush=True,
            )
            if args.figure and init == "linear" and bits == fig_bits:
                plot_codebook(
                    np.asarray(pruned["fc2"]["kernel"]),
                    s0.codebooks["fc2"]["kernel"],
                    s1.codebooks["fc2"]["kernel"],
                    title=f"LeNet-300-100 fc2 (9% kept), {bits} bits, linear init",
                    path=args.figure,
                )

    print("\ntest error (%) after centroid fine-tuning [before], every layer at the same bits")
    print("| init | " + " | ".join(f"{b} bits" for b in args.bits) + " |")
    print("|---|" + "---|" * len(args.bits))
    for init in args.inits:
        cells = [
            f"{100 * table[(init, b)][1]:.2f} [{100 * table[(init, b)][0]:.2f}]" for b in args.bits
        ]
        print(f"| {init} | " + " | ".join(cells) + " |")
    if ("linear", 6) in table:
        e6 = table[("linear", 6)][1]
        print(
            f"\n6-bit linear, fine-tuned: {100 * e6:.2f}% vs dense {100 * dense_err:.2f}% "
            f"+ 0.05 = {100 * dense_err + 0.05:.2f}%: "
            f"{'OK' if 100 * e6 <= 100 * dense_err + 0.05 + 1e-9 else 'MISSED'}"
        )
    print(f"total {time.time() - t_start:.0f} s")
    if args.out:
        _write_atomic(Path(args.out), (json.dumps(results, indent=2) + "\n").encode())
    return results


if __name__ == "__main__":
    main()
