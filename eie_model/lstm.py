"""An LSTM on EIE: a compressed LSTM cell's ``[x; h] -> 4h`` gate matrix, one time step at a time.

EIE's paper benchmarks NeuralTalk's LSTM as one fully-connected layer, *NT-LSTM* (1201 inputs
= 600 words + 600 hidden + 1 bias, 2400 outputs = 4 gates x 600): every time step multiplies
the stacked gate matrix by the activation vector ``[x_t; h_{t-1}]``; the nonlinearities and the
cell update happen outside the matrix unit. This module does the same with a Flax
``nnx.LSTMCell`` compressed by jaxcomp and saved as a ``.dcz`` file:

* :func:`load_dcz_lstm` builds the gate matrix ``W`` of shape ``(4H, n + H)`` (rows: gates
  ``i, f, g, o``, ``H`` each; columns: ``[x; h]``) from the cell's eight kernels (``ii if_ ig
  io`` on ``x``, ``hi hf hg ho`` on ``h``) as one EIE :class:`eie_model.types.Layer`.
* :func:`lstm_reference` runs the JAX cell (``flax.nnx.LSTMCell`` holding the file's weights)
  over a sequence and records every step's ``x_t``, ``h_{t-1}`` and gate pre-activations.
* :func:`lstm_on_eie` runs every step through EIE: the functional model in float32 and in
  fixed point (16-bit by default) on ``[x_t; h_{t-1}]``, compared with JAX's pre-activations,
  and the cycle model (:func:`eie_model.sim.simulate`) with its energy
  (:func:`eie_model.energy.energy_report`) for that step's activation sparsity. Optionally the
  whole recurrence on EIE: ``h`` computed from EIE's own fixed-point gates, then the logits.

**One codebook.** jaxcomp gives every shared leaf its own codebook, so the eight kernels come
with eight codebooks. EIE's SpMat SRAM holds one code per entry and its PE one codebook per
layer, so the loader merges them exactly: the merged codebook is the union of the centroids the
codes use (entry 0 stays 0.0, a centroid of exactly 0.0 becomes code 0) and every code is
remapped to its value's index there. The code width is the smallest that holds the union (eight
4-bit codebooks: up to 121 entries, 7 bits), wider than the real chip's 4 bits; one 4-bit
codebook shared by the gates, as on the chip, needs the gates trained with one codebook (a
single shared leaf holding the stacked gate matrix).

**Biases.** ``nnx.LSTMCell`` has a dense float32 bias on each recurrent kernel (``hi/bias``
...). ``bias="add"`` (default) adds it after the sparse matrix-vector product, as EIE's
accumulator would: exactly in float32, and in fixed point quantized to the output format and
added with saturation (the rule :mod:`eie_model.network` uses); the merged codebook stays
small and the cycle model counts the matrix only. ``bias="codes"`` puts the bias values into
the merged codebook and the layer's ``bias_codes``: the paper's bias column (NT-LSTM's 1201st
input, activation 1.0), counted by the cycle model as one more broadcast, at the cost of up to
``4H`` more codebook entries (wider codes).

**Fixed point.** One format for the whole sequence, fixed before the first step as hardware
would: activations with :func:`eie_model.functional.frac_bits_for` of ``max(max|x|, 1)``
(``|h| < 1`` always), weights of the merged codebook, and the output (accumulator) format
from the largest partial sum any row can reach, ``max_i sum_j |w_ij| A_j + |b_i|`` with ``A_j``
the largest ``|x_j|`` of the sequence and 1 for ``h``; so no accumulator saturates, in the
teacher-forced run or the recurrence on EIE.

Example:
    >>> import numpy as np
    >>> cb = {k: np.array([0.0, 0.5], np.float32) for k in ("a", "b")}
    >>> merged, luts = merge_codebooks(cb, {"a": np.array([1, 0]), "b": np.array([1, 1])})
    >>> merged.tolist(), luts["a"].tolist()   # one shared value: one entry, 1 bit
    ([0.0, 0.5], [0, 1])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eie_model.energy import energy_report
from eie_model.functional import (
    _sat_add,
    frac_bits_for,
    quantize_fixed,
    spmv_fixed,
    spmv_float,
)
from eie_model.layers import validate_layer
from eie_model.sim import simulate
from eie_model.sim.events import layer_events
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

__all__ = [
    "GATE_LEAVES",
    "LSTMGates",
    "LSTMReference",
    "LSTMRun",
    "load_dcz_lstm",
    "lstm_on_eie",
    "lstm_reference",
    "merge_codebooks",
]

#: The gates in row order, each as (input kernel, recurrent kernel) of ``nnx.LSTMCell``.
GATE_LEAVES: tuple[tuple[str, str], ...] = (("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))
_BIAS_MODES = ("add", "codes")


def merge_codebooks(
    codebooks: Mapping[str, np.ndarray],
    codes: Mapping[str, np.ndarray],
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Merge per-leaf codebooks into one, exactly: the union of the centroids the codes use.

    Args:
        codebooks: leaf name -> ``(K_l,)`` float32 codebook (``codebook[0] == 0.0``).
        codes: leaf name -> integer codes into that codebook (any shape), 0 = pruned.
        extra: optional float values that must be in the merged codebook too (e.g. biases).

    Returns:
        ``(codebook, luts)``: the merged ``(2**bits,)`` float32 codebook (entry 0 is 0.0, then
        the distinct non-zero values in ascending order, then zero padding) with ``bits`` the
        smallest that holds them, and per leaf a lookup table ``lut`` with
        ``codebook[lut[c]] == codebooks[leaf][c]`` for every code ``c`` the leaf uses (a
        centroid of 0.0 maps to code 0). ``extra`` values are found with
        ``np.searchsorted(codebook[1:K], v) + 1``.

    Raises:
        ValueError: a leaf in one mapping but not the other, a codebook that is not 1-D
            float with entry 0 equal to 0.0 or holds NaN / inf, or codes outside it.

    Example:
        >>> import numpy as np
        >>> cbs = {"x": np.array([0.0, -1.0, 2.0, 7.0], np.float32),
        ...        "h": np.array([0.0, 2.0], np.float32)}
        >>> book, luts = merge_codebooks(cbs, {"x": np.array([[1, 2], [0, 2]]),
        ...                                    "h": np.array([1])})
        >>> book.tolist(), luts["x"].tolist(), luts["h"].tolist()   # 7.0 is unused: dropped
        ([0.0, -1.0, 2.0, 0.0], [0, 1, 2, 0], [0, 2])
    """
    if set(codebooks) != set(codes):
        raise ValueError(
            f"merge_codebooks: codebooks and codes must name the same leaves, got "
            f"{sorted(codebooks)} and {sorted(codes)}"
        )
    used: dict[str, np.ndarray] = {}
    values = []
    for k in codebooks:
        cb = np.asarray(codebooks[k])
        if cb.ndim != 1 or cb.size < 1 or not np.issubdtype(cb.dtype, np.floating):
            raise ValueError(
                f"merge_codebooks: codebook of {k!r} must be 1-D float, got {cb.shape}"
            )
        if not np.isfinite(cb).all() or cb[0] != 0.0:
            raise ValueError(
                f"merge_codebooks: codebook of {k!r} must be finite with entry 0 == 0.0"
            )
        c = np.asarray(codes[k])
        if not np.issubdtype(c.dtype, np.integer) or (
            c.size and (c.min() < 0 or c.max() >= cb.size)
        ):
            raise ValueError(
                f"merge_codebooks: codes of {k!r} must be integers in 0..{cb.size - 1}"
            )
        u = np.unique(c[c != 0])
        used[k] = u
        values.append(cb[u].astype(np.float32))
    if extra is not None:
        values.append(np.asarray(extra, np.float32).ravel())
    union = np.unique(np.concatenate(values)) if values else np.zeros(0, np.float32)
    union = union[union != 0]  # 0.0 and -0.0: the pruned code
    bits = max(1, int(union.size).bit_length())  # 2**bits >= union.size + 1
    book = np.zeros(1 << bits, np.float32)
    book[1 : union.size + 1] = union
    luts = {}
    for k, cb in codebooks.items():
        cb = np.asarray(cb, np.float32)
        dt = np.uint8 if bits <= 8 else np.uint16
        lut = np.zeros(cb.size, dt)
        u = used[k]
        v = cb[u]
        idx = np.searchsorted(union, v) + 1
        lut[u] = np.where(v != 0, idx, 0)
        luts[k] = lut
    return book, luts


class LSTMGates(NamedTuple):
    """A compressed LSTM cell as EIE sees it (built by :func:`load_dcz_lstm`).

    Attributes:
        layer: the gate matrix as a :class:`eie_model.types.Layer`: ``codes (4H, n + H)``
            (rows ``i, f, g, o``; columns ``[x; h]``) into the merged ``codebook``, ``act``
            all zeros, ``bias_codes`` ``(4H,)`` with ``bias="codes"`` else ``None``.
        bias: ``(4H,)`` float32 bias added after the product (``bias="add"``); zeros with
            ``bias="codes"`` (the bias is then in the layer).
        n_in: inputs ``n`` of the cell.
        hidden: hidden size ``H``.
        leaf_bits: each kernel's own code bits in the file (name -> bits).
        cell_params: the cell's weights decoded from the file (a pure dict ``{"ii":
            {"kernel": ...}, ..., "hi": {"kernel": ..., "bias": ...}}``, float32).
        head: ``(kernel (H, C), bias (C,))`` of the classifier head when the file has one
            (decoded, float32), else ``None``.
        name: ``"<file stem>:<prefix>"``.
    """

    layer: Layer
    bias: np.ndarray
    n_in: int
    hidden: int
    leaf_bits: dict[str, int]
    cell_params: dict[str, Any]
    head: tuple[np.ndarray, np.ndarray] | None
    name: str

    @property
    def code_bits(self) -> int:
        """Bits of a code of the merged codebook."""
        return self.layer.code_bits


def _decode(v: Any) -> np.ndarray:
    if isinstance(v, tuple):
        cb, c = v
        return np.asarray(cb, np.float32)[np.asarray(c)]
    return np.asarray(v, np.float32)


def load_dcz_lstm(
    path: str | os.PathLike,
    prefix: str = "rnn/cell",
    *,
    bias: str = "add",
    head: str | None = "head",
) -> LSTMGates:
    """The gate matrix of a compressed ``nnx.LSTMCell`` in a ``.dcz`` file, as one EIE layer.

    ``W[k H:(k+1) H, :n]`` is gate ``k``'s input kernel transposed (Flax stores ``(in, out)``),
    ``W[k H:(k+1) H, n:]`` its recurrent kernel transposed, gates ``i, f, g, o``; the eight
    codebooks are merged exactly by :func:`merge_codebooks` (see the module docstring).

    Args:
        path: a ``.dcz`` written by :func:`jaxcomp.fileformat.save_compressed` (whole model).
        prefix: the cell's path in the model state, ``"rnn/cell"`` for
            ``nnx.RNN(nnx.LSTMCell(...))`` held as ``self.rnn``.
        bias: keyword-only, ``"add"`` (after the product, the default) or ``"codes"`` (bias
            column in the merged codebook); see the module docstring.
        head: keyword-only, the path of a ``Linear`` head on the last ``h`` (``"head"``); it is
            loaded when the file has ``<head>/kernel`` (the logits of :func:`lstm_on_eie`);
            ``None`` skips it.

    Returns:
        :class:`LSTMGates`.

    Raises:
        ValueError: no cell at ``prefix`` (the message lists the prefixes the file has), a
            gate kernel stored dense rather than weight-shared (named, with the fix), shapes
            that do not form an LSTM cell, or a bad ``bias``.
        jaxcomp.fileformat.DczFormatError: a damaged file.

    Example:
        A cell with 3 inputs and hidden size 2, its eight kernels sharing 2-bit codebooks:

        >>> import os, tempfile
        >>> from jaxcomp.fileformat import save_compressed
        >>> rng = np.random.default_rng(0)
        >>> shape = {"ii": (3, 2), "if_": (3, 2), "ig": (3, 2), "io": (3, 2),
        ...          "hi": (2, 2), "hf": (2, 2), "hg": (2, 2), "ho": (2, 2)}
        >>> cell = {k: {"kernel": np.zeros(s, np.float32)} for k, s in shape.items()}
        >>> for k in ("hi", "hf", "hg", "ho"):
        ...     cell[k]["bias"] = np.full(2, 0.25, np.float32)
        >>> codes = {f"rnn/cell/{k}/kernel": rng.integers(0, 4, s).astype(np.uint8)
        ...          for k, s in shape.items()}
        >>> books = {k: np.array([0, 0.5, -0.25, i], np.float32)
        ...          for i, k in enumerate(codes)}   # 0.5 and -0.25 shared, one value each
        >>> path = os.path.join(tempfile.mkdtemp(), "lstm.dcz")
        >>> _ = save_compressed(path, {"rnn": {"cell": cell}}, books, codes)
        >>> gates = load_dcz_lstm(path)
        >>> gates.layer.shape, gates.code_bits, len(gates.layer.codebook)   # 9 values + 0
        ((8, 5), 4, 16)
        >>> bool(np.all(gates.layer.weights()[:2, :3] == books["rnn/cell/ii/kernel"][
        ...     codes["rnn/cell/ii/kernel"]].T))
        True
    """
    from jaxcomp.fileformat import load_compressed_codes

    if bias not in _BIAS_MODES:
        raise ValueError(f"bias must be one of {_BIAS_MODES}, got {bias!r}")
    prefix = str(prefix).strip("/")
    fname = os.fspath(path)
    stored = load_compressed_codes(path)
    kernels = [k for pair in GATE_LEAVES for k in pair]
    missing = [f"{prefix}/{k}/kernel" for k in kernels if f"{prefix}/{k}/kernel" not in stored]
    if missing:
        found = sorted(p[: -len("/ii/kernel")] for p in stored if p.endswith("/ii/kernel"))
        hint = (
            f"the file holds LSTM cells at prefix {found}; pass one as prefix"
            if found
            else "the file holds no nnx.LSTMCell (no '.../ii/kernel' leaf)"
        )
        raise ValueError(f"prefix {prefix!r}: {fname} lacks the LSTM cell leaves {missing}; {hint}")
    books, codes = {}, {}
    for k in kernels:
        leaf = f"{prefix}/{k}/kernel"
        v = stored[leaf]
        if not isinstance(v, tuple):
            raise ValueError(
                f"leaf {leaf!r} of {fname} is stored dense, not weight-shared: EIE needs codes. "
                f"Compress every gate kernel with jaxcomp.share_weights (e.g. bits={{'{leaf}': "
                "4, ...}} for all eight, or an int for every 2-D leaf) before saving"
            )
        books[k], codes[k] = np.asarray(v[0], np.float32), np.asarray(v[1])
    n, H = codes["ii"].shape if codes["ii"].ndim == 2 else (0, 0)
    for x_k, h_k in GATE_LEAVES:
        for k, want in ((x_k, (n, H)), (h_k, (H, H))):
            if codes[k].shape != want or H == 0:
                raise ValueError(
                    f"leaf {prefix}/{k}/kernel has shape {codes[k].shape}, expected {want} for "
                    f"an LSTM cell with {n} inputs and hidden size {H}"
                )
    b = np.zeros(4 * H, np.float32)
    cell: dict[str, Any] = {}
    for g, pair in enumerate(GATE_LEAVES):
        for k in pair:
            cell[k] = {"kernel": _decode(stored[f"{prefix}/{k}/kernel"])}
            bk = f"{prefix}/{k}/bias"
            if bk in stored:
                bv = _decode(stored[bk])
                if bv.shape != (H,):
                    raise ValueError(f"leaf {bk} has shape {bv.shape}, expected ({H},)")
                cell[k]["bias"] = bv
                b[g * H : (g + 1) * H] += bv
    book, luts = merge_codebooks(books, codes, extra=b if bias == "codes" else None)
    dt = np.uint8 if book.size <= 256 else np.uint16
    W = np.zeros((4 * H, n + H), dt)
    for g, (x_k, h_k) in enumerate(GATE_LEAVES):
        W[g * H : (g + 1) * H, :n] = luts[x_k][codes[x_k]].T
        W[g * H : (g + 1) * H, n:] = luts[h_k][codes[h_k]].T
    bias_codes = None
    if bias == "codes":
        union = book[1:]
        k = int(np.count_nonzero(union)) if union.size else 0
        idx = np.searchsorted(book[1 : k + 1], b) + 1
        bias_codes = np.where(b != 0, idx, 0).astype(dt)
        b = np.zeros_like(b)
    head_w = None
    if head is not None and f"{head}/kernel" in stored:
        hw = _decode(stored[f"{head}/kernel"])
        hb = _decode(stored.get(f"{head}/bias", np.zeros(hw.shape[-1], np.float32)))
        if hw.ndim != 2 or hw.shape[0] != H or hb.shape != (hw.shape[1],):
            raise ValueError(
                f"head {head!r}: kernel {hw.shape} / bias {hb.shape} do not fit hidden size {H}; "
                "pass head=None to skip it"
            )
        head_w = (hw, hb)
    stem = os.path.splitext(os.path.basename(fname))[0]
    layer = validate_layer(
        Layer(W, book, np.zeros(n + H, np.float32), bias_codes, f"{stem}:{prefix}")
    )
    bits = {k: int(books[k].size).bit_length() - 1 for k in kernels}
    return LSTMGates(layer, b, int(n), int(H), bits, cell, head_w, f"{stem}:{prefix}")


def _example_file() -> str:
    """The compressed cell of :func:`load_dcz_lstm`'s example, written to a temporary file."""
    import tempfile

    from jaxcomp.fileformat import save_compressed

    rng = np.random.default_rng(0)
    shape = {k: (3, 2) for k, _ in GATE_LEAVES} | {k: (2, 2) for _, k in GATE_LEAVES}
    cell: dict[str, Any] = {k: {"kernel": np.zeros(s, np.float32)} for k, s in shape.items()}
    for _, k in GATE_LEAVES:
        cell[k]["bias"] = np.full(2, 0.25, np.float32)
    codes = {
        f"rnn/cell/{k}/kernel": rng.integers(0, 4, s).astype(np.uint8) for k, s in shape.items()
    }
    books = {k: np.array([0, 0.5, -0.25, i], np.float32) for i, k in enumerate(codes)}
    path = os.path.join(tempfile.mkdtemp(), "lstm.dcz")
    save_compressed(path, {"rnn": {"cell": cell}}, books, codes)
    return path


# ------------------------------------------------------------------------------ JAX reference
class LSTMReference(NamedTuple):
    """One sequence through the JAX cell (:func:`lstm_reference`), step by step.

    Attributes:
        x: ``(T, n)`` float32 inputs ``x_t``.
        h_prev: ``(T, H)`` float32 hidden state entering step ``t`` (zeros at ``t = 0``).
        c_prev: ``(T, H)`` float32 cell state entering step ``t``.
        pre: ``(T, 4H)`` float32 gate pre-activations ``[i; f; g; o]`` before the nonlinearities.
        h: ``(H,)`` float32 hidden state after the last step.
        logits: ``(C,)`` float32 head output on ``h`` when the gates have a head, else ``None``.
    """

    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    pre: np.ndarray
    h: np.ndarray
    logits: np.ndarray | None


def _leaves(tree: Any) -> list[tuple[Any, Any]]:
    return jax.tree_util.tree_leaves_with_path(tree)


def _cell_module(gates: LSTMGates) -> Any:
    """An ``nnx.LSTMCell`` holding the file's weights."""
    from flax import nnx

    cell = nnx.LSTMCell(gates.n_in, gates.hidden, rngs=nnx.Rngs(0))
    state = nnx.state(cell, nnx.Param)

    def paths(tree: Any) -> set[str]:
        return {"/".join(str(getattr(k, "key", k)) for k in p) for p, _ in _leaves(tree)}

    want, have = paths(nnx.to_pure_dict(state)), paths(gates.cell_params)
    if want != have:
        raise ValueError(
            f"{gates.name} is not an nnx.LSTMCell: its parameters lack {sorted(want - have)} "
            f"and add {sorted(have - want)}; lstm_reference runs flax.nnx.LSTMCell only"
        )
    nnx.replace_by_pure_dict(state, gates.cell_params)
    nnx.update(cell, state)
    return cell


@partial(jax.jit, static_argnums=0)
def _jax_sequence(graphdef: Any, state: Any, xs: jax.Array) -> tuple[Any, ...]:
    from flax import nnx

    cell = nnx.merge(graphdef, state)
    H = cell.hidden_features

    def step(carry, x):
        c, h = carry
        pre = jnp.concatenate(
            [
                cell.ii(x) + cell.hi(h),
                cell.if_(x) + cell.hf(h),
                cell.ig(x) + cell.hg(h),
                cell.io(x) + cell.ho(h),
            ]
        )
        new, _ = cell((c, h), x)
        return new, (h, c, pre)

    z = jnp.zeros(H, jnp.float32)
    (_, h), (h_prev, c_prev, pre) = jax.lax.scan(step, (z, z), xs)
    return h, h_prev, c_prev, pre


def lstm_reference(gates: LSTMGates, xs: Any) -> LSTMReference:
    """Run the JAX ``nnx.LSTMCell`` holding the file's weights over one input sequence.

    The cell starts from zero ``(c, h)`` (``nnx.RNN``'s default carry) and steps exactly as
    ``nnx.RNN(cell)`` does; the pre-activations are the cell's own sub-layers,
    ``ii(x) + hi(h)`` for gate ``i`` and so on.

    Args:
        gates: from :func:`load_dcz_lstm`.
        xs: ``(T, n)`` float inputs, one row per time step (an MNIST image ``(28, 28)``: 28
            steps of 28 pixels).

    Returns:
        :class:`LSTMReference`.

    Raises:
        ValueError: ``xs`` is not ``(T, n)`` with ``T >= 1`` and finite values.

    Example:
        >>> gates = load_dcz_lstm(_example_file())   # load_dcz_lstm's example cell
        >>> ref = lstm_reference(gates, np.ones((4, 3), np.float32))
        >>> ref.pre.shape, ref.h_prev[0].tolist()   # 4 steps, 4 gates x 2; h starts at 0
        ((4, 8), [0.0, 0.0])
    """
    from flax import nnx

    xs = np.asarray(xs, np.float32)
    if xs.ndim != 2 or xs.shape[1] != gates.n_in or xs.shape[0] < 1:
        raise ValueError(
            f"xs must be (T, {gates.n_in}): T >= 1 time steps of the cell's {gates.n_in} "
            f"inputs, got shape {xs.shape}"
        )
    if not np.isfinite(xs).all():
        raise ValueError("xs holds NaN or infinite values; the inputs must be finite")
    graphdef, state = nnx.split(_cell_module(gates))
    h, h_prev, c_prev, pre = (np.asarray(a) for a in _jax_sequence(graphdef, state, xs))
    logits = None
    if gates.head is not None:
        hw, hb = gates.head
        logits = np.asarray(jnp.asarray(h) @ jnp.asarray(hw) + jnp.asarray(hb))
    return LSTMReference(xs, h_prev, c_prev, pre, h, logits)


# ----------------------------------------------------------------------------- EIE per step
#: How many times the per-step program has been traced (one per shape and static setting).
TRACES = {"step": 0}


@partial(jax.jit, static_argnames=("static", "bits"))
def _step(static, params, codes, codebook, bias_codes, bias, act, events, fa, fw, fy, *, bits):
    """One time step on EIE: float32 and fixed-point outputs and the cycle counters."""
    TRACES["step"] += 1
    y_float = spmv_float(codes, codebook, act, bias_codes) + bias
    r = spmv_fixed(
        codes,
        codebook,
        act,
        bias_codes,
        act_bits=bits,
        weight_bits=bits,
        act_frac=fa,
        weight_frac=fw,
        out_frac=fy,
    )
    acc = _sat_add(r.y_int, quantize_fixed(bias, bits, fy), bits)
    y_fixed = jnp.ldexp(acc.astype(jnp.float32), -fy)
    return y_float, y_fixed, simulate(static, params, events)


class LSTMRun(NamedTuple):
    """Every time step of a sequence on EIE (:func:`lstm_on_eie`); ``T`` steps, ``4H`` gates.

    Attributes:
        active: ``(T,)`` non-zero entries of ``[x_t; h_{t-1}]`` (broadcasts, bias excluded).
        counters: :class:`eie_model.types.Counters` batched ``(T,)``: the cycle model per step.
        energy_j: ``(T,)`` energy per step (J), :func:`eie_model.energy.energy_report`.
        jax_pre: ``(T, 4H)`` JAX's gate pre-activations.
        eie_float: ``(T, 4H)`` EIE float32 output (+ bias) on JAX's ``[x_t; h_{t-1}]``.
        eie_fixed: ``(T, 4H)`` EIE fixed-point output (+ bias), same activations.
        bound: ``(T, 4H)`` the quantisation error bound of ``eie_fixed`` (no saturation: the
            output format holds every partial sum): per row, over the non-zero products,
            ``dw |a_j| + |w_ij| da + dw da + dy``, plus ``dw + dy`` for the bias, with ``dw,
            da, dy`` half an LSB of the weight, activation and output formats.
        err_float: ``(T,)`` max abs ``eie_float - jax_pre``.
        err_fixed: ``(T,)`` max abs ``eie_fixed - jax_pre``.
        rel_fixed: ``(T,)`` ``err_fixed / max |jax_pre|`` of the step.
        fracs: ``(act, weight, out)`` fractional bits of the fixed-point formats.
        bits: fixed-point width.
        reference: the :class:`LSTMReference` the steps were fed from.
        h_eie: ``(H,)`` last hidden state of the recurrence on EIE (``h`` from EIE's
            fixed-point gates, nonlinearities in float32), or ``None``.
        logits_eie: ``(C,)`` the head on ``h_eie`` (``None`` without a head or recurrence).
    """

    active: np.ndarray
    counters: Counters
    energy_j: np.ndarray
    jax_pre: np.ndarray
    eie_float: np.ndarray
    eie_fixed: np.ndarray
    bound: np.ndarray
    err_float: np.ndarray
    err_fixed: np.ndarray
    rel_fixed: np.ndarray
    fracs: tuple[int, int, int]
    bits: int
    reference: LSTMReference
    h_eie: np.ndarray | None
    logits_eie: np.ndarray | None

    @property
    def cycles(self) -> np.ndarray:
        """``(T,)`` cycles per step."""
        return np.asarray(self.counters.cycles)

    def table(self) -> dict[str, np.ndarray]:
        """Per-step columns: step, active, cycles, latency_us, energy_nj, err_float, err_fixed,
        rel_fixed, bound_max, useful_macs, mac_efficiency."""
        t = self.counters.table()
        return {
            "step": np.arange(len(self.active)),
            "active": self.active,
            "cycles": t["cycles"],
            "latency_us": t["latency_us"],
            "energy_nj": self.energy_j * 1e9,
            "err_float": self.err_float,
            "err_fixed": self.err_fixed,
            "rel_fixed": self.rel_fixed,
            "bound_max": self.bound.max(axis=1),
            "useful_macs": t["useful_macs"],
            "mac_efficiency": t["mac_efficiency"],
        }


def _formats(gates: LSTMGates, xs: np.ndarray, bits: int) -> tuple[int, int, int]:
    """Activation, weight and output fractional bits for the whole sequence (module docstring)."""
    amax = np.concatenate([np.abs(xs).max(axis=0), np.ones(gates.hidden, np.float32)])
    w = np.abs(gates.layer.weights()).astype(np.float64)
    top = w @ amax.astype(np.float64) + np.abs(gates.bias)
    if gates.layer.bias_codes is not None:
        top = top + np.abs(gates.layer.codebook[gates.layer.bias_codes])
    fa = int(frac_bits_for(np.float32(max(float(amax.max()), 1.0)), bits))
    fw = int(frac_bits_for(gates.layer.codebook, bits))
    fy = int(frac_bits_for(np.float32(top.max()), bits))
    # rounding may carry a partial sum past ``top``: one bit less when the worst case would
    nz = np.asarray(gates.layer.codes) != 0
    has_bc = gates.layer.bias_codes is not None
    worst = top + _bound(w, nz, amax, fa, fw, fy, has_bc)
    if worst.max() >= (2.0 ** (bits - 1) - 1) * 2.0**-fy:
        fy -= 1
    return fa, fw, fy


def _bound(w_abs, nz, act, fa, fw, fy, has_bias_codes):
    dw, da, dy = 2.0 ** -(fw + 1), 2.0 ** -(fa + 1), 2.0 ** -(fy + 1)
    a = np.abs(act.astype(np.float64))
    on = nz & (a != 0)[None, :]
    per = dw * a[None, :] + w_abs * da + dw * da + dy
    return (on * per).sum(axis=1) + dy + (dw if has_bias_codes else 0.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_on_eie(
    gates: LSTMGates,
    xs: Any,
    *,
    params: EIEParams | None = None,
    static: EIEStatic | None = None,
    bits: int = 16,
    fracs: tuple[int, int, int] | None = None,
    recurrent: bool = True,
) -> LSTMRun:
    """Run a sequence's every time step through EIE and compare with the JAX cell.

    Step ``t`` feeds EIE the activation vector ``[x_t; h_{t-1}]`` that the JAX cell had
    (teacher forcing, so every step's error is EIE's alone): the functional model in float32
    (:func:`eie_model.functional.spmv_float`) and in ``bits``-bit fixed point
    (:func:`eie_model.functional.spmv_fixed`, formats of the module docstring) against JAX's
    gate pre-activations, and the cycle model (:func:`eie_model.sim.simulate`) for that
    activation vector's sparsity with its energy. The steps differ only in the activation
    vector: the broadcast events are padded to ``n + H + 1``, so all steps (and later
    sequences of the same cell) run one compiled program (:data:`TRACES` counts the traces).
    With ``recurrent`` the whole recurrence also runs on EIE: ``h_{t-1}`` is then EIE's own,
    from its fixed-point gates (sigmoid / tanh and the cell update in float32 outside the
    matrix unit, as in the paper), and the head gives ``logits_eie``.

    Args:
        gates: from :func:`load_dcz_lstm`.
        xs: ``(T, n)`` float inputs.
        params: keyword-only, one EIE design point (default ``EIEParams()``: 64 PEs, FIFO 8).
        static: keyword-only, default ``EIEStatic.covering(params)``; its ``code_bits`` is set
            to the merged codebook's.
        bits: keyword-only, fixed-point width: 8, 16 (EIE) or 32.
        fracs: keyword-only, ``(act, weight, out)`` fractional bits; default the formats of
            the module docstring, under which no accumulator saturates (with others
            ``bound`` holds only while none does).
        recurrent: keyword-only, also run the recurrence on EIE.

    Returns:
        :class:`LSTMRun`.

    Raises:
        ValueError: bad ``xs`` (see :func:`lstm_reference`), ``bits``, or ``params`` that is
            batched or does not fit ``static``.

    Example:
        >>> gates = load_dcz_lstm(_example_file())   # load_dcz_lstm's example cell
        >>> xs = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
        >>> run = lstm_on_eie(gates, xs, params=EIEParams(n_pes=2, fifo_depth=2))
        >>> run.active.tolist()   # step 0: x only (h = 0); step 1: h only
        [2, 2]
        >>> bool(np.all(np.abs(run.eie_fixed - run.eie_float) <= run.bound))
        True
    """
    if isinstance(bits, bool) or bits not in (8, 16, 32):
        raise ValueError(f"bits must be 8, 16 or 32 (EIE is 16-bit), got {bits!r}")
    params = EIEParams() if params is None else params
    if not isinstance(params, EIEParams) or params.batch_shape:
        raise ValueError(
            "params must be one EIE design point (an unbatched EIEParams); sweep a batch with "
            "eie_model.sweep on gates.layer with the activations of a step"
        )
    static = EIEStatic.covering(params) if static is None else static
    static = static.replace(code_bits=gates.code_bits)
    params.check(static)
    ref = lstm_reference(gates, xs)
    n, H = gates.n_in, gates.hidden
    layer = gates.layer
    if fracs is None:
        fa, fw, fy = _formats(gates, ref.x, bits)
    elif len(fracs) == 3 and all(isinstance(f, (int, np.integer)) for f in fracs):
        fa, fw, fy = (int(f) for f in fracs)
    else:
        raise ValueError(
            f"fracs must be three ints (act, weight, out fraction bits), got {fracs!r}"
        )
    w_abs = np.abs(layer.weights()).astype(np.float64)
    nz = np.asarray(layer.codes) != 0
    has_bc = layer.bias_codes is not None
    dev = (
        jnp.asarray(layer.codes),
        jnp.asarray(layer.codebook),
        None if layer.bias_codes is None else jnp.asarray(layer.bias_codes),
        jnp.asarray(gates.bias),
    )
    fr = (jnp.int32(fa), jnp.int32(fw), jnp.int32(fy))

    def one(act):
        ev = layer_events(layer._replace(act=act), pad_events=n + H + 1)
        ev = jax.tree.map(jnp.asarray, ev)
        yf, yq, c = _step(static, params, *dev, jnp.asarray(act), ev, *fr, bits=bits)
        return np.asarray(yf), np.asarray(yq), jax.tree.map(np.asarray, c)

    T = ref.x.shape[0]
    acts = np.concatenate([ref.x, ref.h_prev], axis=1).astype(np.float32)
    yfs, yqs, cs, bounds = [], [], [], []
    for t in range(T):
        yf, yq, c = one(acts[t])
        yfs.append(yf)
        yqs.append(yq)
        cs.append(c)
        bounds.append(_bound(w_abs, nz, acts[t], fa, fw, fy, has_bc))
    counters = jax.tree.map(lambda *v: np.stack(v), *cs)
    energy = np.asarray(energy_report(counters).energy_j, np.float64)
    eie_float, eie_fixed = np.stack(yfs), np.stack(yqs)
    err_float = np.abs(eie_float - ref.pre).max(axis=1)
    err_fixed = np.abs(eie_fixed - ref.pre).max(axis=1)
    scale = np.abs(ref.pre).max(axis=1)
    rel = np.where(scale > 0, err_fixed / np.where(scale > 0, scale, 1), 0.0)
    h_eie = logits_eie = None
    if recurrent:
        c_s = np.zeros(H, np.float32)
        h_s = np.zeros(H, np.float32)
        for t in range(T):
            _, yq, _ = one(np.concatenate([ref.x[t], h_s]).astype(np.float32))
            i, f, g, o = (yq[k * H : (k + 1) * H] for k in range(4))
            c_s = (_sigmoid(f) * c_s + _sigmoid(i) * np.tanh(g)).astype(np.float32)
            h_s = (_sigmoid(o) * np.tanh(c_s)).astype(np.float32)
        h_eie = h_s
        if gates.head is not None:
            logits_eie = (h_eie @ gates.head[0] + gates.head[1]).astype(np.float32)
    return LSTMRun(
        active=np.count_nonzero(acts, axis=1),
        counters=counters,
        energy_j=energy,
        jax_pre=ref.pre,
        eie_float=eie_float,
        eie_fixed=eie_fixed,
        bound=np.stack(bounds),
        err_float=err_float,
        err_fixed=err_fixed,
        rel_fixed=rel,
        fracs=(fa, fw, fy),
        bits=bits,
        reference=ref,
        h_eie=h_eie,
        logits_eie=logits_eie,
    )
