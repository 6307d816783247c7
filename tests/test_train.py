"""Training loop: real MNIST learns, runs are deterministic, baselines save and load."""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxcomp.zoo.data import MNIST, load_mnist
from jaxcomp.zoo.models import make_model
from jaxcomp.zoo.train import evaluate, fit, functional, load_baseline, train_baseline


def _subset(m: MNIST, n_train: int, n_test: int) -> MNIST:
    return MNIST(
        m.x_train[:n_train], m.y_train[:n_train], m.x_test[:n_test], m.y_test[:n_test], m.source
    )


def test_lenet300_learns_real_mnist(mnist_dir):
    data = _subset(load_mnist(mnist_dir.parent), 20000, 2000)
    apply, params = functional(make_model("lenet-300-100", seed=0))
    assert evaluate(apply, params, data.x_test, data.y_test) > 0.7  # untrained: about chance
    params, _, hist = fit(apply, params, optax.adam(1e-3), data, epochs=1, progress=False)
    err = evaluate(apply, params, data.x_test, data.y_test)
    assert err < 0.15, err  # chance is 0.9; a broken loop stays near it
    assert hist["test_error"] == [err]
    assert hist["loss"][0] < 0.6


def test_training_is_deterministic_for_a_seed(mnist_dir):
    data = _subset(load_mnist(mnist_dir.parent), 1024, 100)
    runs = []
    for _ in range(2):
        apply, params = functional(make_model("lenet-300-100", seed=1))
        params, _, _ = fit(
            apply,
            params,
            optax.sgd(0.05, momentum=0.9),
            data,
            epochs=2,
            batch_size=64,
            seed=7,
            progress=False,
            evaluate_each_epoch=False,
        )
        runs.append(params)
    jax.tree.map(np.testing.assert_array_equal, runs[0], runs[1])


def test_baseline_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 256).astype(np.int32)
    data = MNIST(x, y, x[:64], y[:64], "synthetic")
    apply, params, err = train_baseline(
        "lenet-300-100", data, epochs=1, out=tmp_path, progress=False
    )
    _, loaded = load_baseline("lenet-300-100", tmp_path)
    jax.tree.map(np.testing.assert_array_equal, params, loaded)
    assert evaluate(apply, loaded, data.x_test, data.y_test) == err
    assert (tmp_path / "baseline.json").exists()


def test_apply_refuses_a_params_tree_with_missing_or_misshapen_leaves():
    """A tree without a layer must not silently run with the model's initial weights."""
    import jax
    import numpy as np
    import pytest

    from jaxcomp.zoo import functional, make_model

    apply, params = functional(make_model("lenet-300-100", seed=0))
    x = np.zeros((2, 28, 28), np.float32)
    partial = {k: v for k, v in params.items() if k != "fc2"}
    with pytest.raises(ValueError, match=r"missing \[.*fc2.*bias"):
        apply(partial, x)
    with pytest.raises(ValueError, match="missing"):
        jax.jit(apply)(partial, x)
    bad = {**params, "fc3": {**params["fc3"], "bias": np.zeros(3, np.float32)}}
    with pytest.raises(ValueError, match="wrong shape"):
        apply(bad, x)
    assert apply(params, x).shape == (2, 10)
