"""The settings of :func:`jaxcomp.compress`: :class:`CompressConfig` and the per-leaf lookup.

A per-leaf setting is a number for every compressed leaf or a mapping ``{leaf path or glob:
value}`` (exact path, then shell glob or module prefix, in the mapping's order);
:func:`compressible` is the predicate of the leaves the driver may compress.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcomp.tree import _as_patterns, default_predicate, leaves_with_paths, selected_paths

__all__ = [
    "SHARE_INITS",
    "CompressConfig",
    "compressible",
]

#: k-means initialisations of the weight-sharing stage (``CompressConfig.share_init``).
SHARE_INITS = ("linear", "density", "random", "kmeans++", "uniform")


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


def compressible(path: str, leaf: Any) -> bool:
    """The leaves :func:`compress` may compress: arrays of ``ndim >= 2`` (kernels, embeddings)
    that are not named ``bias`` (attention layers hold (heads, head_dim) biases).

    Args:
      path: the leaf's path string (``"att/query/bias"``).
      leaf: the leaf (an array or ``jax.ShapeDtypeStruct``).

    Returns:
      whether ``include`` / ``exclude`` may select it.

    Example:
      >>> compressible("att/query/kernel", np.ones((8, 2, 4))), compressible(
      ...     "att/query/bias", np.ones((2, 4)))
      (True, False)
    """
    return default_predicate(path, leaf) and path.rsplit("/", 1)[-1] != "bias"


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
        :func:`jaxcomp.tree.selected_paths`, among the :func:`compressible` ones; None: every
        leaf with ``ndim >= 2`` not named ``bias`` (kernels, embeddings; biases and BatchNorm
        stay float32).
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
            items = _as_patterns(name, v)  # the checks selected_paths makes
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
        sel = selected_paths(
            params, include=self.include, exclude=self.exclude, predicate=compressible
        )
        shapes = {p: tuple(x.shape) for p, x in leaves_with_paths(params) if p in set(sel)}
        if not sel:
            every = [p for p, _ in leaves_with_paths(params)]
            raise ValueError(
                f"include/exclude select no leaf of ndim >= 2 (not a bias) to compress (include "
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
