"""Whole networks on EIE: loading a .dcz chain, the functional forward pass, summed sweeps."""

from __future__ import annotations

import doctest
import importlib

import jax
import numpy as np
import pytest

from eie_model import network as nw
from eie_model.functional import spmv_float
from eie_model.network import (
    Network,
    calibrate_fracs,
    load_dcz_network,
    network_forward,
    network_reference,
    network_sweep,
    writeback_cycles,
)
from eie_model.sweep import sweep
from eie_model.types import EIEParams, EIEStatic, Layer
from jaxcomp.fileformat import save_compressed

SHAPES = ((12, 20), (6, 12), (3, 6))  # EIE (m, n): 20 -> 12 -> 6 -> 3


def _net(seed=0, density=0.4, bits=4, positive=False) -> Network:
    rng = np.random.default_rng(seed)
    codes, books, biases = [], [], []
    for m, n in SHAPES:
        c = rng.integers(1, 2**bits, size=(m, n)) * (rng.random((m, n)) < density)
        codes.append(c.astype(np.uint8))
        w = rng.normal(0, 0.5, 2**bits - 1)
        b = rng.normal(0, 0.1, m)
        books.append(np.concatenate([[0.0], np.abs(w) if positive else w]).astype(np.float32))
        biases.append((np.abs(b) if positive else b).astype(np.float32))
    return Network(("a/kernel", "b/kernel", "c/kernel"), tuple(codes), tuple(books), tuple(biases))


def _x(seed=1, batch=7):
    rng = np.random.default_rng(seed)
    return (rng.random((batch, SHAPES[0][1])) * (rng.random((batch, SHAPES[0][1])) < 0.6)).astype(
        np.float32
    )


def _dense_forward(net, x):
    a = x.astype(np.float64)
    for i, (c, b, bias) in enumerate(zip(net.codes, net.codebooks, net.biases, strict=True)):
        a = a @ b[c].T.astype(np.float64) + bias
        if i < len(net.codes) - 1:
            a = np.maximum(a, 0)
    return a


def test_float_forward_is_the_dense_network_and_spmv_float_per_layer():
    net, x = _net(), _x()
    out, ins = network_forward(net, x, batch=3)  # batching must not matter
    np.testing.assert_allclose(out, _dense_forward(net, x), rtol=1e-5, atol=1e-5)
    assert [a.shape for a in ins] == [(7, 20), (7, 12), (7, 6)]
    # layer 2's input is relu(spmv_float(layer 1) + bias), bit for bit, under jit
    y = jax.jit(spmv_float)(net.codes[0], net.codebooks[0], x[4])
    np.testing.assert_array_equal(ins[1][4], np.maximum(np.asarray(y) + net.biases[0], 0))
    np.testing.assert_array_equal(ins[0], x)


def test_images_are_flattened():
    net = _net()
    x = _x().reshape(7, 4, 5)
    np.testing.assert_array_equal(network_forward(net, x)[0], network_forward(net, _x())[0])


@pytest.mark.parametrize("bits, tol", [(32, 1e-6), (16, 2e-3)])
def test_fixed_forward_tracks_float(bits, tol):
    # non-negative weights: partial sums never exceed the final output, so formats calibrated
    # on the outputs cannot saturate mid-sum (with mixed signs they can, as on EIE)
    net, x = _net(positive=True), _x(batch=20)
    ref, _ = network_forward(net, x)
    fracs = calibrate_fracs(net, x, bits)
    out, _ = network_forward(net, x, bits=bits, fracs=fracs)
    assert np.max(np.abs(out - ref)) < tol * max(1.0, np.abs(ref).max())
    # default fracs = calibrated on x itself
    np.testing.assert_array_equal(network_forward(net, x, bits=bits)[0], out)


def test_fixed_forward_saturates_and_quantizes_on_a_hand_example():
    # one layer: y = 3 * x + bias, 8-bit; x = 1.0 at 6 fraction bits, output at 4 bits
    net = Network(
        ("l",), (np.ones((1, 1), np.uint8),), (np.array([0, 3.0], np.float32),),
        (np.array([0.30], np.float32),),
    )  # fmt: skip
    out, _ = network_forward(net, np.ones((1, 1), np.float32), bits=8, fracs=(6, 4))
    assert out[0, 0] == 3.0 + 5 / 16  # bias 0.30 -> round(4.8) = 5 sixteenths
    # output range at 4 fraction bits is [-8, 127/16]: 9 * 1.0 saturates
    big = Network(net.names, net.codes, (np.array([0, 9.0], np.float32),), net.biases)
    out, _ = network_forward(big, np.ones((1, 1), np.float32), bits=8, fracs=(6, 4))
    assert out[0, 0] == 127 / 16


def test_calibrate_fracs_matches_frac_bits_for():
    net, x = _net(), _x()
    out, ins = network_forward(net, x)
    fr = calibrate_fracs(net, x, 16)
    assert len(fr) == 4
    from eie_model.functional import frac_bits_for

    assert fr[0] == int(frac_bits_for(np.float32(np.abs(x).max()), 16))
    assert fr[-1] == int(frac_bits_for(np.float32(np.abs(out).max()), 16))


def test_network_sweep_is_the_sum_of_layer_sweeps_averaged_over_samples():
    net, x = _net(), _x(batch=3)
    configs = EIEParams.grid(n_pes=[1, 2, 4], fifo_depth=[1, 4])
    static = EIEStatic.covering(configs)
    t = network_sweep(net, x, static, configs, bias=False, writeback=False)
    _, ins = network_forward(net, x)
    want = {k: 0.0 for k in ("cycles", "energy_j", "useful_macs", "busy_total", "busy_max")}
    per_layer = [0.0] * 3
    for s in range(3):
        for i in range(3):
            layer = Layer(net.codes[i], net.codebooks[i], ins[i][s])
            st = static.replace(code_bits=layer.code_bits)
            r = sweep(st, configs, layer).table()
            for k in want:
                want[k] = want[k] + r[k] / 3
            per_layer[i] = per_layer[i] + r["cycles"] / 3
    for k, v in want.items():
        np.testing.assert_allclose(t[k], v, rtol=1e-12)
    for i, name in enumerate(net.names):
        np.testing.assert_allclose(t[f"cycles:{name}"], per_layer[i])
    n = t["n_pes"]
    np.testing.assert_allclose(t["mac_efficiency"], t["useful_macs"] / (t["cycles"] * n))
    np.testing.assert_allclose(t["power_w"], t["energy_j"] / (t["latency_us"] * 1e-6))
    assert np.all(t["load_balance"] <= 1 + 1e-12) and np.all(t["load_balance"] > 0)
    # the network's balance: busy_total / (n_pes * the sum over layers of each one's busiest PE)
    np.testing.assert_allclose(t["load_balance"], want["busy_total"] / (n * want["busy_max"]))
    assert t["n_pes"].tolist() == [1, 1, 2, 2, 4, 4]


def test_network_sweep_one_pe_has_perfect_balance():
    p = EIEParams(n_pes=[1])
    t = network_sweep(_net(), _x(batch=1), EIEStatic.covering(p), p)
    np.testing.assert_allclose(t["load_balance"], 1.0)


# ------------------------------------------------- between layers: write-back, restart, bias
COUNTERS = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
            "stall_cycles", "starvation_cycles", "busy_total", "busy_max", "broadcasts",
            "energy_j", "writeback_cycles")  # fmt: skip


def _with_bias_codes(net: Network, tmp_path) -> Network:
    """``net`` through a .dcz file and ``load_dcz_network(bias="codes")``."""
    params, books, codes = {}, {}, {}
    for name, c, b, bias in zip(net.names, net.codes, net.codebooks, net.biases, strict=True):
        params[name.split("/")[0]] = {"kernel": np.zeros(c.T.shape, np.float32), "bias": bias}
        books[name], codes[name] = b, c.T
    f = tmp_path / "m.dcz"
    save_compressed(f, params, books, codes)
    return load_dcz_network(f, bias="codes")


@pytest.mark.parametrize("engine", ["host", "xla"])
def test_network_sweep_equals_the_cycle_by_cycle_network_reference(engine):
    net, x = _net(), _x(batch=2)
    net = net._replace(biases=(net.biases[0] * (np.arange(12) % 3 != 0),) + net.biases[1:])
    configs = EIEParams.grid(n_pes=[1, 2, 4, 8], fifo_depth=[1, 3], acc_regs=[0, 1])
    static = EIEStatic.covering(configs)
    got = network_sweep(net, x, static, configs, engine=engine)
    want = network_reference(net, x, static, configs)
    for k in (*COUNTERS, *(f"cycles:{n}" for n in net.names)):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)
    # the totals: the layers' own runs plus ceil(m / N) per write-back (fc1 and fc2 only)
    wb = sum(-(-m // configs.n_pes) for m, _ in SHAPES[:-1])
    np.testing.assert_array_equal(got["writeback_cycles"], wb)
    layers = sum(got[f"cycles:{n}"] for n in net.names)
    np.testing.assert_allclose(got["cycles"], layers + wb, rtol=1e-12)
    # the bias column: one more broadcast per layer, one useful MAC per non-zero bias
    off = network_sweep(net, x, static, configs, bias=False, writeback=False, engine=engine)
    one_pass = configs.acc_regs == 0
    np.testing.assert_allclose((got["broadcasts"] - off["broadcasts"])[one_pass], 3.0)
    nz_bias = sum(int(np.count_nonzero(b)) for b in net.biases)
    np.testing.assert_allclose(got["useful_macs"] - off["useful_macs"], nz_bias)


def test_network_reference_writeback_feeds_the_next_layer(tmp_path):
    """The reference's own outputs, written back through ReLU, are the next layer's inputs."""
    from eie_model.network import _reference_writeback
    from eie_model.reference import run

    net, x = _with_bias_codes(_net(), tmp_path), _x(batch=2)
    out, ins = network_forward(net, x)
    for n_pes in (1, 3, 4):
        p = EIEParams(n_pes=n_pes, fifo_depth=2)
        for s in range(len(x)):
            a = ins[0][s]
            for i in range(3):
                layer = Layer(net.codes[i], net.codebooks[i], a, net.bias_codes[i])
                _, y = run(EIEStatic(max_pes=n_pes, code_bits=layer.code_bits), p, layer)
                a, t = _reference_writeback(y, n_pes, relu=i < 2)
                assert t == writeback_cycles(SHAPES[i][0], n_pes)
                want = ins[i + 1][s] if i < 2 else out[s]
                np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
                np.testing.assert_array_equal(a != 0, want != 0)


def test_writeback_cycles_under_jit_and_vmap():
    from eie_model.network import _reference_writeback

    m = np.arange(0, 40)
    for n in (1, 3, 8, 64):
        ticks = [_reference_writeback(np.ones(k, np.float32), n, relu=True)[1] for k in m]
        np.testing.assert_array_equal(writeback_cycles(m, n), ticks)
        np.testing.assert_array_equal(jax.jit(writeback_cycles)(m, n), ticks)
        got = jax.vmap(writeback_cycles, in_axes=(0, None))(jax.numpy.asarray(m), n)
        np.testing.assert_array_equal(got, ticks)


def test_bias_codes_decode_to_the_biases_and_time_like_the_stand_in(tmp_path):
    net = _net()
    coded = _with_bias_codes(net, tmp_path)
    for i in range(3):
        np.testing.assert_array_equal(coded.codebooks[i][coded.bias_codes[i]], net.biases[i])
        np.testing.assert_array_equal(
            coded.codebooks[i][coded.codes[i]], net.codebooks[i][net.codes[i]]
        )
        np.testing.assert_array_equal(coded.bias_column(i) != 0, net.bias_column(i) != 0)
    x = _x(batch=2)
    np.testing.assert_allclose(network_forward(coded, x)[0], network_forward(net, x)[0])
    # exact bias codes widen the codes (up to 15 + 12 values: 5 bits), the oracle still holds
    assert coded.codebooks[0].size > net.codebooks[0].size
    p = EIEParams.grid(n_pes=[2, 4], sram_width=[64])
    st = EIEStatic.covering(p)
    a, b = network_sweep(coded, x, st, p), network_reference(coded, x, st, p)
    for k in COUNTERS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, err_msg=k)
    with pytest.raises(ValueError, match="must equal"):
        stand_in = tuple(net.bias_column(i) for i in range(3))
        Network(net.names, net.codes, net.codebooks, net.biases, stand_in).check()
    with pytest.raises(ValueError, match="bias must be"):
        load_dcz_network(tmp_path / "m.dcz", bias="dense")


def test_load_dcz_network_transposes_and_finds_biases(tmp_path):
    net = _net()
    params = {}
    books, codes = {}, {}
    for name, c, b, bias in zip(net.names, net.codes, net.codebooks, net.biases, strict=True):
        layer = name.split("/")[0]
        params[layer] = {"kernel": np.zeros(c.T.shape, np.float32), "bias": bias}
        books[name], codes[name] = b, c.T  # Flax (in, out)
    f = tmp_path / "m.dcz"
    save_compressed(f, params, books, codes)
    got = load_dcz_network(f)
    assert got.names == net.names and got.shapes == SHAPES
    for a, b in zip(got.codes, net.codes, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got.biases, net.biases, strict=True):
        np.testing.assert_array_equal(a, b)
    sub = load_dcz_network(f, ["b/kernel", "c/kernel"])
    assert sub.shapes == SHAPES[1:]
    with pytest.raises(ValueError, match=r"zz/kernel.*choose among"):
        load_dcz_network(f, ["zz/kernel"])
    with pytest.raises(ValueError, match="chain"):
        load_dcz_network(f, ["a/kernel", "c/kernel"])


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda n: n._replace(biases=n.biases[:2]), "one length"),
        (lambda n: n._replace(biases=(np.zeros(5, np.float32),) + n.biases[1:]), "biases"),
        (lambda n: n._replace(codes=(n.codes[0], n.codes[1][:, :5], n.codes[2])), "chain"),
        (lambda n: n._replace(codebooks=(n.codebooks[0][:3],) + n.codebooks[1:]), "codebook"),
    ],
)
def test_bad_networks_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        network_forward(bad(_net()), _x())


def test_bad_inputs_raise_naming_the_argument():
    net = _net()
    with pytest.raises(ValueError, match=r"x must be \(batch, 20\)"):
        network_forward(net, np.ones((2, 19), np.float32))
    with pytest.raises(ValueError, match="bits must be"):
        network_forward(net, _x(), bits=12)
    with pytest.raises(ValueError, match="fracs must hold 4"):
        network_forward(net, _x(), bits=16, fracs=(8, 8))
    with pytest.raises(ValueError, match="at least one"):
        network_sweep(net, np.zeros((0, 20), np.float32), EIEStatic(), EIEParams(n_pes=[1]))


def test_docstring_examples_run():
    mod = importlib.import_module("eie_model.network")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    assert nw.__all__ == sorted(nw.__all__)


def test_empty_inputs_and_bad_batch_raise_naming_the_argument():
    net = _net()
    empty = np.zeros((0, 20), np.float32)
    with pytest.raises(ValueError, match="x must hold at least one"):
        network_forward(net, empty)
    with pytest.raises(ValueError, match="x must hold at least one"):
        calibrate_fracs(net, empty, 16)
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        network_forward(net, _x(), batch=0)


def test_fixed_32_bit_layers_pass_their_integers_on_exactly():
    """bits=32: the next layer gets the previous one's 32-bit accumulators, not their float32
    rounding (24-bit mantissa). Layer a: y0 = 2**25 + 1, y1 = 2**25 (exact integers at 0
    fraction bits); layer b: y0 - y1 = 1 (0 when y0 is rounded to float32 on the way)."""
    book = np.array([0, 1.0, -1.0, 0], np.float32)
    net = Network(
        ("a", "b"),
        (np.array([[1, 1], [1, 0]], np.uint8), np.array([[1, 2]], np.uint8)),
        (book, book),
        (np.zeros(2, np.float32), np.zeros(1, np.float32)),
    )
    x = np.array([[2.0**25, 1.0]], np.float32)
    out, _ = network_forward(net, x, bits=32, fracs=(0, 0, 0))
    assert out.tolist() == [[1.0]]
    # 16 bits: the same chain in range, under jit inside network_forward
    out, _ = network_forward(net, np.array([[2.0**10, 1.0]], np.float32), bits=16, fracs=(0, 0, 0))
    assert out.tolist() == [[1.0]]


@pytest.mark.parametrize("bits", [8, 16])
def test_fixed_forward_is_spmv_fixed_layer_after_layer(bits):
    """In range of float32 (bits <= 16) every layer is spmv_fixed of the previous layer's output
    (bias added with saturation, ReLU after all but the last), bit for bit, under jit."""
    from functools import partial

    from eie_model.functional import quantize_fixed, spmv_fixed

    net, x = _net(), _x(batch=5)
    fracs = calibrate_fracs(net, x, bits)
    out, ins = network_forward(net, x, bits=bits, fracs=fracs)
    f = jax.jit(partial(spmv_fixed, act_bits=bits, weight_bits=bits))
    for i in range(3):
        y = jax.vmap(lambda v, i=i: f(net.codes[i], net.codebooks[i], v, act_frac=fracs[i],
                                      out_frac=fracs[i + 1]).y_int)(ins[i])  # fmt: skip
        b = np.asarray(quantize_fixed(net.biases[i], bits, fracs[i + 1]), np.int64)
        acc = np.clip(np.asarray(y, np.int64) + b, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        want = np.ldexp(np.maximum(acc, 0) if i < 2 else acc, -fracs[i + 1]).astype(np.float32)
        np.testing.assert_array_equal(ins[i + 1] if i < 2 else out, want, err_msg=f"layer {i}")


def test_network_sweep_without_work():
    """A network without a non-zero weight does no work: balance 1.0, as a layer reports it."""
    net = _net()
    zero = net._replace(  # no weight and no bias (a non-zero bias is work of the bias column)
        codes=tuple(np.zeros_like(c) for c in net.codes),
        biases=tuple(np.zeros_like(b) for b in net.biases),
    )
    p = EIEParams(n_pes=[2])
    t = network_sweep(zero, _x(batch=1), EIEStatic.covering(p), p)
    assert t["busy_total"][0] == 0 and t["load_balance"][0] == 1.0


def _lenet300(seed=0) -> Network:
    """LeNet-300-100's shapes at the thesis' kept fractions (8 / 9 / 26 %) and code bits."""
    rng = np.random.default_rng(seed)
    shapes, keep, bits = ((300, 784), (100, 300), (10, 100)), (0.08, 0.09, 0.26), (5, 5, 6)
    codes, books, biases = [], [], []
    for (m, n), d, b in zip(shapes, keep, bits, strict=True):
        c = rng.integers(1, 2**b, size=(m, n)) * (rng.random((m, n)) < d)
        codes.append(c.astype(np.uint8))
        books.append(np.concatenate([[0.0], rng.normal(0, 0.3, 2**b - 1)]).astype(np.float32))
        biases.append((rng.normal(0, 0.05, m) * (rng.random(m) < 0.9)).astype(np.float32))
    return Network(("fc1/kernel", "fc2/kernel", "fc3/kernel"), *map(tuple, (codes, books, biases)))


def test_lenet300_on_mnist_equals_the_network_reference(mnist_dir):
    """A LeNet-300-100-sized network on real MNIST images: sweep == cycle-by-cycle reference."""
    from jaxcomp.zoo.data import load_mnist

    x = load_mnist(mnist_dir.parent).x_test[:1].reshape(1, -1)
    net = _lenet300()
    p = EIEParams.grid(n_pes=[8, 64], fifo_depth=[2, 8])
    st = EIEStatic.covering(p)
    got, want = network_sweep(net, x, st, p), network_reference(net, x, st, p)
    for k in (*COUNTERS, *(f"cycles:{n}" for n in net.names)):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)
    np.testing.assert_array_equal(got["writeback_cycles"], -(-300 // p.n_pes) - (-100 // p.n_pes))


def test_eie_network_example_splits_the_cycles(load_example, tmp_path):
    ex = load_example("eie_network")
    net = _with_bias_codes(_net(), tmp_path)
    t = ex.compare(net, _x(batch=2), [1, 4], fifo=2)
    np.testing.assert_allclose(t["cycles"] - t["cycles_bias"], t["writeback_cycles"])
    assert np.all(t["cycles_layers"] < t["cycles_bias"]) and np.all(t["writeback_cycles"] > 0)
    assert np.all(t["energy_layers_j"] < t["energy_j"])
    assert "| 4 |" in ex.table(t)
    assert "| 4 | 1.000x | 1.000x |" in ex.speedups(t, t)
