"""The thesis' MNIST networks as Flax NNX modules.

* :class:`LeNet300100`: 784-300-100-10 with ReLU, 266,610 parameters.
* :class:`LeNet5`: Caffe's LeNet-5 (conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
  fc 800->500 + ReLU, fc 500->10), 431,080 parameters. As in Caffe's ``lenet_train_test``, the
  convolutions have no non-linearity of their own.

Both take images (batch, 28, 28) or (batch, 28, 28, 1), float32, and return logits (batch, 10).
Flax kernels are laid out (in, out) for dense layers and (kh, kw, in, out) for convolutions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["LeNet300100", "LeNet5", "MODELS", "make_model", "param_count"]


class LeNet300100(nnx.Module):
    """LeNet-300-100: fc1 784->300, ReLU, fc2 300->100, ReLU, fc3 100->10.

    Example:
      >>> model = LeNet300100(rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 28, 28))).shape
      (2, 10)
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(784, 300, rngs=rngs)
        self.fc2 = nnx.Linear(300, 100, rngs=rngs)
        self.fc3 = nnx.Linear(100, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nnx.Module):
    """Caffe LeNet-5: conv1 20@5x5, pool, conv2 50@5x5, pool, fc1 800->500, ReLU, fc2 500->10.

    Example:
      >>> LeNet5(rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(20, 50, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.fc1 = nnx.Linear(800, 500, rngs=rngs)
        self.fc2 = nnx.Linear(500, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 3:
            x = x[..., None]
        x = nnx.max_pool(self.conv1(x), window_shape=(2, 2), strides=(2, 2))
        x = nnx.max_pool(self.conv2(x), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(self.fc1(x))
        return self.fc2(x)


#: Model names accepted by :func:`make_model` and the command line.
MODELS = {"lenet-300-100": LeNet300100, "lenet-5": LeNet5}


def make_model(name: str, seed: int = 0) -> nnx.Module:
    """Build a model by name (``"lenet-300-100"`` or ``"lenet-5"``) with seeded initialization."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](rngs=nnx.Rngs(seed))


def param_count(params) -> int:
    """Total number of scalars in a params pytree (or a module's ``nnx.Param`` state)."""
    if isinstance(params, nnx.Module):
        params = nnx.state(params, nnx.Param)
    return int(sum(jnp.size(leaf) for leaf in jax.tree.leaves(params)))
