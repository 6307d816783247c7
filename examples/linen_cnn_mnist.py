"""Deep Compression of a Flax Linen CNN, given to the driver as ``(module, variables)``.

A LeNet-5-shaped Linen network (conv 20@5x5, max-pool, conv 50@5x5, max-pool, dense 800->500,
dense 500->10, ReLU after every layer but the last) initialised with ``module.init``; the pair
goes to :func:`jaxcomp.compress` as it is, and the ``.dcz`` holds the Linen variables dict
(``params/Conv_0/kernel``, ...), read back with :func:`jaxcomp.load_model`.

Run (about 4 minutes of CPU time on 2 cores; ``--tiny``: seconds)::

    python examples/linen_cnn_mnist.py --out runs/linen-cnn

The ``jaxcomp compress --model PATH.py:FACTORY`` command line takes NNX factories only (it
refuses this factory's pair: "returned a tuple, not an nnx.Module"); a Linen model goes through
the Python API, as here.

Results: ``docs/guides/any-model-results.md``.
"""

# no ``from __future__ import annotations``: Linen modules are dataclasses, whose string
# annotations need the module in sys.modules, which a file imported by path may not be

import _any_model
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

import jaxcomp

#: ``--tiny``: the factory's keyword arguments and the number of test images.
TINY = {"features": (4, 8), "hidden": 32}
TINY_TEST = 500


class CNN(nn.Module):
    """LeNet-5-shaped Linen CNN: logits (B, 10) from (B, 28, 28) or (B, 28, 28, 1).

    Example:
      >>> net = CNN(features=(2, 3), hidden=8)
      >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 28, 28)))
      >>> net.apply(variables, jnp.zeros((2, 28, 28))).shape
      (2, 10)
    """

    features: tuple[int, int] = (20, 50)
    hidden: int = 500

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 3:
            x = x[..., None]
        for f in self.features:
            x = nn.relu(nn.Conv(f, (5, 5), padding="VALID")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(10)(x)


def model(*, rngs: nnx.Rngs | None = None, seed: int = 0, **kwargs) -> tuple[nn.Module, dict]:
    """``(module, variables)``: the Linen form the driver takes.

    ``rngs`` (what ``jaxcomp compress --model ...:model`` passes) seeds ``module.init`` with its
    ``params`` stream; without it ``seed`` does.
    """
    net = CNN(**kwargs)
    key = rngs.params() if rngs is not None else jax.random.key(seed)
    return net, net.init(key, jnp.zeros((1, 28, 28)))


#: The loader ``jaxcomp compress --data examples/linen_cnn_mnist.py:data`` calls.
data = _any_model.mnist_data


def config(*, tiny: bool = False, seed: int = 0) -> jaxcomp.CompressConfig:
    """The settings of the documented run; ``tiny``: one epoch per stage on 512 images.

    Leaf paths are those of the Linen params (``Conv_0/kernel``, ...); the thesis' LeNet-5
    sparsities and bits (Deep Compression Table 3)."""
    common = dict(
        sparsity={"Conv_0/kernel": 0.34, "Conv_1/kernel": 0.88, "Dense_0/kernel": 0.92},
        default_sparsity=0.81,
        bits={"Conv_0/kernel": 8, "Conv_1/kernel": 8},
        default_bits=5,
        index_bits={"Dense_0/kernel": 8, "Conv_1/kernel": 6},
        default_index_bits=5,
        seed=seed,
        dense_lr=0.05,
        dense_weight_decay=5e-4,
        prune_lr=0.02,
        prune_weight_decay=5e-4,
        kmeans_iters=0,
        finetune_lr=3e-4,
    )
    if tiny:
        return jaxcomp.CompressConfig(**common, **_any_model.TINY_SCHEDULE)
    return jaxcomp.CompressConfig(
        **common,
        dense_epochs=2,
        prune_epochs=4,
        epochs_per_step=1,
        prune_fractions=(0.5, 0.75, 0.9, 1.0),
        finetune_epochs=1,
    )


def main(argv: list[str] | None = None) -> int:
    """``python examples/linen_cnn_mnist.py [--out DIR] [--tiny] [--data-dir DIR]``."""
    return _any_model.run_example(
        argv,
        description=__doc__.split("\n\n")[0],
        out="runs/linen-cnn",
        build=lambda args: model(seed=args.seed, **(TINY if args.tiny else {})),
        config=config,
        tiny_test=TINY_TEST,
        label=lambda args: "Linen CNN",
    )


if __name__ == "__main__":
    raise SystemExit(main())
