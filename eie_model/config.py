"""``EIEConfig``: the architecture knobs of one EIE design point (DESIGN §4.4).

The fields split in two groups, so thousands of configurations can be evaluated in one
compiled call:

* **Static (shape-setting) fields** — plain Python ints, part of the pytree's *treedef* (two
  configs that differ in them are different compiled programs): ``n_pes``, ``index_bits``,
  ``code_bits``, ``max_fifo_depth`` (upper bound of ``fifo_depth``: the length of the history a
  scan keeps), ``ptr_bits``, ``acc_regs``, ``bcast_latency`` and ``write_latency`` (pipeline
  depths: the length of the shift registers a cycle simulator keeps).
* **Array (vmappable) fields** — pytree *leaves*, scalars or arrays with a common leading batch
  shape, so ``jax.vmap`` batches them: ``fifo_depth``, ``sram_width``, ``act_bits``,
  ``weight_bits``, ``clock_hz``.

Concrete values are validated on construction with a clear ``ValueError``/``TypeError``;
traced values (inside ``jit``/``vmap``) are taken as they are. Array fields are stored as NumPy
arrays (``int32`` / ``float32``) when concrete.

Example:
    >>> from eie_model.config import EIEConfig, stack_configs
    >>> cfg = EIEConfig(n_pes=64, fifo_depth=8, sram_width=64)
    >>> cfg.entry_bits, int(cfg.entries_per_line())
    (8, 8)
    >>> batch = stack_configs([cfg, cfg.replace(fifo_depth=4)])
    >>> batch.batch_shape
    (2,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EIEConfig", "stack_configs"]

#: Static (shape-setting) fields: Python ints in the treedef.
STATIC_FIELDS: tuple[str, ...] = (
    "n_pes",
    "index_bits",
    "code_bits",
    "max_fifo_depth",
    "ptr_bits",
    "acc_regs",
    "bcast_latency",
    "write_latency",
)
#: Array (vmappable) fields: pytree leaves, with their storage dtype.
ARRAY_FIELDS: dict[str, Any] = {
    "fifo_depth": np.int32,
    "sram_width": np.int32,
    "act_bits": np.int32,
    "weight_bits": np.int32,
    "clock_hz": np.float32,
}
#: Arithmetic precisions the functional and energy models support.
PRECISIONS: tuple[int, ...] = (8, 16, 32)


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"EIEConfig.{name} must be a Python int (static field), got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"EIEConfig.{name} must be {rng}, got {value}")
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class EIEConfig:
    """Architecture knobs of one EIE design point (or a batch of them).

    Static fields (keyword-only Python ints, shape-setting):

    Attributes:
        n_pes: number of processing elements N; row ``i`` lives in PE ``i % N``.
        index_bits: relative-index bits r; a gap of g zero rows costs ``g // 2**r`` fillers.
        code_bits: weight-code bits; the codebook has ``2**code_bits`` entries, entry 0 = 0.0.
        max_fifo_depth: upper bound of ``fifo_depth`` over a batch (defaults to
            ``fifo_depth`` when that is concrete; sets the history length of a scan).
        ptr_bits: bits of one column pointer (16 in EIE).
        acc_regs: accumulator registers per PE (EIE has 64), or ``None`` (default, the
            authors' simulator): unlimited, one pass. With a value, outputs beyond
            ``n_pes * acc_regs`` run as extra passes that rebroadcast the input.
        bcast_latency: cycles from a broadcast to the earliest start of its column
            (``s >= e + 2`` in DESIGN §4.4).
        write_latency: cycles from an entry's SpMat read to its accumulator write
            (``s + m + 5`` in DESIGN §4.4).

    Array fields (vmappable; scalars or arrays with a common batch shape):

    Attributes:
        fifo_depth: D, the activations a PE holds (D-1 waiting + 1 in process), ``int32``,
            1 <= D <= max_fifo_depth. D = 1: the broadcast waits until every PE is idle.
        sram_width: bits of one sparse-matrix SRAM line, ``int32``, >= ``entry_bits``.
        act_bits: activation precision in bits (8, 16 or 32), ``int32``.
        weight_bits: decoded-weight / arithmetic precision in bits (8, 16 or 32), ``int32``.
        clock_hz: clock frequency in Hz, ``float32`` (800 MHz in EIE).
    """

    n_pes: int = 64
    index_bits: int = 4
    code_bits: int = 4
    max_fifo_depth: int | None = None
    ptr_bits: int = 16
    acc_regs: int | None = None
    bcast_latency: int = 2
    write_latency: int = 5
    fifo_depth: Any = 8
    sram_width: Any = 64
    act_bits: Any = 16
    weight_bits: Any = 16
    clock_hz: Any = 800e6

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_pes", _check_int("n_pes", self.n_pes, 1, 1 << 16))
        set_(self, "index_bits", _check_int("index_bits", self.index_bits, 1, 16))
        set_(self, "code_bits", _check_int("code_bits", self.code_bits, 1, 16))
        set_(self, "ptr_bits", _check_int("ptr_bits", self.ptr_bits, 1, 64))
        set_(self, "bcast_latency", _check_int("bcast_latency", self.bcast_latency, 1))
        set_(self, "write_latency", _check_int("write_latency", self.write_latency, 1))
        if self.acc_regs is not None:
            set_(self, "acc_regs", _check_int("acc_regs", self.acc_regs, 1))
        for name, dtype in ARRAY_FIELDS.items():
            value = getattr(self, name)
            if _is_traced(value):
                continue
            if isinstance(value, bool):
                raise TypeError(f"EIEConfig.{name} must be a number or array, got {value!r}")
            arr = np.asarray(value)
            if arr.dtype == object or not (
                np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            ):
                raise TypeError(f"EIEConfig.{name} must be numeric, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"EIEConfig.{name} must be finite, got {value!r}")
            if np.issubdtype(dtype, np.integer) and not np.all(arr == np.round(arr)):
                raise ValueError(f"EIEConfig.{name} must hold whole numbers, got {value!r}")
            set_(self, name, arr.astype(dtype))
        self._validate_arrays()

    def _validate_arrays(self) -> None:
        concrete = {k: getattr(self, k) for k in ARRAY_FIELDS if not _is_traced(getattr(self, k))}
        if "fifo_depth" in concrete:
            d = concrete["fifo_depth"]
            if np.any(d < 1):
                raise ValueError(f"EIEConfig.fifo_depth must be >= 1, got {d.tolist()}")
            if self.max_fifo_depth is None:
                object.__setattr__(self, "max_fifo_depth", int(np.max(d)))
            if np.any(d > self.max_fifo_depth):
                raise ValueError(
                    f"EIEConfig.fifo_depth {d.tolist()} exceeds max_fifo_depth="
                    f"{self.max_fifo_depth}; raise max_fifo_depth"
                )
        if self.max_fifo_depth is None:
            raise ValueError("EIEConfig.max_fifo_depth must be given when fifo_depth is traced")
        object.__setattr__(
            self, "max_fifo_depth", _check_int("max_fifo_depth", self.max_fifo_depth, 1)
        )
        if "sram_width" in concrete and np.any(concrete["sram_width"] < self.entry_bits):
            raise ValueError(
                f"EIEConfig.sram_width must be >= entry_bits = code_bits + index_bits = "
                f"{self.entry_bits}, got {concrete['sram_width'].tolist()}"
            )
        for name in ("act_bits", "weight_bits"):
            if name in concrete and not np.all(np.isin(concrete[name], PRECISIONS)):
                raise ValueError(
                    f"EIEConfig.{name} must be one of {PRECISIONS}, got {concrete[name].tolist()}"
                )
        if "clock_hz" in concrete and np.any(concrete["clock_hz"] <= 0):
            raise ValueError(f"EIEConfig.clock_hz must be > 0, got {concrete['clock_hz'].tolist()}")
        shapes = [np.shape(getattr(self, k)) for k in ARRAY_FIELDS]
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(
                f"EIEConfig array fields must broadcast to one batch shape, got {shapes}"
            ) from None

    # ----------------------------------------------------------------------------------------
    @property
    def entry_bits(self) -> int:
        """Bits of one SpMat entry: ``code_bits + index_bits`` (8 in EIE)."""
        return self.code_bits + self.index_bits

    @property
    def filler_run(self) -> int:
        """Rows covered by one filler entry: ``2**index_bits``."""
        return 1 << self.index_bits

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Broadcast shape of the array fields (``()`` for a single configuration)."""
        return tuple(np.broadcast_shapes(*[np.shape(getattr(self, k)) for k in ARRAY_FIELDS]))

    def entries_per_line(self) -> Any:
        """Entries on one SpMat SRAM line: ``sram_width // entry_bits`` (``int32``, batched).

        Works on concrete and traced ``sram_width`` (NumPy or jnp result).
        """
        w = self.sram_width
        if _is_traced(w) or isinstance(w, jax.Array):
            return jnp.asarray(w, jnp.int32) // self.entry_bits
        return np.asarray(w, np.int32) // np.int32(self.entry_bits)

    def replace(self, **changes: Any) -> EIEConfig:
        """A copy with ``changes`` applied (validated again).

        ``max_fifo_depth`` is recomputed from ``fifo_depth`` unless given.
        """
        if "fifo_depth" in changes and "max_fifo_depth" not in changes:
            changes["max_fifo_depth"] = None
        return dataclasses.replace(self, **changes)

    def static(self) -> dict[str, Any]:
        """The static (shape-setting) fields as a dict."""
        return {k: getattr(self, k) for k in STATIC_FIELDS}

    def arrays(self) -> dict[str, Any]:
        """The array (vmappable) fields as a dict."""
        return {k: getattr(self, k) for k in ARRAY_FIELDS}

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, np.ndarray) and v.ndim == 0:
                return repr(v.item())
            return repr(v)

        parts = [f"{k}={fmt(getattr(self, k))}" for k in (*STATIC_FIELDS, *ARRAY_FIELDS)]
        return "EIEConfig(" + ", ".join(parts) + ")"


def _flatten(cfg: EIEConfig):
    return tuple(getattr(cfg, k) for k in ARRAY_FIELDS), tuple(
        getattr(cfg, k) for k in STATIC_FIELDS
    )


def _flatten_with_keys(cfg: EIEConfig):
    children, aux = _flatten(cfg)
    keys = tuple(jax.tree_util.GetAttrKey(k) for k in ARRAY_FIELDS)
    return tuple(zip(keys, children, strict=True)), aux


def _unflatten(aux: tuple, children: tuple) -> EIEConfig:
    # No validation here: leaves may be tracers or placeholders during jax transformations.
    obj = object.__new__(EIEConfig)
    for k, v in zip(STATIC_FIELDS, aux, strict=True):
        object.__setattr__(obj, k, v)
    for k, v in zip(ARRAY_FIELDS, children, strict=True):
        object.__setattr__(obj, k, v)
    return obj


jax.tree_util.register_pytree_with_keys(EIEConfig, _flatten_with_keys, _unflatten, _flatten)


def stack_configs(configs: Sequence[EIEConfig]) -> EIEConfig:
    """Stack single configurations along a new leading batch axis (for ``jax.vmap``).

    Static fields must agree, except ``max_fifo_depth``, which becomes the largest.

    Args:
        configs: non-empty sequence of ``EIEConfig`` with scalar array fields.

    Returns:
        One ``EIEConfig`` whose array fields have shape ``(len(configs),)``.

    Example:
        >>> from eie_model.config import EIEConfig, stack_configs
        >>> b = stack_configs([EIEConfig(fifo_depth=d) for d in (2, 4, 8)])
        >>> b.fifo_depth.tolist(), b.max_fifo_depth
        ([2, 4, 8], 8)
    """
    configs = list(configs)
    if not configs:
        raise ValueError("stack_configs: configs must be a non-empty sequence of EIEConfig")
    for c in configs:
        if not isinstance(c, EIEConfig):
            raise TypeError(f"stack_configs: expected EIEConfig, got {type(c).__name__}")
        if c.batch_shape != ():
            raise ValueError("stack_configs: every config must be a single (unbatched) config")
    first = configs[0].static()
    for c in configs[1:]:
        other = c.static()
        for k in STATIC_FIELDS:
            if k != "max_fifo_depth" and other[k] != first[k]:
                raise ValueError(
                    f"stack_configs: static field {k} differs ({first[k]} vs {other[k]}); "
                    "configs with different shape-setting fields cannot share one batch"
                )
    static = dict(first)
    static["max_fifo_depth"] = max(c.max_fifo_depth for c in configs)
    arrays = {k: np.stack([np.asarray(getattr(c, k)) for c in configs]) for k in ARRAY_FIELDS}
    return EIEConfig(**static, **arrays)
