"""jaxcomp.shrink: pruned channels removed, the same outputs as the masked model."""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcomp


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, rngs=rngs)
        self.conv2 = nnx.Conv(8, 12, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(12, rngs=rngs)
        self.linear = nnx.Linear(12 * 4 * 4, 5, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
        x = nnx.relu(self.bn2(self.conv2(x)))
        return self.linear(x.reshape(x.shape[0], -1))


DEPENDENTS = {
    "conv1/kernel": ["conv1/bias", "bn1/scale", "bn1/bias"],
    "conv2/kernel": ["conv2/bias", "bn2/scale", "bn2/bias"],
}
READERS = {"conv1": ["bn1", "conv2"], "conv2": ["bn2", "linear"]}


def _pruned_model(dependents=DEPENDENTS):
    model = CNN(nnx.Rngs(0))
    filters = functools.partial(jaxcomp.structured_mask, axis=-1)
    tx = jaxcomp.prune(
        optax.adam(1e-2),
        0.5,
        filters,
        include=["conv1/kernel", "conv2/kernel"],
        dependents=dependents,
    )
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (16, 8, 8, 1))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 5)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        optimizer.update(model, nnx.grad(loss_fn)(model))

    model.train()
    for _ in range(3):
        step(model, optimizer)
    model.eval()
    return model, x


def test_shrunk_model_has_the_masked_models_outputs_and_fewer_channels():
    model, x = _pruned_model()
    small = jaxcomp.shrink(model, READERS)
    assert small.conv1.kernel.shape == (3, 3, 1, 4) and small.bn1.mean.shape == (4,)
    assert small.conv2.kernel.shape == (3, 3, 4, 6) and small.linear.kernel.shape == (96, 5)
    assert model.conv1.kernel.shape == (3, 3, 1, 8)  # the original is untouched
    want = model(x)
    np.testing.assert_allclose(small(x), want, rtol=1e-5, atol=1e-5)
    got = nnx.jit(lambda m, x: m(x))(small, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shrink_refuses_channels_that_still_output_a_constant():
    model, _ = _pruned_model(dependents=None)  # biases of pruned filters kept training
    with pytest.raises(ValueError, match="pruned but conv1/bias is not 0.*dependents="):
        jaxcomp.shrink(model, READERS)
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        jaxcomp.shrink(_pruned_model()[0], {"nope": []})
    with pytest.raises(TypeError, match="not an nnx.Conv/nnx.Linear"):
        jaxcomp.shrink(_pruned_model()[0], {"bn1": []})
