"""Benchmark layers for the EIE model: the nine of the EIE paper, the shared real layer, loaders.

A layer is a :class:`eie_model.types.Layer`: ``codes`` (m outputs x n inputs, unsigned, 0 =
pruned), ``codebook`` (float32, ``codebook[0] == 0.0``), ``act`` (n,), optional
``bias_codes`` (m,).

The nine benchmark layers of the EIE paper (Table III) are seeded synthetic layers
(``benchmark_layer``) with the paper's shapes and exactly ``round(density x size)`` non-zero
weights and activations (``exact_count``), or, with ``like=``, a real layer's measured counts
and spread (``REAL_LAYERS``: the shared real layer is Alex-8). Real pruned matrices are not
uniformly sparse, and the spread of non-zeros over rows and columns is what sets EIE's load
imbalance. So ``synthetic_layer`` keeps entry (i, j) with probability about
``density x r_i x c_j`` (the exact count moves the threshold by a few ``1 / sqrt(count)``),
where the row and column multipliers are ``1 + cv x N(0, 1)`` (clipped at 0.05). The defaults
``ROW_CV`` / ``COL_CV`` are fitted to the shared real layer by ``fit_spread`` (its 528..1,435
non-zeros per row and 75..385 per column): the multipliers' spread is the observed spread with
the binomial part removed. ``docs/guides/eie-benchmark-layers.md`` explains the drawing.

Example:
    >>> from eie_model.layers import load_layer
    >>> load_layer("Alex-8").shape, load_layer("alex8").name
    ((1000, 4096), 'alex8')
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from eie_model.types import Layer

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "REAL_LAYERS",
    "benchmark_layer",
    "exact_count",
    "fit_spread",
    "load_dcz_layer",
    "load_layer",
    "load_npz_layer",
    "synthetic_layer",
    "validate_layer",
]


def validate_layer(layer: Layer) -> Layer:
    """Check a ``Layer``'s shapes, dtypes and codebook convention; return it with canonical dtypes.

    Raises:
        ValueError, TypeError: naming the offending field.

    Example:
        >>> import numpy as np
        >>> from eie_model.layers import Layer, validate_layer
        >>> ok = validate_layer(Layer(np.ones((2, 3), np.int64), np.arange(4.0), np.ones(3)))
        >>> ok.codes.dtype, ok.codebook.dtype, ok.act.dtype
        (dtype('uint8'), dtype('float32'), dtype('float32'))
    """
    codes = np.asarray(layer.codes)
    codebook = np.asarray(layer.codebook)
    act = np.asarray(layer.act)
    if codes.ndim != 2:
        raise ValueError(f"layer codes must be 2-D (m, n), got shape {codes.shape}")
    if codes.dtype == bool or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"layer codes must be unsigned integers, got {codes.dtype}")
    k = codebook.shape[0] if codebook.ndim == 1 else 0
    if codebook.ndim != 1 or k < 2 or k & (k - 1):
        raise ValueError(
            f"layer codebook must be 1-D with a power-of-2 length, got {codebook.shape}"
        )
    if codebook[0] != 0.0:
        raise ValueError(f"layer codebook[0] must be 0.0 (code 0 = pruned), got {codebook[0]}")
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"layer codes must lie in 0..{k - 1}, got max {int(codes.max())}")
    if act.shape != (codes.shape[1],):
        raise ValueError(f"layer act must have shape ({codes.shape[1]},) = (n,), got {act.shape}")
    bias = layer.bias_codes
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (codes.shape[0],):
            raise ValueError(
                f"layer bias_codes must have shape ({codes.shape[0]},) = (m,), got {bias.shape}"
            )
        if bias.size and (bias.min() < 0 or bias.max() >= k):
            raise ValueError(f"layer bias_codes must lie in 0..{k - 1}")
    dt = np.uint8 if k <= 256 else np.uint16
    return Layer(
        codes.astype(dt, copy=False),
        codebook.astype(np.float32, copy=False),
        act.astype(np.float32, copy=False),
        None if bias is None else bias.astype(dt, copy=False),
        layer.name,
    )


def load_npz_layer(path: str | os.PathLike) -> Layer:
    """Load a layer from an ``.npz`` with keys ``codes``, ``codebook``, ``act`` [, ``bias_codes``].

    These are the keys of the shared real layer (``eie-layer/layer.npz``).

    Args:
        path: the ``.npz`` file.

    Returns:
        The validated ``Layer`` (name = file stem).

    Example:
        >>> import os
        >>> from eie_model.layers import load_npz_layer
        >>> p = os.path.join(os.environ.get("JAXCOMP_DATA_DIR", "/nonexistent"),
        ...                  "eie-layer", "layer.npz")
        >>> load_npz_layer(p).shape if os.path.exists(p) else (1000, 4096)
        (1000, 4096)
    """
    with np.load(path) as d:
        missing = {"codes", "codebook", "act"} - set(d.files)
        if missing:
            raise ValueError(
                f"layer file {path} lacks keys {sorted(missing)}; it needs codes, codebook, act "
                "and optionally bias_codes"
            )
        bias = d["bias_codes"] if "bias_codes" in d.files else None
        layer = Layer(d["codes"], d["codebook"], d["act"], bias, os.path.basename(str(path)))
    return validate_layer(layer).read_only()


def load_dcz_layer(path: str | os.PathLike, leaf: str, act: np.ndarray | None = None) -> Layer:
    """Load one fully-connected kernel of a jaxcomp ``.dcz`` file as an EIE layer.

    A Flax Dense kernel is stored ``(in, out)``; EIE's matrix is ``(out, in)`` = ``(m, n)``, so
    the codes are transposed. The codebook is the file's own (``codebook[0] == 0.0``). The file
    stores biases dense (float32), which a weight codebook cannot represent exactly, so the
    layer has no ``bias_codes``; add the dense bias to the model's output yourself.

    Args:
        path: a ``.dcz`` file written by :func:`jaxcomp.fileformat.save_compressed`.
        leaf: the kernel's path string, e.g. ``"fc1/kernel"``.
        act: ``(n,)`` float32 input activations; default all ones.

    Returns:
        The validated ``Layer`` named ``"<file stem>:<leaf>"``.

    Raises:
        ValueError: ``leaf`` is not a weight-shared 2-D leaf of the file (the message lists the
            ones that are), or ``act`` has the wrong shape.
        jaxcomp.fileformat.DczFormatError: the file is corrupt.
    """
    from jaxcomp.fileformat import load_compressed_codes

    leaves = load_compressed_codes(path)
    shared = sorted(k for k, v in leaves.items() if isinstance(v, tuple) and np.ndim(v[1]) == 2)
    if leaf not in shared:
        raise ValueError(
            f"leaf {leaf!r} is not a weight-shared 2-D kernel of {os.fspath(path)}; "
            f"choose one of {shared}"
        )
    codebook, codes = leaves[leaf]
    codes = np.ascontiguousarray(np.asarray(codes).T)
    act = np.ones(codes.shape[1], np.float32) if act is None else np.asarray(act)
    name = f"{os.path.splitext(os.path.basename(os.fspath(path)))[0]}:{leaf}"
    return validate_layer(Layer(codes, np.asarray(codebook), act, None, name)).read_only()


# ------------------------------------------------------------------------ synthetic layers
class BenchmarkSpec(NamedTuple):
    """One benchmark layer of the EIE paper's Table III.

    Attributes:
        name: short name (``"alex6"``).
        n_in: inputs n (columns of ``codes``).
        n_out: outputs m (rows of ``codes``).
        weight_density: fraction of non-zero weights.
        act_density: fraction of non-zero input activations.
        description: the network and layer.
    """

    name: str
    n_in: int
    n_out: int
    weight_density: float
    act_density: float
    description: str


#: EIE paper, Table III: size (in x out), weight density, activation density.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec("alex6", 9216, 4096, 0.09, 0.351, "AlexNet fc6"),
        BenchmarkSpec("alex7", 4096, 4096, 0.09, 0.353, "AlexNet fc7"),
        BenchmarkSpec("alex8", 4096, 1000, 0.25, 0.375, "AlexNet fc8"),
        BenchmarkSpec("vgg6", 25088, 4096, 0.04, 0.183, "VGG-16 fc6"),
        BenchmarkSpec("vgg7", 4096, 4096, 0.04, 0.375, "VGG-16 fc7"),
        BenchmarkSpec("vgg8", 4096, 1000, 0.23, 0.411, "VGG-16 fc8"),
        BenchmarkSpec("nt-we", 4096, 600, 0.10, 1.0, "NeuralTalk word embedding"),
        BenchmarkSpec("nt-wd", 600, 8791, 0.11, 1.0, "NeuralTalk word decoder"),
        BenchmarkSpec("nt-lstm", 1201, 2400, 0.10, 1.0, "NeuralTalk LSTM"),
    )
}

#: Std of the row / column density multipliers, fitted to the shared real layer with
#: ``fit_spread(load_npz_layer(".../eie-layer/layer.npz").codes)`` (rounded).
ROW_CV = 0.130
COL_CV = 0.082
#: The benchmark each shared real layer belongs to (path under ``$JAXCOMP_DATA_DIR``): the
#: 1000 x 4096 layer of the EIE authors' simulator has Alex-8's and VGG-8's shape, and its
#: 25.7% weight density is Alex-8's (25%), not VGG-8's (23%).
REAL_LAYERS: dict[str, str] = {"alex8": "eie-layer/layer.npz"}
#: Fraction of non-zero bias codes in synthetic layers (real layer: 959 / 1000).
BIAS_DENSITY = 0.959
_MIN_MULT = 0.05


def fit_spread(codes: np.ndarray) -> tuple[float, float]:
    """Row and column multiplier spreads (std) that reproduce a layer's non-zero spread.

    The observed coefficient of variation of non-zeros per row (column) minus, in quadrature,
    the binomial part a uniform layer of the same density would show.

    Args:
        codes: ``(m, n)`` codes, 0 = pruned.

    Returns:
        ``(row_cv, col_cv)`` floats.

    Example:
        >>> import numpy as np
        >>> from eie_model.layers import fit_spread
        >>> rng = np.random.default_rng(0)
        >>> uniform = (rng.random((400, 800)) < 0.2).astype(np.uint8)
        >>> [round(x, 2) for x in fit_spread(uniform)]   # a uniform layer has no extra spread
        [0.0, 0.0]
    """
    nz = np.asarray(codes) != 0
    m, n = nz.shape
    d = nz.mean()
    if not 0 < d < 1:
        return 0.0, 0.0
    out = []
    for counts, k in ((nz.sum(1), n), (nz.sum(0), m)):
        cv2 = counts.var() / counts.mean() ** 2 if counts.mean() else 0.0
        binom = (1 - d) / (k * d)
        out.append(float(np.sqrt(max(cv2 - binom, 0.0))))
    return out[0], out[1]


def _exact_codes(
    r: np.ndarray,
    c: np.ndarray,
    density: float,
    k: int,
    seed: int,
    code_bits: int,
    dt: type,
) -> np.ndarray:
    """``(m, n)`` codes with exactly ``k`` non-zeros, entry (i, j) kept with probability
    ``min(t x density x r_i x c_j, 1)`` for the one ``t`` (close to 1) that keeps exactly ``k``.

    Sequential Poisson sampling (an order sampling): entry (i, j) draws ``u_ij`` uniform and
    gets the key ``u_ij / p_ij``, ``p_ij = min(density x r_i x c_j, 1)``; the ``k`` smallest
    keys are kept. ``key < 1`` is the Bernoulli model exactly, so the kept set is that model
    with its threshold moved from 1 to the ``k``-th key. One pass over row chunks keeps every
    entry with ``key < t_lo`` and remembers the few with ``t_lo <= key < t_hi`` (a band of
    about ``16 sqrt(k)`` entries around 1); the smallest band keys fill the count. Each chunk
    has its own seed, so a pass whose band misses the ``k``-th key (odds about ``1e-15``) is
    redone, identically, with a wider band. Memory: the codes plus one chunk of 4 Mi entries.
    """
    m, n = r.shape[0], c.shape[0]
    codes = np.zeros((m, n), dt)
    if k == 0:
        return codes
    colp = (density * c).astype(np.float32)
    chunk = max(1, (1 << 22) // n)
    high = 1 << code_bits
    width = 8.0
    while True:
        half = width / np.sqrt(k)
        t_lo, t_hi = max(1.0 - half, 0.0), 1.0 + half
        if width > 1e3:
            t_lo, t_hi = 0.0, np.inf  # every entry in the band: exact for any layer
        n_lo = 0
        band_key, band_idx = [], []
        for lo in range(0, m, chunk):
            hi = min(lo + chunk, m)
            crng = np.random.default_rng((seed, 1, lo))
            p = np.minimum(r[lo:hi, None].astype(np.float32) * colp[None, :], 1.0)
            u = crng.random((hi - lo, n), dtype=np.float32)
            keep = u < t_lo * p
            n_keep = int(np.count_nonzero(keep))
            codes[lo:hi][keep] = crng.integers(1, high, n_keep, dtype=dt)
            n_lo += n_keep
            band = ~keep & (u < t_hi * p)
            idx = np.flatnonzero(band)
            band_key.append(u.ravel()[idx] / p.ravel()[idx])
            band_idx.append(idx + lo * n)
        keys, idx = np.concatenate(band_key), np.concatenate(band_idx)
        need = k - n_lo
        if 0 <= need <= keys.size:
            break
        codes[:] = 0
        width *= 4.0
    if need:
        # the ``need`` smallest band keys; ties (float32) broken by position, deterministically
        pick = idx[np.lexsort((idx, keys))[:need]]
        vals = np.random.default_rng((seed, 2)).integers(1, high, need, dtype=dt)
        codes.reshape(-1)[pick] = vals
    return codes


def exact_count(density: float, size: int) -> int:
    """The number of non-zeros a synthetic layer draws: ``round(density x size)``.

    Python's ``round`` (half to even) of the product, clipped to ``0 .. size``.

    Args:
        density: fraction in ``[0, 1]``.
        size: number of entries.

    Returns:
        int.

    Example:
        >>> from eie_model.layers import exact_count
        >>> exact_count(0.353, 4096), exact_count(0.09, 4096 * 4096)
        (1446, 1509949)
    """
    return min(max(int(round(float(density) * int(size))), 0), int(size))


def synthetic_layer(
    n_out: int,
    n_in: int,
    weight_density: float,
    act_density: float,
    *,
    seed: int = 0,
    row_cv: float = ROW_CV,
    col_cv: float = COL_CV,
    code_bits: int = 4,
    bias: bool = True,
    name: str = "",
) -> Layer:
    """A seeded synthetic layer with exact non-zero counts and a row/column spread of non-zeros.

    The layer has exactly ``exact_count(weight_density, n_out x n_in)`` non-zero codes and
    exactly ``exact_count(act_density, n_in)`` non-zero activations (and
    ``exact_count(BIAS_DENSITY, n_out)`` non-zero bias codes), so two seeds differ only in
    where the non-zeros lie, never in how many there are. Entry (i, j) is non-zero with
    probability ``min(t x weight_density x r_i x c_j, 1)``, ``r_i = max(1 + row_cv x N(0,1),
    0.05)``, ``c_j`` likewise (multipliers normalized to mean 1), where ``t`` (within a few
    ``1 / sqrt(count)`` of 1) is the threshold that keeps the count exact: sequential Poisson
    sampling, i.e. the ``count`` smallest keys ``u_ij / p_ij`` with ``u_ij`` uniform (the
    Bernoulli model is ``key < 1``). Non-zero codes are uniform in ``1 .. 2**code_bits - 1``;
    the codebook is sorted normal values with entry 0 = 0.0; the non-zero activations are a
    uniform random subset with exponential values (> 0, as after a ReLU).
    ``row_cv = col_cv = 0`` gives a uniform layer. Same arguments, same layer.

    Memory: the codes plus one chunk of 4 Mi float32 entries. Time (one core of the shared
    2-core machine, ``benchmark_layer``, quiet): VGG-6 (4096 x 25088) about 1.0 s, Alex-7 0.2 s
    (measured with ``python -c "import time; from eie_model.layers import benchmark_layer as b;
    t = time.perf_counter(); b('vgg6'); print(time.perf_counter() - t)"``).

    Args:
        n_out: outputs m.
        n_in: inputs n.
        weight_density: in (0, 1].
        act_density: in (0, 1].
        seed: random seed.
        row_cv: std of the row multipliers.
        col_cv: std of the column multipliers.
        code_bits: weight-code bits.
        bias: include bias codes.
        name: label.

    Returns:
        ``Layer``: ``codes`` (n_out, n_in) uint8 (uint16 above 8 code bits), ``codebook``
        (2**code_bits,) float32, ``act`` (n_in,) float32, ``bias_codes`` (n_out,) or None.

    Example:
        >>> import numpy as np
        >>> from eie_model.layers import synthetic_layer
        >>> layer = synthetic_layer(100, 300, 0.1, 0.5, seed=1)
        >>> layer.shape, int(np.count_nonzero(layer.codes)), int(np.count_nonzero(layer.act))
        ((100, 300), 3000, 150)
    """
    for k, v in (("n_out", n_out), ("n_in", n_in), ("code_bits", code_bits)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"synthetic_layer: {k} must be a positive int, got {v!r}")
    for k, v in (("weight_density", weight_density), ("act_density", act_density)):
        if not 0 < v <= 1:
            raise ValueError(f"synthetic_layer: {k} must be in (0, 1], got {v}")
    for k, v in (("row_cv", row_cv), ("col_cv", col_cv)):
        if not v >= 0:
            raise ValueError(f"synthetic_layer: {k} must be >= 0, got {v}")
    n_out, n_in = int(n_out), int(n_in)
    rng = np.random.default_rng((seed, 0))
    r = np.maximum(1 + row_cv * rng.standard_normal(n_out), _MIN_MULT)
    c = np.maximum(1 + col_cv * rng.standard_normal(n_in), _MIN_MULT)
    r, c = r / r.mean(), c / c.mean()
    dt = np.uint8 if code_bits <= 8 else np.uint16
    high = 1 << code_bits
    k_w = exact_count(weight_density, n_out * n_in)
    if k_w == n_out * n_in:
        codes = rng.integers(1, high, (n_out, n_in), dtype=dt)
    else:
        codes = _exact_codes(r, c, weight_density, k_w, seed, code_bits, dt)
    codebook = np.concatenate([[0.0], np.sort(rng.normal(0.0, 0.05, high - 1))]).astype(np.float32)
    act = np.zeros(n_in, np.float32)
    on = rng.permutation(n_in)[: exact_count(act_density, n_in)]
    act[on] = np.maximum(rng.exponential(1.0, on.size), np.finfo(np.float32).tiny)
    b = None
    if bias:
        b = np.zeros(n_out, dt)
        on = rng.permutation(n_out)[: exact_count(BIAS_DENSITY, n_out)]
        b[on] = rng.integers(1, high, on.size, dtype=dt)
    return Layer(codes, codebook, act, b, name).read_only()


def _benchmark_key(name: str) -> str | None:
    """The :data:`BENCHMARKS` key of a name in any of the paper's spellings, else ``None``.

    Case, hyphens, underscores and spaces are ignored: ``Alex-7``, ``alex-7``, ``alex7``,
    ``NT-LSTM``, ``nt_lstm`` and ``ntlstm`` all name a benchmark.
    """

    def norm(x: str) -> str:
        return "".join(ch for ch in str(x).lower() if ch not in "-_ ")

    table = {norm(k): k for k in BENCHMARKS}
    return table.get(norm(name))


def benchmark_layer(
    name: str, *, seed: int = 0, like: Layer | str | os.PathLike | None = None, **spread
) -> Layer:
    """One of the nine EIE benchmark layers (Table III) as a seeded synthetic layer.

    The non-zero counts are exact (:func:`synthetic_layer`): by default the weight and
    activation densities of Table III. With ``like``, a real layer of the benchmark's shape
    (a ``Layer`` or an ``.npz`` path; the shared ``eie-layer/layer.npz`` is Alex-8), the
    densities and the row / column spread (:func:`fit_spread`) are that layer's measured ones
    instead, so the synthetic layer has exactly the real layer's non-zero counts
    (:data:`REAL_LAYERS` names the benchmark each shared real layer belongs to).

    Args:
        name: a key of ``BENCHMARKS`` (``alex6 alex7 alex8 vgg6 vgg7 vgg8 nt-we nt-wd
            nt-lstm``), in any of the paper's spellings (``Alex-7``, ``alex-7``, ``alex7``).
        seed: random seed.
        like: a real layer (or its ``.npz`` path) with the benchmark's shape ``(n_out, n_in)``
            whose densities and spread to use; ``None``: Table III's densities and the fitted
            defaults ``ROW_CV`` / ``COL_CV``.
        **spread: ``row_cv`` / ``col_cv`` / ``code_bits`` / ``bias`` for ``synthetic_layer``
            (explicit values win over those measured on ``like``).

    Returns:
        ``Layer`` named after the benchmark (``"alex8"``; ``"alex8~real"`` with ``like``).

    Raises:
        ValueError: an unknown name, or ``like`` of another shape than the benchmark's.

    Example:
        >>> import numpy as np
        >>> from eie_model.layers import benchmark_layer
        >>> benchmark_layer("alex8").shape
        (1000, 4096)
        >>> real = benchmark_layer("alex8", seed=5)          # stands in for a real layer here
        >>> twin = benchmark_layer("alex8", like=real)
        >>> twin.name, int(np.count_nonzero(twin.codes)) == int(np.count_nonzero(real.codes))
        ('alex8~real', True)
    """
    key = _benchmark_key(name)
    if key is None:
        raise ValueError(
            f"unknown benchmark layer {name!r}; choose one of {sorted(BENCHMARKS)} (the paper's "
            "spellings such as Alex-7 / alex-7 / alex7 work too)"
        )
    s = BENCHMARKS[key]
    if like is None:
        return synthetic_layer(
            s.n_out, s.n_in, s.weight_density, s.act_density, seed=seed, name=s.name, **spread
        )
    real = like if isinstance(like, Layer) else load_npz_layer(like)
    if tuple(real.shape) != (s.n_out, s.n_in):
        raise ValueError(
            f"benchmark_layer: like has shape {tuple(real.shape)} but {s.name} is "
            f"(n_out, n_in) = ({s.n_out}, {s.n_in}); give a real layer of that benchmark"
        )
    row_cv, col_cv = fit_spread(real.codes)
    kw = {"row_cv": row_cv, "col_cv": col_cv, "bias": real.bias_codes is not None, **spread}
    return synthetic_layer(
        s.n_out,
        s.n_in,
        real.weight_density,
        real.act_density,
        seed=seed,
        name=f"{s.name}~real",
        **kw,
    )


def load_layer(name_or_path: str | os.PathLike, *, seed: int = 0) -> Layer:
    """A benchmark name (``Alex-7``, ``alex-7``, ``alex7``), an ``.npz``, or ``FILE.dcz:LEAF``.

    ``FILE.dcz:LEAF`` loads one kernel of a jaxcomp file with :func:`load_dcz_layer` (all-ones
    activations).

    Example:
        >>> from eie_model.layers import load_layer
        >>> load_layer("nt-we").shape
        (600, 4096)
    """
    key = str(name_or_path)
    if _benchmark_key(key) is not None:
        return benchmark_layer(key, seed=seed)
    if ".dcz:" in key:  # "model.dcz:fc1/kernel": one kernel of a jaxcomp file, activations 1
        file, leaf = key.split(".dcz:", 1)
        return load_dcz_layer(file + ".dcz", leaf)
    if not os.path.exists(key):
        raise ValueError(
            f"layer {key!r} is neither a benchmark name ({', '.join(sorted(BENCHMARKS))}) "
            "nor an existing .npz file (nor FILE.dcz:LEAF)"
        )
    return load_npz_layer(key)
