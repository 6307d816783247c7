"""Bad calls to the public functions of the driver, the CLIs' helpers, the EIE SpMV models and
the energy model: each raises an error naming the argument, or, where the values are traced
under ``jit`` / ``vmap`` and cannot be checked before the call, returns NaN (the documented
behaviour) instead of a silently wrong number.

Every case is one parametrized test, so ``pytest -q tests/test_bad_calls.py`` counts them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eie_model import Counters, EIEParams, EIEStatic
from eie_model import cli as eie_cli
from eie_model.energy import energy_report
from eie_model.functional import spmv_fixed, spmv_float
from jaxcomp import cli, zoo
from jaxcomp.compress import compress as compress_model

CODES = np.array([[1, 2, 0], [0, 3, 1]], np.uint8)  # (m=2, n=3)
CB = np.array([0.0, 0.5, -0.25, 1.0], np.float32)  # K = 4
ACT = np.array([1.0, 2.0, 0.5], np.float32)
COUNTERS = dict(cycles=100, useful_macs=300, fillers=4, pointer_reads=64, spm_line_reads=50)


def _with(**kw):
    """A 4-PE run's ``Counters`` with some counters replaced."""
    c = {**COUNTERS, **kw}
    return Counters(EIEStatic(max_pes=4), EIEParams(n_pes=4), **c, stall_cycles=0,
                    starvation_cycles=0, busy=np.full(4, 75))  # fmt: skip


def _nan_act():
    return np.array([1.0, np.nan, 0.5], np.float32)


#: (id, call, exception, message fragment)
RAISES = [
    # spmv_float ---------------------------------------------------------------------------
    ("float-code-beyond-codebook", lambda: spmv_float(CODES * 3, CB, ACT), ValueError,
     r"codes must lie in 0\.\.3 \(the codebook has 4 entries\), got values in 0\.\.9"),
    ("float-negative-code", lambda: spmv_float(CODES.astype(np.int8) - 1, CB, ACT), ValueError,
     "codes must lie in 0..3"),
    ("float-bias-code-beyond", lambda: spmv_float(CODES, CB, ACT, np.array([0, 4])), ValueError,
     "bias_codes must lie in 0..3"),
    ("float-float-bias-codes", lambda: spmv_float(CODES, CB, ACT, np.array([0.0, 1.0])),
     TypeError, "bias_codes must be integer"),
    ("float-nan-act", lambda: spmv_float(CODES, CB, _nan_act()), ValueError, "act holds NaN"),
    ("float-inf-codebook", lambda: spmv_float(CODES, np.array([0, np.inf, 1, 2]), ACT),
     ValueError, "codebook holds NaN or infinite"),
    ("float-float-codes", lambda: spmv_float(CODES.astype(np.float32), CB, ACT), TypeError,
     "codes must be integer"),
    ("float-act-shape", lambda: spmv_float(CODES, CB, ACT[:2]), ValueError,
     r"act must have shape \(3,\)"),
    ("float-3d-codes", lambda: spmv_float(CODES[None], CB, ACT), ValueError, "codes must be 2-D"),
    ("float-2d-codebook", lambda: spmv_float(CODES, CB[None], ACT), ValueError,
     "codebook must be 1-D"),
    # spmv_fixed ---------------------------------------------------------------------------
    ("fixed-nan-act", lambda: spmv_fixed(CODES, CB, _nan_act()), ValueError,
     "act holds NaN or infinite values"),
    ("fixed-inf-act", lambda: spmv_fixed(CODES, CB, np.array([1, -np.inf, 0], np.float32)),
     ValueError, "act holds NaN"),
    ("fixed-code-beyond-codebook", lambda: spmv_fixed(CODES + 1, CB, ACT), ValueError,
     "codes must lie in 0..3"),
    ("fixed-act-bits-12", lambda: spmv_fixed(CODES, CB, ACT, act_bits=12), ValueError,
     "act_bits must be one of"),
    ("fixed-weight-bits-float", lambda: spmv_fixed(CODES, CB, ACT, weight_bits=16.0), ValueError,
     "weight_bits must be one of"),
    ("fixed-bias-shape", lambda: spmv_fixed(CODES, CB, ACT, np.array([1, 1, 1])), ValueError,
     r"bias_codes must have shape \(2,\)"),
    # energy_report ------------------------------------------------------------------------
    ("energy-negative-cycles", lambda: energy_report(_with(cycles=-100)),
     ValueError, r"counters\.cycles must be finite and >= 0"),
    ("energy-negative-batched", lambda: energy_report(
        _with(fillers=np.array([0, -1]))), ValueError, r"counters\.fillers"),
    ("energy-nan-macs", lambda: energy_report(_with(useful_macs=np.nan)),
     ValueError, "useful_macs"),
    ("energy-inf-pointer", lambda: energy_report(_with(pointer_reads=np.inf)),
     ValueError, "pointer_reads"),
    ("energy-string-counter", lambda: energy_report(_with(spm_line_reads="50")),
     TypeError, "must be real numbers"),
    ("energy-counters-dict", lambda: energy_report(COUNTERS), TypeError,
     "counters must be an eie_model.Counters"),
    # compress driver and presets ----------------------------------------------------------
    ("config-lb-pes-1e6", lambda: zoo.default_config("lenet-300-100",
                                                          load_balance_pes=10**6),
     ValueError, "more PEs than"),
    ("config-seed-2**64", lambda: zoo.default_config("lenet-300-100", seed=2**64),
     ValueError, "seed must be an int in 0..4294967295"),
    ("config-lr-inf", lambda: zoo.default_config("lenet-300-100", finetune_lr=np.inf),
     ValueError, "finetune_lr must be a finite number > 0"),
    ("config-unknown-model", lambda: zoo.default_config("vgg"), ValueError,
     "model must be one of"),
    ("config-unknown-field", lambda: zoo.default_config("lenet-5", bogus=1), TypeError,
     "bogus"),
    ("compress-out-empty", lambda: compress_model(zoo.make_model("lenet-5"), None,
                                                  zoo.preset("lenet-5"), ""),
     ValueError, "out must name a folder"),
    ("load-dcz-folder", lambda: zoo.load_dcz_model("."), IsADirectoryError, "."),
    ("evaluate-file-missing", lambda: zoo.evaluate_file("no/such.dcz"), FileNotFoundError,
     "no/such.dcz"),
    # command-line helpers -----------------------------------------------------------------
    ("parse-layer-values-range", lambda: cli.parse_layer_values(
        "fc1=40", int, layers=["fc1/kernel"], name="--bits", check=cli._int_range(1, 16)),
     ValueError, "--bits: fc1/kernel must be an int in 1..16, got 40"),
    ("parse-layer-values-float-for-int", lambda: cli.parse_layer_values(
        "4.5", int, layers=["fc1/kernel"], name="--bits"), ValueError, "--bits: cannot parse"),
    ("eie-parse-list-huge-range", lambda: eie_cli.parse_list("1:1e9", name="pes"), ValueError,
     "--pes: '1:1e9' gives 1,000,000,000 values"),
    ("eie-parse-list-nan", lambda: eie_cli.parse_list("4,nan", name="fifo"), ValueError,
     "--fifo: 'nan' is not a finite number"),
    ("eie-parse-list-names", lambda: eie_cli.parse_list_names("alex7,vgg99"), ValueError,
     "--layers: unknown"),
]  # fmt: skip


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in RAISES], ids=[c[0] for c in RAISES])
def test_bad_call_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --- traced inputs: the check cannot run before the call, so the result is NaN ---------------


def test_jit_spmv_float_code_beyond_codebook_is_nan_not_clamped():
    y = jax.jit(spmv_float)(CODES * 3, CB, ACT)
    assert np.isnan(np.asarray(y)).all()
    # an in-range call under jit is unchanged (the oracle: the same call outside jit)
    np.testing.assert_array_equal(jax.jit(spmv_float)(CODES, CB, ACT), spmv_float(CODES, CB, ACT))


def test_jit_spmv_fixed_nan_activation_is_nan_not_zero():
    f = jax.jit(partial(spmv_fixed, act_bits=16, weight_bits=16, act_frac=8, weight_frac=8))
    assert np.isnan(np.asarray(f(CODES, CB, _nan_act()).y)).all()
    ok = f(CODES, CB, ACT)
    assert np.isfinite(np.asarray(ok.y)).all()


def test_vmap_spmv_marks_only_the_bad_rows():
    acts = jnp.stack([ACT, _nan_act(), ACT])
    ys = jax.jit(jax.vmap(spmv_float, in_axes=(None, None, 0)))(CODES, CB, acts)
    bad = np.isnan(np.asarray(ys)).all(axis=1)
    assert bad.tolist() == [False, True, False]
    np.testing.assert_array_equal(ys[0], spmv_float(CODES, CB, ACT))


def test_jit_energy_report_negative_cycles_is_nan_never_negative():
    r = jax.jit(energy_report)(_with(cycles=-100))
    assert np.isnan(float(r.energy_j)) and np.isnan(float(r.power_w))
    assert float(r.area_mm2) > 0  # the area does not depend on the counters
    good = jax.jit(energy_report)(_with())
    assert float(good.energy_j) == pytest.approx(float(energy_report(_with()).energy_j))
