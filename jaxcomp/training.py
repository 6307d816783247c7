"""Training and evaluating a user's Flax model as pure functions, data-parallel over devices.

The pieces :func:`jaxcomp.compress` trains with: an adapter that turns an ``nnx.Module`` or a
Linen ``(module, variables)`` pair into pure ``train`` / ``eval`` functions of two pure dicts
(``params`` and every other collection), :func:`load_model` and :func:`evaluate_model` on such
models, the training data (arrays shuffled by :func:`batches`, or batch iterables), a 1-D
``("data",)`` mesh over the local devices, and the jitted training loop and error counter.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxcomp.config import CompressConfig
from jaxcomp.fileformat import load_compressed
from jaxcomp.tree import leaves_with_paths

__all__ = [
    "batches",
    "default_optimizer",
    "evaluate_model",
    "load_model",
]

#: Examples per forward pass when evaluating.
EVAL_BATCH = 1000


def default_optimizer(
    lr: float, *, steps: int, weight_decay: float = 0.0, momentum: float = 0.9
) -> optax.GradientTransformation:
    """SGD with Nesterov momentum, weight decay and a cosine learning-rate decay over ``steps``.

    The optimizer of the dense and pruning stages (the thesis' Caffe recipes).

    Example:
      >>> tx = default_optimizer(0.1, steps=10, weight_decay=1e-4)
      >>> u, _ = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
      >>> u["w"].shape
      (2,)
    """
    schedule = optax.cosine_decay_schedule(lr, decay_steps=max(steps, 1))
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(schedule, momentum=momentum, nesterov=True),
    )


# ------------------------------------------------------------------------------------ models


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda v: v, tree)


def _default_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class _Model:
    """A user's model as pure functions of two pure dicts: ``params`` (trained, compressed)
    and ``rest`` (every other collection: BatchNorm statistics, RNG state).

    ``train(params, rest, x, key) -> (logits, rest)`` and ``eval(params, rest, x) -> logits``
    are traceable; ``state(params, rest)`` is the whole model state as the file stores it."""

    def __init__(self, model: Any):
        if isinstance(model, nnx.Module):
            self.kind = "nnx"
            self.name = type(model).__name__
            self.module = model
            was_training = _nnx_training(model)
            model.train()
            self._gd_train = nnx.graphdef(model)
            model.eval()
            self._gd_eval = nnx.graphdef(model)
            if was_training:
                model.train()
            _, pstate, rstate = nnx.split(model, nnx.Param, ...)
            self._pstate, self._rstate = _copy(pstate), _copy(rstate)
            self.params = nnx.to_pure_dict(pstate)
            self.rest = nnx.to_pure_dict(rstate)
            self.prefix = ""
        elif isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "apply"):
            from flax.core import unfreeze

            module, variables = model
            if isinstance(variables, Mapping):
                variables = unfreeze(variables)  # plain dicts all the way down
            if not isinstance(variables, Mapping) or "params" not in variables:
                raise TypeError(
                    "model: a Linen pair must be (module, variables) with variables['params'] "
                    f"(module.init's result); got variables of type {type(variables).__name__} "
                    f"with keys {list(variables) if isinstance(variables, Mapping) else None}"
                )
            self.kind = "linen"
            self.name = type(module).__name__
            self.module = module
            self.params = dict(variables["params"])
            self.rest = {k: v for k, v in variables.items() if k != "params"}
            self.prefix = "params/"
            names = inspect.signature(module.__call__).parameters
            self._train_kw = (
                ("train", True, False)
                if "train" in names
                else ("deterministic", False, True)
                if "deterministic" in names
                else None
            )
            self._mutable = [k for k in ("batch_stats",) if k in self.rest]
        else:
            raise TypeError(
                "model must be an nnx.Module or a Linen (module, variables) pair, got "
                f"{type(model).__name__}"
            )

    # -- pure functions ------------------------------------------------------------------

    def _merge(self, gd, params, rest):
        pst, rst = _copy(self._pstate), _copy(self._rstate)
        nnx.replace_by_pure_dict(pst, params)
        nnx.replace_by_pure_dict(rst, rest)
        return nnx.merge(gd, pst, rst)

    def train(self, params, rest, x, key):
        if self.kind == "nnx":
            m = self._merge(self._gd_train, params, rest)
            logits = m(x)
            _, _, rst = nnx.split(m, nnx.Param, ...)
            return logits, nnx.to_pure_dict(rst)
        kw = {} if self._train_kw is None else {self._train_kw[0]: self._train_kw[1]}
        variables = {"params": params, **rest}
        if self._mutable:
            logits, upd = self.module.apply(
                variables, x, mutable=self._mutable, rngs={"dropout": key}, **kw
            )
            return logits, {**rest, **upd}
        return self.module.apply(variables, x, rngs={"dropout": key}, **kw), rest

    def eval(self, params, rest, x):
        if self.kind == "nnx":
            return self._merge(self._gd_eval, params, rest)(x)
        kw = {} if self._train_kw is None else {self._train_kw[0]: self._train_kw[2]}
        return self.module.apply({"params": params, **rest}, x, **kw)

    # -- the whole state -----------------------------------------------------------------

    def state(self, params, rest):
        """The model state for the file: an ``nnx.State`` (variable types recorded) or the
        Linen variables dict."""
        if self.kind == "nnx":
            return nnx.state(self._merge(self._gd_eval, params, rest))
        return {"params": params, **rest}

    def fresh(self, params, rest):
        """A new model object holding ``(params, rest)``: an ``nnx.Module`` or a Linen pair."""
        if self.kind == "nnx":
            return self._merge(self._gd_eval, params, rest)
        return (self.module, {"params": params, **rest})

    def split(self, model):
        """``(params, rest)`` pure dicts of a model object :meth:`fresh` made."""
        if self.kind == "nnx":
            _, pst, rst = nnx.split(model, nnx.Param, ...)
            return nnx.to_pure_dict(pst), nnx.to_pure_dict(rst)
        variables = model[1]
        return dict(variables["params"]), {k: v for k, v in variables.items() if k != "params"}

    def fingerprint(self) -> dict:
        """Class name and a SHA-256 of every leaf of the initial state (a different model, or
        other initial weights, is other settings)."""
        h = hashlib.sha256()
        for tree in (self.params, self.rest):
            for path, x in leaves_with_paths(tree):
                if jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
                    x = jax.random.key_data(x)
                a = np.asarray(x)
                h.update(f"{path}:{a.dtype}:{a.shape};".encode())
                h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return {"class": self.name, "kind": self.kind, "sha256": h.hexdigest()}


def _nnx_training(model: nnx.Module) -> bool:
    """Whether any submodule of ``model`` is in training mode (Dropout not deterministic,
    BatchNorm not using running averages); False for a model without such layers."""
    for _, m in nnx.iter_graph(model):
        if getattr(m, "deterministic", None) is False:
            return True
        if getattr(m, "use_running_average", None) is False:
            return True
    return False


def load_model(path: str | os.PathLike, model: Any, *, max_ratio: float | None = None) -> Any:
    """Fill a model with the state stored in a ``.dcz`` file (as :func:`compress` writes it).

    The file must hold exactly the model's state: every leaf (parameters, BatchNorm statistics,
    RNG state), with the same shapes, dtypes and NNX variable types; else
    :class:`jaxcomp.DczFormatError` names the first leaf that differs.

    Args:
      path: the ``.dcz`` file.
      model: an ``nnx.Module`` of the architecture that was compressed (e.g. a fresh one from
        the same factory; it is updated in place), or a Linen ``(module, variables)`` pair
        (``variables`` may be ``jax.eval_shape`` of ``module.init``).
      max_ratio: the loader's limit on decoded bytes per file byte
        (:data:`jaxcomp.DEFAULT_MAX_RATIO` when None).

    Returns:
      the NNX module (the same object), or ``(module, variables)`` with the file's variables.

    Raises:
      jaxcomp.DczFormatError: a damaged file, or one that does not hold this model's state.
      TypeError: ``model`` is neither.

    Example:
      >>> import tempfile, os
      >>> from jaxcomp.fileformat import save_compressed
      >>> m = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> f = os.path.join(tempfile.mkdtemp(), "m.dcz")
      >>> _ = save_compressed(f, nnx.state(m), {}, {})
      >>> other = load_model(f, nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
      >>> bool(jnp.all(other.kernel[...] == m.kernel[...]))
      True
    """
    kw = {} if max_ratio is None else {"max_ratio": max_ratio}
    if isinstance(model, nnx.Module):
        state = nnx.state(model)
        tree = load_compressed(path, target=state, **kw)
        nnx.replace_by_pure_dict(state, tree)
        nnx.update(model, state)
        return model
    if isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "apply"):
        module, variables = model
        return module, load_compressed(path, target=variables, **kw)
    raise TypeError(
        f"model must be an nnx.Module or a Linen (module, variables) pair, got "
        f"{type(model).__name__}"
    )


# -------------------------------------------------------------------------------------- data


def _check_arrays(arrays: tuple, name: str) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` as arrays with matching lengths and shapes."""
    names = ("x_train", "y_train", "x_test", "y_test")
    out = []
    for n, a in zip(names, arrays, strict=True):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            try:
                a = np.asarray(a)
            except Exception:
                raise ValueError(f"{name}: {n} is a {type(a).__name__}, not an array") from None
            if a.dtype == object:
                raise ValueError(f"{name}: {n} is not a numeric array (dtype object)")
        if a.ndim < 1:
            raise ValueError(f"{name}: {n} is a scalar; give one entry per example")
        out.append(a)
    xt, yt, xe, ye = out
    for x, y, part in ((xt, yt, "train"), (xe, ye, "test")):
        if len(x) == 0:
            raise ValueError(f"{name}: x_{part} is empty")
        if len(x) != len(y):
            raise ValueError(
                f"{name}: x_{part} has {len(x)} examples but y_{part} has {len(y)}; they must match"
            )
    if xt.shape[1:] != xe.shape[1:]:
        raise ValueError(
            f"{name}: x_train examples have shape {xt.shape[1:]} but x_test ones {xe.shape[1:]}"
        )
    if yt.shape[1:] != ye.shape[1:]:
        raise ValueError(
            f"{name}: y_train entries have shape {yt.shape[1:]} but y_test ones {ye.shape[1:]}"
        )
    return tuple(out)


class _Data:
    """Training and test batches from arrays or from batch iterables."""

    def __init__(self, data: Any, config: CompressConfig, devices: int, log: Callable):
        self.log = log
        self.devices = devices
        self.batch_size = config.batch_size
        self.limit = config.train_limit
        self.source = getattr(data, "source", None)
        fields = ("x_train", "y_train", "x_test", "y_test")
        if all(hasattr(data, f) for f in fields):
            data = tuple(getattr(data, f) for f in fields)
        if isinstance(data, (tuple, list)) and len(data) == 4:
            self.arrays = tuple(np.asarray(a) for a in _check_arrays(tuple(data), "data"))
            xt, yt, xe, ye = self.arrays
            if self.limit is not None:
                self.arrays = (xt[: self.limit], yt[: self.limit], xe, ye)
            self.n_train = len(self.arrays[0])
            self.n_test = len(xe)
            if self.n_train < self.batch_size:
                raise ValueError(
                    f"data: {self.n_train} training examples are fewer than one batch "
                    f"(batch_size {self.batch_size})"
                )
            self.steps_per_epoch = self.n_train // self.batch_size
            self.source = self.source or "arrays"
            h = hashlib.blake2b(digest_size=16)
            for a in (xt, yt, xe, ye):
                a = np.asarray(a)
                h.update(f"{a.dtype}:{a.shape};".encode())
                h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
            self.fingerprint = {"kind": "arrays", "blake2b": h.hexdigest()}
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            self.arrays = None
            self._train, self._test = (
                self._reusable(d, which) for d, which in zip(data, ("train", "test"), strict=True)
            )
            self.source = self.source or "batches"
            self.fingerprint = {"kind": "batches"}
            self._noted = False
            self.steps_per_epoch = sum(1 for _ in self.train(0, 0))
            if self.steps_per_epoch == 0:
                raise ValueError("data: the training batches are empty")
            self.n_train = None
            self.n_test = None
        else:
            raise TypeError(
                "data must be (x_train, y_train, x_test, y_test) arrays or (train_batches, "
                f"test_batches) iterables of (x, y); got {type(data).__name__}"
                + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            )

    @staticmethod
    def _reusable(d: Any, which: str) -> Callable[[], Iterable]:
        if callable(d):
            return d
        if iter(d) is d:
            raise TypeError(
                f"data: the {which} batches are a one-shot iterator, which cannot serve several "
                "epochs; give a list, a re-iterable object, or a zero-argument callable that "
                "returns a fresh iterable"
            )
        return lambda: d

    def _pairs(self, it: Iterable, which: str):
        for item in it:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(
                    f"data: each {which} batch must be an (x, y) pair, got {type(item).__name__}"
                )
            x, y = item
            if len(x) != len(y):
                raise ValueError(f"data: a {which} batch has {len(x)} inputs but {len(y)} labels")
            yield x, y

    def train(self, seed: int, epoch: int):
        """The training batches of ``epoch``, each a multiple of the device count."""
        if self.arrays is not None:
            xt, yt = self.arrays[:2]
            yield from batches(xt, yt, self.batch_size, seed=seed, epoch=epoch)
            return
        seen = 0
        for x, y in self._pairs(self._train(), "train"):
            if self.limit is not None:
                if seen >= self.limit:
                    return
                x, y = x[: self.limit - seen], y[: self.limit - seen]
            keep = len(x) - len(x) % self.devices
            if keep != len(x) and not self._noted:
                self._noted = True
                self.log(
                    f"note: a training batch of {len(x)} examples does not split over "
                    f"{self.devices} devices; the last {len(x) - keep} example(s) of such "
                    "batches are dropped"
                )
            if keep == 0:
                continue
            seen += len(x)
            yield x[:keep], y[:keep]

    def test(self):
        """The test batches (every example, in order)."""
        if self.arrays is not None:
            xe, ye = self.arrays[2:]
            for i in range(0, len(xe), EVAL_BATCH):
                yield xe[i : i + EVAL_BATCH], ye[i : i + EVAL_BATCH]
            return
        yield from self._pairs(self._test(), "test")

    def first_test(self):
        for x, y in self.test():
            return x, y
        raise ValueError("data: the test set is empty")


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` in an order fixed by ``(seed, epoch)``.

    Args:
      x: (n, ...) inputs.
      y: (n,) labels.
      batch_size: examples per batch (> 0).
      seed: shuffling seed; the same ``(seed, epoch)`` always gives the same order.
      epoch: epoch number, so each epoch is a different permutation.
      shuffle: if False, keep the data order.
      drop_last: drop the last incomplete batch (keeps shapes static under ``jit``).

    Yields:
      ``x[idx]`` (batch_size, ...) and ``y[idx]`` (batch_size,).

    Example:
      >>> x, y = np.arange(10.0)[:, None], np.arange(10)
      >>> [yb.tolist() for _, yb in batches(x, y, 4, seed=0, shuffle=False)]
      [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}; they must match")
    n = len(x)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


# -------------------------------------------------------------------------------- parallel


class _Parallel:
    """Data parallelism over the local devices: a 1-D mesh ``("data",)``; batches split along
    their first axis, everything else replicated. One device: plain ``jax.jit``."""

    def __init__(self, batch_size: int | None = None):
        self.devices = jax.local_devices()
        self.n = len(self.devices)
        if batch_size is not None and batch_size % self.n:
            raise ValueError(
                f"batch_size {batch_size} does not split over the {self.n} local devices; "
                f"give a multiple of {self.n} (or make fewer devices visible, e.g. with "
                "CUDA_VISIBLE_DEVICES)"
            )
        self._mesh = None

    def _shardings(self) -> tuple[NamedSharding, NamedSharding]:
        if self._mesh is None:
            self._mesh = Mesh(np.array(self.devices), ("data",))
        return NamedSharding(self._mesh, P()), NamedSharding(self._mesh, P("data"))

    def jit(self, fn: Callable, n_replicated: int, n_batch: int, n_after: int = 0) -> Callable:
        if self.n == 1:
            return jax.jit(fn)
        rep, batch = self._shardings()
        shardings = (rep,) * n_replicated + (batch,) * n_batch + (rep,) * n_after
        return jax.jit(fn, in_shardings=shardings, out_shardings=rep)

    def replicate(self, tree: Any) -> Any:
        return tree if self.n == 1 else jax.device_put(tree, self._shardings()[0])


# -------------------------------------------------------------------------------- training


def _train(
    m: _Model,
    params: Any,
    rest: Any,
    tx: optax.GradientTransformation,
    data: _Data,
    par: _Parallel,
    *,
    epochs: int,
    seed: int,
    loss_fn: Callable,
    opt_state: Any = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[Any, Any, Any, dict]:
    """``epochs`` epochs of ``tx`` on ``data``; returns params, rest, opt_state and
    ``{"loss": per-epoch mean loss, "seconds"}``. The batch order of epoch ``e`` is fixed by
    ``(seed, e)``; a dropout key per step is ``fold_in(key(seed), step)``."""

    def step(params, rest, opt_state, x, y, key, i):
        def lossf(p):
            logits, new_rest = m.train(p, rest, x, jax.random.fold_in(key, i))
            return loss_fn(logits, y), new_rest

        (loss, new_rest), grads = jax.value_and_grad(lossf, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, new_rest, opt_state, loss

    jstep = par.jit(step, 3, 2, 2)
    opt_state = tx.init(params) if opt_state is None else opt_state
    params, rest, opt_state = par.replicate((params, rest, opt_state))
    key = jax.random.key(seed)
    history: dict = {"loss": []}
    t0 = time.perf_counter()
    n = 0
    total = epochs * data.steps_per_epoch
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            losses = []
            for xb, yb in data.train(seed, epoch):
                params, rest, opt_state, loss = jstep(
                    params, rest, opt_state, xb, yb, key, np.uint32(n)
                )
                losses.append(loss)
                n += 1
                bar.update(1)
                if len(losses) % 50 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}")
            history["loss"].append(float(np.mean(jax.device_get(losses))) if losses else None)
    history["seconds"] = time.perf_counter() - t0
    return params, rest, opt_state, history


def _error_fn(m: _Model, eval_fn: Callable | None) -> Callable:
    """A jitted ``(params, rest, x, y) -> errors in the batch``: the number of wrong argmax
    predictions (default), or ``eval_fn(logits, y) * len(x)``; one per model and metric."""
    cache = m.__dict__.setdefault("_error_fns", {})
    if eval_fn not in cache:
        if eval_fn is None:

            def f(params, rest, x, y):
                return jnp.sum(jnp.argmax(m.eval(params, rest, x), -1) != y)
        else:

            def f(params, rest, x, y):
                return eval_fn(m.eval(params, rest, x), y) * x.shape[0]

        cache[eval_fn] = jax.jit(f)
    return cache[eval_fn]


def _evaluate(m: _Model, params: Any, rest: Any, data: _Data, eval_fn: Callable | None) -> float:
    f = _error_fn(m, eval_fn)
    total, n = 0.0, 0
    for x, y in data.test():
        e = f(params, rest, x, y)
        total += int(e) if eval_fn is None else float(e)
        n += len(x)
    if n == 0:
        raise ValueError("data: the test set is empty")
    return total / n


def evaluate_model(
    model: Any,
    x: Any,
    y: Any,
    *,
    eval_fn: Callable | None = None,
    batch_size: int = EVAL_BATCH,
) -> float:
    """Test error of a model (in eval mode: BatchNorm running averages, no dropout).

    Args:
      model: an ``nnx.Module`` or a Linen ``(module, variables)`` pair whose call gives logits
        (batch, classes).
      x: inputs (n, ...).
      y: labels (n,) (integers for the default metric).
      eval_fn: ``eval_fn(logits, y) -> scalar error`` of a batch (default: the fraction of
        wrong argmax predictions); batches are weighted by their size.
      batch_size: examples per forward pass.

    Returns:
      the error, a float (a fraction in [0, 1] for the default metric).

    Example:
      >>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
      >>> x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
      >>> y = np.asarray(jnp.argmax(m(x), -1))
      >>> evaluate_model(m, x, y), evaluate_model(m, x, 1 - y)
      (0.0, 1.0)
    """
    _check_arrays((x, y, x, y), "evaluate_model")
    m = _Model(model)
    f = _error_fn(m, eval_fn)
    total = 0.0
    for i in range(0, len(x), batch_size):
        e = f(m.params, m.rest, x[i : i + batch_size], y[i : i + batch_size])
        total += int(e) if eval_fn is None else float(e)
    return total / len(x)


def _pure_apply_model(apply: Callable, params: Any) -> _Model:
    """A :class:`_Model` around a pure ``apply(params, x) -> logits`` (no other state)."""
    m = _Model.__new__(_Model)
    m.kind, m.name, m.prefix = "apply", getattr(apply, "__name__", "apply"), ""
    m.params, m.rest = params, {}
    m.train = lambda p, r, x, key: (apply(p, x), r)
    m.eval = lambda p, r, x: apply(p, x)
    return m


def _check_params(params: Any, name: str = "params") -> None:
    """A nested dict of finite float arrays (checked on the host, before any jitted step)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{name} must be a nested dict of arrays, got {type(params).__name__}")
    for p, x in leaves_with_paths(params):
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"{name}[{p!r}] must be a float array, got {dtype}")
        if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"{name}[{p!r}] holds NaN or infinite values")
