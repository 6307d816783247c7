"""Bit-accurate SpMV in EIE's dataflow: float32 and fixed point (design.md).

EIE computes ``y = W a (+ b)`` by broadcasting the non-zero activations in index order (then
the bias, as a column with activation 1.0); every PE adds ``w * a_j`` into the accumulator of
each of its rows. Per output row the additions therefore happen in broadcast order, which this
module reproduces exactly with a ``lax.scan`` over the input columns (columns whose activation is
zero are skipped, as the LNZD skips them). How rows are spread over PEs does not change a row's
sum, so the model needs no PE axis.

Float32 (``spmv_float``): ``y = y + float32(w * a_j)`` for each broadcast column, then
``y = y + codebook[bias]``; bit-identical to the EIE authors' simulator (``y_sim`` of the shared
real layer).

Fixed point (``spmv_fixed``), the arithmetic of a ``bits``-bit datapath:

* A number with ``f`` fractional bits is the integer ``q = round(x * 2**f)``; rounding is
  round-half-to-even, and ``q`` saturates to ``[-2**(bits-1), 2**(bits-1) - 1]``.
* Weights: the codebook is quantized once to ``weight_bits`` with ``weight_frac`` fractional
  bits; activations to ``act_bits`` with ``act_frac``; the output/accumulator has ``act_bits``
  bits and ``out_frac`` fractional bits (default ``act_frac``: the output is the next layer's
  input). ``None`` picks the largest fraction that still holds the largest magnitude
  (``frac_bits_for``: dynamic fixed point per tensor, computed from the data).
* Each MAC forms the exact product ``q_w * q_a`` (up to 64 bits), rescales it to the
  accumulator's fraction with round-half-to-even, and adds it to the accumulator with
  saturation (so the order matters, and is the broadcast order). The bias column's activation
  is exactly 1.0 (not quantized). ReLU, when asked, is applied to the final accumulator.
* 64-bit products are computed exactly from 16-bit limbs in ``uint32`` (JAX runs without x64).

Example:
    >>> import numpy as np
    >>> from eie_model.functional import spmv_float, spmv_fixed
    >>> codes = np.array([[1, 2], [0, 1]], np.uint8)
    >>> cb = np.array([0.0, 0.5, -0.25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], np.float32)
    >>> a = np.array([2.0, 4.0], np.float32)
    >>> spmv_float(codes, cb, a).tolist()
    [0.0, 2.0]
    >>> spmv_fixed(codes, cb, a, act_bits=8, weight_bits=8).y.tolist()
    [0.0, 2.0]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["FixedResult", "frac_bits_for", "quantize_fixed", "spmv_fixed", "spmv_float"]

_PRECISIONS = (8, 16, 32)


def _check_bits(name: str, bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in _PRECISIONS:
        raise ValueError(f"{name} must be one of {_PRECISIONS} (a Python int), got {bits!r}")
    return bits


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_values(codes, codebook, act, bias_codes) -> None:
    """Host-side value checks, on inputs that are not traced (the boundary of jitted code).

    Under ``jit`` / ``vmap`` the values are unknown here; :func:`_poison` then makes the output
    NaN instead (a documented, visible result rather than a silently clamped one).
    """
    k = None
    if _concrete(codebook):
        cb = np.asarray(codebook, np.float32)
        k = cb.shape[0] if cb.ndim == 1 else None
        if not np.isfinite(cb).all():
            raise ValueError("codebook holds NaN or infinite values; every entry must be finite")
    if _concrete(act) and not np.isfinite(np.asarray(act, np.float32)).all():
        raise ValueError(
            "act holds NaN or infinite values; EIE's activations must be finite (a NaN would "
            "read as 0 in fixed point)"
        )
    for name, c in (("codes", codes), ("bias_codes", bias_codes)):
        if c is None or k is None or not _concrete(c):
            continue
        c = np.asarray(c)
        if c.size and np.issubdtype(c.dtype, np.integer) and (c.min() < 0 or c.max() >= k):
            raise ValueError(
                f"{name} must lie in 0..{k - 1} (the codebook has {k} entries), got values in "
                f"{int(c.min())}..{int(c.max())}; pass the codebook the codes were made with"
            )


def _poison(codes, codebook, act, bias_codes):
    """Traced-input stand-in for :func:`_check_values`: True when any code is outside the
    codebook or any activation / codebook entry is not finite (the caller returns NaN)."""
    k = codebook.shape[0]
    bad = jnp.any((codes < 0) | (codes >= k)) | ~jnp.all(jnp.isfinite(act))
    bad = bad | ~jnp.all(jnp.isfinite(codebook))
    if bias_codes is not None:
        bad = bad | jnp.any((bias_codes < 0) | (bias_codes >= k))
    return bad


def _check_layer(codes, codebook, act, bias_codes):
    _check_values(codes, codebook, act, bias_codes)
    codes = jnp.asarray(codes)
    codebook = jnp.asarray(codebook, jnp.float32)
    act = jnp.asarray(act, jnp.float32)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (m, n), got shape {codes.shape}")
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be integer codes, got {codes.dtype}")
    if codebook.ndim != 1:
        raise ValueError(f"codebook must be 1-D, got shape {codebook.shape}")
    if act.shape != (codes.shape[1],):
        raise ValueError(f"act must have shape ({codes.shape[1]},) = (n,), got {act.shape}")
    if bias_codes is not None:
        bias_codes = jnp.asarray(bias_codes)
        if not jnp.issubdtype(bias_codes.dtype, jnp.integer):
            raise TypeError(f"bias_codes must be integer codes, got {bias_codes.dtype}")
        if bias_codes.shape != (codes.shape[0],):
            raise ValueError(
                f"bias_codes must have shape ({codes.shape[0]},) = (m,), got {bias_codes.shape}"
            )
    return codes, codebook, act, bias_codes


def spmv_float(codes, codebook, act, bias_codes=None, *, relu: bool = False) -> jax.Array:
    """EIE's float32 output: columns with ``act != 0`` in index order, then the bias.

    Args:
        codes: ``(m, n)`` integer weight codes (0 = pruned).
        codebook: ``(K,)`` float32 codebook (``codebook[0] == 0``).
        act: ``(n,)`` float32 activations.
        bias_codes: optional ``(m,)`` bias codes.
        relu: apply ``max(y, 0)`` at the end.

    Returns:
        ``(m,)`` float32; each row is ``y = y + float32(w * a_j)`` in broadcast order.

    Raises:
        ValueError: a code (or bias code) outside ``0..K-1``, or a NaN / infinite activation or
            codebook entry, on concrete inputs. Under ``jit`` / ``vmap`` the values cannot be
            checked before the call: the whole output is NaN instead (never a clamped code).

    Example:
        >>> import jax, numpy as np
        >>> from eie_model.functional import spmv_float
        >>> cb = np.array([0.0, 1.5], np.float32)
        >>> jax.jit(spmv_float)(np.array([[1, 1]], np.uint8), cb, np.array([2.0, 0.0])).tolist()
        [3.0]
    """
    codes, codebook, act, bias_codes = _check_layer(codes, codebook, act, bias_codes)
    bad = _poison(codes, codebook, act, bias_codes)
    w = codebook[codes]  # (m, n)
    prods = (w * act[None, :]).T  # (n, m): float32(w * a_j), materialized before the sum

    def step(y, xs):
        p, a = xs
        return jnp.where(a != 0, y + p, y), None

    y0 = jnp.zeros(codes.shape[0], jnp.float32)
    y, _ = lax.scan(step, y0, (prods, act))
    if bias_codes is not None:
        y = y + codebook[bias_codes]
    y = jnp.maximum(y, 0.0) if relu else y
    return jnp.where(bad, jnp.float32(jnp.nan), y)


# ----------------------------------------------------------------------------- fixed point
def frac_bits_for(x, bits: int) -> jax.Array:
    """Largest fraction ``f`` such that ``max|x| * 2**f < 2**(bits-1)`` (int32 scalar).

    All-zero ``x`` gives ``bits - 1``. Jittable (the result is traced).

    Example:
        >>> from eie_model.functional import frac_bits_for
        >>> int(frac_bits_for([0.7, -3.2], 8))   # 3.2 needs 2 integer bits: 8 - 1 - 2 = 5
        5
    """
    _check_bits("bits", bits)
    mx = jnp.max(jnp.abs(jnp.asarray(x, jnp.float32)))
    _, e = jnp.frexp(mx)  # mx = m * 2**e, 0.5 <= m < 1, so mx < 2**e
    e = jnp.where(mx > 0, e, 0)
    return (bits - 1 - e).astype(jnp.int32)


def quantize_fixed(x, bits: int, frac) -> jax.Array:
    """``round_half_even(x * 2**frac)`` saturated to ``bits``-bit two's complement (int32).

    Args:
        x: float array.
        bits: 8, 16 or 32 (Python int).
        frac: fractional bits (int or int32 scalar array, may be traced or negative).

    Example:
        >>> from eie_model.functional import quantize_fixed
        >>> quantize_fixed([0.3, 2.5, -9.0, 1.0], 8, 4).tolist()   # 0.3*16=4.8; -144 clips
        [5, 40, -128, 16]
    """
    _check_bits("bits", bits)
    x = jnp.asarray(x, jnp.float32)
    scaled = jnp.ldexp(x, jnp.asarray(frac, jnp.int32))
    r = jnp.round(scaled)  # half to even
    lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    r = jnp.clip(r, lo, hi)  # float32 clip: hi = 2**31 - 1 rounds up to 2**31 for bits=32
    big = r >= 2.0**31
    return jnp.where(big, jnp.int32(2**31 - 1), jnp.where(big, 0, r).astype(jnp.int32))


def _u32(x):
    return lax.bitcast_convert_type(x, jnp.uint32)


def _shr(x, k):
    """Logical right shift of uint32 by k (0 for k >= 32; k < 0 is treated as 0)."""
    kk = jnp.clip(k, 0, 31).astype(jnp.uint32)
    x, kk = jnp.broadcast_arrays(jnp.asarray(x, jnp.uint32), kk)
    return jnp.where(k >= 32, jnp.uint32(0), lax.shift_right_logical(x, kk))


def _shl(x, k):
    """Left shift of uint32 by k (0 for k >= 32; k < 0 is treated as 0)."""
    kk = jnp.clip(k, 0, 31).astype(jnp.uint32)
    x, kk = jnp.broadcast_arrays(jnp.asarray(x, jnp.uint32), kk)
    return jnp.where(k >= 32, jnp.uint32(0), lax.shift_left(x, kk))


def _low_mask(k):
    """uint32 mask of the k lowest bits, k in 0..32."""
    return jnp.where(k >= 32, jnp.uint32(0xFFFFFFFF), _shl(jnp.uint32(1), k) - jnp.uint32(1))


def _mul_round_sat(a, b, s, bits: int):
    """``sat_bits(round_half_even(a * b / 2**s))`` exactly, a and b int32, s int32 (any sign)."""
    neg = (a < 0) ^ (b < 0)
    ua = jnp.where(a < 0, jnp.uint32(0) - _u32(a), _u32(a))
    ub = jnp.where(b < 0, jnp.uint32(0) - _u32(b), _u32(b))
    m16 = jnp.uint32(0xFFFF)
    a0, a1 = ua & m16, ua >> 16
    b0, b1 = ub & m16, ub >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p01 & m16) + (p10 & m16) + (p00 >> 16)  # < 3 * 2**16
    lo = (p00 & m16) | ((mid & m16) << 16)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)  # |a*b| <= 2**62: no overflow
    s = jnp.asarray(s, jnp.int32)
    # --- s > 0: right shift by s with round-half-even ---------------------------------
    sp = jnp.maximum(s, 1)
    q_lo = jnp.where(sp >= 32, _shr(hi, sp - 32), _shr(lo, sp) | _shl(hi, 32 - sp))
    q_hi = _shr(hi, sp)
    k = sp - 1  # position of the round bit
    rbit = jnp.where(k >= 32, _shr(hi, k - 32), _shr(lo, k)) & jnp.uint32(1)
    sticky = jnp.where(
        k >= 32, (lo != 0) | ((hi & _low_mask(k - 32)) != 0), (lo & _low_mask(k)) != 0
    )
    up = (rbit == 1) & (sticky | ((q_lo & jnp.uint32(1)) == 1))
    q_lo2 = q_lo + up.astype(jnp.uint32)
    q_hi = q_hi + ((q_lo2 < q_lo) & up).astype(jnp.uint32)
    q_lo = q_lo2
    # --- s <= 0: exact left shift by -s ------------------------------------------------
    kl = jnp.maximum(-s, 0)
    l_over = (hi != 0) | ((kl > 0) & (_shr(lo, 32 - kl) != 0)) | ((kl >= 32) & (lo != 0))
    l_lo = _shl(lo, kl)
    right = s > 0
    mag_hi = jnp.where(right, q_hi, jnp.where(l_over, jnp.uint32(1), jnp.uint32(0)))
    mag_lo = jnp.where(right, q_lo, l_lo)
    # --- saturate to bits ---------------------------------------------------------------
    pos_lim = jnp.uint32(2 ** (bits - 1) - 1)
    neg_lim = jnp.uint32(2 ** (bits - 1))
    over = mag_hi != 0
    mag = jnp.where(neg, jnp.where(over, neg_lim, jnp.minimum(mag_lo, neg_lim)), 0)
    mag = jnp.where(neg, mag, jnp.where(over, pos_lim, jnp.minimum(mag_lo, pos_lim)))
    return lax.bitcast_convert_type(jnp.where(neg, jnp.uint32(0) - mag, mag), jnp.int32)


def _sat_add(x, y, bits: int):
    """Saturating ``bits``-bit add of int32 values already within ``bits``-bit range."""
    s = x + y  # may wrap only for bits == 32
    if bits < 32:
        return jnp.clip(s, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    wrapped = ((x >= 0) == (y >= 0)) & ((s >= 0) != (x >= 0))
    return jnp.where(wrapped, jnp.where(x >= 0, jnp.int32(2**31 - 1), jnp.int32(-(2**31))), s)


def _accumulate(qw, qa, shift, bits: int):
    """EIE's column-by-column MAC loop in integers: ``(n, m)`` quantized weights (transposed
    codebook lookup) times ``(n,)`` quantized activations -> ``(m,)`` int32 accumulators.

    Each product is rounded and shifted by ``shift`` (``weight_frac + act_frac - out_frac``)
    and saturated to ``bits``; zero activations are skipped (never broadcast); the sum
    saturates. Shared by :func:`spmv_fixed` and :mod:`eie_model.network`, whose layers pass
    their integer accumulators on to the next layer.
    """

    def step(acc, xs):
        w_col, a = xs
        p = _mul_round_sat(w_col, jnp.broadcast_to(a, w_col.shape), shift, bits)
        return jnp.where(a != 0, _sat_add(acc, p, bits), acc), None

    acc, _ = lax.scan(step, jnp.zeros(qw.shape[1], jnp.int32), (qw, qa))
    return acc


class FixedResult(NamedTuple):
    """Output of ``spmv_fixed``.

    Attributes:
        y: ``(m,)`` float32, ``y_int * 2**-out_frac``.
        y_int: ``(m,)`` int32, the accumulators (``act_bits`` two's complement).
        out_frac: int32 scalar, fractional bits of ``y_int``.
        act_frac: int32 scalar, fractional bits the activations were quantized with.
        weight_frac: int32 scalar, fractional bits of the quantized codebook.
    """

    y: jax.Array
    y_int: jax.Array
    out_frac: jax.Array
    act_frac: jax.Array
    weight_frac: jax.Array


def spmv_fixed(
    codes,
    codebook,
    act,
    bias_codes=None,
    *,
    act_bits: int = 16,
    weight_bits: int = 16,
    act_frac=None,
    weight_frac=None,
    out_frac=None,
    relu: bool = False,
) -> FixedResult:
    """EIE's fixed-point output (see the module docstring for the exact arithmetic).

    Args:
        codes: ``(m, n)`` integer weight codes.
        codebook: ``(K,)`` float32 codebook.
        act: ``(n,)`` float32 activations.
        bias_codes: optional ``(m,)`` bias codes (bias activation exactly 1.0).
        act_bits: activation and accumulator bits: 8, 16 or 32 (keyword-only Python int).
        weight_bits: weight bits: 8, 16 or 32 (keyword-only Python int).
        act_frac: activation fraction bits; ``None``: ``frac_bits_for(act, act_bits)``.
        weight_frac: weight fraction bits; ``None``: ``frac_bits_for(codebook, weight_bits)``.
        out_frac: accumulator/output fraction bits; ``None``: ``act_frac``.
        relu: clamp the output at 0.

    Returns:
        ``FixedResult``.

    Raises:
        ValueError: a code (or bias code) outside ``0..K-1``, or a NaN / infinite activation or
            codebook entry, on concrete inputs (a NaN would otherwise quantize to 0). Under
            ``jit`` / ``vmap`` the output ``y`` is NaN instead (``y_int`` is then meaningless).

    Example:
        >>> import jax, numpy as np
        >>> from functools import partial
        >>> from eie_model.functional import spmv_fixed
        >>> cb = np.array([0.0, 0.3], np.float32)
        >>> f = jax.jit(partial(spmv_fixed, act_bits=8, weight_bits=8, act_frac=4, weight_frac=6))
        >>> r = f(np.array([[1, 1]], np.uint8), cb, np.array([1.0, 2.0]))
        >>> int(r.y_int[0]), float(r.y[0])   # 0.3 -> 19/64; 19*16/64 -> 5, 19*32/64 -> 10
        (15, 0.9375)
    """
    _check_bits("act_bits", act_bits)
    _check_bits("weight_bits", weight_bits)
    codes, codebook, act, bias_codes = _check_layer(codes, codebook, act, bias_codes)
    fa = frac_bits_for(act, act_bits) if act_frac is None else jnp.asarray(act_frac, jnp.int32)
    fw = (
        frac_bits_for(codebook, weight_bits)
        if weight_frac is None
        else jnp.asarray(weight_frac, jnp.int32)
    )
    fy = fa if out_frac is None else jnp.asarray(out_frac, jnp.int32)
    qcb = quantize_fixed(codebook, weight_bits, fw)
    qa = quantize_fixed(act, act_bits, fa)
    acc = _accumulate(qcb[codes].T, qa, fw + fa - fy, act_bits)
    if bias_codes is not None:
        qb = qcb[bias_codes]
        p = _mul_round_sat(qb, jnp.ones_like(qb), fw - fy, act_bits)  # times exactly 1.0
        acc = _sat_add(acc, p, act_bits)
    if relu:
        acc = jnp.maximum(acc, 0)
    y = jnp.ldexp(acc.astype(jnp.float32), -fy)
    y = jnp.where(_poison(codes, codebook, act, bias_codes), jnp.float32(jnp.nan), y)
    return FixedResult(y, acc, fy, fa, fw)
