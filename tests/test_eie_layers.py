"""Benchmark layers: Table III shapes/densities, fitted spread, loaders, and the load-imbalance
test: a synthetic layer with the fitted spread lands close to the real layer's cycle count,
a uniform one does not."""

import numpy as np
import pytest

from eie_model.layers import (
    BENCHMARKS,
    COL_CV,
    ROW_CV,
    Layer,
    benchmark_layer,
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
    assert layer.weight_density == pytest.approx(s.weight_density, rel=0.03)
    assert layer.act_density == pytest.approx(s.act_density, abs=0.03)
    assert layer.codebook[0] == 0.0 and layer.codes.dtype == np.uint8
    assert (layer.act >= 0).all()
    again = benchmark_layer(name, seed=3)
    np.testing.assert_array_equal(layer.codes, again.codes)  # seeded


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
    # shows. Mean over three seeds of the synthetic layer with the fitted spread vs uniform.
    real = load_npz_layer(eie_layer_path)
    params = EIEParams(n_pes=128, fifo_depth=64)
    static = EIEStatic.covering(params)
    target = simulate(static, params, real).cycles
    wd, ad = real.weight_density, real.act_density

    def mean_cycles(**spread):
        runs = []
        for seed in range(3):
            s = synthetic_layer(1000, 4096, wd, ad, seed=seed, **spread)
            runs.append(simulate(static, params, s).cycles)
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
