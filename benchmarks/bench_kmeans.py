"""k-means weight sharing vs scikit-learn on AlexNet-fc6-sized data (goal >= 10x).

3.4 million weights (AlexNet fc6 after pruning to 9 %: the tails |w| > q_0.91 of 37.7 M normal
weights), 5 bits (31 trained centroids + the pruned code 0), linear init, 20 Lloyd iterations.
scikit-learn's ``KMeans`` gets the same initial centroids (``init=`` array, ``n_init=1``,
``max_iter=20``, ``tol=0``, ``algorithm="lloyd"``) in the same run. Both inertias are computed
the same way (float64 NumPy over the same weights); sklearn's own ``inertia_`` is printed too.

Run: ``PYTHONPATH=. python benchmarks/bench_kmeans.py`` (``--n`` for a smaller run).
The last line is the speed ratio (sklearn time / jaxcomp time).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def pruned_weights(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dense = int(round(n / 0.09))
    w = rng.standard_normal(dense, dtype=np.float32) * np.float32(0.005)
    thr = np.quantile(np.abs(w), 1 - n / dense)
    w = w[np.abs(w) > thr]
    return w[:n]


def main(argv: list[str] | None = None) -> float:
    from sklearn.cluster import KMeans

    import jaxcomp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3_400_000)
    ap.add_argument("--bits", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    w = pruned_weights(args.n)
    k = 2**args.bits - 1
    print(
        f"weights: {w.size:,} (non-zero), bits: {args.bits} ({k} centroids), "
        f"iters: {args.iters}, device: {jax.devices()[0].device_kind}"
    )

    fit = jax.jit(
        lambda x: jaxcomp.kmeans_fit(
            x, args.bits, init="linear", iters=args.iters, tol=0.0, return_info=False
        )
    )
    wj = jax.device_put(w)
    t0 = time.perf_counter()
    jax.block_until_ready(fit(wj))
    print(f"jaxcomp compile + first run: {time.perf_counter() - t0:.2f} s")
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        cb, codes = jax.block_until_ready(fit(wj))
        times.append(time.perf_counter() - t0)
    t_jax = min(times)
    _, _, info = jaxcomp.kmeans_fit(w, args.bits, iters=args.iters, return_info=True)

    init = np.asarray(jaxcomp.kmeans_fit(w, args.bits, iters=0)[0][1:], np.float32)[:, None]
    x = w[:, None]
    sk_times = []
    for _ in range(max(1, args.repeats - 1)):
        km = KMeans(k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd")
        t0 = time.perf_counter()
        km.fit(x)
        sk_times.append(time.perf_counter() - t0)
    t_sk = min(sk_times)

    w64 = w.astype(np.float64)
    cb_np, codes_np = np.asarray(cb, np.float64), np.asarray(codes)
    inertia_jax = float(np.sum((w64 - cb_np[codes_np]) ** 2))
    centers = km.cluster_centers_[:, 0].astype(np.float64)
    inertia_sk = float(np.sum((w64 - centers[km.labels_]) ** 2))
    print(
        f"jaxcomp kmeans_fit: {t_jax * 1e3:8.1f} ms  (best of {args.repeats}; "
        f"{int(info.n_iter)} iterations run, tol=0 stops at a fixed point)"
    )
    print(
        f"sklearn KMeans:     {t_sk * 1e3:8.1f} ms  (best of {len(sk_times)}; "
        f"{km.n_iter_} iterations)"
    )
    print(f"inertia jaxcomp: {inertia_jax:.9e}")
    print(f"inertia sklearn: {inertia_sk:.9e}  (sklearn inertia_: {km.inertia_:.9e})")
    print(f"inertia ratio jaxcomp/sklearn: {inertia_jax / inertia_sk:.9f}")
    ratio = t_sk / t_jax
    print(f"speedup (sklearn time / jaxcomp time): {ratio:.1f}x")
    return ratio


if __name__ == "__main__":
    main()
