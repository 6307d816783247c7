"""Sparsity schedules: plain ``count -> value`` functions.

A schedule maps the optimizer step ``count`` (an int32 scalar, possibly traced) to a float32
target (a sparsity for magnitude criteria, a quality for Han's threshold). Schedules never
branch in Python on the count, so they run under ``jit``/``vmap`` and inside
``optax.inject_hyperparams``. The pruning wrapper (:func:`jaxcomp.prune`) recomputes its
masks whenever the schedule's value changes, so a piecewise-constant schedule sets *when* to
prune as well as *how much*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "constant",
    "dsd_lr_scale",
    "dsd_phase",
    "dsd_sparsity",
    "iterative",
    "polynomial",
]

Schedule = Callable[[Any], jax.Array]


def _check_unit(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {v!r}")
    return f


def constant(value: float) -> Schedule:
    """The schedule that always returns ``value``.

    Args:
      value: the target (sparsity in ``[0, 1]`` or a quality), a Python number.

    Returns:
      ``count -> float32 scalar``.

    Example:
      >>> constant(0.5)(123).item()
      0.5
    """
    v = float(value)

    def schedule(count: Any) -> jax.Array:
        del count
        return jnp.asarray(v, jnp.float32)

    return schedule


def iterative(boundaries: Sequence[int], values: Sequence[float], initial: float = 0.0) -> Schedule:
    """Iterative pruning steps: ``values[i]`` from step ``boundaries[i]`` on (prune, retrain...).

    Before ``boundaries[0]`` the schedule returns ``initial``. This is the thesis' iterative
    pruning: prune to ``s1``, retrain, prune to ``s2``, retrain, ...

    Args:
      boundaries: strictly increasing non-negative Python ints, the steps where a new target
        starts.
      values: one float per boundary.
      initial: the value before the first boundary.

    Returns:
      ``count -> float32 scalar``, piecewise constant.

    Raises:
      ValueError: if the lengths differ, the list is empty or boundaries are not increasing.

    Example:
      >>> s = iterative([0, 100, 200], [0.5, 0.7, 0.9])
      >>> [round(float(s(c)), 2) for c in (0, 99, 100, 250)]
      [0.5, 0.5, 0.7, 0.9]
    """
    b = [int(x) for x in boundaries]
    v = [float(x) for x in values]
    if not b or len(b) != len(v):
        raise ValueError(
            f"boundaries and values must be non-empty and of equal length, got {len(b)} and "
            f"{len(v)}"
        )
    if any(x < 0 for x in b) or any(b2 <= b1 for b1, b2 in zip(b, b[1:], strict=False)):
        raise ValueError(f"boundaries must be non-negative and strictly increasing, got {b}")
    bs = np.asarray(b, np.int32)
    vs = np.asarray([float(initial)] + v, np.float32)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.int32)
        i = jnp.sum((c >= jnp.asarray(bs)).astype(jnp.int32))
        return jnp.asarray(vs)[i]

    return schedule


def polynomial(
    final: float,
    *,
    begin_step: int,
    end_step: int,
    initial: float = 0.0,
    power: float = 3.0,
    frequency: int = 1,
) -> Schedule:
    """Zhu & Gupta's automated gradual pruning (AGP): a polynomial ramp from initial to final.

    ``s(t) = final + (initial - final) * (1 - (t' - begin) / (end - begin)) ** power`` with
    ``t' = begin + floor((t - begin) / frequency) * frequency`` clipped to ``[begin, end]``;
    ``initial`` before ``begin_step`` (the ramp value at ``begin``), ``final`` from ``end_step``
    on. With ``power=3`` this is AGP's cubic ramp; ``frequency`` makes it a staircase so the
    masks are recomputed only every ``frequency`` steps.

    Args:
      final: target sparsity at and after ``end_step``, in ``[0, 1]``.
      begin_step: Python int >= 0.
      end_step: Python int > ``begin_step``.
      initial: sparsity at ``begin_step``, in ``[0, 1]``.
      power: exponent of the ramp (> 0).
      frequency: Python int >= 1, steps between mask updates.

    Returns:
      ``count -> float32 scalar``.

    Raises:
      ValueError: on sparsities outside ``[0, 1]`` or inconsistent steps.

    Example:
      >>> s = polynomial(0.8, begin_step=0, end_step=100)
      >>> [round(float(s(c)), 3) for c in (0, 50, 100, 1000)]
      [0.0, 0.7, 0.8, 0.8]
    """
    fi = _check_unit("final", final)
    ini = _check_unit("initial", initial)
    b, e, fr = int(begin_step), int(end_step), int(frequency)
    if b < 0 or e <= b:
        raise ValueError(f"need 0 <= begin_step < end_step, got begin_step={b}, end_step={e}")
    if fr < 1:
        raise ValueError(f"frequency must be a Python int >= 1, got {frequency!r}")
    if not float(power) > 0:
        raise ValueError(f"power must be > 0, got {power!r}")
    pw = float(power)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.int32)
        t = jnp.clip(c, b, e)
        t = jnp.where(c >= e, e, b + ((t - b) // fr) * fr)
        frac = (t - b).astype(jnp.float32) / jnp.float32(e - b)
        r = 1.0 - frac
        ramp = jax.lax.integer_pow(r, int(pw)) if pw == int(pw) else r**pw
        return jnp.asarray(fi + (ini - fi) * ramp, jnp.float32)

    return schedule


# --------------------------------------------------------------------------------------------
# Dense-Sparse-Dense (thesis chapter 5)
# --------------------------------------------------------------------------------------------


def _dsd_bounds(dense_steps: int, sparse_steps: int, redense_steps: int, cycles: int):
    for name, v in (
        ("dense_steps", dense_steps),
        ("sparse_steps", sparse_steps),
        ("redense_steps", redense_steps),
    ):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a Python int >= 0, got {v!r}")
    if not isinstance(cycles, (int, np.integer)) or cycles < 1:
        raise ValueError(f"cycles must be a Python int >= 1, got {cycles!r}")
    if sparse_steps == 0:
        raise ValueError("sparse_steps must be > 0: DSD needs a sparse phase")
    period = sparse_steps + redense_steps
    # Step at which each sparse phase starts and each re-dense phase starts.
    s_starts = np.asarray([dense_steps + c * period for c in range(cycles)], np.int32)
    r_starts = s_starts + np.int32(sparse_steps)
    return s_starts, r_starts


def dsd_phase(
    dense_steps: int, sparse_steps: int, redense_steps: int, *, cycles: int = 1
) -> Schedule:
    """Which DSD phase step ``count`` is in: 0 = dense, 1 = sparse, 2 = re-dense.

    The phases are ``D`` (``dense_steps``), then ``cycles`` times ``S`` (``sparse_steps``)
    followed by ``D`` (``redense_steps``); after the last phase the count stays in re-dense.

    Args:
      dense_steps: Python int >= 0, steps of the first dense phase.
      sparse_steps: Python int > 0, steps of each sparse phase.
      redense_steps: Python int >= 0, steps of each re-dense phase.
      cycles: Python int >= 1, number of S-D cycles after the first D.

    Returns:
      ``count -> int32 scalar`` in {0, 1, 2}.

    Example:
      >>> ph = dsd_phase(2, 3, 2)
      >>> [int(ph(c)) for c in range(8)]
      [0, 0, 1, 1, 1, 2, 2, 2]
    """
    s_starts, r_starts = _dsd_bounds(dense_steps, sparse_steps, redense_steps, cycles)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.int32)
        n_sparse = jnp.sum((c >= jnp.asarray(s_starts)).astype(jnp.int32))
        n_redense = jnp.sum((c >= jnp.asarray(r_starts)).astype(jnp.int32))
        in_sparse = n_sparse > n_redense
        return jnp.where(n_sparse == 0, 0, jnp.where(in_sparse, 1, 2)).astype(jnp.int32)

    return schedule


def dsd_sparsity(
    sparsity: float, dense_steps: int, sparse_steps: int, redense_steps: int, *, cycles: int = 1
) -> Schedule:
    """DSD's sparsity target: ``sparsity`` during each sparse phase, 0 otherwise.

    Fed to :func:`jaxcomp.prune`, this prunes at the start of each sparse phase and
    releases the masks (pruned weights restart from zero) at the start of each re-dense phase.

    Args:
      sparsity: Python float in ``[0, 1]``, the fraction pruned per layer in the sparse phases.
      dense_steps, sparse_steps, redense_steps, cycles: as in :func:`dsd_phase`.

    Returns:
      ``count -> float32 scalar``.

    Example:
      >>> s = dsd_sparsity(0.3, 1, 2, 1)
      >>> [round(float(s(c)), 2) for c in range(5)]
      [0.0, 0.3, 0.3, 0.0, 0.0]
    """
    sp = _check_unit("sparsity", sparsity)
    phase = dsd_phase(dense_steps, sparse_steps, redense_steps, cycles=cycles)

    def schedule(count: Any) -> jax.Array:
        return jnp.where(phase(count) == 1, jnp.float32(sp), jnp.float32(0.0))

    return schedule


def dsd_lr_scale(
    lr_drop: float, dense_steps: int, sparse_steps: int, redense_steps: int, *, cycles: int = 1
) -> Schedule:
    """Learning-rate multiplier of DSD: ``lr_drop ** (re-dense phases started so far)``.

    1 during the first dense and the first sparse phase, ``lr_drop`` from the first re-dense
    phase on, ``lr_drop**2`` from the second, and so on (the thesis retrains the re-dense
    network at a lower learning rate, 1/10 by default).

    Args:
      lr_drop: Python float in ``(0, 1]``.
      dense_steps, sparse_steps, redense_steps, cycles: as in :func:`dsd_phase`.

    Returns:
      ``count -> float32 scalar``.

    Example:
      >>> s = dsd_lr_scale(0.1, 1, 1, 1)
      >>> [round(float(s(c)), 3) for c in range(4)]
      [1.0, 1.0, 0.1, 0.1]
    """
    drop = float(lr_drop)
    if not 0.0 < drop <= 1.0:
        raise ValueError(f"lr_drop must lie in (0, 1], got {lr_drop!r}")
    _, r_starts = _dsd_bounds(dense_steps, sparse_steps, redense_steps, cycles)

    def schedule(count: Any) -> jax.Array:
        c = jnp.asarray(count, jnp.int32)
        n = jnp.sum((c >= jnp.asarray(r_starts)).astype(jnp.int32))
        return jnp.asarray(drop, jnp.float32) ** n.astype(jnp.float32)

    return schedule
