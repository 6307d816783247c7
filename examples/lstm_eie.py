"""A compressed LSTM on EIE, time step by time step (the paper's NT-LSTM layer, on MNIST rows).

Reads the ``.dcz`` of the row-by-row MNIST LSTM (``examples/lstm_mnist.py`` writes
``runs/lstm/model.dcz``), builds the cell's ``[x; h] -> 4h`` gate matrix as one EIE layer
(:func:`eie_model.load_dcz_lstm`: the eight gate kernels' codebooks merged exactly) and runs
one test image's 28 time steps through EIE (:func:`eie_model.lstm_on_eie`): per step the
non-zero activations broadcast, the cycles and energy of the cycle model, and the largest
error of the 16-bit fixed-point gates against the JAX model's gate pre-activations; then the
totals and the logits of the whole recurrence on EIE against JAX's. See
``docs/guides/lstm-on-eie.md``.

Run::

    python examples/lstm_eie.py --dcz runs/lstm/model.dcz --image 0
    python examples/lstm_eie.py --image 3 --pes 16 --plot lstm_eie.png
    python examples/lstm_eie.py --agree 1000   # + the recurrence on EIE for 1,000 test images

Without a ``.dcz`` of your own, ``--train-demo OUT.dcz`` trains, prunes and weight-shares a
small LSTM on MNIST with the jaxcomp transforms and writes it (about two minutes on two CPU
cores at the defaults; ``--hidden``, ``--epochs``, ``--train-images``)::

    python examples/lstm_eie.py --train-demo runs/lstm-demo/model.dcz
    python examples/lstm_eie.py --dcz runs/lstm-demo/model.dcz --image 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from eie_model import EIEParams, load_dcz_lstm, lstm_on_eie

DEFAULT_DCZ = os.path.join("runs", "lstm", "model.dcz")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dcz", default=DEFAULT_DCZ, help=f"compressed LSTM (default {DEFAULT_DCZ})")
    p.add_argument("--prefix", default="rnn/cell", help="the LSTM cell's path (rnn/cell)")
    p.add_argument("--image", type=int, default=0, help="MNIST test image index (0)")
    p.add_argument("--pes", type=int, default=64, help="PEs N (64)")
    p.add_argument("--fifo", type=int, default=8, help="FIFO depth D (8)")
    p.add_argument("--bits", type=int, default=16, choices=(8, 16, 32), help="fixed point (16)")
    p.add_argument("--bias", default="add", choices=("add", "codes"), help="bias mode (add)")
    p.add_argument("--plot", default=None, help="write a per-step figure to this .png")
    p.add_argument(
        "--agree",
        type=int,
        default=0,
        metavar="K",
        help="also run the recurrence on EIE for test images 0..K-1: class agreement with JAX",
    )
    p.add_argument("--train-demo", default=None, metavar="OUT.dcz", help="train + write a demo")
    p.add_argument("--hidden", type=int, default=128, help="--train-demo: hidden size (128)")
    p.add_argument("--epochs", type=int, default=2, help="--train-demo: epochs per stage (2)")
    p.add_argument("--train-images", type=int, default=60000, help="--train-demo: images used")
    p.add_argument("--sparsity", type=float, default=0.9, help="--train-demo: pruned (0.9)")
    p.add_argument("--seed", type=int, default=0, help="--train-demo: seed (0)")
    return p


# ------------------------------------------------------------------------------ demo model
def make_model(hidden: int = 128, *, rngs):
    """The LSTM of examples/lstm_mnist.py: 28 steps of 28 pixels, a linear head on the last h."""
    from flax import nnx

    class LSTMClassifier(nnx.Module):
        def __init__(self, hidden=128, *, rngs):
            self.rnn = nnx.RNN(nnx.LSTMCell(28, hidden, rngs=rngs))
            self.head = nnx.Linear(hidden, 10, rngs=rngs)

        def __call__(self, x):
            h = self.rnn(x.reshape(x.shape[0], 28, 28))
            return self.head(h[:, -1])

    return LSTMClassifier(hidden, rngs=rngs)


def train_demo(
    out: str, *, hidden: int, epochs: int, n_train: int, seed: int, sparsity: float = 0.9
) -> float:
    """Dense training, then pruning (``sparsity`` of every kernel, the head's included; 0.9
    gives NT-LSTM's 10 % weight density) with retraining, then 4-bit weight
    sharing with centroid fine-tuning (``jaxcomp.prune(jaxcomp.share_weights(adam))``), each
    for ``epochs`` epochs on ``n_train`` MNIST training images; writes the whole model state to
    ``out`` and returns its test error (%)."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import jaxcomp
    from jaxcomp import schedules
    from jaxcomp.fileformat import save_compressed
    from jaxcomp.zoo.data import load_mnist

    data = load_mnist()
    x_tr, y_tr = data.x_train[:n_train], data.y_train[:n_train]
    model = make_model(hidden, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    pure = nnx.to_pure_dict(params)
    kernels = [
        jaxcomp.tree.path_to_str(p)
        for p, v in jax.tree_util.tree_leaves_with_path(pure)
        if np.ndim(v) == 2
    ]

    def apply(p, x):
        ps = jax.tree.map(lambda v: v, params)
        nnx.replace_by_pure_dict(ps, p)
        return nnx.merge(graphdef, ps, jax.tree.map(lambda v: v, rest))(x)

    def fit(pure, tx, stage):
        state = tx.init(pure)

        @jax.jit
        def step(pure, state, x, y):
            def loss(p):
                return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

            g = jax.grad(loss)(pure)
            u, state = tx.update(g, state, pure)
            return optax.apply_updates(pure, u), state

        rng = np.random.default_rng(seed)
        t0 = time.time()
        for _ in range(epochs):
            order = rng.permutation(len(x_tr))
            for lo in range(0, len(order) - 127, 128):
                b = order[lo : lo + 128]
                pure, state = step(pure, state, jnp.asarray(x_tr[b]), jnp.asarray(y_tr[b]))
        err = _error(jax.jit(apply), pure, data.x_test, data.y_test)
        print(f"{stage:>8}: test error {err:.2f} %  ({time.time() - t0:.0f} s)", flush=True)
        return pure, state, err

    pure, _, _ = fit(pure, optax.adam(3e-3), "dense")
    tx = jaxcomp.prune(optax.adam(1e-3), schedules.constant(sparsity), include=kernels)
    pure, _, _ = fit(pure, tx, "pruned")
    tx = jaxcomp.prune(
        jaxcomp.share_weights(optax.adam(1e-4), bits=dict.fromkeys(kernels, 4)),
        schedules.constant(sparsity),
        include=kernels,
    )
    pure, state, err = fit(pure, tx, "shared")
    share = state.inner_state
    flat = dict(jax.tree_util.tree_leaves_with_path(share.codebooks, is_leaf=_none))
    cbs = {jaxcomp.tree.path_to_str(p): np.asarray(v) for p, v in flat.items() if v is not None}
    flat = dict(jax.tree_util.tree_leaves_with_path(share.codes, is_leaf=_none))
    codes = {jaxcomp.tree.path_to_str(p): np.asarray(v) for p, v in flat.items() if v is not None}
    nnx.replace_by_pure_dict(params, pure)
    model = nnx.merge(graphdef, params, rest)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    size = save_compressed(out, nnx.state(model), cbs, codes, metadata={"model": "lstm-eie-demo"})
    print(f"wrote {out} ({size:,} bytes), hidden {hidden}, test error {err:.2f} %")
    return err


def _none(v) -> bool:
    return v is None


def _error(apply, pure, x, y) -> float:
    wrong = 0
    for lo in range(0, len(x), 1000):
        wrong += int(
            (np.asarray(apply(pure, x[lo : lo + 1000])).argmax(-1) != y[lo : lo + 1000]).sum()
        )
    return 100.0 * wrong / len(x)


# ------------------------------------------------------------------------------ EIE run
def _plot(run, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = run.table()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(t["step"], t["cycles"], "o-", label="cycles")
    ax[0].set_xlabel("time step")
    ax[0].set_ylabel("cycles")
    tw = ax[0].twinx()
    tw.plot(t["step"], t["active"], "s--", color="C1", label="non-zero inputs")
    tw.set_ylabel("non-zero [x; h]")
    ax[1].semilogy(
        t["step"], np.maximum(t["err_fixed"], 1e-12), "o-", label=f"{run.bits}-bit vs JAX"
    )
    ax[1].semilogy(t["step"], t["bound_max"], "--", label="quantisation bound (max)")
    ax[1].set_xlabel("time step")
    ax[1].set_ylabel("max |error| of the gate pre-activations")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Print the per-step table of one MNIST test image's run on EIE; 0 on success."""
    args = _parser().parse_args(argv)
    if args.train_demo:
        train_demo(
            args.train_demo,
            hidden=args.hidden,
            epochs=args.epochs,
            n_train=args.train_images,
            seed=args.seed,
            sparsity=args.sparsity,
        )
        return 0
    if not os.path.exists(args.dcz):
        print(
            f"error: --dcz {args.dcz} does not exist. Make it with `python examples/lstm_mnist.py`"
            f" (writes {DEFAULT_DCZ}), or train a small one in minutes with `python "
            f"examples/lstm_eie.py --train-demo {args.dcz}`",
            file=sys.stderr,
        )
        return 2
    from jaxcomp.zoo.data import load_mnist

    gates = load_dcz_lstm(args.dcz, args.prefix, bias=args.bias)
    data = load_mnist()
    if not 0 <= args.image < len(data.x_test):
        print(f"error: --image must be in 0..{len(data.x_test) - 1}", file=sys.stderr)
        return 2
    image = np.asarray(data.x_test[args.image], np.float32).reshape(-1, gates.n_in)
    params = EIEParams(n_pes=args.pes, fifo_depth=args.fifo, act_bits=args.bits,
                       weight_bits=args.bits)  # fmt: skip
    run = lstm_on_eie(gates, image, params=params, bits=args.bits)
    m, n = gates.layer.shape
    print(
        f"{args.dcz}:{args.prefix}: gate matrix {m} x {n} (4 x {gates.hidden} gates, "
        f"{gates.n_in} + {gates.hidden} inputs), weight density "
        f"{gates.layer.weight_density:.3f}, merged codebook {gates.code_bits} bits (leaves: "
        f"{sorted(set(gates.leaf_bits.values()))} bits), bias {args.bias}"
    )
    fa, fw, fy = run.fracs
    print(
        f"image {args.image} (label {int(data.y_test[args.image])}), EIE {args.pes} PEs, "
        f"FIFO {args.fifo}, {args.bits}-bit fixed point (fraction bits: act {fa}, weight "
        f"{fw}, out {fy})"
    )
    t = run.table()
    print(f"{'step':>4} {'active':>9} {'cycles':>7} {'energy nJ':>10} {'max|err|':>10} "
          f"{'rel err':>9} {'bound':>10}")  # fmt: skip
    for i in range(len(t["step"])):
        print(
            f"{i:>4} {t['active'][i]:>4}/{n:<4} {t['cycles'][i]:>7} {t['energy_nj'][i]:>10.3f} "
            f"{t['err_fixed'][i]:>10.2e} {t['rel_fixed'][i]:>9.2e} {t['bound_max'][i]:>10.2e}"
        )
    cyc = int(t["cycles"].sum())
    print(
        f"total: {cyc:,} cycles = {t['latency_us'].sum():.2f} us at "
        f"{float(params.clock_hz) / 1e6:.0f} MHz, {t['energy_nj'].sum():.2f} nJ, max |err| "
        f"{t['err_fixed'].max():.2e} (float32 EIE: {t['err_float'].max():.2e})"
    )
    ref = run.reference
    if ref.logits is not None and run.logits_eie is not None:
        d = np.abs(run.logits_eie - ref.logits).max()
        print(
            f"logits: JAX class {int(ref.logits.argmax())}, recurrence on EIE class "
            f"{int(run.logits_eie.argmax())}, max |logit difference| {d:.2e}"
        )
    if args.plot:
        _plot(run, args.plot)
    if args.agree > 0 and gates.head is not None:
        _agreement(gates, data, args.agree, params, args.bits)
    return 0


def _agreement(gates, data, k: int, params: EIEParams, bits: int) -> None:
    """The recurrence on EIE for test images ``0..k-1``: its classes against JAX's and labels."""
    k = min(k, len(data.x_test))
    same = eie_wrong = jax_wrong = 0
    worst = 0.0
    t0 = time.time()
    for i in range(k):
        image = np.asarray(data.x_test[i], np.float32).reshape(-1, gates.n_in)
        run = lstm_on_eie(gates, image, params=params, bits=bits)
        a, b = int(run.reference.logits.argmax()), int(run.logits_eie.argmax())
        same += a == b
        jax_wrong += a != int(data.y_test[i])
        eie_wrong += b != int(data.y_test[i])
        worst = max(worst, float(np.abs(run.logits_eie - run.reference.logits).max()))
    print(
        f"recurrence on EIE ({bits}-bit gates), test images 0..{k - 1}: class equal to JAX's on "
        f"{same}/{k}; test error EIE {100 * eie_wrong / k:.2f} %, JAX {100 * jax_wrong / k:.2f} "
        f"%; max |logit difference| {worst:.2e} ({time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
