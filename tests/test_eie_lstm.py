"""An LSTM cell's gate matrix on EIE: merged codebook, per-step functional and cycle models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcomp
from eie_model import lstm as L
from eie_model import reference
from eie_model.types import EIEParams, EIEStatic
from jaxcomp import schedules
from jaxcomp.fileformat import save_compressed

N_IN, HIDDEN, STEPS = 28, 16, 28
PARAMS = EIEParams(n_pes=4, fifo_depth=2)  # one design point: one compiled step program


class LSTMClassifier(nnx.Module):
    """The model of examples/lstm_mnist.py, smaller."""

    def __init__(self, hidden=HIDDEN, *, rngs):
        self.rnn = nnx.RNN(nnx.LSTMCell(N_IN, hidden, rngs=rngs))
        self.head = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        h = self.rnn(x.reshape(x.shape[0], STEPS, N_IN))
        return self.head(h[:, -1])


def _data(n=32, seed=0):
    """MNIST-like rows: sparse non-negative pixels in [0, 1] (many exact zeros)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, STEPS, N_IN)) * (rng.random((n, STEPS, N_IN)) < 0.25)
    return x.astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def _compress(tmp, *, bits=3, steps=4, share_head=True):
    """Train a few steps with jaxcomp.prune(share_weights(adam)) and save the whole state."""
    model = LSTMClassifier(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    pure = nnx.to_pure_dict(params)
    flat = {jaxcomp.tree.path_to_str(p): v for p, v in jax.tree_util.tree_leaves_with_path(pure)}
    kernels = [k for k in flat if k.endswith("kernel") and (share_head or "head" not in k)]
    tx = jaxcomp.prune(
        jaxcomp.share_weights(optax.adam(1e-2), bits=dict.fromkeys(kernels, bits), init="uniform"),
        schedules.constant(0.6),
        include=kernels,
    )
    state = tx.init(pure)
    x, y = _data()

    @jax.jit
    def step(pure, state, template, rest):
        def loss(p):
            ps = jax.tree.map(lambda v: v, template)  # a fresh State to fill
            nnx.replace_by_pure_dict(ps, p)
            m = nnx.merge(graphdef, ps, jax.tree.map(lambda v: v, rest))
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        g = jax.grad(loss)(pure)
        u, state = tx.update(g, state, pure)
        return optax.apply_updates(pure, u), state

    for _ in range(steps):
        pure, state = step(pure, state, params, rest)
    share = state.inner_state
    cbs = {k: v for k, v in _flat(share.codebooks).items() if v is not None}
    codes = {k: v for k, v in _flat(share.codes).items() if v is not None}
    nnx.replace_by_pure_dict(params, pure)
    model = nnx.merge(graphdef, params, rest)
    path = tmp / "lstm.dcz"
    save_compressed(path, nnx.state(model), cbs, codes)
    return model, path


def _flat(tree):
    out = {}
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda v: v is None)
    for p, v in leaves:
        out[jaxcomp.tree.path_to_str(p)] = None if v is None else np.asarray(v)
    return out


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    return _compress(tmp_path_factory.mktemp("lstm"))


def test_merged_gate_matrix_is_the_cell(compressed):
    model, path = compressed
    gates = L.load_dcz_lstm(path)
    n, H = N_IN, HIDDEN
    assert gates.layer.shape == (4 * H, n + H) and (gates.n_in, gates.hidden) == (n, H)
    # eight 3-bit codebooks, merged: every weight exactly the model's, the code width the
    # smallest that holds the distinct non-zero centroids
    cell = model.rnn.cell
    W = gates.layer.weights()
    for g, (xk, hk) in enumerate(L.GATE_LEAVES):
        rows = slice(g * H, (g + 1) * H)
        np.testing.assert_array_equal(W[rows, :n], np.asarray(getattr(cell, xk).kernel[...]).T)
        np.testing.assert_array_equal(W[rows, n:], np.asarray(getattr(cell, hk).kernel[...]).T)
        np.testing.assert_array_equal(gates.bias[rows], np.asarray(getattr(cell, hk).bias[...]))
    distinct = np.unique(W[W != 0])
    assert gates.code_bits == int(distinct.size).bit_length()
    assert gates.leaf_bits == dict.fromkeys(gates.leaf_bits, 3) and len(gates.leaf_bits) == 8
    assert gates.code_bits > 3  # the union needs more than one leaf's bits
    assert gates.head is not None
    np.testing.assert_array_equal(gates.head[0], np.asarray(model.head.kernel[...]))


def test_gates_times_activations_equal_the_jax_cell(compressed):
    model, path = compressed
    gates = L.load_dcz_lstm(path)
    x, _ = _data(3, seed=5)
    ref = L.lstm_reference(gates, x[1])
    # the reference is the model's own recurrence: its last h gives the model's logits
    np.testing.assert_allclose(ref.logits, np.asarray(model(x))[1], rtol=1e-5, atol=1e-5)
    # and its pre-activations, through the nonlinearities, give the next carry
    H = HIDDEN
    i, f, g, o = (ref.pre[:, k * H : (k + 1) * H] for k in range(4))
    sig = jax.nn.sigmoid
    c = sig(f) * ref.c_prev + sig(i) * jnp.tanh(g)
    h = sig(o) * jnp.tanh(c)
    np.testing.assert_allclose(h[:-1], ref.h_prev[1:], rtol=1e-5, atol=1e-6)
    # the merged gate matrix times [x; h] (+ bias) is JAX's pre-activation, float32-tight
    act = np.concatenate([ref.x, ref.h_prev], axis=1)
    dense = act.astype(np.float64) @ gates.layer.weights().T.astype(np.float64) + gates.bias
    np.testing.assert_allclose(ref.pre, dense, rtol=1e-5, atol=1e-5)
    run = L.lstm_on_eie(gates, x[1], params=PARAMS, recurrent=False)
    np.testing.assert_allclose(run.eie_float, ref.pre, rtol=1e-5, atol=1e-5)
    assert run.err_float.max() < 1e-5


@pytest.mark.parametrize("bias", ["add", "codes"])
def test_fixed_point_within_its_quantisation_bound(compressed, bias):
    _, path = compressed
    gates = L.load_dcz_lstm(path, bias=bias)
    assert (gates.layer.bias_codes is None) == (bias == "add")
    x, _ = _data(1, seed=7)
    run = L.lstm_on_eie(gates, x[0], params=PARAMS)
    exact = run.eie_float.astype(np.float64)
    err = np.abs(run.eie_fixed - exact)
    assert np.all(err <= run.bound), float((err - run.bound).max())
    slack = 1e-5 * np.abs(run.jax_pre).max()  # JAX's own float32 rounding
    assert np.all(np.abs(run.eie_fixed - run.jax_pre) <= run.bound + slack)
    assert 0 < run.err_fixed.max() < 2e-2 and run.bits == 16
    if bias == "add":  # explicit formats are used as given (traced: no new program)
        again = L.lstm_on_eie(gates, x[0], params=PARAMS, fracs=run.fracs, recurrent=False)
        np.testing.assert_array_equal(again.eie_fixed, run.eie_fixed)
        fa, fw, fy = run.fracs
        coarse = L.lstm_on_eie(gates, x[0], params=PARAMS, fracs=(fa, fw, fy - 3),
                               recurrent=False)  # fmt: skip
        assert coarse.fracs == (fa, fw, fy - 3)
        assert np.all(np.abs(coarse.eie_fixed - coarse.eie_float) <= coarse.bound)
        assert coarse.err_fixed.max() > run.err_fixed.max()
    # the recurrence on EIE ends near JAX's logits (16-bit gates, float32 nonlinearities)
    np.testing.assert_allclose(run.logits_eie, run.reference.logits, atol=5e-2)
    if bias == "codes":  # the bias column is one more broadcast per step
        assert np.all(run.counters.broadcasts == run.active + 1)
    else:
        assert np.all(run.counters.broadcasts == run.active)


def test_cycles_equal_the_reference_simulator_and_one_trace(compressed):
    _, path = compressed
    gates = L.load_dcz_lstm(path)
    x, _ = _data(2, seed=3)
    params = PARAMS
    run = L.lstm_on_eie(gates, x[0], params=params, recurrent=False)
    traces, cache = L.TRACES["step"], L._step._cache_size()
    run2 = L.lstm_on_eie(gates, x[1], params=params)  # new activations, recurrence: no retrace
    assert (L.TRACES["step"], L._step._cache_size()) == (traces, cache)
    assert not np.array_equal(run.active, run2.active)  # the steps did differ
    static = EIEStatic(max_pes=4, max_fifo=2, code_bits=gates.code_bits)
    for t in (0, 9, STEPS - 1):
        act = np.concatenate([run.reference.x[t], run.reference.h_prev[t]])
        want = reference.simulate(static, params, gates.layer._replace(act=act))
        got = run.counters[t]
        for k in ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
                  "stall_cycles", "starvation_cycles"):  # fmt: skip
            assert int(getattr(got, k)) == int(getattr(want, k)), (t, k)
        np.testing.assert_array_equal(got.busy[:4], want.busy)
    assert np.all(run.energy_j > 0) and run.table()["cycles"].shape == (STEPS,)
    # step 0 has h = 0: only the non-zero pixels are broadcast
    assert run.active[0] == np.count_nonzero(x[0][0])


def test_reference_under_vmap_and_the_step_under_jit(compressed):
    _, path = compressed
    gates = L.load_dcz_lstm(path)
    x, _ = _data(3, seed=11)
    from flax import nnx as _nnx

    graphdef, state = _nnx.split(L._cell_module(gates))
    batched = jax.vmap(lambda s: L._jax_sequence(graphdef, state, s)[3])(jnp.asarray(x))
    for b in range(3):
        np.testing.assert_allclose(batched[b], L.lstm_reference(gates, x[b]).pre, rtol=1e-6,
                                   atol=1e-6)  # fmt: skip


def test_merge_codebooks_is_exact_and_drops_unused():
    cbs = {"a": np.array([0.0, 0.5, -1.0, 3.0], np.float32), "b": np.array([0, 0.5, 0.0, 2.0])}
    codes = {"a": np.array([[1, 2], [0, 1]]), "b": np.array([3, 2, 1])}
    book, luts = L.merge_codebooks(cbs, {k: v for k, v in codes.items()})
    assert book.tolist() == [0.0, -1.0, 0.5, 2.0]  # 3.0 unused, b's 0.0 centroid -> code 0
    for k in cbs:
        np.testing.assert_array_equal(book[luts[k][codes[k]]], np.asarray(cbs[k])[codes[k]])
    with pytest.raises(ValueError, match="same leaves"):
        L.merge_codebooks(cbs, {"a": codes["a"]})
    with pytest.raises(ValueError, match="codes of 'a'"):
        L.merge_codebooks(cbs, {"a": np.array([4]), "b": codes["b"]})


def test_clear_errors(compressed, tmp_path):
    model, path = compressed
    with pytest.raises(ValueError, match=r"prefix 'cell'.*\['rnn/cell'\]"):
        L.load_dcz_lstm(path, prefix="cell")
    with pytest.raises(ValueError, match="bias must be one of"):
        L.load_dcz_lstm(path, bias="dense")
    gates = L.load_dcz_lstm(path)
    with pytest.raises(ValueError, match=r"xs must be \(T, 28\)"):
        L.lstm_reference(gates, np.zeros((5, 27), np.float32))
    with pytest.raises(ValueError, match="bits must be 8, 16 or 32"):
        L.lstm_on_eie(gates, np.zeros((2, 28), np.float32), bits=12)
    with pytest.raises(ValueError, match="fracs must be three ints"):
        L.lstm_on_eie(gates, np.zeros((2, 28), np.float32), fracs=(14, 15))
    with pytest.raises(ValueError, match="one EIE design point"):
        L.lstm_on_eie(gates, np.zeros((2, 28), np.float32), params=EIEParams(n_pes=[2, 4]))
    # a gate kernel saved dense: named, with the fix
    from jaxcomp.fileformat import load_compressed_codes

    stored = load_compressed_codes(path)
    cbs = {k: v[0] for k, v in stored.items() if isinstance(v, tuple) and "hg/" not in k}
    codes = {k: v[1] for k, v in stored.items() if isinstance(v, tuple) and "hg/" not in k}
    dense = tmp_path / "dense_hg.dcz"
    save_compressed(dense, nnx.state(model), cbs, codes)
    with pytest.raises(ValueError, match=r"'rnn/cell/hg/kernel'.*dense.*share_weights"):
        L.load_dcz_lstm(dense)


def test_example_prints_the_per_step_table(compressed, load_example, capsys, tmp_path):
    _, path = compressed
    ex = load_example("lstm_eie")
    argv = ["--dcz", str(path), "--image", "1", "--pes", "4", "--fifo", "2", "--agree", "2"]
    assert ex.main(argv) == 0
    out = capsys.readouterr().out
    assert "test images 0..1: class equal to JAX's on" in out
    rows = [ln for ln in out.splitlines() if ln.split()[:1] and ln.split()[0].isdigit()]
    assert len(rows) == STEPS and rows[-1].split()[0] == str(STEPS - 1)
    assert "total:" in out and "recurrence on EIE class" in out
    missing = tmp_path / "none.dcz"
    assert ex.main(["--dcz", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "examples/lstm_mnist.py" in err and "--train-demo" in err


def test_a_cell_that_is_not_an_nnx_lstm_cell_is_named(compressed):
    _, path = compressed
    gates = L.load_dcz_lstm(path)
    params = {k: dict(v) for k, v in gates.cell_params.items()}
    del params["hg"]["bias"]
    with pytest.raises(ValueError, match=r"not an nnx.LSTMCell.*lack \['hg/bias'\]"):
        L.lstm_reference(gates._replace(cell_params=params), np.zeros((2, N_IN), np.float32))
