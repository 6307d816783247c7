"""Deep Compression of any Flax model end to end (thesis chapter 4): prune, share, Huffman-code.

:func:`compress` runs the four stages on a user's model -- an ``nnx.Module`` or a Linen
``(module, variables)`` pair -- and data, each checkpointed with orbax under ``OUT/stages/`` so
that a rerun skips every finished stage whose settings did not change:

1. **dense** -- the baseline: trained ``dense_epochs`` epochs (SGD + Nesterov + L2, cosine
   learning rate), or the model as given when ``dense_epochs=0``.
2. **pruned** -- iterative magnitude pruning with retraining (:func:`jaxcomp.prune`): each
   compressed leaf reaches ``prune_fractions`` of its target sparsity ``epochs_per_step`` epochs
   apart, then retrains to ``prune_epochs``.
3. **quantized** -- weight sharing per leaf (k-means over the kept weights, code 0 = pruned) and
   centroid fine-tuning (:func:`jaxcomp.share_weights`, Deep Compression eq. 3).
4. **final** -- relative indices + Huffman coding of the whole model state (every collection:
   BatchNorm statistics, RNG state) into ``OUT/model.dcz``, the report as ``OUT/report.md`` /
   ``OUT/report.json``, plots under ``OUT/plots/``; the test error of the model read back from
   the file with :func:`load_model`.

Training runs data-parallel over every local device (a 1-D ``jax.sharding.Mesh`` named
``"data"``: each batch split over the devices, parameters and optimizer state replicated; masks
and codebooks are computed on the global arrays). See ``docs/guides/compress-any-model.md``.

The thesis' LeNet settings are presets: :func:`jaxcomp.zoo.preset`; the command line is
:mod:`jaxcomp.cli` (``jaxcomp compress --model PATH.py:FACTORY --data PATH.py:LOADER``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import functools
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxcomp import schedules
from jaxcomp.atomic import atomic_open
from jaxcomp.checkpoint import restore_checkpoint, save_checkpoint
from jaxcomp.fileformat import load_compressed, save_compressed
from jaxcomp.masks import load_balanced_mask
from jaxcomp.pruning import apply_masks, prune
from jaxcomp.quantize import codes_dtype, plot_codebook
from jaxcomp.report import compression_report
from jaxcomp.sharing import share_weights, shared_params
from jaxcomp.tree import leaves_with_paths, selected_paths

__all__ = [
    "SHARE_INITS",
    "STAGES",
    "CompressConfig",
    "compress",
    "default_optimizer",
    "evaluate_model",
    "load_model",
    "prune_stage",
    "quantize_stage",
]

#: Stage names, in order; ``report.json["test_error"]`` has one entry per stage.
STAGES = ("dense", "pruned", "quantized", "final")

#: k-means initialisations of the weight-sharing stage (``CompressConfig.share_init``).
SHARE_INITS = ("linear", "density", "random", "kmeans++", "uniform")

#: Examples per forward pass when evaluating.
EVAL_BATCH = 1000


# ------------------------------------------------------------------------------------ config


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def _as_mapping(name: str, v: Any) -> dict:
    """A per-leaf setting as a dict: a mapping as it is, a bare number as ``{"*": number}``."""
    if isinstance(v, Mapping):
        for k in v:
            if not isinstance(k, str) or not k:
                raise ValueError(f"{name} keys must be non-empty leaf paths or globs, got {k!r}")
        return dict(v)
    if _is_number(v):
        return {"*": v}
    raise ValueError(
        f"{name} must be a number (every compressed leaf) or a mapping {{leaf path or glob: "
        f"value}}, got {type(v).__name__}"
    )


def _key_matches(key: str, path: str) -> bool:
    """A per-leaf key names ``path`` when it is the path, a glob matching it, or a module
    prefix of it (``"fc1"`` for ``"fc1/kernel"``, ``"encoder"`` for everything below)."""
    return key == path or fnmatch.fnmatchcase(path, key) or path.startswith(key + "/")


def _lookup(mapping: Mapping[str, Any], path: str, default: Any) -> Any:
    """The value ``mapping`` gives ``path``: its exact key first, else the first key (in the
    mapping's order) that matches it (:func:`_key_matches`), else ``default``."""
    if path in mapping:
        return mapping[path]
    for key, value in mapping.items():
        if _key_matches(key, path):
            return value
    return default


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    """Every knob of :func:`compress`. Model-independent; :meth:`layers` resolves it on a model.

    Per-leaf settings (``sparsity``, ``bits``, ``index_bits``, ``load_balance_pes``) are a number
    for every compressed leaf or a mapping ``{leaf path or glob: value}``: a leaf takes the value
    of its exact path, else of the first key (in the mapping's order) that matches it as a shell
    glob (``"*conv*"``) or as a module prefix (``"fc1"`` for ``"fc1/kernel"``), else the
    ``default_*``. Every key must match a compressed leaf (a typo is an error, not a no-op).

    Attributes:
      include: glob(s) (or compiled regexes) of the leaves to compress, as in
        :func:`jaxcomp.tree.selected_paths`; None: every leaf with ``ndim >= 2`` (kernels,
        embeddings; biases and BatchNorm stay float32).
      exclude: glob(s) removed from that selection.
      sparsity: fraction of each compressed leaf pruned, in [0, 1).
      default_sparsity: for compressed leaves ``sparsity`` does not name.
      bits: bits per weight code (1..16; ``2**bits - 1`` centroids + code 0 = pruned).
      default_bits: for compressed leaves ``bits`` does not name.
      index_bits: bits per relative index (1..16).
      default_index_bits: for compressed leaves ``index_bits`` does not name.
      seed: initialization / shuffling seed.
      batch_size: examples per step in every training stage (global, over all devices).
      train_limit: use only the first N training examples (None: all); smoke tests.
      dense_epochs: epochs of dense training; 0: the given model is the baseline.
      dense_lr: peak learning rate (cosine decay) of dense training.
      dense_weight_decay: L2 weight decay of dense training.
      prune_fractions: fractions of each target reached at the successive pruning steps.
      epochs_per_step: retraining epochs between two pruning steps.
      prune_epochs: total pruning + retraining epochs.
      prune_lr: peak learning rate (cosine decay) of the retraining.
      prune_weight_decay: L2 weight decay of the retraining.
      load_balance_pes: None (default) prunes each leaf by plain magnitude; an int N prunes
        with :func:`jaxcomp.load_balanced_mask` for N EIE processing elements (thesis §3.5):
        every group of output rows ``i mod N`` (a kernel's last axis) keeps the same number of
        weights. A mapping balances only the leaves it names. A mapping's N is at most its
        leaf's outputs; a single N at most the widest compressed leaf's.
      share_init: k-means initialisation (``"linear"``, ``"density"``, ``"random"``,
        ``"kmeans++"``) or ``"uniform"``.
      kmeans_iters: Lloyd iterations after the initialisation (0: the initial centroids).
      finetune_epochs: centroid fine-tuning epochs.
      finetune_lr: Adam learning rate of the centroids (and the other parameters).

    Example:
      >>> cfg = CompressConfig(sparsity={"fc1/kernel": 0.9}, default_sparsity=0.5, bits=4)
      >>> params = {"fc1": {"kernel": np.ones((8, 4)), "bias": np.ones(4)},
      ...           "fc2": {"kernel": np.ones((4, 2))}}
      >>> {p: (r["sparsity"], r["bits"]) for p, r in cfg.layers(params).items()}
      {'fc1/kernel': (0.9, 4), 'fc2/kernel': (0.5, 4)}
    """

    include: Any = None
    exclude: Any = None
    sparsity: float | Mapping[str, float] = dataclasses.field(default_factory=dict)
    default_sparsity: float = 0.8
    bits: int | Mapping[str, int] = dataclasses.field(default_factory=dict)
    default_bits: int = 5
    index_bits: int | Mapping[str, int] = dataclasses.field(default_factory=dict)
    default_index_bits: int = 4
    seed: int = 0
    batch_size: int = 128
    train_limit: int | None = None
    dense_epochs: int = 10
    dense_lr: float = 0.05
    dense_weight_decay: float = 1e-4
    prune_fractions: tuple[float, ...] = (0.5, 0.75, 0.875, 0.9375, 1.0)
    epochs_per_step: int = 6
    prune_epochs: int = 60
    prune_lr: float = 0.05
    prune_weight_decay: float = 1e-4
    load_balance_pes: int | Mapping[str, int] | None = None
    share_init: str = "linear"
    kmeans_iters: int = 50
    finetune_epochs: int = 4
    finetune_lr: float = 1e-4

    def __post_init__(self):
        for name in ("include", "exclude"):
            v = getattr(self, name)
            items = [] if v is None else [v] if isinstance(v, (str, re.Pattern)) else v
            try:
                items = list(items)
            except TypeError:
                raise TypeError(
                    f"{name} must be a glob string, a compiled re.Pattern or a list of them, "
                    f"got {type(v).__name__}"
                ) from None
            for p in items:
                if not isinstance(p, (str, re.Pattern)):
                    raise TypeError(
                        f"{name} must hold glob strings or compiled re.Pattern objects, "
                        f"got {type(p).__name__}"
                    )
            if v is not None and not isinstance(v, (str, re.Pattern)):
                object.__setattr__(self, name, tuple(items))
        for name in ("sparsity", "bits", "index_bits"):
            object.__setattr__(self, name, _as_mapping(name, getattr(self, name)))
        lb = self.load_balance_pes
        if isinstance(lb, Mapping):
            object.__setattr__(self, "load_balance_pes", _as_mapping("load_balance_pes", lb))
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("batch_size", self.batch_size, 1)
        if self.train_limit is not None:
            _check_int("train_limit", self.train_limit, 1)
        _check_int("dense_epochs", self.dense_epochs, 0)
        for name in ("epochs_per_step", "prune_epochs"):
            _check_int(name, getattr(self, name), 1)
        for name in ("kmeans_iters", "finetune_epochs"):
            _check_int(name, getattr(self, name), 0)
        for name in ("dense_lr", "prune_lr", "finetune_lr"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("dense_weight_decay", "prune_weight_decay"):
            _check_float(name, getattr(self, name), positive=False)
        if self.share_init not in SHARE_INITS:
            raise ValueError(f"share_init must be one of {SHARE_INITS}, got {self.share_init!r}")
        for p, s in [*self.sparsity.items(), ("", self.default_sparsity)]:
            where = f"sparsity[{p!r}]" if p else "default_sparsity"
            if not _is_number(s) or not 0.0 <= float(s) < 1.0:
                raise ValueError(f"{where} must lie in [0, 1), got {s!r}")
        for name in ("bits", "index_bits"):
            for p, b in [*getattr(self, name).items(), ("", getattr(self, "default_" + name))]:
                where = f"{name}[{p!r}]" if p else f"default_{name}"
                ok = isinstance(b, (int, np.integer)) and not isinstance(b, (bool, np.bool_))
                if not ok or not 1 <= b <= 16:
                    raise ValueError(f"{where} must be an int in 1..16, got {b!r}")
        fr = tuple(float(f) for f in self.prune_fractions)
        if not fr or any(not 0 < f <= 1 for f in fr) or list(fr) != sorted(fr) or fr[-1] != 1.0:
            raise ValueError(
                f"prune_fractions must increase within (0, 1] and end at 1.0, got {fr}"
            )
        object.__setattr__(self, "prune_fractions", fr)
        lbs = lb.items() if isinstance(lb, Mapping) else [] if lb is None else [("", lb)]
        for p, n in lbs:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(
                    f"load_balance_pes{'[' + repr(p) + ']' if p else ''} must be an int >= 1 "
                    f"(the number of EIE PEs to balance for; None: plain magnitude pruning), "
                    f"got {n!r}"
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

    def layers(self, params: Any) -> dict[str, dict[str, Any]]:
        """The compressed leaves of ``params`` and each one's settings.

        Args:
          params: the trainable parameters: a pure dict (``nnx.to_pure_dict(nnx.state(model,
            nnx.Param))``), an NNX ``State`` or a Linen ``variables["params"]``; leaves may be
            arrays or ``jax.ShapeDtypeStruct``.

        Returns:
          ``{path: {"sparsity", "bits", "index_bits", "load_balance_pes", "shape"}}`` in
          flattening order.

        Raises:
          ValueError: nothing is selected; a per-leaf key matches no compressed leaf; a
            ``load_balance_pes`` above a leaf's outputs. The message names the field.
        """
        sel = selected_paths(params, include=self.include, exclude=self.exclude)
        shapes = {p: tuple(x.shape) for p, x in leaves_with_paths(params) if p in set(sel)}
        if not sel:
            every = [p for p, _ in leaves_with_paths(params)]
            raise ValueError(
                f"include/exclude select no leaf of ndim >= 2 to compress (include "
                f"{self.include!r}, exclude {self.exclude!r}); the model's leaves: {every[:12]}"
            )
        lb = self.load_balance_pes
        lbm = lb if isinstance(lb, Mapping) else {}
        for name, mapping in (
            ("sparsity", self.sparsity),
            ("bits", self.bits),
            ("index_bits", self.index_bits),
            ("load_balance_pes", lbm),
        ):
            unknown = [k for k in mapping if not any(_key_matches(k, p) for p in sel)]
            if unknown:
                raise ValueError(
                    f"{name} names {unknown}, which match no compressed leaf; compressed "
                    f"leaves: {sel}"
                )
        out = {}
        for p in sel:
            n = _lookup(lbm, p, None) if isinstance(lb, Mapping) else lb
            out[p] = {
                "sparsity": float(_lookup(self.sparsity, p, self.default_sparsity)),
                "bits": int(_lookup(self.bits, p, self.default_bits)),
                "index_bits": int(_lookup(self.index_bits, p, self.default_index_bits)),
                "load_balance_pes": n,
                "shape": shapes[p],
            }
        # EIE rows are a kernel's outputs (its last axis). One N for every leaf is the
        # accelerator's PE count: narrower leaves leave PEs idle, so it is bounded by the
        # widest leaf; an N for one leaf by that leaf.
        if isinstance(lb, Mapping):
            for p, r in out.items():
                n = r["load_balance_pes"]
                if n is not None and n > shapes[p][-1]:
                    raise ValueError(
                        f"load_balance_pes[{p!r}] = {n} is more PEs than {p} has outputs "
                        f"({shapes[p][-1]}); give at most {shapes[p][-1]}"
                    )
        elif lb is not None:
            widest = max(sel, key=lambda p: shapes[p][-1])
            if lb > shapes[widest][-1]:
                raise ValueError(
                    f"load_balance_pes = {lb} is more PEs than {widest} has outputs "
                    f"({shapes[widest][-1]}); give at most {shapes[widest][-1]}"
                )
        return out

    def to_json(self) -> dict:
        """A JSON-able dict of every field (regex patterns as their pattern strings)."""
        d = dataclasses.asdict(self)
        for name in ("include", "exclude"):
            v = getattr(self, name)
            if v is not None:
                items = [v] if isinstance(v, (str, re.Pattern)) else list(v)
                d[name] = [p.pattern if isinstance(p, re.Pattern) else p for p in items]
        for name in ("sparsity", "bits", "index_bits"):
            d[name] = dict(getattr(self, name))
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
    if not _is_number(v) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        want = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name} must be {want}, got {v!r}")


def default_optimizer(
    lr: float, *, steps: int, weight_decay: float = 0.0, momentum: float = 0.9
) -> optax.GradientTransformation:
    """SGD with Nesterov momentum, weight decay and a cosine learning-rate decay over ``steps``.

    The optimizer of the dense and pruning stages (the thesis' Caffe recipes).

    Example:
      >>> tx = default_optimizer(0.1, steps=10, weight_decay=1e-4)
      >>> u, _ = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
      >>> u["w"].shape
      (2,)
    """
    schedule = optax.cosine_decay_schedule(lr, decay_steps=max(steps, 1))
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(schedule, momentum=momentum, nesterov=True),
    )


# ------------------------------------------------------------------------------------ models


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda v: v, tree)


def _default_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class _Model:
    """A user's model as pure functions of two pure dicts: ``params`` (trained, compressed)
    and ``rest`` (every other collection: BatchNorm statistics, RNG state).

    ``train(params, rest, x, key) -> (logits, rest)`` and ``eval(params, rest, x) -> logits``
    are traceable; ``state(params, rest)`` is the whole model state as the file stores it."""

    def __init__(self, model: Any):
        if isinstance(model, nnx.Module):
            self.kind = "nnx"
            self.name = type(model).__name__
            self.module = model
            was_training = _nnx_training(model)
            model.train()
            self._gd_train = nnx.graphdef(model)
            model.eval()
            self._gd_eval = nnx.graphdef(model)
            if was_training:
                model.train()
            _, pstate, rstate = nnx.split(model, nnx.Param, ...)
            self._pstate, self._rstate = _copy(pstate), _copy(rstate)
            self.params = nnx.to_pure_dict(pstate)
            self.rest = nnx.to_pure_dict(rstate)
            self.prefix = ""
        elif isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "apply"):
            from flax.core import unfreeze

            module, variables = model
            variables = unfreeze(variables) if not isinstance(variables, dict) else variables
            if not isinstance(variables, Mapping) or "params" not in variables:
                raise TypeError(
                    "model: a Linen pair must be (module, variables) with variables['params'] "
                    f"(module.init's result); got variables of type {type(variables).__name__} "
                    f"with keys {list(variables) if isinstance(variables, Mapping) else None}"
                )
            self.kind = "linen"
            self.name = type(module).__name__
            self.module = module
            self.params = dict(variables["params"])
            self.rest = {k: v for k, v in variables.items() if k != "params"}
            self.prefix = "params/"
            names = inspect.signature(module.__call__).parameters
            self._train_kw = (
                ("train", True, False)
                if "train" in names
                else ("deterministic", False, True)
                if "deterministic" in names
                else None
            )
            self._mutable = [k for k in ("batch_stats",) if k in self.rest]
        else:
            raise TypeError(
                "model must be an nnx.Module or a Linen (module, variables) pair, got "
                f"{type(model).__name__}"
            )

    # -- pure functions ------------------------------------------------------------------

    def _merge(self, gd, params, rest):
        pst, rst = _copy(self._pstate), _copy(self._rstate)
        nnx.replace_by_pure_dict(pst, params)
        nnx.replace_by_pure_dict(rst, rest)
        return nnx.merge(gd, pst, rst)

    def train(self, params, rest, x, key):
        if self.kind == "nnx":
            m = self._merge(self._gd_train, params, rest)
            logits = m(x)
            _, _, rst = nnx.split(m, nnx.Param, ...)
            return logits, nnx.to_pure_dict(rst)
        kw = {} if self._train_kw is None else {self._train_kw[0]: self._train_kw[1]}
        variables = {"params": params, **rest}
        if self._mutable:
            logits, upd = self.module.apply(
                variables, x, mutable=self._mutable, rngs={"dropout": key}, **kw
            )
            return logits, {**rest, **upd}
        return self.module.apply(variables, x, rngs={"dropout": key}, **kw), rest

    def eval(self, params, rest, x):
        if self.kind == "nnx":
            return self._merge(self._gd_eval, params, rest)(x)
        kw = {} if self._train_kw is None else {self._train_kw[0]: self._train_kw[2]}
        return self.module.apply({"params": params, **rest}, x, **kw)

    # -- the whole state -----------------------------------------------------------------

    def state(self, params, rest):
        """The model state for the file: an ``nnx.State`` (variable types recorded) or the
        Linen variables dict."""
        if self.kind == "nnx":
            return nnx.state(self._merge(self._gd_eval, params, rest))
        return {"params": params, **rest}

    def fresh(self, params, rest):
        """A new model object holding ``(params, rest)``: an ``nnx.Module`` or a Linen pair."""
        if self.kind == "nnx":
            return self._merge(self._gd_eval, params, rest)
        return (self.module, {"params": params, **rest})

    def split(self, model):
        """``(params, rest)`` pure dicts of a model object :meth:`fresh` made."""
        if self.kind == "nnx":
            _, pst, rst = nnx.split(model, nnx.Param, ...)
            return nnx.to_pure_dict(pst), nnx.to_pure_dict(rst)
        variables = model[1]
        return dict(variables["params"]), {k: v for k, v in variables.items() if k != "params"}

    def fingerprint(self) -> dict:
        """Class name and a SHA-256 of every leaf of the initial state (a different model, or
        other initial weights, is other settings)."""
        h = hashlib.sha256()
        for tree in (self.params, self.rest):
            for path, x in leaves_with_paths(tree):
                if jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
                    x = jax.random.key_data(x)
                a = np.asarray(x)
                h.update(f"{path}:{a.dtype}:{a.shape};".encode())
                h.update(np.ascontiguousarray(a).tobytes())
        return {"class": self.name, "kind": self.kind, "sha256": h.hexdigest()}


def _nnx_training(model: nnx.Module) -> bool:
    """Whether any submodule of ``model`` is in training mode (Dropout not deterministic,
    BatchNorm not using running averages); False for a model without such layers."""
    for _, m in nnx.iter_graph(model):
        if getattr(m, "deterministic", None) is False:
            return True
        if getattr(m, "use_running_average", None) is False:
            return True
    return False


def load_model(path: str | os.PathLike, model: Any, *, max_ratio: float | None = None) -> Any:
    """Fill a model with the state stored in a ``.dcz`` file (as :func:`compress` writes it).

    The file must hold exactly the model's state: every leaf (parameters, BatchNorm statistics,
    RNG state), with the same shapes, dtypes and NNX variable types; else
    :class:`jaxcomp.DczFormatError` names the first leaf that differs.

    Args:
      path: the ``.dcz`` file.
      model: an ``nnx.Module`` of the architecture that was compressed (e.g. a fresh one from
        the same factory; it is updated in place), or a Linen ``(module, variables)`` pair
        (``variables`` may be ``jax.eval_shape`` of ``module.init``).
      max_ratio: the loader's limit on decoded bytes per file byte
        (:data:`jaxcomp.DEFAULT_MAX_RATIO` when None).

    Returns:
      the NNX module (the same object), or ``(module, variables)`` with the file's variables.

    Raises:
      jaxcomp.DczFormatError: a damaged file, or one that does not hold this model's state.
      TypeError: ``model`` is neither.

    Example:
      >>> import tempfile, os
      >>> m = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, nnx.state(m), {}, {})
      >>> other = load_model(f, nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
      >>> bool(jnp.all(other.kernel[...] == m.kernel[...]))
      True
    """
    kw = {} if max_ratio is None else {"max_ratio": max_ratio}
    if isinstance(model, nnx.Module):
        state = nnx.state(model)
        tree = load_compressed(path, target=state, **kw)
        nnx.replace_by_pure_dict(state, tree)
        nnx.update(model, state)
        return model
    if isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "apply"):
        module, variables = model
        return module, load_compressed(path, target=variables, **kw)
    raise TypeError(
        f"model must be an nnx.Module or a Linen (module, variables) pair, got "
        f"{type(model).__name__}"
    )


# -------------------------------------------------------------------------------------- data


def _check_arrays(arrays: tuple, name: str) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` as arrays with matching lengths and shapes."""
    names = ("x_train", "y_train", "x_test", "y_test")
    out = []
    for n, a in zip(names, arrays, strict=True):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            try:
                a = np.asarray(a)
            except Exception:
                raise ValueError(f"{name}: {n} is a {type(a).__name__}, not an array") from None
            if a.dtype == object:
                raise ValueError(f"{name}: {n} is not a numeric array (dtype object)")
        if a.ndim < 1:
            raise ValueError(f"{name}: {n} is a scalar; give one entry per example")
        out.append(a)
    xt, yt, xe, ye = out
    for x, y, part in ((xt, yt, "train"), (xe, ye, "test")):
        if len(x) == 0:
            raise ValueError(f"{name}: x_{part} is empty")
        if len(x) != len(y):
            raise ValueError(
                f"{name}: x_{part} has {len(x)} examples but y_{part} has {len(y)}; they must match"
            )
    if xt.shape[1:] != xe.shape[1:]:
        raise ValueError(
            f"{name}: x_train examples have shape {xt.shape[1:]} but x_test ones {xe.shape[1:]}"
        )
    if yt.shape[1:] != ye.shape[1:]:
        raise ValueError(
            f"{name}: y_train entries have shape {yt.shape[1:]} but y_test ones {ye.shape[1:]}"
        )
    return tuple(out)


class _Data:
    """Training and test batches from arrays or from batch iterables."""

    def __init__(self, data: Any, config: CompressConfig, devices: int, log: Callable):
        self.log = log
        self.devices = devices
        self.batch_size = config.batch_size
        self.limit = config.train_limit
        self.source = getattr(data, "source", None)
        fields = ("x_train", "y_train", "x_test", "y_test")
        if all(hasattr(data, f) for f in fields):
            data = tuple(getattr(data, f) for f in fields)
        if isinstance(data, (tuple, list)) and len(data) == 4:
            self.arrays = _check_arrays(tuple(data), "data")
            xt, yt, xe, ye = self.arrays
            if self.limit is not None:
                self.arrays = (xt[: self.limit], yt[: self.limit], xe, ye)
            self.n_train = len(self.arrays[0])
            self.n_test = len(xe)
            if self.n_train < self.batch_size:
                raise ValueError(
                    f"data: {self.n_train} training examples are fewer than one batch "
                    f"(batch_size {self.batch_size})"
                )
            self.steps_per_epoch = self.n_train // self.batch_size
            self.source = self.source or "arrays"
            h = hashlib.blake2b(digest_size=16)
            for a in (xt, yt, xe, ye):
                a = np.asarray(a)
                h.update(f"{a.dtype}:{a.shape};".encode())
                h.update(np.ascontiguousarray(a).tobytes())
            self.fingerprint = {"kind": "arrays", "blake2b": h.hexdigest()}
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            self.arrays = None
            self._train, self._test = (
                self._reusable(d, which) for d, which in zip(data, ("train", "test"), strict=True)
            )
            self.source = self.source or "batches"
            self.fingerprint = {"kind": "batches"}
            self._noted = False
            self.steps_per_epoch = sum(1 for _ in self.train(0, 0))
            if self.steps_per_epoch == 0:
                raise ValueError("data: the training batches are empty")
            self.n_train = None
            self.n_test = None
        else:
            raise TypeError(
                "data must be (x_train, y_train, x_test, y_test) arrays or (train_batches, "
                f"test_batches) iterables of (x, y); got {type(data).__name__}"
                + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            )

    @staticmethod
    def _reusable(d: Any, which: str) -> Callable[[], Iterable]:
        if callable(d):
            return d
        if iter(d) is d:
            raise TypeError(
                f"data: the {which} batches are a one-shot iterator, which cannot serve several "
                "epochs; give a list, a re-iterable object, or a zero-argument callable that "
                "returns a fresh iterable"
            )
        return lambda: d

    def _pairs(self, it: Iterable, which: str):
        for item in it:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(
                    f"data: each {which} batch must be an (x, y) pair, got {type(item).__name__}"
                )
            x, y = item
            if len(x) != len(y):
                raise ValueError(f"data: a {which} batch has {len(x)} inputs but {len(y)} labels")
            yield x, y

    def train(self, seed: int, epoch: int):
        """The training batches of ``epoch``, each a multiple of the device count."""
        if self.arrays is not None:
            from jaxcomp.zoo.data import batches

            xt, yt = self.arrays[:2]
            yield from batches(xt, yt, self.batch_size, seed=seed, epoch=epoch)
            return
        seen = 0
        for x, y in self._pairs(self._train(), "train"):
            if self.limit is not None:
                if seen >= self.limit:
                    return
                x, y = x[: self.limit - seen], y[: self.limit - seen]
            keep = len(x) - len(x) % self.devices
            if keep != len(x) and not self._noted:
                self._noted = True
                self.log(
                    f"note: a training batch of {len(x)} examples does not split over "
                    f"{self.devices} devices; the last {len(x) - keep} example(s) of such "
                    "batches are dropped"
                )
            if keep == 0:
                continue
            seen += len(x)
            yield x[:keep], y[:keep]

    def test(self):
        """The test batches (every example, in order)."""
        if self.arrays is not None:
            xe, ye = self.arrays[2:]
            for i in range(0, len(xe), EVAL_BATCH):
                yield xe[i : i + EVAL_BATCH], ye[i : i + EVAL_BATCH]
            return
        yield from self._pairs(self._test(), "test")

    def first_test(self):
        for x, y in self.test():
            return x, y
        raise ValueError("data: the test set is empty")


# -------------------------------------------------------------------------------- parallel


class _Parallel:
    """Data parallelism over the local devices: a 1-D mesh ``("data",)``; batches split along
    their first axis, everything else replicated. One device: plain ``jax.jit``."""

    def __init__(self, batch_size: int | None = None):
        self.devices = jax.local_devices()
        self.n = len(self.devices)
        if batch_size is not None and batch_size % self.n:
            raise ValueError(
                f"batch_size {batch_size} does not split over the {self.n} local devices; "
                f"give a multiple of {self.n} (or make fewer devices visible, e.g. with "
                "CUDA_VISIBLE_DEVICES)"
            )
        self._mesh = None

    def _shardings(self) -> tuple[NamedSharding, NamedSharding]:
        if self._mesh is None:
            self._mesh = Mesh(np.array(self.devices), ("data",))
        return NamedSharding(self._mesh, P()), NamedSharding(self._mesh, P("data"))

    def jit(self, fn: Callable, n_replicated: int, n_batch: int, n_after: int = 0) -> Callable:
        if self.n == 1:
            return jax.jit(fn)
        rep, batch = self._shardings()
        shardings = (rep,) * n_replicated + (batch,) * n_batch + (rep,) * n_after
        return jax.jit(fn, in_shardings=shardings, out_shardings=rep)

    def replicate(self, tree: Any) -> Any:
        return tree if self.n == 1 else jax.device_put(tree, self._shardings()[0])


# -------------------------------------------------------------------------------- training


def _train(
    m: _Model,
    params: Any,
    rest: Any,
    tx: optax.GradientTransformation,
    data: _Data,
    par: _Parallel,
    *,
    epochs: int,
    seed: int,
    loss_fn: Callable,
    opt_state: Any = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[Any, Any, Any, dict]:
    """``epochs`` epochs of ``tx`` on ``data``; returns params, rest, opt_state and
    ``{"loss": per-epoch mean loss, "seconds"}``. The batch order of epoch ``e`` is fixed by
    ``(seed, e)``; a dropout key per step is ``fold_in(key(seed), step)``."""

    def step(params, rest, opt_state, x, y, key, i):
        def lossf(p):
            logits, new_rest = m.train(p, rest, x, jax.random.fold_in(key, i))
            return loss_fn(logits, y), new_rest

        (loss, new_rest), grads = jax.value_and_grad(lossf, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, new_rest, opt_state, loss

    jstep = par.jit(step, 3, 2, 2)
    opt_state = tx.init(params) if opt_state is None else opt_state
    params, rest, opt_state = par.replicate((params, rest, opt_state))
    key = jax.random.key(seed)
    history: dict = {"loss": []}
    t0 = time.perf_counter()
    n = 0
    total = epochs * data.steps_per_epoch
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            losses = []
            for xb, yb in data.train(seed, epoch):
                params, rest, opt_state, loss = jstep(
                    params, rest, opt_state, xb, yb, key, np.uint32(n)
                )
                losses.append(loss)
                n += 1
                bar.update(1)
                if len(losses) % 50 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}")
            history["loss"].append(float(np.mean(jax.device_get(losses))) if losses else None)
    history["seconds"] = time.perf_counter() - t0
    return params, rest, opt_state, history


def _error_fn(m: _Model, eval_fn: Callable | None) -> Callable:
    """A jitted ``(params, rest, x, y) -> (errors in the batch, examples)``: the number of
    wrong argmax predictions (default), or ``eval_fn(logits, y) * len(x)``."""
    key = (id(m), id(eval_fn))
    if key not in _ERROR_FNS:
        if eval_fn is None:

            def f(params, rest, x, y):
                return jnp.sum(jnp.argmax(m.eval(params, rest, x), -1) != y)
        else:

            def f(params, rest, x, y):
                return eval_fn(m.eval(params, rest, x), y) * x.shape[0]

        _ERROR_FNS[key] = (m, jax.jit(f))  # m kept alive so its id is not reused
    return _ERROR_FNS[key][1]


_ERROR_FNS: dict[tuple[int, int], tuple[Any, Callable]] = {}


def _evaluate(m: _Model, params: Any, rest: Any, data: _Data, eval_fn: Callable | None) -> float:
    f = _error_fn(m, eval_fn)
    total, n = 0.0, 0
    for x, y in data.test():
        e = f(params, rest, x, y)
        total += int(e) if eval_fn is None else float(e)
        n += len(x)
    if n == 0:
        raise ValueError("data: the test set is empty")
    return total / n


def evaluate_model(
    model: Any,
    x: Any,
    y: Any,
    *,
    eval_fn: Callable | None = None,
    batch_size: int = EVAL_BATCH,
) -> float:
    """Test error of a model (in eval mode: BatchNorm running averages, no dropout).

    Args:
      model: an ``nnx.Module`` or a Linen ``(module, variables)`` pair whose call gives logits
        (batch, classes).
      x: inputs (n, ...).
      y: labels (n,) (integers for the default metric).
      eval_fn: ``eval_fn(logits, y) -> scalar error`` of a batch (default: the fraction of
        wrong argmax predictions); batches are weighted by their size.
      batch_size: examples per forward pass.

    Returns:
      the error, a float (a fraction in [0, 1] for the default metric).

    Example:
      >>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
      >>> x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
      >>> y = np.asarray(jnp.argmax(m(x), -1))
      >>> evaluate_model(m, x, y), evaluate_model(m, x, 1 - y)
      (0.0, 1.0)
    """
    _check_arrays((x, y, x, y), "evaluate_model")
    m = _Model(model)
    f = _error_fn(m, eval_fn)
    total = 0.0
    for i in range(0, len(x), batch_size):
        e = f(m.params, m.rest, x[i : i + batch_size], y[i : i + batch_size])
        total += int(e) if eval_fn is None else float(e)
    _ERROR_FNS.pop((id(m), id(eval_fn)), None)
    return total / len(x)


# ------------------------------------------------------------------------------------ stages


def _criterion(layers: Mapping[str, dict], lb: Any) -> Any:
    """The ``prune`` criterion: plain magnitude, or load-balance-aware for EIE PEs (EIE rows
    are outputs: the last axis of a Flax kernel (in, out) or (kh, kw, in, out))."""

    def balanced(n: int) -> Callable:
        return functools.partial(load_balanced_mask, num_pes=n, row_axis=-1)

    if isinstance(lb, Mapping):
        return {
            p: balanced(r["load_balance_pes"]) if r["load_balance_pes"] else "magnitude"
            for p, r in layers.items()
        }
    if lb is not None:
        return balanced(lb)
    return "magnitude"


def _prune_run(m, params, rest, data, config, layers, par, loss_fn, progress):
    spe = data.steps_per_epoch
    step_len = config.epochs_per_step * spe
    boundaries = [i * step_len for i in range(len(config.prune_fractions))]
    sched = {
        path: schedules.iterative(boundaries, [r["sparsity"] * f for f in config.prune_fractions])
        for path, r in layers.items()
    }
    total = config.prune_epochs * spe
    inner = default_optimizer(config.prune_lr, steps=total, weight_decay=config.prune_weight_decay)
    selected = set(layers)
    tx = prune(
        inner,
        sched,
        _criterion(layers, config.load_balance_pes),
        predicate=lambda path, leaf: path in selected,
    )
    params, rest, state, history = _train(
        m,
        params,
        rest,
        tx,
        data,
        par,
        epochs=config.prune_epochs,
        seed=config.seed + 1,
        loss_fn=loss_fn,
        progress=progress,
        desc="prune+retrain",
    )
    # exact zeros where the final masks say so (the wrapper already guarantees it)
    params = apply_masks(params, state.masks)
    return params, rest, history


def _quantize_run(m, params, rest, data, config, layers, par, loss_fn, progress):
    tx = share_weights(
        optax.adam(config.finetune_lr),
        bits={p: r["bits"] for p, r in layers.items()},
        init=config.share_init,
        iters=config.kmeans_iters,
        seed=config.seed,
    )
    state0 = tx.init(params)
    kmeans_cbs = _by_path(state0.codebooks)
    params = shared_params(params, state0)
    params, rest, state, history = _train(
        m,
        params,
        rest,
        tx,
        data,
        par,
        epochs=config.finetune_epochs,
        seed=config.seed + 2,
        loss_fn=loss_fn,
        opt_state=state0,
        progress=progress,
        desc="share+fine-tune",
    )
    params = shared_params(params, state)
    cbs, cds = _by_path(state.codebooks), _by_path(state.codes)
    return params, rest, cbs, cds, kmeans_cbs, history


def _pure_apply_model(apply: Callable, params: Any) -> _Model:
    """A :class:`_Model` around a pure ``apply(params, x) -> logits`` (no other state)."""
    m = _Model.__new__(_Model)
    m.kind, m.name, m.prefix = "apply", getattr(apply, "__name__", "apply"), ""
    m.params, m.rest = params, {}
    m.train = lambda p, r, x, key: (apply(p, x), r)
    m.eval = lambda p, r, x: apply(p, x)
    return m


def _check_params(params: Any, name: str = "params") -> None:
    """A nested dict of finite float arrays (checked on the host, before any jitted step)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{name} must be a nested dict of arrays, got {type(params).__name__}")
    for p, x in leaves_with_paths(params):
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"{name}[{p!r}] must be a float array, got {dtype}")
        if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"{name}[{p!r}] holds NaN or infinite values")


def prune_stage(
    apply: Callable,
    params: Any,
    data: Any,
    config: CompressConfig,
    *,
    loss_fn: Callable | None = None,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Iterative magnitude pruning with retraining (thesis §3.2) of a pure ``apply``.

    :func:`compress`'s second stage on its own, for a model given as a pure function.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: the dense params (nested dict of float arrays).
      data: ``(x_train, y_train, x_test, y_test)`` arrays (or an object with those fields, such
        as :class:`jaxcomp.zoo.MNIST`), or ``(train_batches, test_batches)``.
      config: ``include``/``exclude``, ``sparsity``, ``prune_fractions``, ``epochs_per_step``,
        ``prune_epochs``, ``prune_lr``, ``prune_weight_decay``, ``load_balance_pes``,
        ``batch_size``, ``train_limit``, ``seed`` are read.
      loss_fn: ``loss_fn(logits, y) -> scalar`` (default: softmax cross-entropy on integer
        labels).
      progress: tqdm bar.

    Returns:
      ``(params, info)``; each compressed leaf has exactly ``floor(s * size)`` zeros (``s`` its
      target); ``info`` holds the per-epoch ``loss`` and the training ``seconds``.

    Example (trains; skipped by the doctests)::

      >>> from jaxcomp import zoo
      >>> apply, params = zoo.functional(zoo.make_model("lenet-300-100"))
      >>> pruned, info = prune_stage(apply, params, zoo.load_mnist(),
      ...                            zoo.preset("lenet-300-100"))  # doctest: +SKIP
    """
    _check_params(params)
    layers = config.layers(params)
    par = _Parallel()
    m = _pure_apply_model(apply, params)
    d = _Data(data, config, par.n, print)
    params, _, history = _prune_run(
        m, params, {}, d, config, layers, par, loss_fn or _default_loss, progress
    )
    return params, history


def quantize_stage(
    apply: Callable,
    params: Any,
    data: Any,
    config: CompressConfig,
    *,
    loss_fn: Callable | None = None,
    progress: bool = True,
) -> tuple[Any, dict, dict, dict, dict]:
    """Weight sharing (k-means over the kept weights) and centroid fine-tuning (thesis §4.2).

    :func:`compress`'s third stage on its own, for a model given as a pure function.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: pruned params (exact zeros = pruned, they get code 0 and stay 0).
      data: as in :func:`prune_stage`.
      config: ``include``/``exclude``, ``bits``, ``share_init``, ``kmeans_iters``,
        ``finetune_epochs``, ``finetune_lr``, ``batch_size``, ``train_limit``, ``seed`` are
        read.
      loss_fn: as in :func:`prune_stage`.
      progress: tqdm bar.

    Returns:
      ``(params, codebooks, codes, codebooks_kmeans, info)``: params with every shared leaf equal
      to ``codebook[codes]`` bit for bit; ``{path: (2**bits,) float32}`` fine-tuned codebooks,
      ``{path: uint8/uint16 codes}``, the k-means codebooks before fine-tuning, and the
      per-epoch ``loss`` and ``seconds``.

    Example (trains; skipped by the doctests)::

      >>> params, cbs, codes, kmeans, info = quantize_stage(
      ...     apply, pruned, zoo.load_mnist(), zoo.preset("lenet-300-100"))  # doctest: +SKIP
      >>> cbs["fc1/kernel"].shape, codes["fc1/kernel"].dtype  # doctest: +SKIP
      ((32,), dtype('uint8'))
    """
    _check_params(params)
    layers = config.layers(params)
    par = _Parallel()
    m = _pure_apply_model(apply, params)
    d = _Data(data, config, par.n, print)
    params, _, cbs, cds, km, history = _quantize_run(
        m, params, {}, d, config, layers, par, loss_fn or _default_loss, progress
    )
    return params, cbs, cds, km, history


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


# ---------------------------------------------------------------------------------- compress


def _fn_name(fn: Callable | None) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_model_on_data(m: _Model, data: _Data, eval_fn: Callable | None, loss_fn) -> None:
    """Trace the model on two test examples: a model that cannot take the data, or whose
    logits cannot be scored against the labels, is refused before any work."""
    x, y = data.first_test()
    x, y = x[:2], y[:2]
    try:
        logits = jax.eval_shape(lambda p, r, x: m.eval(p, r, x), m.params, m.rest, x)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(
            f"data: the model cannot take inputs of shape {tuple(np.shape(x))[1:]} (per "
            f"example): {type(e).__name__}: {first}"
        ) from None
    if eval_fn is None and loss_fn is _default_loss:
        if logits.ndim != 2 or logits.shape[0] != len(x):
            raise ValueError(
                f"data: the model gives outputs of shape {logits.shape} for {len(x)} examples; "
                "the default loss and metric need logits (batch, classes): give loss_fn and "
                "eval_fn for other outputs"
            )
        labels = np.asarray(y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"data: labels of shape {labels.shape[1:]} and dtype {labels.dtype} per "
                "example; the default loss and metric need integer class labels (n,): give "
                "loss_fn and eval_fn for other targets"
            )
        if data.arrays is not None:
            ys = np.concatenate([np.ravel(data.arrays[1]), np.ravel(data.arrays[3])])
            lo, hi = int(ys.min()), int(ys.max())
            if lo < 0 or hi >= logits.shape[-1]:
                raise ValueError(
                    f"data: labels run from {lo} to {hi} but the model gives "
                    f"{logits.shape[-1]} logits per example; labels must lie in "
                    f"0..{logits.shape[-1] - 1}"
                )


def compress(
    model: Any,
    data: Any,
    config: CompressConfig,
    out: str | os.PathLike,
    *,
    loss_fn: Callable | None = None,
    eval_fn: Callable | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
    redo_changed: bool = False,
    name: str | None = None,
) -> dict:
    """Deep Compression of a Flax model: dense -> pruned -> quantized -> ``OUT/model.dcz``.

    A rerun on the same ``out`` resumes: every stage whose checkpoint under ``OUT/stages/`` was
    made with the same settings (same model and data, same earlier stages) is restored instead
    of recomputed. The settings are stored in ``OUT/settings.json``; a run with other settings
    is refused unless ``redo_changed`` (then a changed setting recomputes that stage and every
    later one). While it runs, ``OUT/.jaxcomp.lock`` keeps a second run off the same ``out``;
    temporary files that an interrupted run left behind are removed first. See
    ``docs/guides/compress-any-model.md`` and ``docs/guides/cli-errors.md``.

    Training runs over every local device (``jax.local_devices()``): a 1-D mesh ``("data",)``,
    each batch split over the devices (``batch_size`` must be a multiple of their number),
    parameters and optimizer state replicated, masks and codebooks computed on the global
    arrays.

    Args:
      model: an ``nnx.Module`` whose ``__call__(x)`` gives logits (BatchNorm and Dropout are
        trained with ``model.train()`` and evaluated with ``model.eval()``), or a Linen
        ``(module, variables)`` pair (``variables["params"]`` and optionally ``batch_stats``,
        made mutable while training; a ``train`` or ``deterministic`` argument of the module's
        ``__call__`` is set per mode; a ``"dropout"`` rng is given). An NNX model is left
        holding the compressed weights, in eval mode.
      data: ``(x_train, y_train, x_test, y_test)`` NumPy/JAX arrays (or an object with those
        fields, e.g. :class:`jaxcomp.zoo.MNIST`), or ``(train_batches, test_batches)``, each a
        list or other re-iterable, or a zero-argument callable returning a fresh iterable, of
        ``(x, y)`` batches. Arrays are shuffled per epoch with ``(seed, epoch)``; batches are
        used as given.
      config: a :class:`CompressConfig` (presets: :func:`jaxcomp.zoo.preset`).
      out: output folder (created).
      loss_fn: ``loss_fn(logits, y) -> scalar`` (default: softmax cross-entropy on integer
        labels, averaged over the batch).
      eval_fn: ``eval_fn(logits, y) -> scalar error`` of a batch (default: the fraction of
        wrong argmax predictions).
      progress: tqdm bars on the training stages.
      plots: write ``OUT/plots/*.png``.
      log: where the one-line stage summaries go.
      redo_changed: accept an ``out`` written with other settings (recompute what changed).
      name: the architecture's name for the report and the file's metadata (default: the
        model's class name).

    Returns:
      the dict written to ``OUT/report.json``: ``original_bytes``, ``compressed_bytes`` (P+Q+H,
      docs/design.md, storage accounting), ``pq_bytes``, ``file_bytes``, ``compression_rate``
      (original / compressed), ``pruning_rate`` (compressed leaves / kept weights),
      ``test_error`` per stage (``dense``, ``pruned``, ``quantized``, ``final`` = the model
      read back from the file), ``layers`` (per compressed leaf: ``weights``, ``kept``,
      ``sparsity``, ``bits``, ``index_bits``...), ``stages`` (seconds, resumed or not, losses),
      ``config``, ``devices``.

    Example (trains for minutes; skipped by the doctests)::

      >>> from jaxcomp import zoo
      >>> model = zoo.make_model("lenet-300-100")
      >>> r = compress(model, zoo.load_mnist(), zoo.preset("lenet-300-100"),
      ...              "runs/lenet300")  # doctest: +SKIP
      >>> r["compression_rate"], r["test_error"]["final"]  # doctest: +SKIP

    Raises:
      ValueError: ``out`` is empty, a file or below a file; ``out`` was written with other
        settings (and not ``redo_changed``); data of the wrong structure or shapes, or that
        the model cannot take; ``batch_size`` not a multiple of the device count; a per-leaf
        setting naming no compressed leaf.
      TypeError: ``model``, ``data`` or ``config`` of the wrong type.
      FileExistsError: another run holds ``OUT/.jaxcomp.lock``.
      OSError: the file system refused a read or write (no space, read-only, ...).
    """
    if not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a CompressConfig, got {type(config).__name__}")
    for fname, fn in (("loss_fn", loss_fn), ("eval_fn", eval_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{fname} must be callable (logits, y) -> scalar, got {fn!r}")
    out = _check_out_dir(out)
    m = _Model(model)
    layers = config.layers(m.params)
    par = _Parallel(config.batch_size)
    d = _Data(data, config, par.n, log)
    loss = loss_fn or _default_loss
    _check_model_on_data(m, d, eval_fn, loss)
    _check_params(m.params, "model parameters")
    out.mkdir(parents=True, exist_ok=True)
    with _OutLock(out):
        removed = _remove_orphans(out)
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run in {out}")
        return _compress(
            m, d, config, layers, out, par, loss, eval_fn, progress, plots, log, redo_changed, name
        )


def _compress(
    m, data, config, layers, out, par, loss_fn, eval_fn, progress, plots, log, redo_changed, name
) -> dict:
    name = name or m.name
    log(
        f"data: {data.source}, "
        + (
            f"{data.n_train:,} train / {data.n_test:,} test examples"
            if data.arrays is not None
            else f"{data.steps_per_epoch:,} training batches per epoch"
        )
        + f"; {par.n} device(s)"
    )
    cfg = config.to_json()
    settings = {
        **cfg,
        "model": {"name": name, **m.fingerprint()},
        "data": data.fingerprint,
        "n_train": data.n_train,
        "loss_fn": _fn_name(loss_fn if loss_fn is not _default_loss else None),
        "eval_fn": _fn_name(eval_fn),
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
    stages_info: dict[str, dict] = {}
    errors: dict[str, float] = {}
    template = {"params": m.params, **({"rest": m.rest} if jax.tree.leaves(m.rest) else {})}

    def test_error(params, rest):
        return _evaluate(m, params, rest, data, eval_fn)

    def restore(st):
        tree = st.restore(template)
        return jax.tree.map(jnp.asarray, tree["params"]), tree.get("rest", m.rest)

    def save(st, params, rest, t0, history):
        tree = {"params": params, **({"rest": rest} if "rest" in template else {})}
        rec = {"test_error": test_error(params, rest), "seconds": time.perf_counter() - t0}
        return st.save(tree, {**rec, "loss": history.get("loss", [])})

    def done(stage, rec, resumed):
        rec["resumed"] = resumed
        errors[stage] = rec["test_error"]
        stages_info[stage] = {
            "seconds": rec["seconds"],
            "resumed": resumed,
            "loss": rec.get("loss", []),
        }

    # 1. dense ---------------------------------------------------------------------------------
    sig = {
        "model": settings["model"],
        "data": data.fingerprint,
        "n_train": data.n_train,
        "train_limit": config.train_limit,
        "loss_fn": settings["loss_fn"],
        **{
            k: cfg[k]
            for k in ("seed", "batch_size", "dense_epochs", "dense_lr", "dense_weight_decay")
        },
    }
    st = _Stage(out, "dense", sig)
    rec = st.done()
    if rec is not None:
        params, rest = restore(st)
        done("dense", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, history = m.params, m.rest, {}
        if config.dense_epochs:
            steps = config.dense_epochs * data.steps_per_epoch
            tx = default_optimizer(
                config.dense_lr, steps=steps, weight_decay=config.dense_weight_decay
            )
            params, rest, _, history = _train(
                m,
                params,
                rest,
                tx,
                data,
                par,
                epochs=config.dense_epochs,
                seed=config.seed,
                loss_fn=loss_fn,
                progress=progress,
                desc=f"dense {name}",
            )
        done("dense", save(st, params, rest, t0, history), False)
    log(
        f"dense: test error {100 * errors['dense']:.2f}%"
        + (" (the model as given)" if not config.dense_epochs else "")
        + (" (resumed)" if stages_info["dense"]["resumed"] else "")
    )

    # 2. pruned --------------------------------------------------------------------------------
    prune_keys = (
        "include",
        "exclude",
        "sparsity",
        "default_sparsity",
        "prune_fractions",
        "epochs_per_step",
        "prune_epochs",
        "prune_lr",
        "prune_weight_decay",
        "load_balance_pes",
    )
    sig = {**sig, **{k: cfg[k] for k in prune_keys}}
    st = _Stage(out, "pruned", sig)
    rec = st.done()
    if rec is not None:
        params, rest = restore(st)
        done("pruned", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, history = _prune_run(
            m, params, rest, data, config, layers, par, loss_fn, progress
        )
        done("pruned", save(st, params, rest, t0, history), False)
    pruned_params = params
    table = _kernel_table(params, layers)
    kept = sum(r["kept"] for r in table)
    total_k = sum(r["weights"] for r in table)
    log(
        f"pruned: test error {100 * errors['pruned']:.2f}%, weights kept {kept:,} / {total_k:,} "
        f"({100 * kept / total_k:.2f}%, {total_k / max(kept, 1):.1f}x)"
        + (" (resumed)" if stages_info["pruned"]["resumed"] else "")
    )

    # 3. quantized -----------------------------------------------------------------------------
    sig = {
        **sig,
        **{
            k: cfg[k]
            for k in (
                "bits",
                "default_bits",
                "share_init",
                "kmeans_iters",
                "finetune_epochs",
                "finetune_lr",
            )
        },
    }
    st = _Stage(out, "quantized", sig)
    rec = st.done()
    bits = {p: r["bits"] for p, r in layers.items()}
    if rec is not None:
        target = {
            **template,
            "codebooks": _nested({p: np.zeros(1 << b, np.float32) for p, b in bits.items()}),
            "kmeans": _nested({p: np.zeros(1 << b, np.float32) for p, b in bits.items()}),
            "codes": _nested(
                {p: np.zeros(layers[p]["shape"], codes_dtype(b)) for p, b in bits.items()}
            ),
        }
        tree = st.restore(target)
        params = jax.tree.map(jnp.asarray, tree["params"])
        rest = tree.get("rest", m.rest)
        cbs, cds, km = (_by_path(tree[k]) for k in ("codebooks", "codes", "kmeans"))
        done("quantized", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, cbs, cds, km, history = _quantize_run(
            m, params, rest, data, config, layers, par, loss_fn, progress
        )
        tree = {
            "params": params,
            **({"rest": rest} if "rest" in template else {}),
            "codebooks": _nested(cbs),
            "kmeans": _nested(km),
            "codes": _nested(cds),
        }
        rec = {"test_error": test_error(params, rest), "seconds": time.perf_counter() - t0}
        done("quantized", st.save(tree, {**rec, "loss": history["loss"]}), False)
    log(
        f"quantized: test error {100 * errors['quantized']:.2f}% "
        f"(bits {', '.join(f'{p} {b}' for p, b in bits.items())})"
        + (" (resumed)" if stages_info["quantized"]["resumed"] else "")
    )

    # 4. final: Huffman coding, file, report -------------------------------------------------
    t0 = time.perf_counter()
    index_bits = {m.prefix + p: r["index_bits"] for p, r in layers.items()}
    np_params = jax.tree.map(np.asarray, params)
    state = m.state(np_params, rest)
    fcbs = {m.prefix + p: v for p, v in cbs.items()}
    fcds = {m.prefix + p: v for p, v in cds.items()}
    metadata = {"model": name}
    dcz = out / "model.dcz"
    file_bytes = save_compressed(
        dcz, state, fcbs, fcds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    rep = compression_report(
        state, fcbs, fcds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    if rep.file_bytes != file_bytes:  # the report describes this very file
        raise AssertionError(f"report file_bytes {rep.file_bytes} != written {file_bytes}")
    loaded = load_model(dcz, m.fresh(m.params, m.rest), max_ratio=math.inf)
    lp, lr = m.split(loaded)
    errors["final"] = test_error(lp, lr)
    stages_info["final"] = {"seconds": time.perf_counter() - t0, "resumed": False}
    if m.kind == "nnx":  # the user's model holds the compressed weights, in eval mode
        nnx.update(m.module, nnx.state(m.fresh(jax.tree.map(jnp.asarray, params), rest)))
        m.module.eval()
    totals = rep.totals()
    original_bytes = totals["original_bits"] / 8
    compressed_bytes = math.ceil(totals["pqh_bits"] / 8)
    by_path = {r.path: r for r in rep.layers}
    rows = []
    for row in table:
        r = by_path[m.prefix + row["layer"]]
        rows.append(
            {
                **row,
                "kept_pct": 100 * row["kept"] / row["weights"],
                "kept_after_quantization": int(np.count_nonzero(cds[row["layer"]])),
                "codebook_size": int(len(cbs[row["layer"]])),
                "fillers": r.fillers,
                "weight_bits_pqh": r.codes_pqh / max(r.entries, 1),
                "index_bits_pqh": r.index_pqh / max(r.entries, 1),
                "rate_pq_pct": 100 * r.total_pq / r.original,
                "rate_pqh_pct": 100 * r.total_pqh / r.original,
            }
        )
    result = {
        "model": name,
        "data": data.source,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "devices": par.n,
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
        "layers": rows,
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
            rows,
            pdir / "sparsity.png",
            f"{name}: weights kept per leaf (P+Q+H {result['compression_rate']:.1f}x)",
        )
        pruned_flat = dict(leaves_with_paths(pruned_params))
        for path, b in bits.items():
            plot_codebook(
                pruned_flat[path],
                km[path],
                cbs[path],
                title=f"{name} {path}: {b}-bit k-means / fine-tuned",
                path=pdir / f"{path.replace('/', '_')}_codebook.png",
            )
    log(
        f"final (P+Q+H, read back from {dcz}): test error {100 * errors['final']:.2f}%; "
        f"{result['original_bytes']:,} B -> {compressed_bytes:,} B reported "
        f"({result['compression_rate']:.1f}x), file {file_bytes:,} B "
        f"({result['compression_rate_file']:.1f}x); pruning alone {result['pruning_rate']:.1f}x"
    )
    return result


def _kernel_table(params: Any, layers: Mapping[str, dict]) -> list[dict]:
    rows = []
    for path, w in leaves_with_paths(params):
        if path not in layers:
            continue
        w = np.asarray(w)
        rows.append(
            {
                "layer": path,
                "weights": int(w.size),
                "kept": int(np.count_nonzero(w)),
                "sparsity": layers[path]["sparsity"],
                "bits": layers[path]["bits"],
                "index_bits": layers[path]["index_bits"],
            }
        )
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _markdown(result: dict, table: str) -> str:
    e = result["test_error"]
    lines = [
        f"# Deep Compression of {result['model']} ({result['data']})",
        "",
        "| stage | test error |",
        "|---|---|",
        *(f"| {s} | {_pct(e[s])} |" for s in STAGES),
        "",
        f"Compression: {result['original_bytes']:,} B -> {result['compressed_bytes']:,} B (P+Q+H, "
        f"{result['compression_rate']:.1f}x); P+Q {result['compression_rate_pq']:.1f}x; pruning "
        f"alone {result['pruning_rate']:.1f}x; model.dcz {result['file_bytes']:,} B "
        f"({result['compression_rate_file']:.1f}x).",
        "",
        "| leaf | #weights | kept % | bits | weight bits (P+Q+H) | index bits "
        "| index bits (P+Q+H) | rate P+Q | rate P+Q+H |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["layers"]:
        lines.append(
            f"| {r['layer']} | {r['weights']:,} | {r['kept_pct']:.2f}% | {r['bits']} | "
            f"{r['weight_bits_pqh']:.2f} | {r['index_bits']} | {r['index_bits_pqh']:.2f} | "
            f"{r['rate_pq_pct']:.2f}% | {r['rate_pqh_pct']:.2f}% |"
        )
    lines += ["", "## Storage (P+Q+H accounting)", "", table, ""]
    return "\n".join(lines)


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
