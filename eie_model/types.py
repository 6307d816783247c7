"""The typed spine of the EIE model: ``EIEStatic``, ``EIEParams``, ``Layer``, ``Counters``.

Every entry point speaks these four types (brax-style):

* :class:`EIEStatic` — hashable, shape-setting knobs (Python ints): the PE-axis bound
  ``max_pes``, the FIFO bound ``max_fifo``, ``code_bits``, the capacities ``ptr_bits``,
  ``spmat_bytes`` and ``act_regs`` (docs/guides/eie-capacities.md) and the pipeline
  latencies. Two different statics are two compiled programs.
* :class:`EIEParams` — the design point's knobs as pytree *leaves* (scalars or arrays with one
  batch shape): PEs, FIFO depth, index bits, SRAM width, precisions, accumulators per PE (EIE's
  64 by default; ``0`` means unlimited, the only spelling of it) and the clock. ``jax.vmap``
  batches them.
* :class:`Layer` — one fully-connected layer (codes, codebook, activations, bias codes); its
  loaders are :func:`Layer.load` (benchmark names in the paper's spellings, ``.npz`` files,
  ``FILE.dcz:LEAF``).
* :class:`Counters` — what a run returns (the fast model, the sweep and the reference
  simulator alike), and the only home of every derived figure: efficiencies, latency, load
  balance and energy are properties of it, and :meth:`Counters.table` is the one function
  that turns a batch into columns.

``simulate(static, params, layer) -> Counters`` and ``sweep(static, params_batch, layer) ->
Counters`` (batched) are the two ways to run the fast model.

Example:
    >>> from eie_model.types import EIEParams, EIEStatic
    >>> static = EIEStatic(max_pes=64, max_fifo=8)
    >>> params = EIEParams.grid(n_pes=[16, 64], fifo_depth=[4, 8])
    >>> params.batch_shape, params.n_pes.tolist()
    ((4,), [16, 16, 64, 64])
    >>> int(params[3].entries_per_line(static))   # 64-bit lines of 8-bit entries
    8
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Counters", "EIEParams", "EIEStatic", "Layer"]

#: Arithmetic precisions the functional and energy models support.
PRECISIONS: tuple[int, ...] = (8, 16, 32)


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}.{name} must be a Python int, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{owner}.{name} must be {rng}, got {value}")
    return value


# ------------------------------------------------------------------------------------ static
@dataclasses.dataclass(frozen=True)
class EIEStatic:
    """Shape-setting knobs (hashable; a ``jax.jit`` static argument).

    Attributes:
        max_pes: upper bound of ``EIEParams.n_pes`` (length of the PE axis of every table).
        max_fifo: upper bound of ``EIEParams.fifo_depth`` (length of the slot history a scan
            keeps).
        code_bits: bits of a weight code in the SpMat SRAM (an entry is ``code_bits +
            index_bits`` bits); a layer's codes must lie below ``2**code_bits``.
        ptr_bits: bits of one column pointer (16 in EIE): a PE addresses ``2**ptr_bits``
            SpMat entries (:mod:`eie_model.capacity`).
        spmat_bytes: bytes of one PE's SpMat SRAM (EIE: 128 KB); with ``ptr_bits`` it bounds
            the entries a PE holds (a layer that does not fit raises
            :class:`eie_model.capacity.CapacityError`).
        act_regs: source activation registers per PE (EIE: 64; ``0`` = unlimited): inputs
            beyond ``N * act_regs`` columns run in activation batches of ``act_regs`` LNZD
            groups each, back to back, partial sums kept in the accumulators
            (docs/guides/eie-capacities.md).
        bcast_latency: cycles from a broadcast to the earliest start of its column (2).
        write_latency: cycles from an entry's SpMat read to its accumulator write (5).

    Example:
        >>> s = EIEStatic().replace(max_pes=8)
        >>> s.max_pes, s.max_fifo, s.code_bits, s.ptr_bits, s.spmat_bytes, s.write_latency
        (8, 8, 4, 16, 131072, 5)
    """

    max_pes: int = 64
    max_fifo: int = 8
    code_bits: int = 4
    ptr_bits: int = 16
    spmat_bytes: int = 128 * 1024
    act_regs: int = 64
    bcast_latency: int = 2
    write_latency: int = 5

    def __post_init__(self) -> None:
        bounds = {
            "max_pes": (1, 1 << 14),
            "max_fifo": (1, 1 << 20),
            "code_bits": (1, 16),
            "ptr_bits": (1, 64),
            "spmat_bytes": (1, 1 << 40),
            "act_regs": (0, 1 << 20),
            "bcast_latency": (1, 1 << 10),
            "write_latency": (1, 1 << 10),
        }
        for k, (lo, hi) in bounds.items():
            object.__setattr__(self, k, _check_int("EIEStatic", k, getattr(self, k), lo, hi))

    def replace(self, **changes: Any) -> EIEStatic:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def covering(cls, params: EIEParams, **fields: Any) -> EIEStatic:
        """The static whose bounds just cover ``params`` (concrete), other fields as given.

        Example:
            >>> EIEStatic.covering(EIEParams.grid(n_pes=[2, 6], fifo_depth=3)).max_pes
            6
        """
        fields.setdefault("max_pes", int(np.max(params.n_pes)))
        fields.setdefault("max_fifo", int(np.max(params.fifo_depth)))
        return cls(**fields)


# ------------------------------------------------------------------------------------ params
def _field(default: Any, dtype: Any, flag: str, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"dtype": dtype, "flag": flag, "help": help})


@dataclasses.dataclass(frozen=True, eq=False)
class EIEParams:
    """The knobs of one EIE design point, or of a batch of them (pytree leaves).

    Every field is a scalar or an array; all broadcast to one batch shape. Concrete values are
    validated on construction (``ValueError`` / ``TypeError`` naming the field); traced ones
    (inside ``jit`` / ``vmap``) are taken as they are.

    Attributes:
        n_pes: PEs N (``int32``); output row ``i`` lives in PE ``i % N``.
        fifo_depth: D (``int32``), the activations a PE holds (D-1 waiting + 1 in process);
            D = 1: a broadcast waits until every PE is idle.
        index_bits: relative-index bits r (``int32``); a run of g zero rows costs
            ``g // 2**r`` fillers.
        sram_width: bits of one SpMat SRAM line (``int32``), at least one entry.
        act_bits: activation precision, 8, 16 or 32 (``int32``).
        weight_bits: decoded-weight / arithmetic precision, 8, 16 or 32 (``int32``).
        acc_regs: accumulator registers per PE A (``int32``; EIE has 64, the default); ``0`` =
            unlimited, the only spelling of it (one pass, as the authors' simulator runs).
            ``m > N A``: ``ceil(m / (N A))`` passes that each rebroadcast the input
            (docs/guides/eie-capacities.md).
        clock_hz: clock frequency in Hz (``float64``; 800 MHz in EIE).

    Example:
        >>> p = EIEParams(n_pes=4, fifo_depth=[1, 2])
        >>> p.batch_shape, p.fifo_depth.tolist(), int(p.acc_regs)
        ((2,), [1, 2], 64)
    """

    n_pes: Any = _field(64, np.int32, "pes", "number of PEs N")
    fifo_depth: Any = _field(8, np.int32, "fifo", "FIFO depth D")
    index_bits: Any = _field(4, np.int32, "index-bits", "relative-index bits r")
    sram_width: Any = _field(64, np.int32, "sram-width", "SpMat SRAM line width in bits")
    act_bits: Any = _field(16, np.int32, "act-bits", "activation precision (8, 16, 32)")
    weight_bits: Any = _field(16, np.int32, "weight-bits", "weight precision (8, 16, 32)")
    acc_regs: Any = _field(64, np.int32, "acc-regs", "accumulators per PE (0 = unlimited)")
    clock_hz: Any = _field(800e6, np.float64, "clock-hz", "clock in Hz")

    def __post_init__(self) -> None:
        bounds = {
            "n_pes": (1, 1 << 14),
            "fifo_depth": (1, 1 << 20),
            "index_bits": (1, 16),
            "sram_width": (1, 1 << 16),
            "acc_regs": (0, 1 << 16),
        }
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, jax.core.Tracer):
                continue
            if isinstance(v, bool) or isinstance(v, str):
                raise TypeError(f"EIEParams.{f.name} must be a number or array, got {v!r}")
            arr = np.asarray(v)
            if arr.dtype == object or not (
                np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            ):
                raise TypeError(f"EIEParams.{f.name} must be numeric, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"EIEParams.{f.name} must be finite, got {v!r}")
            dtype = f.metadata["dtype"]
            if np.issubdtype(dtype, np.integer):
                if not np.all(arr == np.round(arr)):
                    raise ValueError(f"EIEParams.{f.name} must hold whole numbers, got {v!r}")
                lo, hi = bounds.get(f.name, (1, 1 << 16))
                bad = (arr < lo) | (arr > hi)
                if np.any(bad):
                    raise ValueError(
                        f"EIEParams.{f.name} must lie in {lo}..{hi}, got {arr[bad][:5].tolist()}"
                    )
            object.__setattr__(self, f.name, arr.astype(dtype))
        for name in ("act_bits", "weight_bits"):
            v = getattr(self, name)
            if isinstance(v, np.ndarray) and not np.all(np.isin(v, PRECISIONS)):
                raise ValueError(
                    f"EIEParams.{name} must be one of {PRECISIONS}, got {np.unique(v).tolist()}"
                )
        c = self.clock_hz
        if isinstance(c, np.ndarray) and np.any(c <= 0):
            raise ValueError(f"EIEParams.clock_hz must be > 0, got {np.unique(c)[:5].tolist()}")
        try:
            self.batch_shape  # noqa: B018
        except ValueError:
            shapes = {f: np.shape(getattr(self, f)) for f in self.names()}
            raise ValueError(
                f"EIEParams fields must broadcast to one batch shape, got {shapes}"
            ) from None

    # --------------------------------------------------------------------------- helpers
    @staticmethod
    def names() -> tuple[str, ...]:
        """The field names, in table order."""
        return tuple(f.name for f in dataclasses.fields(EIEParams))

    @staticmethod
    def flags() -> dict[str, tuple[str, str]]:
        """Field name -> ``(command-line flag, help)``, as ``eie-model`` spells them."""
        return {
            f.name: (f.metadata["flag"], f.metadata["help"]) for f in dataclasses.fields(EIEParams)
        }

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Broadcast shape of the fields (``()`` for one design point)."""
        return tuple(np.broadcast_shapes(*[np.shape(getattr(self, k)) for k in self.names()]))

    def broadcast(self) -> EIEParams:
        """Every field broadcast to :attr:`batch_shape` (concrete params; NumPy)."""
        shape = self.batch_shape
        return EIEParams(**{k: np.broadcast_to(getattr(self, k), shape) for k in self.names()})

    def __len__(self) -> int:
        shape = self.batch_shape
        if not shape:
            raise TypeError("len() of an unbatched EIEParams")
        return shape[0]

    def __getitem__(self, i: Any) -> EIEParams:
        b = self.broadcast() if self.batch_shape else self
        return jax.tree.map(lambda x: x[i], b)

    def replace(self, **changes: Any) -> EIEParams:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def entries_per_line(self, static: EIEStatic) -> Any:
        """SpMat entries on one SRAM line: ``sram_width // (code_bits + index_bits)``."""
        w, r = self.sram_width, self.index_bits
        if isinstance(w, np.ndarray) and isinstance(r, np.ndarray):
            return w // (static.code_bits + r)
        return jnp.asarray(w, jnp.int32) // (static.code_bits + jnp.asarray(r, jnp.int32))

    def check(self, static: EIEStatic) -> EIEParams:
        """Raise ``ValueError`` naming the field when a concrete value breaks ``static``.

        Checks ``n_pes <= max_pes``, ``fifo_depth <= max_fifo`` and that a line holds one entry.
        """
        for name, bound in (("n_pes", "max_pes"), ("fifo_depth", "max_fifo")):
            v, hi = getattr(self, name), getattr(static, bound)
            if isinstance(v, np.ndarray) and np.any(v > hi):
                raise ValueError(
                    f"EIEParams.{name} {int(np.max(v))} exceeds EIEStatic.{bound}={hi}; raise "
                    f"{bound} (EIEStatic.covering(params) fits the params)"
                )
        w, r = self.sram_width, self.index_bits
        if isinstance(w, np.ndarray) and isinstance(r, np.ndarray):
            bad = w < static.code_bits + r
            if np.any(bad):
                got = np.broadcast_to(w, bad.shape)[bad][:5].tolist()
                raise ValueError(
                    f"EIEParams.sram_width must hold one entry (>= code_bits + index_bits = "
                    f"{static.code_bits} + index_bits bits); got {got}"
                )
        return self

    @classmethod
    def grid(cls, **axes: Any) -> EIEParams:
        """The Cartesian grid of the given axes (the last varying fastest), flattened to 1-D.

        Args:
            **axes: field name -> value or sequence of values; other fields take defaults.

        Example:
            >>> g = EIEParams.grid(n_pes=[1, 2], fifo_depth=[2, 4, 8])
            >>> g.n_pes.tolist(), g.fifo_depth.tolist()
            ([1, 1, 1, 2, 2, 2], [2, 4, 8, 2, 4, 8])
        """
        for k in axes:
            if k not in cls.names():
                raise ValueError(f"EIEParams.grid: unknown field {k!r}; fields are {cls.names()}")
        lists = [np.atleast_1d(np.asarray(v)).ravel() for v in axes.values()]
        for k, v in zip(axes, lists, strict=True):
            if v.size == 0:
                raise ValueError(f"EIEParams.grid: axis {k!r} is empty; give at least one value")
        combos = list(itertools.product(*[v.tolist() for v in lists]))
        cols = {k: np.array([c[i] for c in combos]) for i, k in enumerate(axes)}
        n = len(combos)
        for f in dataclasses.fields(cls):
            cols.setdefault(f.name, np.full(n, f.default))
        return cls(**cols)

    @classmethod
    def stack(cls, points: Any) -> EIEParams:
        """Stack design points (each scalar or batched) into one 1-D batch.

        Example:
            >>> EIEParams.stack([EIEParams(n_pes=2), EIEParams(n_pes=4)]).n_pes.tolist()
            [2, 4]
        """
        points = list(points)
        if not points or not all(isinstance(p, EIEParams) for p in points):
            raise TypeError("EIEParams.stack: give a non-empty sequence of EIEParams")
        cols = {
            k: np.concatenate([np.ravel(getattr(p.broadcast(), k)) for p in points])
            for k in cls.names()
        }
        return cls(**cols)


def _params_flatten(p: EIEParams):
    keys = EIEParams.names()
    return tuple((jax.tree_util.GetAttrKey(k), getattr(p, k)) for k in keys), None


def _params_unflatten(_aux: None, children: Any) -> EIEParams:
    obj = object.__new__(EIEParams)  # no validation: leaves may be tracers or placeholders
    for k, v in zip(EIEParams.names(), children, strict=True):
        object.__setattr__(obj, k, v)
    return obj


jax.tree_util.register_pytree_with_keys(
    EIEParams,
    _params_flatten,
    _params_unflatten,
    lambda p: (tuple(getattr(p, k) for k in EIEParams.names()), None),
)


# ------------------------------------------------------------------------------------- layer
class Layer(NamedTuple):
    """One fully-connected layer as EIE sees it.

    Attributes:
        codes: ``(m, n)`` uint8/uint16 weight codes (outputs x inputs), 0 = pruned.
        codebook: ``(2**code_bits,)`` float32, entry 0 is 0.0.
        act: ``(n,)`` float32 input activations (broadcast where != 0).
        bias_codes: ``(m,)`` codes of the bias (broadcast last, activation 1.0), or ``None``.
        name: a label.

    Example:
        >>> import numpy as np
        >>> layer = Layer(np.array([[1, 0]], np.uint8), np.arange(16, dtype=np.float32),
        ...               np.array([2.0, 3.0], np.float32))
        >>> layer.shape, layer.code_bits
        ((1, 2), 4)
    """

    codes: np.ndarray
    codebook: np.ndarray
    act: np.ndarray
    bias_codes: np.ndarray | None = None
    name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: outputs x inputs."""
        return tuple(np.shape(self.codes))

    @property
    def code_bits(self) -> int:
        """Bits of a weight code: ``log2(len(codebook))``."""
        return int(np.shape(self.codebook)[0]).bit_length() - 1

    @property
    def weight_density(self) -> float:
        """Fraction of non-zero codes."""
        return float(np.count_nonzero(self.codes)) / max(np.size(self.codes), 1)

    @property
    def act_density(self) -> float:
        """Fraction of non-zero activations."""
        return float(np.count_nonzero(self.act)) / max(np.size(self.act), 1)

    def weights(self) -> np.ndarray:
        """Dense ``(m, n)`` float32 weights ``codebook[codes]``."""
        return np.asarray(self.codebook)[np.asarray(self.codes)]

    def read_only(self) -> Layer:
        """This layer with its NumPy arrays marked read-only (copied first where another array
        owns their memory), so their contents cannot change.

        Every loader returns such a layer. A sweep recognises read-only arrays by identity and
        keeps their work tables without hashing their contents on each call (about 3 ms for
        Alex-7's 16 MB of codes); a writable array is hashed every time, so an in-place edit is
        never missed. Call it on a layer of your own before sweeping it many times.

        Example:
            >>> import numpy as np
            >>> layer = Layer(np.eye(2, dtype=np.uint8), np.arange(2.0), np.ones(2)).read_only()
            >>> layer.codes.flags.writeable
            False
        """

        def freeze(a: Any) -> Any:
            if not isinstance(a, np.ndarray) or (not a.flags.writeable and a.base is None):
                return a
            a = a if a.base is None else a.copy()
            a.flags.writeable = False
            return a

        return self._replace(
            codes=freeze(self.codes), codebook=freeze(self.codebook), act=freeze(self.act),
            bias_codes=freeze(self.bias_codes),
        )  # fmt: skip

    @classmethod
    def load(cls, spec: str | os.PathLike, *, seed: int = 0) -> Layer:
        """A benchmark name (``Alex-7`` / ``alex-7`` / ``alex7``), an ``.npz`` or ``FILE.dcz:LEAF``.

        Example:
            >>> Layer.load("NT-We").shape
            (600, 4096)
        """
        from eie_model.layers import load_layer

        return load_layer(spec, seed=seed)


# ---------------------------------------------------------------------------------- counters
_COUNTER_FIELDS = (
    "cycles",
    "useful_macs",
    "fillers",
    "pointer_reads",
    "spm_line_reads",
    "stall_cycles",
    "starvation_cycles",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Counters:
    """Counters of one run, or of a batch of runs (leading axes = the params' batch shape).

    A pytree: ``params`` and the counter arrays are leaves, ``static`` is aux data, so a
    ``Counters`` comes out of ``jit`` and ``vmap``. Values are integers for one layer, floats for
    means (``network_sweep``). Every derived figure is a property computed here, nowhere else.

    Attributes:
        static: the :class:`EIEStatic` of the run.
        params: the :class:`EIEParams` of each run (batched like the counters).
        cycles: cycles of the layer (the sum over ``acc_regs`` passes).
        useful_macs: entries with code != 0 in broadcast columns (bias included).
        fillers: filler entries read.
        pointer_reads: pointer-pair reads (N per broadcast per pass, bias included).
        spm_line_reads: SpMat SRAM line reads summed over PEs.
        stall_cycles: cycles the broadcast waited for queue room.
        starvation_cycles: PE-cycles idle between a PE's first and last column.
        busy: ``(..., P)`` entries each PE read (fillers included); ``P = static.max_pes`` (the
            reference simulator: N); zero past ``n_pes``.
        spm_line_reads_fresh: SpMat SRAM line reads with a fresh fetch per broadcast column
            (each non-empty slice reads its lines ``base // L .. last // L``, no credit for the
            previous column's line), summed over PEs; ``None`` when the producer did not
            count it (hand-made counters). ``spm_line_reads`` keeps a line open across columns.

    Example:
        >>> import numpy as np
        >>> c = Counters(EIEStatic(max_pes=2), EIEParams(n_pes=2), cycles=10, useful_macs=4,
        ...              fillers=0, pointer_reads=4, spm_line_reads=2, stall_cycles=0,
        ...              starvation_cycles=0, busy=np.array([2, 2]))
        >>> float(c.mac_efficiency), float(c.load_balance), int(c.broadcasts)
        (0.2, 1.0, 2)
    """

    static: EIEStatic
    params: EIEParams
    cycles: Any
    useful_macs: Any
    fillers: Any
    pointer_reads: Any
    spm_line_reads: Any
    stall_cycles: Any
    starvation_cycles: Any
    busy: Any
    spm_line_reads_fresh: Any = None

    # ----------------------------------------------------------------- derived figures
    def _xp(self) -> Any:
        leaves = (self.cycles, self.busy)
        if any(isinstance(x, (jax.Array, jax.core.Tracer)) for x in leaves):
            return jnp
        return np

    @property
    def n_pes(self) -> Any:
        """N of each run."""
        return self.params.n_pes

    @property
    def busy_total(self) -> Any:
        """Entries read by all PEs."""
        return self._xp().sum(self.busy, axis=-1)

    @property
    def busy_max(self) -> Any:
        """Entries read by the busiest PE."""
        return self._xp().max(self.busy, axis=-1)

    @property
    def broadcasts(self) -> Any:
        """Activations broadcast (passes included): ``pointer_reads / n_pes``."""
        return self.pointer_reads // self.params.n_pes

    @property
    def mac_efficiency(self) -> Any:
        """``useful_macs / (cycles * n_pes)`` (0 when no cycle)."""
        return self._ratio(self.useful_macs)

    @property
    def load_efficiency(self) -> Any:
        """``busy_total / (cycles * n_pes)`` (0 when no cycle)."""
        return self._ratio(self.busy_total)

    def _ratio(self, num: Any) -> Any:
        xp = self._xp()
        ft = xp.float64 if xp is np else xp.float32
        den = xp.asarray(self.cycles, ft) * xp.asarray(self.params.n_pes, ft)
        return xp.where(den > 0, xp.asarray(num, ft) / xp.where(den > 0, den, 1), 0.0)

    @property
    def load_balance(self) -> Any:
        """``busy_total / (busy_max * n_pes)``: mean over max PE work (1.0 without work)."""
        xp = self._xp()
        ft = xp.float64 if xp is np else xp.float32
        den = xp.asarray(self.busy_max, ft) * xp.asarray(self.params.n_pes, ft)
        return xp.where(den > 0, xp.asarray(self.busy_total, ft) / xp.where(den > 0, den, 1), 1.0)

    @property
    def latency_us(self) -> Any:
        """``cycles / clock_hz`` in microseconds."""
        xp = self._xp()
        ft = xp.float64 if xp is np else xp.float32
        return xp.asarray(self.cycles, ft) / xp.asarray(self.params.clock_hz, ft) * 1e6

    @property
    def energy(self) -> Any:
        """Energy, power, area and throughput (:func:`eie_model.energy.energy_report`)."""
        from eie_model.energy import energy_report

        return energy_report(self)

    # ----------------------------------------------------------------------- batches
    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading shape of the counters (``()`` for one run)."""
        return tuple(np.shape(self.cycles))

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("len() of an unbatched Counters")
        return self.batch_shape[0]

    def __getitem__(self, i: Any) -> Counters:
        params = self.params.broadcast() if isinstance(self.cycles, np.ndarray) else self.params
        return jax.tree.map(lambda x: x[i], dataclasses.replace(self, params=params))

    def replace(self, **changes: Any) -> Counters:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def table(self) -> dict[str, np.ndarray]:
        """The runs as columns (1-D NumPy arrays, one row per run; an unbatched run is one row).

        Columns: the :class:`EIEParams` fields, the counters, ``busy_total, busy_max,
        broadcasts, load_balance, mac_efficiency, load_efficiency, latency_us`` and the
        :class:`eie_model.energy.EnergyReport` fields (``energy_j``, ``power_w``, ...).

        Example:
            >>> c = Counters(EIEStatic(), EIEParams(), cycles=100, useful_macs=64, fillers=0,
            ...              pointer_reads=64, spm_line_reads=8, stall_cycles=0,
            ...              starvation_cycles=0, busy=np.ones(64, np.int64))
            >>> t = c.table()
            >>> t["n_pes"].tolist(), t["mac_efficiency"].tolist()
            ([64], [0.01])
        """
        host = jax.tree.map(np.asarray, self)
        shape = host.batch_shape
        n = int(np.prod(shape)) if shape else 1

        def col(x: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(x), shape).reshape(n)

        out = {k: col(getattr(host.params, k)) for k in EIEParams.names()}
        for k in _COUNTER_FIELDS:
            out[k] = col(getattr(host, k))
        if host.spm_line_reads_fresh is not None:
            out["spm_line_reads_fresh"] = col(host.spm_line_reads_fresh)
        for k in ("busy_total", "busy_max", "broadcasts"):
            out[k] = col(getattr(host, k))
        for k in ("load_balance", "mac_efficiency", "load_efficiency", "latency_us"):
            out[k] = col(getattr(host, k)).astype(np.float64)
        for k, v in host.energy._asdict().items():
            out[k] = col(v).astype(np.float64)
        return out


#: Leaves of a Counters pytree, in order (``spm_line_reads_fresh`` may be ``None``).
_LEAVES = ("params", *_COUNTER_FIELDS, "busy", "spm_line_reads_fresh")


def _counters_flatten(c: Counters):
    names = _LEAVES
    return tuple((jax.tree_util.GetAttrKey(k), getattr(c, k)) for k in names), c.static


def _counters_unflatten(static: EIEStatic, children: Any) -> Counters:
    obj = object.__new__(Counters)
    object.__setattr__(obj, "static", static)
    for k, v in zip(_LEAVES, children, strict=True):
        object.__setattr__(obj, k, v)
    return obj


jax.tree_util.register_pytree_with_keys(
    Counters,
    _counters_flatten,
    _counters_unflatten,
    lambda c: (
        tuple(getattr(c, k) for k in _LEAVES),
        c.static,
    ),
)
