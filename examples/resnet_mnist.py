"""Deep Compression of a small ResNet (BatchNorm, skip connections) on MNIST, in Flax NNX.

Stem conv 3x3 (16) + two residual blocks (32 channels at 14x14, 64 at 7x7; each two 3x3 convs,
BatchNorm after every conv, a 1x1 projection on the skip path) + global average pooling + a
linear head. Every kernel is pruned and weight-shared by :func:`jaxcomp.compress`; BatchNorm's
scale, bias and running statistics stay float32 and travel in the ``.dcz`` with the weights
(trained in ``model.train()`` mode, evaluated and stored from ``model.eval()``).

Run (about 6 minutes of CPU time on 2 cores; ``--tiny``: seconds)::

    python examples/resnet_mnist.py --out runs/resnet

or through the command line by import string::

    jaxcomp compress --model examples/resnet_mnist.py:model --data examples/resnet_mnist.py:data \
        --out runs/resnet-cli

Results: ``docs/guides/any-model-results.md``.
"""

from __future__ import annotations

import _any_model
import jax
from flax import nnx

import jaxcomp

#: Channels of the stem and of the two residual blocks.
WIDTHS = (16, 32, 64)
#: ``--tiny``: the factory's keyword arguments and the number of test images.
TINY = {"widths": (4, 8, 8)}
TINY_TEST = 500


class Block(nnx.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x))``; the skip is a strided 1x1 conv +
    BatchNorm when the shape changes, else the identity."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        conv = dict(padding="SAME", use_bias=False, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, **conv)
        self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), **conv)
        self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
        if stride != 1 or cin != cout:
            self.proj = nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs)
            self.bnp = nnx.BatchNorm(cout, rngs=rngs)
        else:
            self.proj = self.bnp = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.proj is None else self.bnp(self.proj(x))
        return jax.nn.relu(y + skip)


class ResNet(nnx.Module):
    """A ResNet-style CNN for 28x28 images: logits (B, 10) from (B, 28, 28) or (B, 28, 28, 1).

    Example:
      >>> import jax.numpy as jnp
      >>> net = ResNet((4, 8, 8), rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((2, 28, 28))).shape
      (2, 10)
    """

    def __init__(self, widths: tuple[int, int, int] = WIDTHS, *, rngs: nnx.Rngs):
        w0, w1, w2 = widths
        self.stem = nnx.Conv(1, w0, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(w0, rngs=rngs)
        self.block1 = Block(w0, w1, 2, rngs=rngs)
        self.block2 = Block(w1, w2, 2, rngs=rngs)
        self.head = nnx.Linear(w2, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 3:
            x = x[..., None]
        x = jax.nn.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.head(x.mean(axis=(1, 2)))


def model(*, rngs: nnx.Rngs, widths: tuple[int, int, int] = WIDTHS) -> ResNet:
    """The factory ``jaxcomp compress --model examples/resnet_mnist.py:model`` calls."""
    return ResNet(widths, rngs=rngs)


#: The loader ``jaxcomp compress --data examples/resnet_mnist.py:data`` calls.
data = _any_model.mnist_data


def config(*, tiny: bool = False, seed: int = 0) -> jaxcomp.CompressConfig:
    """The settings of the documented run; ``tiny``: one epoch per stage on 512 images."""
    common = dict(
        # per-leaf targets from the dense baseline's sensitivity (any_model_sensitivity.py):
        # the stem (144 weights) and the 14x14 block lose most when pruned, the 7x7 block's
        # convolutions (76% of the weights) least
        sparsity={
            "stem/kernel": 0.0,
            "block1/conv1/kernel": 0.65,
            "block1/conv2/kernel": 0.65,
            "block2/conv2/kernel": 0.85,
            "*proj/kernel": 0.6,
            "head/kernel": 0.6,
        },
        default_sparsity=0.8,
        default_bits=5,
        seed=seed,
        dense_lr=0.05,
        dense_weight_decay=5e-4,
        prune_lr=0.02,
        prune_weight_decay=5e-4,
        finetune_lr=3e-4,
    )
    if tiny:
        return jaxcomp.CompressConfig(**common, **_any_model.TINY_SCHEDULE, kmeans_iters=5)
    return jaxcomp.CompressConfig(
        **common,
        dense_epochs=3,
        prune_epochs=4,
        epochs_per_step=1,
        prune_fractions=(0.5, 0.75, 0.9, 1.0),
        finetune_epochs=1,
    )


def main(argv: list[str] | None = None) -> int:
    """``python examples/resnet_mnist.py [--out DIR] [--tiny] [--data-dir DIR]``."""
    return _any_model.run_example(
        argv,
        description=__doc__.split("\n\n")[0],
        out="runs/resnet",
        build=lambda args: model(rngs=nnx.Rngs(args.seed), **(TINY if args.tiny else {})),
        config=config,
        tiny_test=TINY_TEST,
        label=lambda args: "ResNet",
    )


if __name__ == "__main__":
    raise SystemExit(main())
