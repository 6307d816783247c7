"""Deep Compression of an LSTM classifier on row-by-row MNIST (28 steps of 28 pixels).

The thesis compressed NeuralTalk's LSTM; EIE runs LSTM layers. Here the eight gate matrices of
an ``nnx.LSTMCell`` -- input ``rnn/cell/{ii,if_,ig,io}/kernel`` (28, H) and recurrent
``rnn/cell/{hi,hf,hg,ho}/kernel`` (H, H) -- and the classifier head are pruned and shared with
4-bit codes (EIE's code width) by :func:`jaxcomp.compress`, dense -> ``OUT/model.dcz`` -> the model
read back from the file. ``examples/lstm_eie.py`` runs the gate matrices of ``runs/lstm/model.dcz``
on the EIE model.

Run (about 6 minutes of CPU time on 2 cores; ``--tiny``: seconds)::

    python examples/lstm_mnist.py --out runs/lstm

or through the command line by import string (its own flags instead of :func:`config`)::

    jaxcomp compress --model examples/lstm_mnist.py:model --data examples/lstm_mnist.py:data \
        --out runs/lstm-cli

Results: ``docs/guides/any-model-results.md``.
"""

from __future__ import annotations

import _any_model
import jax
from flax import nnx

import jaxcomp

#: LSTM width (the gate matrices are (28, H) and (H, H)).
HIDDEN = 128
#: Input-to-gate and hidden-to-gate kernels of ``nnx.LSTMCell`` (input, forget, cell, output).
INPUT_GATES = ("ii", "if_", "ig", "io")
RECURRENT_GATES = ("hi", "hf", "hg", "ho")
#: ``--tiny``: the factory's keyword arguments and the number of test images.
TINY = {"hidden": 16}
TINY_TEST = 500


class LSTMClassifier(nnx.Module):
    """One LSTM layer over the 28 rows of an image, a linear head on the last hidden state.

    Example:
      >>> import jax.numpy as jnp
      >>> net = LSTMClassifier(16, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((2, 28, 28))).shape, net.rnn.cell.hi.kernel.shape
      ((2, 10), (16, 16))
    """

    def __init__(self, hidden: int = HIDDEN, *, rngs: nnx.Rngs):
        self.rnn = nnx.RNN(nnx.LSTMCell(28, hidden, rngs=rngs))
        self.head = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # (B, 28, 28) or (B, 28, 28, 1)
        h = self.rnn(x.reshape(x.shape[0], 28, 28))
        return self.head(h[:, -1])


def model(*, rngs: nnx.Rngs, hidden: int = HIDDEN) -> LSTMClassifier:
    """The factory ``jaxcomp compress --model examples/lstm_mnist.py:model`` calls."""
    return LSTMClassifier(hidden, rngs=rngs)


#: The loader ``jaxcomp compress --data examples/lstm_mnist.py:data`` calls.
data = _any_model.mnist_data


def config(*, tiny: bool = False, seed: int = 0) -> jaxcomp.CompressConfig:
    """The settings of the documented run; ``tiny``: one epoch per stage on 512 images."""
    # the cell-candidate gates (ig, hg) are the sensitive ones (examples/any_model_sensitivity.py
    # on the dense baseline: hg pruned alone to 80% costs 5 points of accuracy, hi 0): they keep
    # more weights than the input, forget and output gates
    sparsity = {f"rnn/cell/{g}/kernel": 0.8 for g in INPUT_GATES}
    sparsity.update({f"rnn/cell/{g}/kernel": 0.85 for g in RECURRENT_GATES})
    sparsity.update({"rnn/cell/ig/kernel": 0.6, "rnn/cell/hg/kernel": 0.65, "head/kernel": 0.5})
    common = dict(
        include=["rnn/cell/*/kernel", "head/kernel"],
        sparsity=sparsity,
        default_bits=4,
        bits={"head/kernel": 5},
        seed=seed,
        dense_lr=0.1,
        dense_weight_decay=1e-5,
        prune_lr=0.02,
        prune_weight_decay=1e-5,
        finetune_lr=1e-4,
    )
    if tiny:
        return jaxcomp.CompressConfig(**common, **_any_model.TINY_SCHEDULE, kmeans_iters=5)
    return jaxcomp.CompressConfig(
        **common,
        dense_epochs=12,
        prune_epochs=16,
        epochs_per_step=2,
        prune_fractions=(0.5, 0.7, 0.85, 0.95, 1.0),
        finetune_epochs=3,
    )


def gate_table(report: dict) -> str:
    """Markdown: per gate matrix of ``report`` (``jaxcomp.compress``'s result), its shape-free
    size, weights kept, code bits and Huffman-coded bits per kept weight and per index."""
    rows = {r["layer"]: r for r in report["layers"]}
    lines = [
        "| matrix | weights | kept % | code bits | code bits (Huffman) | index bits (Huffman) |",
        "|---|---|---|---|---|---|",
    ]
    for g in (*INPUT_GATES, *RECURRENT_GATES):
        r = rows[f"rnn/cell/{g}/kernel"]
        lines.append(
            f"| {g} | {r['weights']:,} | {r['kept_pct']:.1f} | {r['bits']} | "
            f"{r['weight_bits_pqh']:.2f} | {r['index_bits_pqh']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python examples/lstm_mnist.py [--out DIR] [--tiny] [--data-dir DIR]``."""
    return _any_model.run_example(
        argv,
        description=__doc__.split("\n\n")[0],
        out="runs/lstm",
        build=lambda args: model(
            rngs=nnx.Rngs(args.seed), **(TINY if args.tiny else {"hidden": args.hidden})
        ),
        config=config,
        tiny_test=TINY_TEST,
        label=lambda args: f"LSTM-{TINY['hidden'] if args.tiny else args.hidden}",
        add_arguments=lambda p: p.add_argument(
            "--hidden", type=int, default=HIDDEN, help="LSTM width"
        ),
        describe=gate_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
