"""Deep Compression of a small ViT-style Transformer encoder on MNIST, in Flax NNX.

The image is cut into 16 patches of 7x7 pixels; a linear patch embedding plus learned position
embeddings feed ``DEPTH`` pre-LayerNorm encoder blocks (``nnx.MultiHeadAttention``: q/k/v/out
projections; a GELU MLP), mean pooling and a linear head. :func:`jaxcomp.compress` prunes and
weight-shares the patch and position embeddings, q/k/v/out, the MLP and the head; biases
(``nnx.MultiHeadAttention``'s q/k/v biases are (heads, head_dim) arrays, which the default
``ndim >= 2`` selection would take: ``exclude=["*/bias"]``) and LayerNorm stay float32.

Run (about 3 minutes of CPU time on 2 cores; ``--tiny``: seconds)::

    python examples/vit_mnist.py --out runs/vit

or through the command line by import string::

    jaxcomp compress --model examples/vit_mnist.py:model --data examples/vit_mnist.py:data \
        --out runs/vit-cli

Results: ``docs/guides/any-model-results.md``.
"""

from __future__ import annotations

import _any_model
import jax
from flax import nnx

import jaxcomp

PATCH = 7
DIM = 64
DEPTH = 2
HEADS = 4
MLP = 128
#: ``--tiny``: the factory's keyword arguments and the number of test images.
TINY = {"dim": 16, "depth": 1, "heads": 2, "mlp": 32}
TINY_TEST = 500


class EncoderBlock(nnx.Module):
    """Pre-LayerNorm Transformer encoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, mlp: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=heads, in_features=dim, decode=False, rngs=rngs
        )
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp, rngs=rngs)
        self.fc2 = nnx.Linear(mlp, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))


class ViT(nnx.Module):
    """ViT for 28x28 images: logits (B, 10) from (B, 28, 28) or (B, 28, 28, 1).

    Example:
      >>> import jax.numpy as jnp
      >>> net = ViT(dim=8, depth=1, heads=2, mlp=16, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((2, 28, 28))).shape, net.pos.shape
      ((2, 10), (16, 8))
    """

    def __init__(
        self,
        patch: int = PATCH,
        dim: int = DIM,
        depth: int = DEPTH,
        heads: int = HEADS,
        mlp: int = MLP,
        *,
        rngs: nnx.Rngs,
    ):
        if 28 % patch:
            raise ValueError(f"patch must divide 28 (4, 7 or 14), got {patch}")
        self.patch = patch
        tokens = (28 // patch) ** 2
        self.embed = nnx.Linear(patch * patch, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (tokens, dim)))
        self.blocks = nnx.List([EncoderBlock(dim, heads, mlp, rngs=rngs) for _ in range(depth)])
        self.ln = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, p, n = x.shape[0], self.patch, 28 // self.patch
        x = x.reshape(b, n, p, n, p).transpose(0, 1, 3, 2, 4).reshape(b, n * n, p * p)
        x = self.embed(x) + self.pos[...][None]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x).mean(axis=1))


def model(*, rngs: nnx.Rngs, **kwargs) -> ViT:
    """The factory ``jaxcomp compress --model examples/vit_mnist.py:model`` calls."""
    return ViT(**kwargs, rngs=rngs)


#: The loader ``jaxcomp compress --data examples/vit_mnist.py:data`` calls.
data = _any_model.mnist_data


def config(*, tiny: bool = False, seed: int = 0) -> jaxcomp.CompressConfig:
    """The settings of the documented run; ``tiny``: one epoch per stage on 512 images."""
    common = dict(
        # per-leaf targets from the dense baseline's sensitivity (any_model_sensitivity.py):
        # the first block's attention and the patch embedding lose most when pruned, the
        # second block (the default, 90%) least; q/k/v biases, (heads, head_dim) arrays that
        # the ndim >= 2 default would select, stay float32
        exclude=["*/bias"],
        sparsity={
            "embed/kernel": 0.5,
            "pos": 0.5,
            "head/kernel": 0.5,
            "blocks/0/attn": 0.6,
            "blocks/0/fc*": 0.75,
        },
        default_sparsity=0.9,
        default_bits=5,
        seed=seed,
        dense_lr=0.05,
        dense_weight_decay=1e-4,
        prune_lr=0.02,
        prune_weight_decay=1e-4,
        finetune_lr=3e-4,
    )
    if tiny:
        return jaxcomp.CompressConfig(**common, **_any_model.TINY_SCHEDULE, kmeans_iters=5)
    return jaxcomp.CompressConfig(
        **common,
        dense_epochs=6,
        prune_epochs=6,
        epochs_per_step=1,
        prune_fractions=(0.5, 0.75, 0.9, 1.0),
        finetune_epochs=2,
    )


def main(argv: list[str] | None = None) -> int:
    """``python examples/vit_mnist.py [--out DIR] [--tiny] [--data-dir DIR]``."""
    return _any_model.run_example(
        argv,
        description=__doc__.split("\n\n")[0],
        out="runs/vit",
        build=lambda args: model(rngs=nnx.Rngs(args.seed), **(TINY if args.tiny else {})),
        config=config,
        tiny_test=TINY_TEST,
        label=lambda args: "ViT",
    )


if __name__ == "__main__":
    raise SystemExit(main())
