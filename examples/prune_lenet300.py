"""Iterative magnitude pruning of LeNet-300-100 on MNIST to ~8% of its weights (thesis Table 3.2).

Starts from the dense baseline (``python -m jaxcomp.zoo.train --model lenet-300-100 --out DIR``;
trained here with the same recipe when ``--baseline`` does not exist), then retrains it with
jaxcomp's ``prune`` optax wrapper around SGD + Nesterov momentum + L2 weight decay. The per-layer
targets are the thesis' (fc1 92%, fc2 91%, fc3 74% pruned, i.e. 8% / 9% / 26% kept), reached in
iterative steps (prune, retrain, prune harder, retrain, ...); pruned weights stay exactly zero.

Prints the per-layer table beside the thesis' and the dense vs pruned test error; optionally
draws the per-layer sensitivity figure (thesis Figure 3.14) of the dense baseline.

Run (full MNIST, a few minutes on a laptop CPU)::

    python examples/prune_lenet300.py --data-dir /path/to/data \\
        --baseline runs/baselines/lenet-300-100 --sensitivity-figure docs/figures/x.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxcomp.atomic import atomic_open
from jaxcomp.compress import prune_stage
from jaxcomp.pruning import sparsity_summary
from jaxcomp.sensitivity import plot_sensitivity, sensitivity_sweep
from jaxcomp.zoo import default_config
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.train import evaluate, load_baseline, train_baseline

MODEL = "lenet-300-100"
#: Fraction of each layer pruned in the thesis (Table 3.2: 8%, 9%, 26% of the weights kept).
THESIS_SPARSITY = {"fc1/kernel": 0.92, "fc2/kernel": 0.91, "fc3/kernel": 0.74}
#: Fractions of the final sparsity reached at each pruning step (the first at step 0).
STAGES = (0.5, 0.75, 0.875, 0.9375, 1.0)


def _write_json(path: Path, obj: dict) -> None:
    with atomic_open(path, "w", make_parents=True) as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: see README)")
    ap.add_argument(
        "--baseline",
        default="runs/baselines/lenet-300-100",
        help="dense baseline checkpoint folder (trained and saved here if absent)",
    )
    ap.add_argument(
        "--baseline-epochs",
        type=int,
        default=None,
        help="epochs when the baseline must be trained (default: the recipe's 40)",
    )
    ap.add_argument("--epochs", type=int, default=60, help="pruning + retraining epochs")
    ap.add_argument(
        "--epochs-per-stage",
        type=int,
        default=6,
        help="retraining epochs between two pruning steps",
    )
    ap.add_argument("--lr", type=float, default=0.05, help="retraining learning rate (cosine)")
    ap.add_argument("--weight-decay", type=float, default=1e-4, help="L2 during retraining")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use only the first N training images (smoke tests)",
    )
    ap.add_argument(
        "--sensitivity-figure",
        default=None,
        help="also draw the dense baseline's per-layer sensitivity (PNG path)",
    )
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    need = (len(STAGES) - 1) * args.epochs_per_stage + 1
    if args.epochs_per_stage < 1 or args.epochs < need:
        ap.error(
            f"--epochs must be >= {need} (all {len(STAGES)} pruning steps plus retraining) "
            "and --epochs-per-stage >= 1"
        )
    data = load_mnist(args.data_dir)
    if args.train_limit is not None:
        data = data._replace(
            x_train=data.x_train[: args.train_limit], y_train=data.y_train[: args.train_limit]
        )
    base_dir = Path(args.baseline)
    if (base_dir / "params").exists():
        apply, dense = load_baseline(MODEL, base_dir)
    else:
        print(f"no baseline in {base_dir}: training it with the recipe")
        apply, dense, _ = train_baseline(
            MODEL,
            data,
            epochs=args.baseline_epochs,
            seed=args.seed,
            out=base_dir,
            progress=not args.no_progress,
        )
    dense_err = evaluate(apply, dense, data.x_test, data.y_test)

    if args.sensitivity_figure:
        x_te, y_te = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

        def accuracy(p):
            return jnp.mean(jnp.argmax(apply(p, x_te), -1) == y_te)

        table = sensitivity_sweep(
            dense, accuracy, [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99], batch_size=3
        )
        plot_sensitivity(
            table,
            args.sensitivity_figure,
            ylabel="test accuracy (%)",
            percent=True,
            title="LeNet-300-100: prune one layer, no retraining",
        )
        print("sensitivity (test accuracy, one layer pruned, no retraining):")
        print(table.to_markdown("{:.4f}"))

    # the pruning stage of `jaxcomp compress` (jaxcomp.prune_stage): iterative steps
    # of prune(SGD + Nesterov + L2, cosine lr), the thesis' per-layer targets
    config = default_config(
        MODEL,
        sparsity=THESIS_SPARSITY,
        prune_fractions=STAGES,
        epochs_per_step=args.epochs_per_stage,
        prune_epochs=args.epochs,
        prune_lr=args.lr,
        prune_weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    params, info = prune_stage(apply, dense, data, config, progress=not args.no_progress)
    history = {"seconds": info["seconds"]}
    pruned_err = evaluate(apply, params, data.x_test, data.y_test)

    summary = jax.device_get(sparsity_summary(params))
    weights = sparsity_summary(params, predicate=lambda p, x: True)
    rows = []
    print(
        f"\nLeNet-300-100 on {data.source} MNIST, iterative pruning "
        f"({len(STAGES)} steps, {args.epochs} epochs)"
    )
    print("| layer | weights | kept | kept % | thesis kept % |")
    print("|---|---|---|---|---|")
    for path, s in summary.layers.items():
        kept_pct = 100.0 * int(s.nonzero) / int(s.size)
        thesis = 100.0 * (1.0 - THESIS_SPARSITY[path])
        rows.append(
            {
                "layer": path,
                "weights": int(s.size),
                "kept": int(s.nonzero),
                "kept_pct": kept_pct,
                "thesis_kept_pct": thesis,
            }
        )
        print(
            f"| {path} | {int(s.size):,} | {int(s.nonzero):,} | {kept_pct:.2f}% | {thesis:.0f}% |"
        )
    tot = summary.total
    tot_pct = 100.0 * int(tot.nonzero) / int(tot.size)
    print(f"| total | {int(tot.size):,} | {int(tot.nonzero):,} | {tot_pct:.2f}% | 8% |")
    # every layer has exactly floor(s * n) zeros: the pruned weights, exactly 0.0
    exact = all(
        int(s.size) - int(s.nonzero) == int(THESIS_SPARSITY[p] * int(s.size))
        for p, s in summary.layers.items()
    )
    print(
        f"\ndense test error {100 * dense_err:.2f}% -> pruned {100 * pruned_err:.2f}% "
        f"(thesis: 1.64% -> 1.59%); kernels kept {tot_pct:.2f}% "
        f"({int(tot.size) / max(int(tot.nonzero), 1):.1f}x fewer); all parameters incl. biases "
        f"{100 * int(weights.total.nonzero) / int(weights.total.size):.2f}%; "
        f"pruned weights exactly 0: {exact}; retraining {history['seconds']:.0f} s"
    )
    result = {
        "data": data.source,
        "dense_test_error": dense_err,
        "pruned_test_error": pruned_err,
        "kept_pct": tot_pct,
        "layers": rows,
        "epochs": args.epochs,
        "stages": list(STAGES),
        "epochs_per_stage": args.epochs_per_stage,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "exact_zeros": exact,
    }
    if args.out:
        _write_json(Path(args.out), result)
    return result


if __name__ == "__main__":
    main()
