"""Deep Compression of any Flax model end to end (thesis chapter 4): prune, share, Huffman-code.

:func:`compress` runs the four stages on a user's model -- an ``nnx.Module`` or a Linen
``(module, variables)`` pair -- and data, each checkpointed with orbax under ``OUT/stages/`` so
that a rerun skips every finished stage whose settings did not change:

1. **dense** -- the baseline: trained ``dense_epochs`` epochs (SGD + Nesterov + L2, cosine
   learning rate), or the model as given when ``dense_epochs=0``.
2. **pruned** -- iterative magnitude pruning with retraining (:func:`jaxcomp.prune`): each
   compressed leaf reaches ``prune_fractions`` of its target sparsity ``epochs_per_step`` epochs
   apart, then retrains to ``prune_epochs``.
3. **quantized** -- weight sharing per leaf (k-means over the kept weights, code 0 = pruned) and
   centroid fine-tuning (:func:`jaxcomp.share_weights`, Deep Compression eq. 3).
4. **final** -- relative indices + Huffman coding of the whole model state (every collection:
   BatchNorm statistics, RNG state) into ``OUT/model.dcz``, the report as ``OUT/report.md`` /
   ``OUT/report.json``, plots under ``OUT/plots/``; the test error of the model read back from
   the file with :func:`load_model`.

Training runs data-parallel over every local device (a 1-D ``jax.sharding.Mesh`` named
``"data"``: each batch split over the devices, parameters and optimizer state replicated; masks
and codebooks are computed on the global arrays). See ``docs/guides/compress-any-model.md``.

This module holds the stages and the driver; the settings are ``jaxcomp.config``, the model
adapter, data and training loop ``jaxcomp.training``, the output folder ``jaxcomp.rundir``. The
thesis' LeNet settings are presets: :func:`jaxcomp.zoo.preset`; the command line is
:mod:`jaxcomp.cli` (``jaxcomp compress --model PATH.py:FACTORY --data PATH.py:LOADER``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcomp import schedules
from jaxcomp.atomic import atomic_open
from jaxcomp.config import CompressConfig
from jaxcomp.fileformat import save_compressed
from jaxcomp.masks import load_balanced_mask
from jaxcomp.pruning import apply_masks, prune
from jaxcomp.quantize import codes_dtype, plot_codebook
from jaxcomp.report import compression_report
from jaxcomp.rundir import (
    _SETTINGS_NAME,
    _check_out_dir,
    _OutLock,
    _read_json,
    _remove_orphans,
    _settings_diff,
    _Stage,
    _write_json,
    _write_text,
)
from jaxcomp.sharing import share_weights, shared_params
from jaxcomp.training import (
    _check_params,
    _Data,
    _default_loss,
    _evaluate,
    _Model,
    _Parallel,
    _pure_apply_model,
    _train,
    default_optimizer,
    load_model,
)
from jaxcomp.tree import leaves_with_paths

__all__ = [
    "STAGES",
    "compress",
    "prune_stage",
    "quantize_stage",
]

#: Stage names, in order; ``report.json["test_error"]`` has one entry per stage.
STAGES = ("dense", "pruned", "quantized", "final")


# ------------------------------------------------------------------------------------ stages


def _criterion(layers: Mapping[str, dict], lb: Any) -> Any:
    """The ``prune`` criterion: plain magnitude, or load-balance-aware for EIE PEs (EIE rows
    are outputs: the last axis of a Flax kernel (in, out) or (kh, kw, in, out))."""

    def balanced(n: int) -> Callable:
        return functools.partial(load_balanced_mask, num_pes=n, row_axis=-1)

    if isinstance(lb, Mapping):
        return {
            p: balanced(r["load_balance_pes"]) if r["load_balance_pes"] else "magnitude"
            for p, r in layers.items()
        }
    if lb is not None:
        return balanced(lb)
    return "magnitude"


def _prune_run(m, params, rest, data, config, layers, par, loss_fn, progress):
    spe = data.steps_per_epoch
    step_len = config.epochs_per_step * spe
    boundaries = [i * step_len for i in range(len(config.prune_fractions))]
    sched = {
        path: schedules.iterative(boundaries, [r["sparsity"] * f for f in config.prune_fractions])
        for path, r in layers.items()
    }
    total = config.prune_epochs * spe
    inner = default_optimizer(config.prune_lr, steps=total, weight_decay=config.prune_weight_decay)
    selected = set(layers)
    tx = prune(
        inner,
        sched,
        _criterion(layers, config.load_balance_pes),
        predicate=lambda path, leaf: path in selected,
    )
    params, rest, state, history = _train(
        m,
        params,
        rest,
        tx,
        data,
        par,
        epochs=config.prune_epochs,
        seed=config.seed + 1,
        loss_fn=loss_fn,
        progress=progress,
        desc="prune+retrain",
    )
    # exact zeros where the final masks say so (the wrapper already guarantees it)
    params = apply_masks(params, state.masks)
    return params, rest, history


def _quantize_run(m, params, rest, data, config, layers, par, loss_fn, progress):
    tx = share_weights(
        optax.adam(config.finetune_lr),
        bits={p: r["bits"] for p, r in layers.items()},
        init=config.share_init,
        iters=config.kmeans_iters,
        seed=config.seed,
    )
    state0 = tx.init(params)
    kmeans_cbs = _by_path(state0.codebooks)
    params = shared_params(params, state0)
    params, rest, state, history = _train(
        m,
        params,
        rest,
        tx,
        data,
        par,
        epochs=config.finetune_epochs,
        seed=config.seed + 2,
        loss_fn=loss_fn,
        opt_state=state0,
        progress=progress,
        desc="share+fine-tune",
    )
    params = shared_params(params, state)
    cbs, cds = _by_path(state.codebooks), _by_path(state.codes)
    return params, rest, cbs, cds, kmeans_cbs, history


def prune_stage(
    apply: Callable,
    params: Any,
    data: Any,
    config: CompressConfig,
    *,
    loss_fn: Callable | None = None,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Iterative magnitude pruning with retraining (thesis §3.2) of a pure ``apply``.

    :func:`compress`'s second stage on its own, for a model given as a pure function.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: the dense params (nested dict of float arrays).
      data: ``(x_train, y_train, x_test, y_test)`` arrays (or an object with those fields, such
        as :class:`jaxcomp.zoo.MNIST`), or ``(train_batches, test_batches)``.
      config: ``include``/``exclude``, ``sparsity``, ``prune_fractions``, ``epochs_per_step``,
        ``prune_epochs``, ``prune_lr``, ``prune_weight_decay``, ``load_balance_pes``,
        ``batch_size``, ``train_limit``, ``seed`` are read.
      loss_fn: ``loss_fn(logits, y) -> scalar`` (default: softmax cross-entropy on integer
        labels).
      progress: tqdm bar.

    Returns:
      ``(params, info)``; each compressed leaf has exactly ``floor(s * size)`` zeros (``s`` its
      target); ``info`` holds the per-epoch ``loss`` and the training ``seconds``.

    Example (trains; skipped by the doctests)::

      >>> from jaxcomp import zoo
      >>> apply, params = zoo.functional(zoo.make_model("lenet-300-100"))
      >>> pruned, info = prune_stage(apply, params, zoo.load_mnist(),
      ...                            zoo.preset("lenet-300-100"))  # doctest: +SKIP
    """
    _check_params(params)
    layers = config.layers(params)
    par = _Parallel(config.batch_size)
    m = _pure_apply_model(apply, params)
    d = _Data(data, config, par.n, print)
    params, _, history = _prune_run(
        m, params, {}, d, config, layers, par, loss_fn or _default_loss, progress
    )
    return params, history


def quantize_stage(
    apply: Callable,
    params: Any,
    data: Any,
    config: CompressConfig,
    *,
    loss_fn: Callable | None = None,
    progress: bool = True,
) -> tuple[Any, dict, dict, dict, dict]:
    """Weight sharing (k-means over the kept weights) and centroid fine-tuning (thesis §4.2).

    :func:`compress`'s third stage on its own, for a model given as a pure function.

    Args:
      apply: ``apply(params, x) -> logits``.
      params: pruned params (exact zeros = pruned, they get code 0 and stay 0).
      data: as in :func:`prune_stage`.
      config: ``include``/``exclude``, ``bits``, ``share_init``, ``kmeans_iters``,
        ``finetune_epochs``, ``finetune_lr``, ``batch_size``, ``train_limit``, ``seed`` are
        read.
      loss_fn: as in :func:`prune_stage`.
      progress: tqdm bar.

    Returns:
      ``(params, codebooks, codes, codebooks_kmeans, info)``: params with every shared leaf equal
      to ``codebook[codes]`` bit for bit; ``{path: (2**bits,) float32}`` fine-tuned codebooks,
      ``{path: uint8/uint16 codes}``, the k-means codebooks before fine-tuning, and the
      per-epoch ``loss`` and ``seconds``.

    Example (trains; skipped by the doctests)::

      >>> params, cbs, codes, kmeans, info = quantize_stage(
      ...     apply, pruned, zoo.load_mnist(), zoo.preset("lenet-300-100"))  # doctest: +SKIP
      >>> cbs["fc1/kernel"].shape, codes["fc1/kernel"].dtype  # doctest: +SKIP
      ((32,), dtype('uint8'))
    """
    _check_params(params)
    layers = config.layers(params)
    par = _Parallel(config.batch_size)
    m = _pure_apply_model(apply, params)
    d = _Data(data, config, par.n, print)
    params, _, cbs, cds, km, history = _quantize_run(
        m, params, {}, d, config, layers, par, loss_fn or _default_loss, progress
    )
    return params, cbs, cds, km, history


def _by_path(tree: Any) -> dict[str, Any]:
    return {p: np.asarray(x) for p, x in leaves_with_paths(tree) if x is not None}


def _nested(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = v
    return out


# ---------------------------------------------------------------------------------- compress


def _fn_name(fn: Callable | None) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_model_on_data(m: _Model, data: _Data, eval_fn: Callable | None, loss_fn) -> None:
    """Trace the model on two test examples: a model that cannot take the data, or whose
    logits cannot be scored against the labels, is refused before any work."""
    x, y = data.first_test()
    x, y = x[:2], y[:2]
    try:
        logits = jax.eval_shape(lambda p, r, x: m.eval(p, r, x), m.params, m.rest, x)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(
            f"data: the model cannot take inputs of shape {tuple(np.shape(x))[1:]} (per "
            f"example): {type(e).__name__}: {first}"
        ) from None
    if eval_fn is None and loss_fn is _default_loss:
        if logits.ndim != 2 or logits.shape[0] != len(x):
            raise ValueError(
                f"data: the model gives outputs of shape {logits.shape} for {len(x)} examples; "
                "the default loss and metric need logits (batch, classes): give loss_fn and "
                "eval_fn for other outputs"
            )
        labels = np.asarray(y)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"data: labels of shape {labels.shape[1:]} and dtype {labels.dtype} per "
                "example; the default loss and metric need integer class labels (n,): give "
                "loss_fn and eval_fn for other targets"
            )
        if data.arrays is not None:
            ys = np.concatenate([np.ravel(data.arrays[1]), np.ravel(data.arrays[3])])
            lo, hi = int(ys.min()), int(ys.max())
            if lo < 0 or hi >= logits.shape[-1]:
                raise ValueError(
                    f"data: labels run from {lo} to {hi} but the model gives "
                    f"{logits.shape[-1]} logits per example; labels must lie in "
                    f"0..{logits.shape[-1] - 1}"
                )


def compress(
    model: Any,
    data: Any,
    config: CompressConfig,
    out: str | os.PathLike,
    *,
    loss_fn: Callable | None = None,
    eval_fn: Callable | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
    redo_changed: bool = False,
    name: str | None = None,
) -> dict:
    """Deep Compression of a Flax model: dense -> pruned -> quantized -> ``OUT/model.dcz``.

    A rerun on the same ``out`` resumes: every stage whose checkpoint under ``OUT/stages/`` was
    made with the same settings (same model and data, same earlier stages) is restored instead
    of recomputed. The settings are stored in ``OUT/settings.json``; a run with other settings
    is refused unless ``redo_changed`` (then a changed setting recomputes that stage and every
    later one). While it runs, ``OUT/.jaxcomp.lock`` keeps a second run off the same ``out``;
    temporary files that an interrupted run left behind are removed first. See
    ``docs/guides/compress-any-model.md`` and ``docs/guides/cli-errors.md``.

    Training runs over every local device (``jax.local_devices()``): a 1-D mesh ``("data",)``,
    each batch split over the devices (``batch_size`` must be a multiple of their number),
    parameters and optimizer state replicated, masks and codebooks computed on the global
    arrays.

    Args:
      model: an ``nnx.Module`` whose ``__call__(x)`` gives logits (BatchNorm and Dropout are
        trained with ``model.train()`` and evaluated with ``model.eval()``), or a Linen
        ``(module, variables)`` pair (``variables["params"]`` and optionally ``batch_stats``,
        made mutable while training; a ``train`` or ``deterministic`` argument of the module's
        ``__call__`` is set per mode; a ``"dropout"`` rng is given). An NNX model is left
        holding the compressed weights, in eval mode.
      data: ``(x_train, y_train, x_test, y_test)`` NumPy/JAX arrays (or an object with those
        fields, e.g. :class:`jaxcomp.zoo.MNIST`), or ``(train_batches, test_batches)``, each a
        list or other re-iterable, or a zero-argument callable returning a fresh iterable, of
        ``(x, y)`` batches. Arrays are shuffled per epoch with ``(seed, epoch)``; batches are
        used as given.
      config: a :class:`CompressConfig` (presets: :func:`jaxcomp.zoo.preset`).
      out: output folder (created).
      loss_fn: ``loss_fn(logits, y) -> scalar`` (default: softmax cross-entropy on integer
        labels, averaged over the batch).
      eval_fn: ``eval_fn(logits, y) -> scalar error`` of a batch (default: the fraction of
        wrong argmax predictions).
      progress: tqdm bars on the training stages.
      plots: write ``OUT/plots/*.png``.
      log: where the one-line stage summaries go.
      redo_changed: accept an ``out`` written with other settings (recompute what changed).
      name: the architecture's name for the report and the file's metadata (default: the
        model's class name).

    Returns:
      the dict written to ``OUT/report.json``: ``original_bytes``, ``compressed_bytes`` (P+Q+H,
      docs/design.md, storage accounting), ``pq_bytes``, ``file_bytes``, ``compression_rate``
      (original / compressed), ``pruning_rate`` (compressed leaves / kept weights),
      ``test_error`` per stage (``dense``, ``pruned``, ``quantized``, ``final`` = the model
      read back from the file), ``layers`` (per compressed leaf: ``weights``, ``kept``,
      ``sparsity``, ``bits``, ``index_bits``...), ``stages`` (seconds, resumed or not, losses),
      ``config``, ``devices``.

    Example (trains for minutes; skipped by the doctests)::

      >>> from jaxcomp import zoo
      >>> model = zoo.make_model("lenet-300-100")
      >>> r = compress(model, zoo.load_mnist(), zoo.preset("lenet-300-100"),
      ...              "runs/lenet300")  # doctest: +SKIP
      >>> r["compression_rate"], r["test_error"]["final"]  # doctest: +SKIP

    Raises:
      ValueError: ``out`` is empty, a file or below a file; ``out`` was written with other
        settings (and not ``redo_changed``); data of the wrong structure or shapes, or that
        the model cannot take; ``batch_size`` not a multiple of the device count; a per-leaf
        setting naming no compressed leaf.
      TypeError: ``model``, ``data`` or ``config`` of the wrong type.
      FileExistsError: another run holds ``OUT/.jaxcomp.lock``.
      OSError: the file system refused a read or write (no space, read-only, ...).
    """
    if not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a CompressConfig, got {type(config).__name__}")
    for fname, fn in (("loss_fn", loss_fn), ("eval_fn", eval_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{fname} must be callable (logits, y) -> scalar, got {fn!r}")
    out = _check_out_dir(out)
    m = _Model(model)
    layers = config.layers(m.params)
    par = _Parallel(config.batch_size)
    d = _Data(data, config, par.n, log)
    loss = loss_fn or _default_loss
    _check_model_on_data(m, d, eval_fn, loss)
    _check_params(m.params, "model parameters")
    out.mkdir(parents=True, exist_ok=True)
    with _OutLock(out):
        removed = _remove_orphans(out)
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run in {out}")
        return _compress(
            m, d, config, layers, out, par, loss, eval_fn, progress, plots, log, redo_changed, name
        )


def _compress(
    m, data, config, layers, out, par, loss_fn, eval_fn, progress, plots, log, redo_changed, name
) -> dict:
    name = name or m.name
    log(
        f"data: {data.source}, "
        + (
            f"{data.n_train:,} train / {data.n_test:,} test examples"
            if data.arrays is not None
            else f"{data.steps_per_epoch:,} training batches per epoch"
        )
        + f"; {par.n} device(s)"
    )
    cfg = config.to_json()
    settings = {
        **cfg,
        "model": m.fingerprint(),
        "data": data.fingerprint,
        "n_train": data.n_train,
        "loss_fn": _fn_name(loss_fn if loss_fn is not _default_loss else None),
        "eval_fn": _fn_name(eval_fn),
    }
    previous = _read_json(out / _SETTINGS_NAME)
    if isinstance(previous, dict) and previous != settings and not redo_changed:
        changed = "; ".join(_settings_diff(previous, settings))
        raise ValueError(
            f"{out} was written with other settings ({changed}); rerun with the same settings "
            "to resume, choose another output folder, or pass "
            "--redo-changed (redo_changed=True) to recompute the stages whose settings changed"
        )
    _write_json(out / _SETTINGS_NAME, settings)
    stages_info: dict[str, dict] = {}
    errors: dict[str, float] = {}
    template = {"params": m.params, **({"rest": m.rest} if jax.tree.leaves(m.rest) else {})}

    def test_error(params, rest):
        return _evaluate(m, params, rest, data, eval_fn)

    def restore(st):
        tree = st.restore(template)
        return jax.tree.map(jnp.asarray, tree["params"]), tree.get("rest", m.rest)

    def save(st, params, rest, t0, history):
        tree = {"params": params, **({"rest": rest} if "rest" in template else {})}
        rec = {"test_error": test_error(params, rest), "seconds": time.perf_counter() - t0}
        return st.save(tree, {**rec, "loss": history.get("loss", [])})

    def done(stage, rec, resumed):
        rec["resumed"] = resumed
        errors[stage] = rec["test_error"]
        stages_info[stage] = {
            "seconds": rec["seconds"],
            "resumed": resumed,
            "loss": rec.get("loss", []),
        }

    # 1. dense ---------------------------------------------------------------------------------
    sig = {
        "model": settings["model"],
        "data": data.fingerprint,
        "n_train": data.n_train,
        "train_limit": config.train_limit,
        "loss_fn": settings["loss_fn"],
        **{
            k: cfg[k]
            for k in ("seed", "batch_size", "dense_epochs", "dense_lr", "dense_weight_decay")
        },
    }
    st = _Stage(out, "dense", sig)
    rec = st.done()
    if rec is not None:
        params, rest = restore(st)
        done("dense", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, history = m.params, m.rest, {}
        if config.dense_epochs:
            steps = config.dense_epochs * data.steps_per_epoch
            tx = default_optimizer(
                config.dense_lr, steps=steps, weight_decay=config.dense_weight_decay
            )
            params, rest, _, history = _train(
                m,
                params,
                rest,
                tx,
                data,
                par,
                epochs=config.dense_epochs,
                seed=config.seed,
                loss_fn=loss_fn,
                progress=progress,
                desc=f"dense {name}",
            )
        done("dense", save(st, params, rest, t0, history), False)
    log(
        f"dense: test error {100 * errors['dense']:.2f}%"
        + (" (the model as given)" if not config.dense_epochs else "")
        + (" (resumed)" if stages_info["dense"]["resumed"] else "")
    )

    # 2. pruned --------------------------------------------------------------------------------
    prune_keys = (
        "include",
        "exclude",
        "sparsity",
        "default_sparsity",
        "prune_fractions",
        "epochs_per_step",
        "prune_epochs",
        "prune_lr",
        "prune_weight_decay",
        "load_balance_pes",
    )
    sig = {**sig, **{k: cfg[k] for k in prune_keys}}
    st = _Stage(out, "pruned", sig)
    rec = st.done()
    if rec is not None:
        params, rest = restore(st)
        done("pruned", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, history = _prune_run(
            m, params, rest, data, config, layers, par, loss_fn, progress
        )
        done("pruned", save(st, params, rest, t0, history), False)
    pruned_params = params
    table = _kernel_table(params, layers)
    kept = sum(r["kept"] for r in table)
    total_k = sum(r["weights"] for r in table)
    log(
        f"pruned: test error {100 * errors['pruned']:.2f}%, weights kept {kept:,} / {total_k:,} "
        f"({100 * kept / total_k:.2f}%, {total_k / max(kept, 1):.1f}x)"
        + (" (resumed)" if stages_info["pruned"]["resumed"] else "")
    )

    # 3. quantized -----------------------------------------------------------------------------
    sig = {
        **sig,
        **{
            k: cfg[k]
            for k in (
                "bits",
                "default_bits",
                "share_init",
                "kmeans_iters",
                "finetune_epochs",
                "finetune_lr",
            )
        },
    }
    st = _Stage(out, "quantized", sig)
    rec = st.done()
    bits = {p: r["bits"] for p, r in layers.items()}
    if rec is not None:
        target = {
            **template,
            "codebooks": _nested({p: np.zeros(1 << b, np.float32) for p, b in bits.items()}),
            "kmeans": _nested({p: np.zeros(1 << b, np.float32) for p, b in bits.items()}),
            "codes": _nested(
                {p: np.zeros(layers[p]["shape"], codes_dtype(b)) for p, b in bits.items()}
            ),
        }
        tree = st.restore(target)
        params = jax.tree.map(jnp.asarray, tree["params"])
        rest = tree.get("rest", m.rest)
        cbs, cds, km = (_by_path(tree[k]) for k in ("codebooks", "codes", "kmeans"))
        done("quantized", rec, True)
    else:
        t0 = time.perf_counter()
        params, rest, cbs, cds, km, history = _quantize_run(
            m, params, rest, data, config, layers, par, loss_fn, progress
        )
        tree = {
            "params": params,
            **({"rest": rest} if "rest" in template else {}),
            "codebooks": _nested(cbs),
            "kmeans": _nested(km),
            "codes": _nested(cds),
        }
        rec = {"test_error": test_error(params, rest), "seconds": time.perf_counter() - t0}
        done("quantized", st.save(tree, {**rec, "loss": history["loss"]}), False)
    log(
        f"quantized: test error {100 * errors['quantized']:.2f}% "
        f"(bits {', '.join(f'{p} {b}' for p, b in bits.items())})"
        + (" (resumed)" if stages_info["quantized"]["resumed"] else "")
    )

    # 4. final: Huffman coding, file, report -------------------------------------------------
    t0 = time.perf_counter()
    index_bits = {m.prefix + p: r["index_bits"] for p, r in layers.items()}
    np_params = jax.tree.map(np.asarray, params)
    state = m.state(np_params, rest)
    fcbs = {m.prefix + p: v for p, v in cbs.items()}
    fcds = {m.prefix + p: v for p, v in cds.items()}
    metadata = {"model": name}
    dcz = out / "model.dcz"
    file_bytes = save_compressed(
        dcz, state, fcbs, fcds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    rep = compression_report(
        state, fcbs, fcds, index_bits=index_bits, metadata=metadata, compact_manifest=True
    )
    if rep.file_bytes != file_bytes:  # the report describes this very file
        raise AssertionError(f"report file_bytes {rep.file_bytes} != written {file_bytes}")
    loaded = load_model(dcz, m.fresh(m.params, m.rest), max_ratio=math.inf)
    lp, lr = m.split(loaded)
    errors["final"] = test_error(lp, lr)
    stages_info["final"] = {"seconds": time.perf_counter() - t0, "resumed": False}
    if m.kind == "nnx":  # the user's model holds the compressed weights, in eval mode
        nnx.update(m.module, nnx.state(m.fresh(jax.tree.map(jnp.asarray, params), rest)))
        m.module.eval()
    totals = rep.totals()
    original_bytes = totals["original_bits"] / 8
    compressed_bytes = math.ceil(totals["pqh_bits"] / 8)
    by_path = {r.path: r for r in rep.layers}
    rows = []
    for row in table:
        r = by_path[m.prefix + row["layer"]]
        rows.append(
            {
                **row,
                "kept_pct": 100 * row["kept"] / row["weights"],
                "kept_after_quantization": int(np.count_nonzero(cds[row["layer"]])),
                "codebook_size": int(len(cbs[row["layer"]])),
                "fillers": r.fillers,
                "weight_bits_pqh": r.codes_pqh / max(r.entries, 1),
                "index_bits_pqh": r.index_pqh / max(r.entries, 1),
                "rate_pq_pct": 100 * r.total_pq / r.original,
                "rate_pqh_pct": 100 * r.total_pqh / r.original,
            }
        )
    result = {
        "model": name,
        "data": data.source,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "devices": par.n,
        "original_bytes": int(original_bytes),
        "compressed_bytes": compressed_bytes,
        "pq_bytes": math.ceil(totals["pq_bits"] / 8),
        "file_bytes": int(file_bytes),
        "compression_rate": original_bytes / compressed_bytes,
        "compression_rate_pq": totals["ratio_pq"],
        "compression_rate_file": original_bytes / file_bytes,
        "pruning_rate": total_k / max(kept, 1),
        "params_kept_pct": 100 * kept / total_k,
        "test_error": errors,
        "layers": rows,
        "stages": stages_info,
        "config": cfg,
        "report": {"layers": rep.rows(), "totals": totals},
    }
    _write_json(out / "report.json", result)
    _write_text(out / "report.md", _markdown(result, rep.to_markdown()))
    if plots:
        pdir = out / "plots"
        pdir.mkdir(exist_ok=True)
        _plot_sparsity(
            rows,
            pdir / "sparsity.png",
            f"{name}: weights kept per leaf (P+Q+H {result['compression_rate']:.1f}x)",
        )
        pruned_flat = dict(leaves_with_paths(pruned_params))
        for path, b in bits.items():
            plot_codebook(
                pruned_flat[path],
                km[path],
                cbs[path],
                title=f"{name} {path}: {b}-bit k-means / fine-tuned",
                path=pdir / f"{path.replace('/', '_')}_codebook.png",
            )
    log(
        f"final (P+Q+H, read back from {dcz}): test error {100 * errors['final']:.2f}%; "
        f"{result['original_bytes']:,} B -> {compressed_bytes:,} B reported "
        f"({result['compression_rate']:.1f}x), file {file_bytes:,} B "
        f"({result['compression_rate_file']:.1f}x); pruning alone {result['pruning_rate']:.1f}x"
    )
    return result


def _kernel_table(params: Any, layers: Mapping[str, dict]) -> list[dict]:
    rows = []
    for path, w in leaves_with_paths(params):
        if path not in layers:
            continue
        w = np.asarray(w)
        rows.append(
            {
                "layer": path,
                "weights": int(w.size),
                "kept": int(np.count_nonzero(w)),
                "sparsity": layers[path]["sparsity"],
                "bits": layers[path]["bits"],
                "index_bits": layers[path]["index_bits"],
            }
        )
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _markdown(result: dict, table: str) -> str:
    e = result["test_error"]
    lines = [
        f"# Deep Compression of {result['model']} ({result['data']})",
        "",
        "| stage | test error |",
        "|---|---|",
        *(f"| {s} | {_pct(e[s])} |" for s in STAGES),
        "",
        f"Compression: {result['original_bytes']:,} B -> {result['compressed_bytes']:,} B (P+Q+H, "
        f"{result['compression_rate']:.1f}x); P+Q {result['compression_rate_pq']:.1f}x; pruning "
        f"alone {result['pruning_rate']:.1f}x; model.dcz {result['file_bytes']:,} B "
        f"({result['compression_rate_file']:.1f}x).",
        "",
        "| leaf | #weights | kept % | bits | weight bits (P+Q+H) | index bits "
        "| index bits (P+Q+H) | rate P+Q | rate P+Q+H |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["layers"]:
        lines.append(
            f"| {r['layer']} | {r['weights']:,} | {r['kept_pct']:.2f}% | {r['bits']} | "
            f"{r['weight_bits_pqh']:.2f} | {r['index_bits']} | {r['index_bits_pqh']:.2f} | "
            f"{r['rate_pq_pct']:.2f}% | {r['rate_pqh_pct']:.2f}% |"
        )
    lines += ["", "## Storage (P+Q+H accounting)", "", table, ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ plots


def _plot_sparsity(layers: list[dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [r["layer"].removesuffix("/kernel") for r in layers]
    kept = [100 * r["kept"] / r["weights"] for r in layers]
    bars = ax.bar(names, kept, color="tab:blue")
    for b, k, r in zip(bars, kept, layers, strict=True):
        ax.annotate(
            f"{k:.1f}%\n{r['bits']} bit",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("weights kept (%)")
    ax.set_ylim(0, max(kept) * 1.3 + 1)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, make_parents=True) as f:
        fig.savefig(f, format="png")
