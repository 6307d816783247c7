"""The four any-model examples run end to end at a tiny size on real MNIST, and their ``.dcz``
holds the model: read back into a fresh model of the same factory, it classifies the test images
exactly as the driver's report says, and every compressed leaf is as sparse and as shared as
reported."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxcomp
from jaxcomp.tree import leaves_with_paths

EXAMPLES = ("lstm_mnist", "resnet_mnist", "vit_mnist", "linen_cnn_mnist")


def _error(model, x: np.ndarray, y: np.ndarray) -> float:
    """Test error of an NNX module (eval mode) or a Linen ``(module, variables)`` pair."""
    if isinstance(model, nnx.Module):
        model.eval()
        logits = model(jnp.asarray(x))
    else:
        module, variables = model
        logits = module.apply(variables, jnp.asarray(x))
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) != y))


@pytest.mark.parametrize("name", EXAMPLES)
def test_tiny_run_reloads_from_the_file(name, mnist_dir, tmp_path, load_example, capsys):
    ex = load_example(name)
    out = tmp_path / name
    assert ex.main(["--tiny", "--out", str(out), "--data-dir", str(mnist_dir.parent)]) == 0
    assert "final" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    dcz = out / "model.dcz"
    assert rep["file_bytes"] == dcz.stat().st_size
    assert rep["compressed_bytes"] < rep["original_bytes"]

    # a fresh model from the example's factory, other initial weights, filled from the file
    if name == "linen_cnn_mnist":
        fresh = ex.model(seed=123, **ex.TINY)
    else:
        fresh = ex.model(rngs=nnx.Rngs(123), **ex.TINY)
    loaded = jaxcomp.load_model(dcz, fresh)
    _, _, x_te, y_te = ex.data(mnist_dir.parent)
    x_te, y_te = x_te[: ex.TINY_TEST], y_te[: ex.TINY_TEST]
    assert _error(loaded, x_te, y_te) == pytest.approx(rep["test_error"]["final"], abs=0)

    # every compressed leaf: the reported number of kept weights, at most 2**bits - 1 values
    state = nnx.state(loaded, nnx.Param) if isinstance(loaded, nnx.Module) else loaded[1]
    leaves = dict(
        leaves_with_paths(nnx.to_pure_dict(state) if name != "linen_cnn_mnist" else state)
    )
    assert rep["layers"], "no leaf was compressed"
    for row in rep["layers"]:
        path = ("params/" if name == "linen_cnn_mnist" else "") + row["layer"]
        w = np.asarray(leaves[path])
        assert w.size == row["weights"]
        assert np.count_nonzero(w) <= row["kept"]
        assert len(np.unique(w[w != 0])) <= 2 ** row["bits"] - 1

    if name == "lstm_mnist":  # the driver's file is what eie_model's LSTM path reads
        _lstm_file_runs_on_eie(dcz, loaded, x_te[0])


def _lstm_file_runs_on_eie(dcz, loaded, image) -> None:
    """``eie_model.lstm`` reads the ``.dcz`` that ``jaxcomp.compress`` wrote: its JAX reference
    gives the reloaded model's logits, and EIE's float SpMV on each step's ``[x_t; h_{t-1}]``
    gives the cell's gate pre-activations."""
    from eie_model.lstm import load_dcz_lstm, lstm_on_eie

    gates = load_dcz_lstm(dcz)
    run = lstm_on_eie(gates, np.asarray(image, np.float32).reshape(28, 28), recurrent=False)
    want = np.asarray(loaded(jnp.asarray(image)[None]))[0]
    np.testing.assert_allclose(run.reference.logits, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.eie_float, run.jax_pre, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(run.eie_fixed - run.jax_pre) <= run.bound)


def test_lstm_gate_matrices_are_the_promised_leaves(load_example):
    """examples/lstm_eie.py reads these leaf paths and shapes from runs/lstm/model.dcz."""
    ex = load_example("lstm_mnist")
    net = ex.model(rngs=nnx.Rngs(0), hidden=24)
    shapes = {p: x.shape for p, x in leaves_with_paths(nnx.to_pure_dict(nnx.state(net)))}
    for g in ex.INPUT_GATES:
        assert shapes[f"rnn/cell/{g}/kernel"] == (28, 24)
    for g in ex.RECURRENT_GATES:
        assert shapes[f"rnn/cell/{g}/kernel"] == (24, 24)
        assert shapes[f"rnn/cell/{g}/bias"] == (24,)
    layers = ex.config().layers(nnx.to_pure_dict(nnx.state(net, nnx.Param)))
    gates = {f"rnn/cell/{g}/kernel" for g in (*ex.INPUT_GATES, *ex.RECURRENT_GATES)}
    assert gates <= set(layers)
    assert all(layers[g]["bits"] == 4 for g in gates)  # EIE's 4-bit codes
    logits = nnx.jit(lambda m, x: m(x))(net, jnp.zeros((3, 28, 28, 1)))
    assert logits.shape == (3, 10)
