"""Encoding speed of eie_model.format on the Alex-6-sized layer (4096 x 9216, 9 % weights).

Goal: the encoding is vectorized and encodes this layer "well under a second".
Baseline measured in the same run: SciPy's CSC conversion of the same matrix
(``scipy.sparse.csc_matrix``), which builds plain CSC without EIE's PE interleaving, relative
indices or fillers. Prints both times and the ratio (ours / SciPy) as the final line.

    python benchmarks/bench_eie_format.py
"""

import time

import numpy as np
import scipy.sparse as sp

from eie_model.format import decode_layer, encode_layer
from eie_model.layers import benchmark_layer


def best_of(f, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    layer = benchmark_layer("alex6", seed=0)
    codes, bias = layer.codes, layer.bias_codes
    t_enc, enc = best_of(lambda: encode_layer(codes, bias, n_pes=64, index_bits=4))
    t_dec, (back, _) = best_of(lambda: decode_layer(enc))
    assert np.array_equal(back, codes)
    t_sp, _ = best_of(lambda: sp.csc_matrix(codes))
    print(f"layer {codes.shape} density {layer.weight_density:.3f}, 64 PEs, r = 4")
    print(f"entries {enc.n_entries:,} (fillers {enc.n_fillers:,})")
    print(f"eie_model.format.encode_layer  {t_enc:.3f} s")
    print(f"eie_model.format.decode_layer  {t_dec:.3f} s")
    print(f"scipy.sparse.csc_matrix        {t_sp:.3f} s")
    print(f"ratio encode / scipy csc: {t_enc / t_sp:.2f}")


if __name__ == "__main__":
    main()
