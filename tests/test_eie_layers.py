"""Benchmark layers: Table III shapes/densities, fitted spread, loaders, and the load-imbalance
test: a synthetic layer with the fitted spread lands close to the real layer's cycle count,
a uniform one does not."""

import numpy as np
import pytest

from eie_model.layers import (
    BENCHMARKS,
    BIAS_DENSITY,
    COL_CV,
    REAL_LAYERS,
    ROW_CV,
    Layer,
    benchmark_layer,
    exact_count,
    fit_spread,
    load_layer,
    load_npz_layer,
    synthetic_layer,
)
from eie_model.reference import simulate
from eie_model.types import EIEParams, EIEStatic


def test_table_iii():
    assert len(BENCHMARKS) == 9
    assert (BENCHMARKS["alex6"].n_in, BENCHMARKS["alex6"].n_out) == (9216, 4096)
    assert BENCHMARKS["vgg6"].weight_density == 0.04
    assert BENCHMARKS["nt-wd"].n_out == 8791


@pytest.mark.parametrize("name", ["alex8", "nt-we", "nt-lstm"])
def test_benchmark_layers_have_paper_densities(name):
    s = BENCHMARKS[name]
    layer = benchmark_layer(name, seed=3)
    assert layer.shape == (s.n_out, s.n_in) and layer.name == name
    assert np.count_nonzero(layer.codes) == exact_count(s.weight_density, s.n_out * s.n_in)
    assert np.count_nonzero(layer.act) == exact_count(s.act_density, s.n_in)
    assert np.count_nonzero(layer.bias_codes) == exact_count(BIAS_DENSITY, s.n_out)
    assert layer.codebook[0] == 0.0 and layer.codes.dtype == np.uint8
    assert (layer.act >= 0).all()
    again = benchmark_layer(name, seed=3)
    for a, b in zip(layer, again, strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same layer
    other = benchmark_layer(name, seed=4)
    assert (other.codes != layer.codes).any() and (other.act != layer.act).any()


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_has_exact_counts_and_the_fitted_spread(name):
    """Scaled to a quarter of each side: the counts are exact for every seed, and the non-zero
    spread over rows and columns is the fitted one (fit_spread recovers ROW_CV / COL_CV)."""
    s = BENCHMARKS[name]
    m, n = max(s.n_out // 4, 150), max(s.n_in // 4, 150)
    for seed in (0, 1):
        layer = synthetic_layer(m, n, s.weight_density, s.act_density, seed=seed)
        assert np.count_nonzero(layer.codes) == exact_count(s.weight_density, m * n)
        assert np.count_nonzero(layer.act) == exact_count(s.act_density, n)
        r, c = fit_spread(layer.codes)
        assert r == pytest.approx(ROW_CV, abs=0.03) and c == pytest.approx(COL_CV, abs=0.03)


def test_exact_counts_on_small_and_extreme_layers():
    """Tiny layers (wide sampling band), density 1, a huge spread (many clipped
    probabilities): the count is still exact and the uniform layer has no extra spread."""
    for m, n, d, cv in ((1, 1, 1.0, 0.1), (3, 5, 0.07, 0.0), (7, 9, 0.5, 3.0), (50, 80, 0.9, 2.0)):
        layer = synthetic_layer(m, n, d, d, seed=2, row_cv=cv, col_cv=cv)
        assert np.count_nonzero(layer.codes) == exact_count(d, m * n), (m, n, d)
        assert np.count_nonzero(layer.act) == exact_count(d, n)
    assert exact_count(0.353, 4096) == round(0.353 * 4096) == 1446
    # a count far from density x size: the band around the threshold misses, the pass is
    # redone with wider bands (the last takes every entry) and the count is still exact
    from eie_model.layers import _exact_codes

    r, c = np.ones(30), np.linspace(0.5, 1.5, 40)
    for k in (1, 700, 1199):
        codes = _exact_codes(r, c, 0.05, k, 3, 4, np.uint8)
        assert np.count_nonzero(codes) == k and codes.max() < 16
        np.testing.assert_array_equal(codes, _exact_codes(r, c, 0.05, k, 3, 4, np.uint8))
    u = synthetic_layer(600, 2000, 0.2, 0.5, seed=0, row_cv=0.0, col_cv=0.0)
    assert max(fit_spread(u.codes)) < 0.03


def test_like_takes_a_real_layers_counts_and_spread():
    real = synthetic_layer(1000, 4096, 0.2566, 0.4294, seed=9, row_cv=0.2, col_cv=0.05)
    twin = benchmark_layer("Alex-8", seed=1, like=real)
    assert twin.name == "alex8~real" and twin.shape == real.shape
    assert np.count_nonzero(twin.codes) == np.count_nonzero(real.codes)
    assert np.count_nonzero(twin.act) == np.count_nonzero(real.act)
    assert np.count_nonzero(twin.bias_codes) == np.count_nonzero(real.bias_codes)
    r, c = fit_spread(twin.codes)
    assert r == pytest.approx(0.2, abs=0.02) and c == pytest.approx(0.05, abs=0.02)
    assert benchmark_layer("alex8", like=real, row_cv=0.0).name == "alex8~real"
    with pytest.raises(ValueError, match=r"like has shape \(1000, 4096\) but alex7"):
        benchmark_layer("alex7", like=real)


def test_spread_is_recovered_by_fit():
    layer = synthetic_layer(600, 2000, 0.2, 0.5, seed=0, row_cv=0.2, col_cv=0.1)
    r, c = fit_spread(layer.codes)
    assert r == pytest.approx(0.2, abs=0.03) and c == pytest.approx(0.1, abs=0.03)
    u = synthetic_layer(600, 2000, 0.2, 0.5, seed=0, row_cv=0.0, col_cv=0.0)
    assert max(fit_spread(u.codes)) < 0.03


def test_bad_input():
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmark_layer("resnet")
    with pytest.raises(ValueError, match="weight_density"):
        synthetic_layer(4, 4, 0.0, 0.5)
    with pytest.raises(ValueError, match="n_out"):
        synthetic_layer(0, 4, 0.1, 0.5)
    with pytest.raises(ValueError, match="neither"):
        load_layer("/nonexistent/x.npz")


def test_npz_loader_checks_keys(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, codes=np.zeros((2, 2), np.uint8), act=np.zeros(2))
    with pytest.raises(ValueError, match="codebook"):
        load_npz_layer(p)
    q = tmp_path / "bad2.npz"
    np.savez(q, codes=np.zeros((2, 2), np.uint8), act=np.zeros(2), codebook=np.ones(16))
    with pytest.raises(ValueError, match=r"codebook\[0\]"):
        load_npz_layer(q)
    good = tmp_path / "g.npz"
    np.savez(good, codes=np.ones((2, 3), np.uint8), act=np.ones(3), codebook=np.arange(16.0))
    layer = load_layer(str(good))
    assert isinstance(layer, Layer) and layer.bias_codes is None and layer.code_bits == 4


def test_real_layer_and_fitted_defaults(eie_layer_path):
    layer = load_npz_layer(eie_layer_path)
    assert layer.shape == (1000, 4096) and layer.bias_codes is not None
    r, c = fit_spread(layer.codes)
    assert r == pytest.approx(ROW_CV, abs=0.002) and c == pytest.approx(COL_CV, abs=0.002)
    nz = layer.codes != 0
    assert (nz.sum(1).min(), nz.sum(1).max(), nz.sum(0).min(), nz.sum(0).max()) == (
        528,
        1435,
        75,
        385,
    )


def test_spread_sets_load_imbalance_like_the_real_layer(eie_layer_path):
    # 128 PEs (8 rows each) and a deep FIFO: cycles follow the busiest PE, so the row spread
    # shows. Mean over three seeds of Alex-8 drawn like the real layer (its exact counts and
    # fitted spread) vs a uniform layer with the same counts.
    real = load_npz_layer(eie_layer_path)
    s = BENCHMARKS["alex8"]
    assert REAL_LAYERS["alex8"].endswith("eie-layer/layer.npz")
    assert real.shape == (s.n_out, s.n_in)  # Alex-8 (25.7% weights; VGG-8 has 23%)
    assert abs(real.weight_density - s.weight_density) < abs(
        real.weight_density - BENCHMARKS["vgg8"].weight_density
    )
    params = EIEParams(n_pes=128, fifo_depth=64)
    static = EIEStatic.covering(params)
    target = simulate(static, params, real).cycles

    def mean_cycles(**spread):
        runs = []
        for seed in range(3):
            layer = benchmark_layer("alex8", seed=seed, like=eie_layer_path, **spread)
            assert np.count_nonzero(layer.codes) == np.count_nonzero(real.codes)
            assert np.count_nonzero(layer.act) == np.count_nonzero(real.act)
            runs.append(simulate(static, params, layer).cycles)
        return np.mean(runs)

    fitted = mean_cycles()
    uniform = mean_cycles(row_cv=0.0, col_cv=0.0)
    assert abs(fitted - target) / target < 0.03
    assert (target - uniform) / target > 0.04


def test_load_dcz_layer_feeds_the_eie_models(tmp_path):
    import jax

    from eie_model.functional import spmv_float
    from eie_model.layers import load_dcz_layer
    from jaxcomp.fileformat import save_compressed

    rng = np.random.default_rng(0)
    codes = (rng.random((30, 12)) < 0.3) * rng.integers(1, 16, (30, 12))  # Flax (in, out)
    codebook = np.concatenate([[0.0], rng.normal(size=15)]).astype(np.float32)
    params = {"fc1": {"kernel": np.zeros((30, 12), np.float32), "bias": np.ones(12, np.float32)}}
    path = tmp_path / "m.dcz"
    save_compressed(path, params, {"fc1/kernel": codebook}, {"fc1/kernel": codes.astype(np.uint8)})
    act = rng.random(30).astype(np.float32)
    layer = load_dcz_layer(path, "fc1/kernel", act)
    assert layer.shape == (12, 30) and layer.name == "m:fc1/kernel" and layer.bias_codes is None
    np.testing.assert_array_equal(layer.codes, codes.T)
    np.testing.assert_array_equal(layer.codebook, codebook)
    y = jax.jit(spmv_float)(layer.codes, layer.codebook, layer.act)
    np.testing.assert_allclose(y, codebook[codes].T @ act, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"not a weight-shared 2-D kernel.*\['fc1/kernel'\]"):
        load_dcz_layer(path, "fc1/bias")
    with pytest.raises(ValueError, match="act must have shape"):
        load_dcz_layer(path, "fc1/kernel", np.ones(5))


def test_load_layer_accepts_a_dcz_leaf(tmp_path):
    from eie_model.layers import load_layer
    from jaxcomp.fileformat import save_compressed

    codes = np.array([[0, 1], [2, 0], [3, 3]], np.uint8)  # (in=3, out=2)
    cb = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    params = {"fc": {"kernel": np.zeros((3, 2), np.float32)}}
    save_compressed(tmp_path / "x.dcz", params, {"fc/kernel": cb}, {"fc/kernel": codes})
    layer = load_layer(f"{tmp_path / 'x.dcz'}:fc/kernel")
    np.testing.assert_array_equal(layer.codes, codes.T)
    np.testing.assert_array_equal(layer.act, np.ones(3, np.float32))


def test_benchmark_names_in_the_papers_spellings():
    """Alex-7, alex-7, alex7 (and NT-LSTM, nt_lstm) name one benchmark layer."""
    from eie_model.layers import load_layer
    from eie_model.types import Layer as L

    a = load_layer("Alex-7")
    for name in ("alex-7", "alex7", "ALEX_7"):
        b = L.load(name)
        assert b.name == a.name == "alex7"
        np.testing.assert_array_equal(b.codes, a.codes)
    assert L.load("NT-LSTM").shape == L.load("nt_lstm").shape == (2400, 1201)
    with pytest.raises(ValueError, match="benchmark"):
        load_layer("alex9")
    with pytest.raises(ValueError, match="Alex-7"):
        benchmark_layer("alex9")
