"""Sparsity schedules: values, jit/vmap, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp import schedules


def _check_batched(fn, counts):
    counts = jnp.asarray(counts, jnp.int32)
    batched = jax.jit(jax.vmap(fn))(counts)
    for i, c in enumerate(counts):  # eager == jit(vmap) up to float32 rounding of the ramp
        np.testing.assert_allclose(float(batched[i]), float(fn(c)), rtol=1e-6)
    return np.asarray(batched)


def test_constant():
    v = _check_batched(schedules.constant(0.75), [0, 1, 10**6])
    assert (v == np.float32(0.75)).all()


def test_iterative_steps():
    s = schedules.iterative([10, 20, 30], [0.5, 0.8, 0.9], initial=0.1)
    got = _check_batched(s, [0, 9, 10, 19, 20, 29, 30, 10**5])
    np.testing.assert_array_equal(got, np.float32([0.1, 0.1, 0.5, 0.5, 0.8, 0.8, 0.9, 0.9]))


def test_polynomial_matches_zhu_gupta_formula():
    s = schedules.polynomial(0.9, begin_step=100, end_step=1100, initial=0.1, power=3)
    counts = np.arange(0, 1300, 37)
    got = _check_batched(s, counts)
    t = np.clip(counts, 100, 1100)
    want = 0.9 + (0.1 - 0.9) * (1 - (t - 100) / 1000) ** 3
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert float(s(1100)) == np.float32(0.9)
    # monotone non-decreasing when final > initial
    assert (np.diff(got) >= 0).all()


def test_polynomial_frequency_is_a_staircase_reaching_final():
    s = schedules.polynomial(0.8, begin_step=0, end_step=100, frequency=30)
    _check_batched(s, [0, 29, 30, 99, 100])
    got = np.asarray(jax.jit(jax.vmap(s))(jnp.arange(0, 120)))
    assert len(np.unique(got[:100])) == 4  # steps 0, 30, 60, 90
    assert got[100] == np.float32(0.8) and got[119] == np.float32(0.8)
    assert got[29] == got[0] and got[30] != got[29]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: schedules.iterative([0, 5], [0.5]), "equal length"),
        (lambda: schedules.iterative([5, 5], [0.5, 0.6]), "increasing"),
        (lambda: schedules.polynomial(1.5, begin_step=0, end_step=10), "final"),
        (lambda: schedules.polynomial(0.5, begin_step=0, end_step=10, initial=-1), "initial"),
        (lambda: schedules.polynomial(0.5, begin_step=10, end_step=10), "begin_step"),
        (lambda: schedules.polynomial(0.5, begin_step=0, end_step=10, frequency=0), "frequency"),
        (lambda: schedules.polynomial(0.5, begin_step=0, end_step=10, power=0), "power"),
    ],
)
def test_schedule_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
