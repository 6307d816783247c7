"""A small, deterministic training loop over any optax transform, with a progress bar.

Models are Flax NNX modules; training runs on their pure-dict params so that any optax transform
(including jaxcomp's pruning and weight-sharing wrappers) sees plain dicts of arrays::

    model = make_model("lenet-300-100", seed=0)
    apply, params = functional(model)
    tx = default_optimizer("lenet-300-100", steps=...)
    params, opt_state, history = fit(apply, params, tx, mnist, epochs=2, seed=0)
    print(evaluate(apply, params, mnist.x_test, mnist.y_test))  # test error, a float

Baselines: ``python -m jaxcomp.zoo.train --model lenet-300-100 --out runs/baselines/lenet-300-100``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxcomp.atomic import atomic_open
from jaxcomp.checkpoint import restore_checkpoint, save_checkpoint
from jaxcomp.compress import default_optimizer
from jaxcomp.zoo.data import MNIST, batches, load_mnist
from jaxcomp.zoo.models import MODELS, make_model

__all__ = [
    "BASELINE_RECIPES",
    "TrainHistory",
    "default_optimizer",
    "evaluate",
    "fit",
    "functional",
    "load_baseline",
    "make_train_step",
    "train_baseline",
]

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


def functional(model: nnx.Module) -> tuple[ApplyFn, Params]:
    """Split an NNX model into a pure ``apply(params, x)`` and its params as a pure dict.

    The model's whole state must be ``nnx.Param`` s (true of the LeNets); other state would be
    frozen at its current value.

    Args:
      model: a Flax NNX module.

    Returns:
      ``(apply, params)``: ``apply(params, x) -> logits`` is jittable and differentiable in
      ``params``; ``params`` is a nested dict of arrays, e.g. ``{"fc1": {"kernel", "bias"}, ...}``.
    """
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    expected = {jax.tree_util.keystr(p): jnp.shape(v) for p, v in _flat(params)}

    def apply(params: Params, x: jax.Array) -> jax.Array:
        # structure and shapes are static under jit: a tree with missing or extra leaves would
        # otherwise silently keep the model's initial values for the leaves it lacks
        got = {jax.tree_util.keystr(p): jnp.shape(v) for p, v in _flat(params)}
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
            raise ValueError(
                f"apply: params do not match the model (missing {missing}, extra {extra}, "
                f"wrong shape {shapes}); pass the full params tree of this model"
            )
        st = jax.tree.map(lambda v: v, state)  # a fresh copy to fill, never the captured one
        nnx.replace_by_pure_dict(st, params)
        return nnx.merge(graphdef, st)(x)

    return apply, params


def _flat(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _loss(apply: ApplyFn, params: Params, x: jax.Array, y: jax.Array):
    logits = apply(params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


def make_train_step(apply: ApplyFn, tx: optax.GradientTransformation):
    """Return a jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss, accuracy)``.

    ``tx.update`` is called with ``params`` (needed by weight decay and by jaxcomp's wrappers).

    Args:
      apply: ``apply(params, x) -> logits`` (batch, classes).
      tx: any optax transform.
    """

    @jax.jit
    def step(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(lambda p: _loss(apply, p, x, y), has_aux=True)(
            params
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return params, opt_state, loss, acc

    return step


def evaluate(
    apply: ApplyFn, params: Params, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000
) -> float:
    """Classification error (fraction in [0, 1]) of ``apply(params, .)`` on ``(x, y)``.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: the params pytree.
      x: inputs (n, ...), float32.
      y: int labels (n,).
      batch_size: examples per forward pass (the last, smaller batch is evaluated too).
    """
    if len(x) == 0:
        raise ValueError("x is empty; nothing to evaluate")
    wrong_fn = _wrong_counter(apply)
    wrong = 0
    for i in range(0, len(x), batch_size):
        wrong += int(wrong_fn(params, x[i : i + batch_size], y[i : i + batch_size]))
    return wrong / len(x)


_WRONG_CACHE: dict[int, Callable] = {}


def _wrong_counter(apply: ApplyFn):
    # One jitted counter per apply function, so repeated evaluations do not retrace.
    key = id(apply)
    if key not in _WRONG_CACHE:
        _WRONG_CACHE[key] = jax.jit(lambda p, x, y: jnp.sum(jnp.argmax(apply(p, x), -1) != y))
    return _WRONG_CACHE[key]


class TrainHistory(dict):
    """Per-epoch metrics: keys ``loss``, ``train_accuracy``, ``test_error`` (lists), ``seconds``."""


def fit(
    apply: ApplyFn,
    params: Params,
    tx: optax.GradientTransformation,
    data: MNIST,
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    opt_state: Any = None,
    first_epoch: int = 0,
    evaluate_each_epoch: bool = True,
    progress: bool = True,
    desc: str = "train",
) -> tuple[Params, Any, TrainHistory]:
    """Train ``params`` with ``tx`` on ``data`` for ``epochs`` epochs.

    Deterministic for a given ``seed``: the batch order of epoch ``e`` is fixed by ``(seed, e)``.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: initial params pytree.
      tx: any optax transform (called with ``params`` as the third argument).
      data: :class:`jaxcomp.zoo.MNIST`.
      epochs: number of epochs to run (>= 0).
      batch_size: examples per step.
      seed: shuffling seed.
      opt_state: optimizer state to continue from (default ``tx.init(params)``).
      first_epoch: epoch number of the first epoch run (to resume a schedule of batch orders).
      evaluate_each_epoch: record test error after each epoch.
      progress: show a tqdm bar with running loss and accuracy.
      desc: label of the progress bar.

    Returns:
      ``(params, opt_state, history)``.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    step = make_train_step(apply, tx)
    opt_state = tx.init(params) if opt_state is None else opt_state
    history = TrainHistory(loss=[], train_accuracy=[], test_error=[], seconds=0.0)
    steps_per_epoch = len(data.x_train) // batch_size
    t0 = time.perf_counter()
    with tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(first_epoch, first_epoch + epochs):
            losses, accs = [], []
            for xb, yb in batches(data.x_train, data.y_train, batch_size, seed=seed, epoch=epoch):
                params, opt_state, loss, acc = step(params, opt_state, xb, yb)
                losses.append(loss)
                accs.append(acc)
                bar.update(1)
                if len(losses) % 50 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}", acc=f"{float(acc):.4f}")
            history["loss"].append(float(np.mean(jax.device_get(losses))))
            history["train_accuracy"].append(float(np.mean(jax.device_get(accs))))
            if evaluate_each_epoch:
                history["test_error"].append(evaluate(apply, params, data.x_test, data.y_test))
                bar.set_postfix(epoch=epoch, test_error=f"{history['test_error'][-1]:.4f}")
    history["seconds"] = time.perf_counter() - t0
    return params, opt_state, history


#: Dense-baseline recipes: SGD with Nesterov momentum, cosine learning-rate decay, weight decay.
BASELINE_RECIPES: dict[str, dict[str, float]] = {
    "lenet-300-100": {"epochs": 40, "lr": 0.05, "weight_decay": 1e-4, "batch_size": 128},
    "lenet-5": {"epochs": 20, "lr": 0.05, "weight_decay": 5e-4, "batch_size": 128},
}


def train_baseline(
    model: str,
    data: MNIST,
    *,
    epochs: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[ApplyFn, Params, float]:
    """Train a dense baseline with :data:`BASELINE_RECIPES` and optionally save it with orbax.

    Args:
      model: ``"lenet-300-100"`` or ``"lenet-5"``.
      data: the MNIST arrays.
      epochs: override the recipe's epoch count.
      seed: initialization and shuffling seed.
      out: folder for the orbax checkpoint and ``baseline.json`` (test error, recipe).
      progress: show progress bars.

    Returns:
      ``(apply, params, test_error)``.
    """
    recipe = dict(BASELINE_RECIPES[model])
    if epochs is not None:
        recipe["epochs"] = epochs
    apply, params = functional(make_model(model, seed=seed))
    steps = int(recipe["epochs"]) * (len(data.x_train) // int(recipe["batch_size"]))
    tx = default_optimizer(recipe["lr"], steps=steps, weight_decay=recipe["weight_decay"])
    params, _, history = fit(
        apply,
        params,
        tx,
        data,
        epochs=int(recipe["epochs"]),
        batch_size=int(recipe["batch_size"]),
        seed=seed,
        progress=progress,
        desc=model,
        evaluate_each_epoch=False,
    )
    err = evaluate(apply, params, data.x_test, data.y_test)
    if out is not None:
        out = Path(out)
        save_checkpoint(out / "params", params, step=int(recipe["epochs"]))
        meta = {
            "model": model,
            "seed": seed,
            "test_error": err,
            "data": data.source,
            "recipe": recipe,
            "train_seconds": history["seconds"],
        }
        with atomic_open(out / "baseline.json", "w") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
    return apply, params, err


def load_baseline(model: str, directory: str | os.PathLike) -> tuple[ApplyFn, Params]:
    """Load a baseline saved by :func:`train_baseline` (or ``python -m jaxcomp.zoo.train``)."""
    apply, template = functional(make_model(model))
    params = restore_checkpoint(Path(directory) / "params", template)
    return apply, jax.tree.map(jnp.asarray, params)


def main(argv: list[str] | None = None) -> int:
    """``python -m jaxcomp.zoo.train``: train and save a dense LeNet baseline on MNIST."""
    p = argparse.ArgumentParser(prog="python -m jaxcomp.zoo.train", description=main.__doc__)
    p.add_argument("--model", choices=sorted(MODELS), default="lenet-300-100")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: see README)")
    p.add_argument("--out", default=None, help="save the baseline here (orbax)")
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir)
    _, _, err = train_baseline(args.model, data, epochs=args.epochs, seed=args.seed, out=args.out)
    print(f"{args.model} ({data.source} MNIST): test error {100 * err:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
