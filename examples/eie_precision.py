"""EIE's arithmetic precision study (thesis Figure 6.11) on a compressed LeNet-300-100.

Trains LeNet-300-100 on MNIST, prunes each layer by magnitude (keeping 8 % / 9 % / 26 % of the
fc1 / fc2 / fc3 weights, Deep Compression's LeNet-300-100 densities) with masked retraining,
shares the weights of each layer with a 4-bit k-means codebook (EIE's 16-entry codebook, code 0
= pruned; the bias joins the layer's k-means so it is a code too, as in EIE), then runs the
MNIST test set through the three fully-connected layers with ``eie_model.functional``:

* float32 (bit-identical to the EIE authors' simulator's arithmetic),
* fixed point with 32-, 16- and 8-bit activations and weights.

Fixed-point formats are per layer (dynamic fixed point): weights use the largest fraction that
holds the layer's codebook; activations and each layer's output use the largest fraction that
holds the largest value seen on 1,000 training images (so the test set can saturate).

Run::

    JAXCOMP_DATA_DIR=/path/to/data python examples/eie_precision.py            # full run
    JAXCOMP_DATA_DIR=/path/to/data python examples/eie_precision.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eie_model.functional import frac_bits_for, spmv_fixed, spmv_float
from jaxcomp.quantize import kmeans_fit
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.models import make_model
from jaxcomp.zoo.train import default_optimizer, evaluate, fit, functional

KEEP = {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}
LAYERS = ("fc1", "fc2", "fc3")


def magnitude_masks(params):
    """Keep the ``KEEP[layer]`` fraction of largest-|w| kernel entries of each layer."""
    masks = {}
    for name in LAYERS:
        w = np.abs(np.asarray(params[name]["kernel"]))
        k = int(round(KEEP[name] * w.size))
        thr = np.sort(w, axis=None)[-k]
        masks[name] = {"kernel": jnp.asarray(w >= thr), "bias": jnp.ones_like(params[name]["bias"])}
    return masks


def masked(tx, masks):
    """Zero the updates of pruned weights (pruned weights are 0 and stay 0)."""

    def init(params):
        return tx.init(params)

    def update(updates, state, params=None):
        updates, state = tx.update(updates, state, params)
        return jax.tree.map(lambda u, m: u * m, updates, masks), state

    return optax.GradientTransformation(init, update)


def share(params, bits):
    """4-bit k-means per layer over the kept weights and the bias: (codes (m, n), bias, cb)."""
    shared = {}
    for name in LAYERS:
        w = np.asarray(params[name]["kernel"]).T  # (out, in) = (m, n), EIE's layout
        b = np.asarray(params[name]["bias"])
        flat = np.concatenate([w.reshape(-1), b])
        codebook, codes = kmeans_fit(jnp.asarray(flat), bits, init="linear", iters=50)
        codes = np.asarray(codes)
        shared[name] = (
            codes[: w.size].reshape(w.shape),
            codes[w.size :],
            np.asarray(codebook, np.float32),
        )
    return shared


_FLOAT = {  # relu -> jitted float32 layer, vmapped over a batch of inputs
    r: jax.jit(jax.vmap(partial(spmv_float, relu=r), in_axes=(None, None, 0, None)))
    for r in (False, True)
}


@partial(jax.jit, static_argnames=("bits", "relu"))
def _fixed(codes, cb, a, bias, fa, fy, *, bits, relu):
    def one(v):
        return spmv_fixed(
            codes,
            cb,
            v,
            bias,
            act_bits=bits,
            weight_bits=bits,
            act_frac=fa,
            out_frac=fy,
            relu=relu,
        ).y

    return jax.vmap(one)(a)


def eie_forward(shared, x, *, kind, bits=None, fracs=None, layers=LAYERS, batch=100):
    """Run inputs (B, n) through ``layers`` with EIE's functional model, ``batch`` at a time."""
    outs = []
    for lo in range(0, len(x), batch):
        a = jnp.asarray(x[lo : lo + batch])
        for name in layers:
            codes, bias, cb = shared[name]
            relu = name != "fc3"
            if kind == "float":
                a = _FLOAT[relu](codes, cb, a, bias)
            else:
                li = LAYERS.index(name)
                a = _fixed(codes, cb, a, bias, fracs[li], fracs[li + 1], bits=bits, relu=relu)
        outs.append(np.asarray(a))
    return np.concatenate(outs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    ap.add_argument("--retrain", type=int, default=5, help="masked retraining epochs")
    ap.add_argument("--bits", type=int, default=4, help="weight-sharing bits (EIE: 4)")
    ap.add_argument("--n-train", type=int, default=None, help="use the first N train images")
    ap.add_argument("--n-test", type=int, default=None, help="evaluate on the first N test images")
    ap.add_argument("--quick", action="store_true", help="1 epoch, 1 retrain, 1000 test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.retrain = 1, 1
        args.n_train = args.n_train or 10_000
        args.n_test = args.n_test or 1000
    t0 = time.perf_counter()
    data = load_mnist()
    if args.n_train:
        data = data._replace(
            x_train=data.x_train[: args.n_train], y_train=data.y_train[: args.n_train]
        )
    if args.n_test:
        data = data._replace(x_test=data.x_test[: args.n_test], y_test=data.y_test[: args.n_test])
    apply, params = functional(make_model("lenet-300-100", seed=args.seed))
    steps = max(args.epochs * (len(data.x_train) // 128), 1)
    tx = default_optimizer(0.05, steps=steps, weight_decay=1e-4)
    params, _, _ = fit(
        apply,
        params,
        tx,
        data,
        epochs=args.epochs,
        progress=False,
        evaluate_each_epoch=False,
        seed=args.seed,
    )
    dense_err = evaluate(apply, params, data.x_test, data.y_test)
    masks = magnitude_masks(params)
    params = jax.tree.map(lambda p, m: p * m, params, masks)
    steps = max(args.retrain * (len(data.x_train) // 128), 1)
    tx = masked(default_optimizer(0.01, steps=steps, weight_decay=1e-4), masks)
    params, _, _ = fit(
        apply,
        params,
        tx,
        data,
        epochs=args.retrain,
        progress=False,
        evaluate_each_epoch=False,
        seed=args.seed + 1,
    )
    pruned_err = evaluate(apply, params, data.x_test, data.y_test)
    shared = share(params, args.bits)

    x_test = data.x_test.reshape(len(data.x_test), -1).astype(np.float32)
    y_test = data.y_test
    results = {"dense_error": dense_err, "pruned_error": pruned_err}
    logits = eie_forward(shared, x_test, kind="float")
    results["eie_float32_error"] = float(np.mean(logits.argmax(-1) != y_test))
    # per-layer activation formats from 1,000 training images (float32 run)
    calib = data.x_train[:1000].reshape(1000, -1).astype(np.float32)
    maxima = [float(np.abs(calib).max())]
    a = calib
    for name in LAYERS:
        a = eie_forward(shared, a, kind="float", layers=(name,))
        maxima.append(float(np.abs(a).max()))
    for bits in (32, 16, 8):
        fracs = [int(frac_bits_for(jnp.float32(mx), bits)) for mx in maxima]
        logits = eie_forward(shared, x_test, kind="fixed", bits=bits, fracs=fracs)
        results[f"eie_fixed{bits}_error"] = float(np.mean(logits.argmax(-1) != y_test))
    results["n_test"] = int(len(y_test))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"LeNet-300-100 on {len(y_test)} MNIST test images ({data.source} MNIST)")
        print(f"  dense float32 (JAX)          test error {100 * dense_err:.2f}%")
        print(f"  pruned 8/9/26% (JAX)         test error {100 * pruned_err:.2f}%")
        for key, label in (
            ("eie_float32_error", f"+ {args.bits}-bit sharing, EIE float32"),
            ("eie_fixed32_error", "EIE fixed point 32-bit"),
            ("eie_fixed16_error", "EIE fixed point 16-bit"),
            ("eie_fixed8_error", "EIE fixed point 8-bit"),
        ):
            print(f"  {label:<29}test error {100 * results[key]:.2f}%")
    return results


if __name__ == "__main__":
    main()
