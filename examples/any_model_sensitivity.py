"""Pruning sensitivity of an any-model example's dense baseline (thesis Figure 3.14).

Reads the dense stage that ``examples/<name>.py`` left in its output folder
(``OUT/stages/dense``, written by :func:`jaxcomp.compress`), prunes one compressed leaf at a
time to each sparsity (:func:`jaxcomp.sensitivity_sweep`, magnitude pruning, no retraining)
and draws the test accuracy per leaf (:func:`jaxcomp.plot_sensitivity`)::

    python examples/any_model_sensitivity.py resnet_mnist runs/resnet \
        --png docs/figures/any-model-resnet-sensitivity.png

Prints the table (Markdown) as well. ``--test N``: accuracy on the first N test images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _any_model
import jax
import jax.numpy as jnp
from flax import nnx

import jaxcomp
from jaxcomp.checkpoint import restore_checkpoint


def dense_model(ex, run: Path, seed: int = 0):
    """``(params, accuracy_fn_factory)`` of the dense baseline stored under ``run``.

    Returns ``(params, make_eval)``: ``make_eval(x, y)`` gives a traceable ``params -> accuracy``.
    """
    net = ex.model(rngs=nnx.Rngs(seed))
    if isinstance(net, tuple):  # Linen (module, variables)
        module, variables = net
        rest = {k: v for k, v in variables.items() if k != "params"}
        template = {"params": variables["params"], **({"rest": rest} if rest else {})}
        tree = restore_checkpoint(run / "stages" / "dense", template)
        rest = tree.get("rest", rest)

        def make_eval(x, y):
            def acc(p):
                logits = module.apply({"params": p, **rest}, x)
                return jnp.mean(jnp.argmax(logits, -1) == y)

            return acc

        return tree["params"], make_eval
    net.eval()
    graphdef, pst, rst = nnx.split(net, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(pst), nnx.to_pure_dict(rst)
    has_rest = bool(jax.tree.leaves(rest))
    template = {"params": params, **({"rest": rest} if has_rest else {})}
    tree = restore_checkpoint(run / "stages" / "dense", template)
    if has_rest:
        nnx.replace_by_pure_dict(rst, tree["rest"])

    def make_eval(x, y):
        def acc(p):
            ps = jax.tree.map(lambda v: v, pst)
            nnx.replace_by_pure_dict(ps, p)
            logits = nnx.merge(graphdef, ps, rst)(x)
            return jnp.mean(jnp.argmax(logits, -1) == y)

        return acc

    return tree["params"], make_eval


def main(argv: list[str] | None = None) -> int:
    """``python examples/any_model_sensitivity.py NAME RUN [--png PATH] [--test N]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="example module, e.g. resnet_mnist")
    p.add_argument("run", help="its output folder (holds stages/dense)")
    p.add_argument("--png", default=None, help="write the figure here")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/")
    p.add_argument("--test", type=int, default=2000, help="test images evaluated")
    p.add_argument(
        "--sparsities", default="0,0.5,0.6,0.7,0.8,0.85,0.9,0.95", help="comma-separated"
    )
    args = p.parse_args(argv)
    ex = _any_model.load_example(args.name)
    run = Path(args.run)
    if not (run / "stages" / "dense").is_dir():
        raise SystemExit(f"run: {run} holds no stages/dense; run examples/{args.name}.py first")
    params, make_eval = dense_model(ex, run)
    _, _, x_te, y_te = ex.data(args.data_dir)
    x, y = jnp.asarray(x_te[: args.test]), jnp.asarray(y_te[: args.test])
    cfg = ex.config()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    table = jaxcomp.sensitivity_sweep(
        params, make_eval(x, y), sparsities, include=cfg.include, exclude=cfg.exclude
    )
    print(f"{args.name}: test accuracy on {len(x)} images, one leaf pruned at a time")
    print(table.to_markdown(fmt="{:.4f}"))
    if args.png:
        jaxcomp.plot_sensitivity(
            table,
            args.png,
            ylabel="test accuracy (%)",
            percent=True,
            title=f"{args.name}: pruning sensitivity per leaf (dense baseline, no retraining)",
        )
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
