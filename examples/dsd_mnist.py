"""DSD vs dense training on MNIST, over several seeds, with a significance test.

For each model and seed, two runs share the initialization, the batch order, the optimizer and
the total number of epochs; they differ only in the DSD wrapper:

* dense: the model's baseline recipe (SGD + Nesterov, cosine decay, weight decay) for E epochs;
* DSD: the same optimizer wrapped in :func:`jaxcomp.dsd`: dense for ``E * dense_frac`` epochs,
  sparse (every layer but the first conv pruned to ``--sparsity`` by magnitude) for
  ``E * sparse_frac`` epochs, then re-dense at 1/10 of the learning rate for the rest.

Reports mean and standard deviation of the test error per arm, and a paired t-test over seeds
(the pairs share everything but DSD) plus Welch's unpaired test. Writes JSON with every run.

    python examples/dsd_mnist.py --model lenet-300-100 --seeds 5 --out runs/dsd/lenet300.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from jaxcomp.atomic import atomic_open
from jaxcomp.dsd import dsd
from jaxcomp.zoo.data import MNIST, load_mnist
from jaxcomp.zoo.models import MODELS, make_model
from jaxcomp.zoo.train import BASELINE_RECIPES, default_optimizer, evaluate, fit, functional


def run_pair(
    model: str,
    data: MNIST,
    *,
    seed: int,
    epochs: int,
    sparsity: float,
    dense_frac: float,
    sparse_frac: float,
    progress: bool,
) -> dict:
    """Train one dense and one DSD model from the same init; return both test errors."""
    recipe = BASELINE_RECIPES[model]
    bs = int(recipe["batch_size"])
    steps_per_epoch = len(data.x_train) // bs
    total = epochs * steps_per_epoch
    d_steps = int(round(epochs * dense_frac)) * steps_per_epoch
    s_steps = int(round(epochs * sparse_frac)) * steps_per_epoch
    r_steps = total - d_steps - s_steps
    if s_steps <= 0 or r_steps < 0:
        raise ValueError(f"epochs={epochs} too small for the phase fractions")
    out = {"seed": seed}
    for arm in ("dense", "dsd"):
        apply, params = functional(make_model(model, seed=seed))
        tx = default_optimizer(recipe["lr"], steps=total, weight_decay=recipe["weight_decay"])
        if arm == "dsd":
            tx = dsd(tx, d_steps, s_steps, r_steps, sparsity)
        params, _, _ = fit(
            apply,
            params,
            tx,
            data,
            epochs=epochs,
            batch_size=bs,
            seed=seed,
            evaluate_each_epoch=False,
            progress=progress,
            desc=f"{model} seed {seed} {arm}",
        )
        out[arm] = evaluate(apply, params, data.x_test, data.y_test)
    return out


def summarize(runs: list[dict]) -> dict:
    """Mean/std per arm, paired and Welch t-tests of DSD vs dense test error."""
    dense = np.array([r["dense"] for r in runs])
    dsd_ = np.array([r["dsd"] for r in runs])
    res = {
        "n": len(runs),
        "dense_mean": float(dense.mean()),
        "dense_std": float(dense.std(ddof=1)) if len(runs) > 1 else math.nan,
        "dsd_mean": float(dsd_.mean()),
        "dsd_std": float(dsd_.std(ddof=1)) if len(runs) > 1 else math.nan,
        "mean_diff": float((dsd_ - dense).mean()),
    }
    if len(runs) > 1:
        diff = dsd_ - dense
        if np.all(diff == diff[0]):  # identical differences: the t statistic is undefined
            res["paired_p"] = math.nan
        else:
            res["paired_p"] = float(stats.ttest_rel(dsd_, dense).pvalue)
        res["welch_p"] = float(stats.ttest_ind(dsd_, dense, equal_var=False).pvalue)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet-300-100")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="default: the baseline recipe's")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--dense-frac", type=float, default=0.5)
    p.add_argument("--sparse-frac", type=float, default=0.25)
    p.add_argument("--train-subset", type=int, default=None, help="use the first N train images")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="write all runs and the summary as JSON")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    data = load_mnist(args.data_dir)
    if args.train_subset:
        n = args.train_subset
        data = MNIST(data.x_train[:n], data.y_train[:n], data.x_test, data.y_test, data.source)
    epochs = args.epochs or int(BASELINE_RECIPES[args.model]["epochs"])
    runs = []
    for seed in range(args.seeds):
        r = run_pair(
            args.model,
            data,
            seed=seed,
            epochs=epochs,
            sparsity=args.sparsity,
            dense_frac=args.dense_frac,
            sparse_frac=args.sparse_frac,
            progress=not args.no_progress,
        )
        runs.append(r)
        print(f"seed {seed}: dense {100 * r['dense']:.2f}%  DSD {100 * r['dsd']:.2f}%", flush=True)
    s = summarize(runs)
    print(
        f"{args.model}, {epochs} epochs, {data.source} MNIST, sparsity {args.sparsity}, "
        f"{s['n']} seeds:"
    )
    print(f"  dense test error {100 * s['dense_mean']:.3f}% +- {100 * s['dense_std']:.3f}")
    print(f"  DSD   test error {100 * s['dsd_mean']:.3f}% +- {100 * s['dsd_std']:.3f}")
    if "paired_p" in s:
        print(
            f"  DSD - dense: {100 * s['mean_diff']:+.3f} points; paired t-test "
            f"p = {s['paired_p']:.3g}, Welch p = {s['welch_p']:.3g}"
        )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "out"}
        record = {
            "config": config,
            "epochs": epochs,
            "data": data.source,
            "runs": runs,
            "summary": s,
        }
        with atomic_open(out, "w") as f:
            f.write(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
