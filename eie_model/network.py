"""Whole networks on EIE: a compressed model's fully-connected layers, end to end.

EIE runs one fully-connected layer at a time; a network is a chain of them (LeNet-300-100:
784 -> 300 -> 100 -> 10, ReLU between). This module takes such a chain from a jaxcomp ``.dcz``
file and answers the two questions of algorithm-hardware co-design on real inputs:

* **is the answer right?** :func:`network_forward` runs inputs through every layer with the
  bit-accurate functional model (float32, or EIE's fixed point with per-layer formats from
  :func:`calibrate_fracs`), so the test error *on EIE* can be measured;
* **how fast, how much energy?** :func:`network_sweep` feeds each layer the activations that
  the previous layers really produce (activation sparsity included) and sweeps a batch of EIE
  configurations per layer (:func:`eie_model.sweep.sweep`), then sums cycles and energy over
  layers and averages them over input samples.

Between two layers the hardware does work of its own, and :func:`network_sweep` counts it
(docs/guides/eie-networks.md has the rules and their sources):

* **ReLU and write-back**: each PE passes its local outputs (rows ``i, i + N, ...``) through
  its ReLU into the destination activation registers, one per cycle, all PEs in parallel:
  :func:`writeback_cycles` ``= ceil(m / N)`` cycles after every layer but the last. The
  destination registers then become the source of the next layer (row ``r`` of layer ``l``
  lives in PE ``r % N``, exactly where input ``r`` of layer ``l + 1`` must be), so no other
  data moves.
* **LNZD restart**: each layer is a fresh run: its leading-non-zero detector latches its first
  group at the layer's cycle 1, after the previous write-back.
* **Bias column**: each layer broadcasts its bias as one more column (activation 1.0): the
  network's ``bias_codes`` where it has them (``load_dcz_network(bias="codes")``), else the
  non-zero pattern of its dense biases (the counters depend on which entries are non-zero only).

:func:`network_reference` runs the same network cycle by cycle (:mod:`eie_model.reference`
layer after layer, the write-back tick by tick): the oracle of :func:`network_sweep`.

Layout: EIE's matrix is ``(m, n)`` = (outputs, inputs), a Flax ``Dense`` kernel is ``(in, out)``;
:func:`load_dcz_network` transposes. A ``.dcz`` file stores biases dense (float32); they are
added to each layer's output (in fixed point: quantized to the output format and added with
saturation, as EIE's bias column would be); ``load_dcz_network(bias="codes")`` also puts them
into each layer's codebook as exact bias codes.

Example:
    >>> import numpy as np
    >>> net = Network(
    ...     names=("a", "b"),
    ...     codes=(np.array([[1, 0], [0, 1]], np.uint8), np.array([[1, 1]], np.uint8)),
    ...     codebooks=(np.array([0.0, 2.0], np.float32), np.array([0.0, -1.0], np.float32)),
    ...     biases=(np.zeros(2, np.float32), np.ones(1, np.float32)),
    ... )
    >>> logits, inputs = network_forward(net, np.array([[1.0, 3.0]], np.float32))
    >>> logits.tolist(), inputs[1].tolist()   # relu([2, 6]) -> -8 + 1
    ([[-7.0]], [[2.0, 6.0]])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from eie_model.functional import (
    _accumulate,
    _sat_add,
    frac_bits_for,
    quantize_fixed,
    spmv_float,
)
from eie_model.layers import validate_layer
from eie_model.sim.events import layer_events
from eie_model.sweep import _bucket, sweep
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

__all__ = [
    "Network",
    "calibrate_fracs",
    "load_dcz_network",
    "network_forward",
    "network_reference",
    "network_sweep",
    "writeback_cycles",
]


class Network(NamedTuple):
    """A chain of fully-connected layers as EIE runs them (ReLU after all but the last).

    Attributes:
        names: ``L`` labels, e.g. ``("fc1/kernel", "fc2/kernel", "fc3/kernel")``.
        codes: ``L`` arrays ``(m_l, n_l)`` uint8/uint16 weight codes (outputs x inputs), 0 =
            pruned; ``n_{l+1} == m_l``.
        codebooks: ``L`` arrays ``(2**bits_l,)`` float32, entry 0 is 0.0.
        biases: ``L`` arrays ``(m_l,)`` float32.
        bias_codes: ``None`` (the default: the bias column is timed from the biases' non-zero
            pattern), or ``L`` arrays ``(m_l,)`` of codes into each layer's codebook with
            ``codebooks[l][bias_codes[l]] == biases[l]`` exactly (:func:`load_dcz_network`
            with ``bias="codes"`` builds them).
    """

    names: tuple[str, ...]
    codes: tuple[np.ndarray, ...]
    codebooks: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    bias_codes: tuple[np.ndarray, ...] | None = None

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``(m_l, n_l)`` per layer."""
        return tuple(tuple(c.shape) for c in self.codes)

    def check(self) -> Network:
        """Validate lengths, shapes and codebooks; return ``self``.

        Raises:
            ValueError: unequal tuple lengths, an empty network, a layer whose inputs do not
                match the previous layer's outputs, a bias of the wrong length, a bad codebook,
                or bias codes that do not decode to the biases exactly.
        """
        n = len(self.names)
        if n == 0 or not (len(self.codes) == len(self.codebooks) == len(self.biases) == n):
            raise ValueError(
                "Network: names, codes, codebooks and biases must be non-empty tuples of one "
                f"length; got {len(self.names)}, {len(self.codes)}, {len(self.codebooks)}, "
                f"{len(self.biases)}"
            )
        for i in range(n):
            n_in = self.codes[i].shape[1] if np.ndim(self.codes[i]) == 2 else 0
            validate_layer(Layer(self.codes[i], self.codebooks[i], np.zeros(n_in, np.float32)))
            m, k = self.codes[i].shape
            if self.biases[i].shape != (m,):
                raise ValueError(
                    f"Network: biases[{i}] ({self.names[i]}) has shape {self.biases[i].shape}, "
                    f"expected ({m},) = the layer's outputs"
                )
            if i and k != self.codes[i - 1].shape[0]:
                raise ValueError(
                    f"Network: layer {self.names[i]} takes {k} inputs but {self.names[i - 1]} "
                    f"gives {self.codes[i - 1].shape[0]}; the layers must form a chain"
                )
        if self.bias_codes is not None:
            if len(self.bias_codes) != n:
                raise ValueError(
                    f"Network: bias_codes must be None or {n} arrays (one per layer), got "
                    f"{len(self.bias_codes)}"
                )
            for i, bc in enumerate(self.bias_codes):
                bc = np.asarray(bc)
                book = np.asarray(self.codebooks[i])
                m = self.codes[i].shape[0]
                if bc.shape != (m,) or not np.issubdtype(bc.dtype, np.integer):
                    raise ValueError(
                        f"Network: bias_codes[{i}] ({self.names[i]}) must be ({m},) integer "
                        f"codes, got shape {bc.shape} dtype {bc.dtype}"
                    )
                if bc.size and (bc.min() < 0 or bc.max() >= book.size):
                    raise ValueError(
                        f"Network: bias_codes[{i}] ({self.names[i]}) must lie in "
                        f"0..{book.size - 1} (the codebook)"
                    )
                if not np.array_equal(book[bc], np.asarray(self.biases[i], np.float32)):
                    raise ValueError(
                        f"Network: codebooks[{i}][bias_codes[{i}]] ({self.names[i]}) must equal "
                        f"biases[{i}] exactly; build them with load_dcz_network(bias='codes') "
                        f"or leave bias_codes None"
                    )
        return self

    def bias_column(self, i: int) -> np.ndarray:
        """Codes of layer ``i``'s bias column as EIE broadcasts it, ``(m_i,)``.

        The network's ``bias_codes[i]`` when it has them; else a stand-in code 1 wherever the
        dense bias is non-zero (every counter depends on which bias entries are non-zero, not
        on their values).

        Example:
            >>> import numpy as np
            >>> net = Network(("a",), (np.ones((3, 2), np.uint8),), (np.arange(2.0),),
            ...               (np.array([0.0, 0.5, -1.0], np.float32),))
            >>> net.bias_column(0).tolist()
            [0, 1, 1]
        """
        if self.bias_codes is not None:
            return np.asarray(self.bias_codes[i])
        return (np.asarray(self.biases[i]) != 0).astype(np.asarray(self.codes[i]).dtype)


def load_dcz_network(
    path: str | os.PathLike, leaves: Sequence[str] | None = None, *, bias: str = "add"
) -> Network:
    """The fully-connected chain of a jaxcomp ``.dcz`` file as a :class:`Network`.

    Args:
        path: a file written by :func:`jaxcomp.compress` (or
            :func:`jaxcomp.fileformat.save_compressed`).
        leaves: the weight-shared 2-D kernels to chain, in order (default: every one, in sorted
            path order, e.g. ``fc1/kernel, fc2/kernel, fc3/kernel``). Each kernel's bias is the
            sibling leaf ``.../bias`` (zeros when the file has none).
        bias: keyword-only, ``"add"`` (default: dense float biases, ``bias_codes`` ``None``; the
            bias column is timed from their non-zero pattern) or ``"codes"``: each layer's
            codebook becomes the exact union of the centroids its codes use and its bias values
            (:func:`eie_model.lstm.merge_codebooks`; up to ``m`` more entries, so wider codes
            and a different SpMat line packing), and ``bias_codes`` index it.

    Returns:
        the checked :class:`Network` (codes transposed to EIE's ``(out, in)``).

    Raises:
        ValueError: a named leaf is not a weight-shared 2-D kernel of the file (the message lists
            those that are), the kernels do not form a chain (e.g. LeNet-5's convolutions
            feed its first fully-connected layer: pass ``leaves`` of a chain), or a bad ``bias``.
        jaxcomp.fileformat.DczFormatError: a damaged file.

    Example::

        >>> net = load_dcz_network("runs/lenet300/model.dcz")  # doctest: +SKIP
        >>> net.names, net.shapes  # doctest: +SKIP
        (('fc1/kernel', 'fc2/kernel', 'fc3/kernel'), ((300, 784), (100, 300), (10, 100)))
    """
    from jaxcomp.fileformat import load_compressed_codes

    if bias not in ("add", "codes"):
        raise ValueError(f"bias must be 'add' or 'codes', got {bias!r}")
    stored = load_compressed_codes(path)
    shared = sorted(k for k, v in stored.items() if isinstance(v, tuple) and np.ndim(v[1]) == 2)
    names = tuple(shared if leaves is None else leaves)
    missing = [k for k in names if k not in shared]
    if missing or not names:
        raise ValueError(
            f"leaves: {missing or 'none given'} are not weight-shared 2-D kernels of "
            f"{os.fspath(path)}; choose among {shared}"
        )
    codes, books, biases, bias_codes = [], [], [], []
    for k in names:
        book, c = stored[k]
        c = np.ascontiguousarray(np.asarray(c).T)
        book = np.asarray(book, np.float32)
        bias_key = k.rsplit("/", 1)[0] + "/bias" if "/" in k else "bias"
        b = stored.get(bias_key)
        if b is None or isinstance(b, tuple):
            b = np.zeros(c.shape[0], np.float32)
        b = np.asarray(b, np.float32)
        if bias == "codes":
            c, book, bc = _bias_codes(k, c, book, b)
            bias_codes.append(bc)
        codes.append(c)
        books.append(book)
        biases.append(b)
    bcs = tuple(bias_codes) if bias == "codes" else None
    return Network(names, tuple(codes), tuple(books), tuple(biases), bcs).check()


def _bias_codes(
    name: str, codes: np.ndarray, book: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, codebook, bias_codes)`` of one layer with its biases merged into the codebook."""
    from eie_model.lstm import merge_codebooks

    merged, luts = merge_codebooks({name: book}, {name: codes}, extra=bias)
    dt = np.uint8 if merged.size <= 256 else np.uint16
    k = int(np.count_nonzero(merged))  # distinct non-zero values, ascending after entry 0
    idx = np.searchsorted(merged[1 : k + 1], bias) + 1
    bc = np.where(bias != 0, idx, 0).astype(dt)
    return luts[name][codes].astype(dt), merged, bc


@partial(jax.jit, static_argnames=("relu",))
def _float_layer(codes, codebook, bias, a, *, relu):
    y = jax.vmap(spmv_float, in_axes=(None, None, 0))(codes, codebook, a) + bias[None, :]
    return jnp.maximum(y, 0.0) if relu else y


@partial(jax.jit, static_argnames=("bits", "relu"))
def _fixed_layer(codes, codebook, bias, qa, fa, fy, *, bits, relu):
    """``(B, n) int32`` activations at ``fa`` fraction bits -> ``(B, m) int32`` at ``fy``.

    :func:`eie_model.functional.spmv_fixed`'s arithmetic on integer activations: the previous
    layer's accumulators go on as they are (a float32 round trip would drop the low bits of
    32-bit values).
    """
    fw = frac_bits_for(codebook, bits)
    qw = quantize_fixed(codebook, bits, fw)[codes].T  # (n, m)

    def one(q):
        return _accumulate(qw, q, fw + fa - fy, bits)

    acc = jax.vmap(one)(qa)
    acc = _sat_add(acc, quantize_fixed(bias, bits, fy)[None, :], bits)
    return jnp.maximum(acc, 0) if relu else acc


def _inputs(x: Any, net: Network, name: str = "x") -> np.ndarray:
    x = np.asarray(x, np.float32)
    x = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
    n0 = net.codes[0].shape[1]
    if x.ndim != 2 or x.shape[1] != n0:
        raise ValueError(
            f"{name} must be (batch, {n0}) inputs of {net.names[0]} (images are flattened), "
            f"got shape {np.shape(x)}"
        )
    if not len(x):
        raise ValueError(f"{name} must hold at least one input sample, got shape {x.shape}")
    return x


def network_forward(
    net: Network,
    x: Any,
    *,
    bits: int | None = None,
    fracs: Sequence[int] | None = None,
    batch: int = 500,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run inputs through every layer with EIE's functional model.

    Args:
        net: the :class:`Network`.
        x: ``(B, n_0)`` float inputs (``(B, 28, 28)`` images are flattened).
        bits: ``None``: float32 (:func:`eie_model.functional.spmv_float`, the EIE authors'
            simulator arithmetic); 8, 16 or 32: fixed point with ``bits``-bit activations and
            weights (:func:`eie_model.functional.spmv_fixed`; EIE is 16-bit).
        fracs: with ``bits``, ``L + 1`` fractional-bit counts: the input's, then each layer's
            output (= the next layer's input); default :func:`calibrate_fracs` on ``x`` itself.
        batch: inputs per compiled call (memory only).

    Returns:
        ``(outputs, inputs)``: ``(B, m_L)`` float32 outputs of the last layer (logits), and the
        ``L`` float32 arrays ``(B, n_l)`` each layer received (what EIE broadcasts).

    Raises:
        ValueError: bad ``x`` shape (or no sample), ``bits``, ``fracs`` length or ``batch``.
    """
    net.check()
    x = _inputs(x, net)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1 (inputs per compiled call), got {batch!r}")
    L = len(net.names)
    if bits is not None:
        if bits not in (8, 16, 32):
            raise ValueError(f"bits must be None (float32), 8, 16 or 32, got {bits!r}")
        fracs = calibrate_fracs(net, x, bits) if fracs is None else tuple(int(f) for f in fracs)
        if len(fracs) != L + 1:
            raise ValueError(f"fracs must hold {L + 1} ints (input + {L} layers), got {fracs}")
    ins: list[list[np.ndarray]] = [[] for _ in range(L)]
    outs = []
    for lo in range(0, len(x), batch):
        a = jnp.asarray(x[lo : lo + batch])
        if bits is not None:  # fixed point: the integers go from layer to layer
            q = quantize_fixed(a, bits, fracs[0])
        for i in range(L):
            ins[i].append(np.asarray(a))
            relu = i < L - 1
            args = (net.codes[i], net.codebooks[i], net.biases[i])
            if bits is None:
                a = _float_layer(*args, a, relu=relu)
            else:
                q = _fixed_layer(*args, q, fracs[i], fracs[i + 1], bits=bits, relu=relu)
                a = jnp.ldexp(q.astype(jnp.float32), -fracs[i + 1])
        outs.append(np.asarray(a))
    return np.concatenate(outs), [np.concatenate(v) for v in ins]


def calibrate_fracs(net: Network, x: Any, bits: int) -> tuple[int, ...]:
    """Per-layer fixed-point formats (dynamic fixed point) from calibration inputs.

    Each format is the largest number of fractional bits whose ``bits``-bit range holds the
    largest magnitude seen (:func:`eie_model.functional.frac_bits_for`) in the float32 run of
    ``x``: first the input, then each layer's output. Calibrate on training inputs and apply
    to test inputs, as hardware would (test values may then saturate).

    Args:
        net: the :class:`Network`.
        x: ``(B, n_0)`` calibration inputs.
        bits: 8, 16 or 32.

    Returns:
        ``L + 1`` Python ints.

    Example:
        >>> import numpy as np
        >>> net = Network(("a",), (np.ones((1, 2), np.uint8),), (np.array([0, 3.0], np.float32),),
        ...               (np.zeros(1, np.float32),))
        >>> calibrate_fracs(net, np.ones((4, 2), np.float32), 8)   # 1.0 -> 6 bits; 6.0 -> 4
        (6, 4)
    """
    out, ins = network_forward(net, x)
    maxima = [float(np.abs(a).max(initial=0.0)) for a in ins] + [float(np.abs(out).max())]
    return tuple(int(frac_bits_for(jnp.float32(m), bits)) for m in maxima)


def writeback_cycles(m: Any, n_pes: Any) -> Any:
    """Cycles to pass a layer's ``m`` outputs through ReLU into the next layer's source.

    Each PE holds the outputs of its rows ``i, i + N, ...`` (``ceil(m / N)`` or fewer) and
    writes them through its ReLU into the destination activation registers one per cycle, all
    PEs in parallel, so the write-back takes ``ceil(m / N)`` cycles (docs/guides/eie-networks.md).

    Args:
        m: outputs of the layer (int or integer array).
        n_pes: PEs N (int or integer array; broadcasts with ``m``).

    Returns:
        ``ceil(m / n_pes)``, an int or an integer array (NumPy or JAX, as given).

    Example:
        >>> writeback_cycles(300, 64), writeback_cycles(100, 4)
        (5, 25)
    """
    return -(-m // n_pes)


def _layer_of(net: Network, i: int, act: np.ndarray, bias: bool) -> Layer:
    """Layer ``i`` with activations ``act`` and its bias column (none when every bias is 0)."""
    bc = net.bias_column(i) if bias else None
    bc = bc if bc is not None and np.any(bc != 0) else None
    return Layer(net.codes[i], net.codebooks[i], act, bc, net.names[i])


def network_sweep(
    net: Network,
    x: Any,
    static: EIEStatic,
    params: EIEParams,
    *,
    bias: bool = True,
    writeback: bool = True,
    progress: bool = False,
    devices: Sequence[Any] | None = None,
    engine: str = "auto",
) -> dict[str, np.ndarray]:
    """EIE design points evaluated on a whole network, layer after layer, on real inputs.

    For every input sample each layer gets the activations the previous layers produce
    (float32 functional model) and is swept over ``params`` with :func:`eie_model.sweep.sweep`
    (``static.code_bits`` set to the layer's own codebook), with its bias column
    (:meth:`Network.bias_column`; none when all its biases are 0) broadcast last. Each layer
    is a fresh run (its LNZD latches its first group at the layer's cycle 1); between two
    layers the ReLU write-back takes :func:`writeback_cycles` ``(m_l, n_pes)`` cycles. The
    counters add up over layers (EIE runs the layers one after another) and are averaged over
    samples, giving one float-valued :class:`eie_model.types.Counters` whose ``table()``
    holds every derived figure; the write-back cycles are in ``cycles`` (so in latency and in
    the static energy charged per cycle), no other counter moves during them. ``busy`` adds
    up each layer's PEs ordered from the busiest down, so ``busy_max`` is the sum over layers
    of each layer's busiest PE and ``load_balance = busy_total / (n_pes * that sum)``.
    Each layer's non-zeros and broadcasts are padded to powers of two
    (``layer_events(pad_nnz=, pad_events=)``, no change to any counter), so samples with
    different numbers of non-zero activations share compiled programs.
    :func:`network_reference` is its cycle-by-cycle oracle.

    Args:
        net: the :class:`Network`.
        x: ``(S, n_0)`` input samples (a few test images: activation sparsity varies per input).
        static: :class:`eie_model.types.EIEStatic` (its ``code_bits`` is replaced per layer).
        params: a batch of :class:`eie_model.types.EIEParams` (e.g. ``EIEParams.grid(...)``).
        bias: keyword-only; ``False`` times each layer without its bias column.
        writeback: keyword-only; ``False`` leaves the write-back cycles out (the layers' sum).
        progress: keyword-only, a tqdm bar over the ``S x L`` layer sweeps.
        devices: keyword-only, passed to :func:`eie_model.sweep.sweep`.
        engine: keyword-only, passed to :func:`eie_model.sweep.sweep` (``"auto"``, ``"host"``
            or ``"xla"``).

    Returns:
        ``Counters.table()`` of the per-network means (one row per design point), plus
        ``cycles:<name>`` per layer (the layer's own run, write-back excluded) and
        ``writeback_cycles`` (their sum over the ``L - 1`` write-backs; ``cycles`` = the sum of
        the layers' cycles + ``writeback_cycles``).

    Raises:
        ValueError: bad ``x`` (see :func:`network_forward`) or ``params`` (see ``sweep``).

    Example::

        >>> p = EIEParams.grid(n_pes=[16, 32, 64])  # doctest: +SKIP
        >>> t = network_sweep(net, x_test[:8], EIEStatic.covering(p), p)  # doctest: +SKIP
        >>> t["latency_us"], t["energy_j"]  # doctest: +SKIP
    """
    net.check()
    x = _inputs(x, net)
    _, ins = network_forward(net, x)
    L, S = len(net.names), len(x)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=S * L, desc="EIE network sweep", unit="layer")
    total: Counters | None = None
    per_layer: list[Any] = [0.0] * L
    for s in range(S):
        for i in range(L):
            layer = _layer_of(net, i, ins[i][s], bias)
            # pad non-zeros and broadcasts to powers of two: every sample (and every model of
            # similar size) reuses one compiled program per layer instead of compiling anew
            nnz = int(np.count_nonzero(layer.codes))
            k = int(np.count_nonzero(ins[i][s]))
            if layer.bias_codes is not None:
                nnz, k = nnz + int(np.count_nonzero(layer.bias_codes)), k + 1
            ev = layer_events(layer, pad_nnz=_bucket(nnz), pad_events=_bucket(k))
            st = static.replace(code_bits=max(layer.code_bits, 1))
            c = sweep(st, params, ev, devices=devices, engine=engine)
            mean = jax.tree.map(lambda v: np.asarray(v, np.float64) / S, c.replace(params=None))
            # each layer's PEs from busiest down: summed over layers, busy_max is the sum of the
            # layers' bottleneck PEs (the layers run one after another; docs/decisions.md)
            busy = -np.sort(-np.asarray(mean.busy), axis=-1)
            mean = mean.replace(static=static, params=c.params, busy=busy)
            total = mean if total is None else _add(total, mean)
            per_layer[i] = per_layer[i] + np.asarray(c.cycles, np.float64) / S
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    assert total is not None
    wb = np.zeros(np.shape(total.cycles), np.float64)
    if writeback:
        n_pes = np.broadcast_to(np.asarray(total.params.n_pes), wb.shape)
        for m, _ in net.shapes[:-1]:
            wb = wb + writeback_cycles(m, n_pes)
    out = total.replace(cycles=total.cycles + wb).table()
    for i, name in enumerate(net.names):
        out[f"cycles:{name}"] = np.asarray(per_layer[i]).reshape(-1)
    out["writeback_cycles"] = wb.reshape(-1)
    return out


def _reference_writeback(y: np.ndarray, n_pes: int, relu: bool) -> tuple[np.ndarray, int]:
    """The write-back cycle by cycle: ``(destination activations (m,) float32, cycles)``.

    Every cycle each PE that still holds an output writes its next local row (``l * N + i``)
    through its ReLU (``relu``) into the destination registers.
    """
    m = y.shape[0]
    dest = np.zeros(m, np.float32)
    held = np.array([len(range(i, m, n_pes)) for i in range(n_pes)])  # local rows per PE
    nxt = np.zeros(n_pes, np.int64)
    pes = np.arange(n_pes)
    t = 0
    while np.any(nxt < held):
        t += 1
        w = nxt < held
        rows = nxt[w] * n_pes + pes[w]
        dest[rows] = np.maximum(y[rows], 0.0) if relu else y[rows]
        nxt[w] += 1
    return dest, t


def network_reference(
    net: Network,
    x: Any,
    static: EIEStatic,
    params: EIEParams,
    *,
    bias: bool = True,
    writeback: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`network_sweep`'s table, cycle by cycle (slow: the oracle; a few samples).

    For every design point and sample, each layer runs through the cycle-by-cycle simulator
    (:func:`eie_model.reference.run`, a fresh run: the LNZD latches at the layer's cycle 1) on
    the activations :func:`network_forward` gives it, with its bias column
    (:meth:`Network.bias_column`); between two layers the ReLU write-back runs tick by tick
    (each PE writes one local output per cycle), its cycles added to the network's. Counters
    add up over layers and are averaged over samples as in :func:`network_sweep`.

    Args:
        net: the :class:`Network`.
        x: ``(S, n_0)`` input samples.
        static: :class:`eie_model.types.EIEStatic` (``max_pes``, ``max_fifo`` cover ``params``;
            ``code_bits`` is replaced per layer).
        params: one or a batch of :class:`eie_model.types.EIEParams`.
        bias: keyword-only; ``False`` runs each layer without its bias column.
        writeback: keyword-only; ``False`` leaves the write-back cycles out.

    Returns:
        the same columns as :func:`network_sweep` (``busy_*`` over ``static.max_pes`` PEs).

    Example:
        >>> net = Network(("a", "b"), (np.ones((2, 2), np.uint8), np.ones((1, 2), np.uint8)),
        ...               (np.array([0.0, 1.0], np.float32),) * 2, (np.zeros(2, np.float32),
        ...               np.zeros(1, np.float32)))
        >>> p = EIEParams(n_pes=[1, 2], fifo_depth=2)
        >>> t = network_reference(net, np.ones((1, 2), np.float32), EIEStatic(max_pes=2), p)
        >>> t["writeback_cycles"].tolist(), t["useful_macs"].tolist()   # ceil(2 / N); 4 + 2
        ([2.0, 1.0], [6.0, 6.0])
    """
    from eie_model.reference import run

    net.check()
    x = _inputs(x, net)
    _, ins = network_forward(net, x)
    flat = params.broadcast()
    shape = flat.batch_shape
    one = jax.tree.map(lambda v: np.reshape(v, -1), flat)
    rows = [flat] if not shape else [one[j] for j in range(int(np.prod(shape)))]
    L, S, P = len(net.names), len(x), static.max_pes
    fields = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
              "stall_cycles", "starvation_cycles")  # fmt: skip
    acc = {k: np.zeros(len(rows)) for k in fields}
    busy = np.zeros((len(rows), P))
    per_layer = np.zeros((L, len(rows)))
    wb = np.zeros(len(rows))
    for j, p in enumerate(rows):
        p.check(static)
        for s in range(S):
            for i in range(L):
                layer = _layer_of(net, i, ins[i][s], bias)
                c, y = run(static.replace(code_bits=max(layer.code_bits, 1)), p, layer)
                for k in fields:
                    acc[k][j] += getattr(c, k) / S
                b = np.zeros(P)
                b[: len(c.busy)] = -np.sort(-np.asarray(c.busy))
                busy[j] += b / S
                per_layer[i, j] += c.cycles / S
                if writeback and i < L - 1:
                    _, t = _reference_writeback(y, int(p.n_pes), relu=True)
                    acc["cycles"][j] += t / S
                    wb[j] += t / S
    cnt = Counters(
        static, flat, **{k: v.reshape(shape) for k, v in acc.items()},
        busy=busy.reshape((*shape, P)),
    )  # fmt: skip
    out = cnt.table()
    for i, name in enumerate(net.names):
        out[f"cycles:{name}"] = per_layer[i]
    out["writeback_cycles"] = wb
    return out


def _add(a: Counters, b: Counters) -> Counters:
    """Counters of two layers run one after the other (params and static of ``a``)."""
    fields = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
              "stall_cycles", "starvation_cycles", "busy")  # fmt: skip
    out = a.replace(**{k: getattr(a, k) + getattr(b, k) for k in fields})
    fa, fb = a.spm_line_reads_fresh, b.spm_line_reads_fresh
    return out.replace(spm_line_reads_fresh=None if fa is None or fb is None else fa + fb)
