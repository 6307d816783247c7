"""Per-layer sensitivity sweep and its figure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.masks import magnitude_mask
from jaxcomp.sensitivity import SensitivityTable, plot_sensitivity, sensitivity_sweep


def _problem():
    rng = np.random.default_rng(0)
    params = {
        "fc1": {
            "kernel": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
            "bias": jnp.zeros(16),
        },
        "fc2": {"kernel": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32), "bias": jnp.zeros(3)},
    }
    x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)

    def logits(p, x):
        h = jax.nn.relu(x @ p["fc1"]["kernel"] + p["fc1"]["bias"][None, :])
        return h @ p["fc2"]["kernel"] + p["fc2"]["bias"][None, :]

    y = jnp.argmax(logits(params, x), -1)  # the dense model is 100% accurate by construction

    def accuracy(p):
        return jnp.mean(jnp.argmax(logits(p, x), -1) == y)

    return params, accuracy


SPARS = [0.0, 0.25, 0.5, 0.75, 0.95]


def _oracle(params, eval_fn):
    rows = []
    for name in ("fc1", "fc2"):
        w = params[name]["kernel"]
        row = []
        for s in SPARS:
            q = {k: dict(v) for k, v in params.items()}
            q[name]["kernel"] = jnp.where(magnitude_mask(w, s), w, 0.0)
            row.append(float(eval_fn(q)))
        rows.append(row)
    return np.array(rows)


def test_vmapped_sweep_matches_one_by_one_oracle():
    params, acc = _problem()
    t = sensitivity_sweep(params, acc, SPARS)
    assert t.vectorized
    assert t.layers == ("fc1/kernel", "fc2/kernel")
    assert t.values.shape == (2, len(SPARS))
    np.testing.assert_allclose(t.values, _oracle(params, acc), rtol=0, atol=1e-6)
    assert t.baseline == 1.0 and (t.values[:, 0] == 1.0).all()
    chunked = sensitivity_sweep(params, acc, SPARS, batch_size=2)
    np.testing.assert_array_equal(chunked.values, t.values)


def test_loop_fallback_for_host_side_eval_fn():
    params, acc = _problem()

    def host_acc(p):  # np.asarray on a tracer fails under vmap: falls back to the loop
        return float(np.asarray(acc(p)))

    t = sensitivity_sweep(params, host_acc, SPARS)
    assert not t.vectorized
    np.testing.assert_allclose(t.values, _oracle(params, acc), atol=1e-6)
    with pytest.raises(Exception):  # noqa: B017 - vectorize=True propagates the tracing error
        sensitivity_sweep(params, host_acc, SPARS, vectorize=True)


def test_table_markdown_and_figure(tmp_path):
    params, acc = _problem()
    t = sensitivity_sweep(params, acc, [0.0, 0.5], include="fc2/*")
    assert t.layers == ("fc2/kernel",)
    md = t.to_markdown()
    assert "| fc2/kernel |" in md and "50%" in md
    out = tmp_path / "figs" / "sens.png"
    fig = plot_sensitivity(t, out, percent=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].lines) == 2  # one curve + the dense baseline
    assert not list(out.parent.glob(".*tmp"))  # atomic write left no temp file


def test_sweep_errors():
    params, acc = _problem()
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity_sweep(params, acc, [0.5, 1.2])
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity_sweep(params, acc, [])
    with pytest.raises(ValueError, match="no layer"):
        sensitivity_sweep(params, acc, [0.5], include="conv*")
    with pytest.raises(ValueError, match="batch_size"):
        sensitivity_sweep(params, acc, [0.5], batch_size=0)
    assert isinstance(
        SensitivityTable(("a",), np.zeros(1), np.zeros((1, 1)), 0.0, True), SensitivityTable
    )
