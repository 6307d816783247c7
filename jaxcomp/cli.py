"""The ``jaxcomp`` command: ``jaxcomp compress`` and ``jaxcomp evaluate``.

::

    jaxcomp compress --model lenet-300-100 --out runs/lenet300 [--data-dir DIR] [--baseline DIR]
    jaxcomp compress --model my_model.py:make_model --data my_data.py:load --out runs/mine
    jaxcomp evaluate runs/lenet300/model.dcz [--json]
    jaxcomp evaluate runs/mine/model.dcz --model my_model.py:make_model --data my_data.py:load

``compress`` runs :func:`jaxcomp.compress` (dense -> pruned -> quantized -> Huffman-coded file)
on a built-in preset (the thesis' LeNets on MNIST, defaults reproducing the README) or on a
user's model and data named by import string (``PATH.py:NAME`` or ``PKG.MOD:NAME``, the
uvicorn/gunicorn convention): ``FACTORY(rngs=nnx.Rngs(seed))`` returns an ``nnx.Module`` whose
call gives logits, ``LOADER()`` returns ``(x_train, y_train, x_test, y_test)`` arrays. It writes
``OUT/model.dcz``, ``OUT/report.json``, ``OUT/report.md`` and ``OUT/plots/``. A rerun with the
same ``--out`` resumes: finished stages with unchanged settings are restored from their orbax
checkpoints. ``evaluate`` reads a ``.dcz`` file back (a preset's architecture is named in its
manifest; a user's model is rebuilt by ``--model``) and prints the test error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxcomp.zoo.models import MODELS

__all__ = ["INTERRUPTED", "load_object", "main", "parse_layer_values"]

#: ``--baseline`` default: use ``runs/baselines/MODEL`` when it exists, else train.
AUTO = "auto"

#: The one line printed on Ctrl-C (exit status 130): every stage is checkpointed, so a rerun of
#: the same command resumes.
INTERRUPTED = "interrupted; rerun the same command to resume"


def parse_layer_values(
    text: str,
    kind: type,
    *,
    layers: list[str],
    name: str,
    check: Callable[[Any], str | None] | None = None,
) -> dict:
    """Parse ``"6"`` (every layer) or ``"fc1/kernel=0.92,fc3=0.74,conv*=0.5"`` (some layers).

    A layer is named by its leaf path (``fc1/kernel``), its module (``fc1``: the leaves below
    it) or a shell glob (``"*conv*"``). Parts are applied left to right, a later one overriding
    an earlier one; layers not named keep their default.

    Args:
      text: the flag's value (several occurrences of a repeatable flag joined with ``,``).
      kind: ``int`` or ``float``.
      layers: the compressed layers' paths.
      name: the flag's name, for error messages.
      check: ``check(value)`` returns None for a valid value, else what a valid one is
        (e.g. ``"an int in 1..16"``).

    Returns:
      ``{path: value}``.

    Raises:
      ValueError: an unknown layer, a value that does not parse, or one ``check`` refuses; the
        message starts with ``name``.

    Example:
      >>> parse_layer_values("fc1=5,fc3/kernel=4", int, layers=["fc1/kernel", "fc3/kernel"],
      ...                    name="--bits")
      {'fc1/kernel': 5, 'fc3/kernel': 4}
      >>> parse_layer_values("4,fc*=6", int, layers=["conv/kernel", "fc/kernel"], name="--bits")
      {'conv/kernel': 4, 'fc/kernel': 6}
    """
    from jaxcomp.compress import _key_matches

    out: dict = {}
    try:
        for part in text.split(","):
            part = part.strip()
            key, eq, value = part.rpartition("=") if "=" in part else ("", "", part)
            key = key.strip()
            if not eq:
                out.update({p: kind(value) for p in layers})
                continue
            paths = [p for p in layers if _key_matches(key, p)]
            if not paths:
                raise ValueError(f"{name}: unknown layer {key!r}; layers: {', '.join(layers)}")
            out.update({p: kind(value) for p in paths})
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(
            f"{name}: cannot parse {text!r}; give one {kind.__name__} for every layer or "
            f"'layer=value,layer=value' (e.g. fc1=0.92; a layer may be a glob such as conv*)"
        ) from None
    for path, v in out.items():
        want = None if check is None else check(v)
        if want is not None:
            raise ValueError(f"{name}: {path} must be {want}, got {v!r}")
    return out


def _int_range(lo: int, hi: int | None = None) -> Callable[[Any], str | None]:
    def check(v):
        if v < lo or (hi is not None and v > hi):
            return f"an int in {lo}..{hi}" if hi is not None else f"an int >= {lo}"
        return None

    return check


def _sparsity_ok(v: float) -> str | None:
    return None if 0.0 <= v < 1.0 else "a fraction in [0, 1)"


# ------------------------------------------------------------- argparse types (parse time)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``PROG: error: MESSAGE (see PROG --help)``, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_type(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            want = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be an integer {want}, got {text}")
        return v

    return parse


def _float_type(*, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            want = "a finite number > 0" if positive else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return v

    return parse


def _out_type(text: str) -> str:
    from jaxcomp.compress import _check_out_dir

    try:
        _check_out_dir(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("out ")) from None
    except OSError as e:  # e.g. a name too long to look up
        raise argparse.ArgumentTypeError(_os_error_line(e)) from None
    return text


def _dir_type(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; give the folder holding mnist/")
    try:
        is_dir = Path(text).is_dir()
    except OSError as e:
        raise argparse.ArgumentTypeError(_os_error_line(e)) from None
    if not is_dir:
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder (it should hold mnist/)")
    return text


def _compress_parser(sub) -> None:
    from jaxcomp.compress import SHARE_INITS, CompressConfig

    d = CompressConfig.__dataclass_fields__
    p = sub.add_parser(
        "compress",
        help="prune, share weights, Huffman-code and save a model (Deep Compression)",
        description="Deep Compression of a built-in LeNet on MNIST, or of your own Flax NNX "
        "model and data named by import string: dense -> pruned -> quantized -> Huffman-coded "
        "OUT/model.dcz, with OUT/report.json, OUT/report.md and OUT/plots/. A preset's defaults "
        "reproduce the README (thesis Tables 2 and 3). A rerun with the same --out resumes from "
        "the finished stages' checkpoints.",
    )
    pos_int, nonneg_int = _int_type(1), _int_type(0)
    p.add_argument(
        "--model",
        required=True,
        help=f"a preset ({', '.join(sorted(MODELS))}) or an import string PATH.py:FACTORY or "
        "PKG.MOD:FACTORY; FACTORY(rngs=nnx.Rngs(SEED)) must return an nnx.Module whose "
        "call gives logits",
    )
    p.add_argument(
        "--data",
        default=None,
        help="import string PATH.py:LOADER or PKG.MOD:LOADER; LOADER() must return "
        "(x_train, y_train, x_test, y_test) arrays (default for a preset: MNIST)",
    )
    p.add_argument(
        "--out", type=_out_type, required=True, help="output folder (not a file; locked while used)"
    )
    p.add_argument(
        "--data-dir",
        type=_dir_type,
        default=None,
        help="a preset's folder holding mnist/ (default: $JAXCOMP_DATA_DIR; with neither, a "
        "5,000-image subset)",
    )
    p.add_argument(
        "--baseline",
        default=AUTO,
        help="a preset's dense baseline folder (python -m jaxcomp.zoo.train --out); 'auto' "
        "(default): runs/baselines/MODEL when present; 'none': train one in OUT",
    )
    p.add_argument(
        "--include",
        action="append",
        default=None,
        metavar="GLOB",
        help="compress the leaves matching GLOB (repeatable; default: every leaf with ndim >= 2)",
    )
    p.add_argument(
        "--exclude", action="append", default=None, metavar="GLOB", help="leave these dense"
    )
    p.add_argument(
        "--dense-epochs",
        type=nonneg_int,
        default=None,
        help="dense training epochs (0: the model as built is the baseline)",
    )
    p.add_argument("--dense-lr", type=_float_type(positive=True), default=None)
    p.add_argument("--dense-weight-decay", type=_float_type(positive=False), default=None)
    p.add_argument("--seed", type=_int_type(0, 2**32 - 1), default=d["seed"].default)
    p.add_argument(
        "--batch-size",
        type=pos_int,
        default=None,
        help="examples per step over all devices (a multiple of their number)",
    )
    p.add_argument(
        "--train-limit", type=pos_int, default=None, help="use the first N training examples only"
    )
    p.add_argument(
        "--sparsity",
        action="append",
        default=None,
        help="fraction pruned: '0.9' (every compressed leaf) or 'fc1=0.92,conv*=0.6' (a leaf "
        "path, module or glob); repeatable (default: a preset's, else 0.8)",
    )
    p.add_argument(
        "--prune-fractions",
        default=None,
        help="fractions of the target reached at each pruning step (default 0.5,0.75,0.875,"
        "0.9375,1)",
    )
    p.add_argument("--epochs-per-step", type=pos_int, default=None, help="epochs between steps")
    p.add_argument("--prune-epochs", type=pos_int, default=None, help="pruning + retraining epochs")
    p.add_argument(
        "--prune-lr", type=_float_type(positive=True), default=None, help="retraining peak lr"
    )
    p.add_argument("--prune-weight-decay", type=_float_type(positive=False), default=None)
    p.add_argument(
        "--load-balance-pes",
        action="append",
        default=None,
        help="prune load-balance-aware for N EIE PEs (equal non-zeros per PE): '64' (every "
        "compressed leaf) or 'fc1=64,fc2=64' (those leaves; default: plain magnitude)",
    )
    p.add_argument(
        "--bits",
        action="append",
        default=None,
        help="bits per weight code, 1..16: '6' or 'conv1=8,fc*=5'; repeatable (default: a "
        "preset's, else 5)",
    )
    p.add_argument(
        "--share-init", default=None, choices=SHARE_INITS, help="k-means initialisation (linear)"
    )
    p.add_argument(
        "--kmeans-iters", type=nonneg_int, default=None, help="Lloyd iterations (0: initial ones)"
    )
    p.add_argument(
        "--finetune-epochs", type=nonneg_int, default=None, help="centroid fine-tuning epochs"
    )
    p.add_argument(
        "--finetune-lr", type=_float_type(positive=True), default=None, help="centroid Adam lr"
    )
    p.add_argument(
        "--index-bits",
        action="append",
        default=None,
        help="bits per relative index, 1..16: '5' or 'fc1=4,fc2=5'; repeatable (default: a "
        "preset's, else 4)",
    )
    p.add_argument(
        "--redo-changed",
        action="store_true",
        help="accept an --out written with other settings: recompute the stages they change",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="do not draw OUT/plots/")


#: CompressConfig fields set by a flag of the same name (``prune_lr`` <- ``--prune-lr``); the
#: first ones take the flag's value as it is.
_FIELDS = (
    "seed",
    "batch_size",
    "train_limit",
    "dense_epochs",
    "dense_lr",
    "dense_weight_decay",
    "epochs_per_step",
    "prune_epochs",
    "prune_lr",
    "prune_weight_decay",
    "share_init",
    "kmeans_iters",
    "finetune_epochs",
    "finetune_lr",
    "sparsity",
    "bits",
    "index_bits",
    "prune_fractions",
    "load_balance_pes",
    "include",
    "exclude",
)
_SCALAR_FIELDS = _FIELDS[:14]


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


# ------------------------------------------------------------------------ user code by name


def load_object(spec: str, flag: str) -> Any:
    """The object an import string names: ``PATH.py:NAME`` or ``PKG.MOD:NAME`` (uvicorn's form).

    A file path is imported as a fresh module (its folder is put first on ``sys.path`` while it
    runs, so that it may import its neighbours); a dotted module name with
    :func:`importlib.import_module`. ``NAME`` may be dotted (``Class.method``).

    Args:
      spec: the import string.
      flag: the flag it came from, for the error messages (``"--model"``).

    Returns:
      the object.

    Raises:
      ValueError: one line starting with ``flag``: no colon, an empty part, a missing file or
        module, a missing attribute, or an exception raised while importing.

    Example:
      >>> load_object("os.path:join", "--model")("a", "b")
      'a/b'
      >>> load_object("os.path.join", "--model")
      Traceback (most recent call last):
      ...
      ValueError: --model: 'os.path.join' is not an import string; give PATH.py:NAME or PKG.MOD:NAME (e.g. models.py:make_model)
    """  # noqa: E501
    target, colon, attr = spec.rpartition(":")
    if not colon or not target.strip() or not attr.strip():
        raise ValueError(
            f"{flag}: {spec!r} is not an import string; give PATH.py:NAME or PKG.MOD:NAME "
            "(e.g. models.py:make_model)"
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        try:
            is_file = path.is_file()
        except OSError as e:
            raise ValueError(f"{flag}: {_os_error_line(e)}") from None
        if not is_file:
            raise ValueError(f"{flag}: no file {target!r} (from {spec!r})")
        name = f"_jaxcomp_user_{abs(hash(str(path.resolve())))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"{flag}: {target!r} cannot be imported as a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ValueError(f"{flag}: importing {target} raised {_one_line(e)}") from None
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name and (target == e.name or target.startswith(e.name + ".")):
                raise ValueError(
                    f"{flag}: no module named {e.name!r} (from {spec!r}); give an importable "
                    "module or a PATH.py file"
                ) from None
            raise ValueError(f"{flag}: importing {target} raised {_one_line(e)}") from None
        except Exception as e:
            raise ValueError(f"{flag}: importing {target} raised {_one_line(e)}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{flag}: {target} has no attribute {attr!r}") from None
    return obj


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _user_model(spec: str, seed: int):
    """``FACTORY(rngs=nnx.Rngs(seed))``: an nnx.Module, else a one-line error naming --model."""
    from flax import nnx

    factory = load_object(spec, "--model")
    if not callable(factory):
        raise ValueError(f"--model: {spec} is a {type(factory).__name__}, not a callable factory")
    try:
        model = factory(rngs=nnx.Rngs(seed))
    except Exception as e:
        raise ValueError(
            f"--model: {spec}(rngs=nnx.Rngs({seed})) raised {_one_line(e)}; a factory takes "
            "the keyword argument rngs"
        ) from None
    if not isinstance(model, nnx.Module):
        raise ValueError(
            f"--model: {spec}(rngs=...) returned a {type(model).__name__}, not an nnx.Module"
        )
    return model


def _user_data(spec: str) -> tuple:
    """``LOADER()``: four arrays of matching lengths, else a one-line error naming --data."""
    from jaxcomp.compress import _check_arrays

    loader = load_object(spec, "--data")
    if not callable(loader):
        raise ValueError(f"--data: {spec} is a {type(loader).__name__}, not a callable loader")
    try:
        data = loader()
    except Exception as e:
        raise ValueError(f"--data: {spec}() raised {_one_line(e)}") from None
    fields = ("x_train", "y_train", "x_test", "y_test")
    if all(hasattr(data, f) for f in fields):
        data = tuple(getattr(data, f) for f in fields)
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        got = type(data).__name__ + (
            f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""
        )
        raise ValueError(
            f"--data: {spec}() returned a {got}; it must return (x_train, y_train, x_test, "
            "y_test) arrays"
        )
    try:
        return _check_arrays(tuple(data), "--data")
    except ValueError as e:
        raise ValueError(str(e).replace("--data: ", f"--data: {spec}(): ", 1)) from None


def _is_preset(model: str) -> bool:
    return model in MODELS


# ------------------------------------------------------------------------------ compress


def _config_from_args(args, params):
    """The CompressConfig the flags ask for; ``params``: the model's params (for layer names).
    A bad value raises ValueError starting with its flag."""
    from jaxcomp.compress import CompressConfig, _key_matches
    from jaxcomp.tree import selected_paths

    preset = _is_preset(args.model)
    over: dict[str, Any] = {}
    for field in _SCALAR_FIELDS:
        v = getattr(args, field, None)
        if v is not None:
            over[field] = v
    if getattr(args, "include", None):
        over["include"] = tuple(args.include)
    if getattr(args, "exclude", None):
        over["exclude"] = tuple(args.exclude)
    if preset:
        from jaxcomp.zoo.presets import preset as make_preset

        base = make_preset(args.model)
    else:
        base = CompressConfig()
    include, exclude = over.get("include", base.include), over.get("exclude", base.exclude)
    try:
        layers = selected_paths(params, include=include, exclude=exclude)
    except TypeError as e:
        raise ValueError(f"--include/--exclude: {e}") from None
    if not layers:
        raise ValueError(
            "--include/--exclude select no leaf of ndim >= 2 to compress; the model's leaves: "
            + ", ".join(p for p, _ in _paths(params)[:12])
        )
    bits_ok = _int_range(1, 16)

    def joined(flag_values):
        return None if flag_values is None else ",".join(flag_values)

    def keep(mapping):  # a preset's per-layer values for the layers still compressed
        return {k: v for k, v in mapping.items() if any(_key_matches(k, p) for p in layers)}

    for field, kind, check in (
        ("sparsity", float, _sparsity_ok),
        ("bits", int, bits_ok),
        ("index_bits", int, bits_ok),
    ):
        text = joined(getattr(args, field, None))
        if text is not None:
            over[field] = {
                **keep(getattr(base, field)),
                **parse_layer_values(text, kind, layers=layers, name=_flag(field), check=check),
            }
        elif "include" in over or "exclude" in over:
            over[field] = keep(getattr(base, field))
    text = joined(getattr(args, "load_balance_pes", None))
    if text is not None:
        shapes = {p: np.shape(x) for p, x in _paths(params)}
        lb = parse_layer_values(
            text, int, layers=layers, name="--load-balance-pes", check=_int_range(1)
        )
        named = "=" in text
        # one N for all layers: at most the widest layer's outputs (narrower ones idle PEs)
        widest = max(lb, key=lambda k: shapes[k][-1])
        for path, n in lb.items() if named else [(widest, lb[widest])]:
            if n > shapes[path][-1]:
                raise ValueError(
                    f"--load-balance-pes: {n} PEs is more than {path} has outputs "
                    f"({shapes[path][-1]}); give at most {shapes[path][-1]}"
                )
        over["load_balance_pes"] = lb if named else next(iter(lb.values()))
    if getattr(args, "prune_fractions", None) is not None:
        try:
            over["prune_fractions"] = tuple(float(f) for f in args.prune_fractions.split(","))
        except ValueError:
            raise ValueError(
                f"--prune-fractions: cannot parse {args.prune_fractions!r}; "
                "give comma-separated floats ending at 1, e.g. 0.5,0.75,1"
            ) from None
    try:
        config = dataclasses.replace(base, **over)
        config.layers(params)
        return config
    except ValueError as e:  # name the flag, not the field
        msg = str(e)
        for field in sorted(_FIELDS, key=len, reverse=True):
            for prefix in (field, "default_" + field):
                if msg.startswith(prefix):
                    raise ValueError(_flag(field) + msg[len(prefix) :]) from None
        raise


def _paths(params):
    from jaxcomp.tree import leaves_with_paths

    return leaves_with_paths(params)


def _params_of(model):
    from flax import nnx

    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _baseline_dir(args) -> str | None:
    baseline = args.baseline
    if baseline == AUTO:
        auto = Path("runs") / "baselines" / args.model
        baseline = str(auto) if (auto / "params").exists() else None
        print(f"dense baseline: {auto}" if baseline else "dense baseline: none found, training one")
        return baseline
    if baseline.lower() == "none":
        return None
    if not (Path(baseline) / "params").is_dir():
        raise ValueError(
            f"--baseline {baseline!r} holds no params/ checkpoint; train one with "
            f"`python -m jaxcomp.zoo.train --model {args.model} --out DIR`, or give 'none'"
        )
    return baseline


def _check_preset_only_flags(args) -> None:
    if _is_preset(args.model):
        return
    if args.data is None:
        raise ValueError(
            f"--data: required with --model {args.model} (an import string PATH.py:LOADER or "
            "PKG.MOD:LOADER returning (x_train, y_train, x_test, y_test)); the built-in MNIST "
            f"goes with the presets {', '.join(sorted(MODELS))}"
        )
    if args.data_dir is not None:
        raise ValueError("--data-dir: only for a preset --model (its MNIST folder); use --data")
    if args.baseline not in (AUTO, "none"):
        raise ValueError(
            "--baseline: only for a preset --model; for your own model build the trained "
            "model in FACTORY and give --dense-epochs 0"
        )


def _cmd_compress(args) -> int:
    from jaxcomp.compress import compress

    _check_preset_only_flags(args)
    preset = _is_preset(args.model)
    if preset:
        from jaxcomp.zoo.models import make_model

        model = make_model(args.model, seed=args.seed)
    else:
        model = _user_model(args.model, args.seed)
    config = _config_from_args(args, _params_of(model))
    if preset and args.data is None:
        from jaxcomp.zoo.presets import compress_preset

        baseline = _baseline_dir(args)
        result = compress_preset(
            args.model,
            args.out,
            config,
            data_dir=args.data_dir,
            baseline=baseline,
            progress=not args.no_progress,
            plots=not args.no_plots,
            redo_changed=args.redo_changed,
        )
    else:
        data = _user_data(args.data)
        try:
            result = compress(
                model,
                data,
                config,
                args.out,
                progress=not args.no_progress,
                plots=not args.no_plots,
                redo_changed=args.redo_changed,
                name=args.model,
            )
        except ValueError as e:
            msg = str(e)
            if msg.startswith("data: "):
                raise ValueError(f"--data: {args.data}(): " + msg[len("data: ") :]) from None
            raise
    print(f"wrote {Path(args.out) / 'model.dcz'}, report.json, report.md")
    e = result["test_error"]
    print(
        "test error: "
        + ", ".join(f"{s} {100 * e[s]:.2f}%" for s in ("dense", "pruned", "quantized", "final"))
    )
    return 0


def _cmd_evaluate(args) -> int:
    if Path(args.file).is_dir():
        hint = Path(args.file) / "model.dcz"
        raise ValueError(
            f"{args.file} is a folder; give a .dcz file"
            + (f" (e.g. {hint})" if hint.is_file() else "")
        )
    if args.model is None:
        if args.data is not None:
            raise ValueError("--data: give --model too (the factory of the model in the file)")
        from jaxcomp.zoo.presets import evaluate_file

        r = evaluate_file(args.file, data_dir=args.data_dir)
        where = f"on {r['n']:,} {r['data']} MNIST test images"
    else:
        from jaxcomp.compress import evaluate_model, load_model

        if _is_preset(args.model):
            raise ValueError(
                f"--model: a preset file names its model itself; run `jaxcomp evaluate "
                f"{args.file}` without --model"
            )
        if args.data is None:
            raise ValueError("--data: required with --model (the loader of the test data)")
        model = _user_model(args.model, args.seed)
        load_model(args.file, model)
        _, _, x_test, y_test = _user_data(args.data)
        r = {
            "model": args.model,
            "test_error": evaluate_model(model, x_test, y_test),
            "data": args.data,
            "n": int(len(y_test)),
        }
        where = f"on {r['n']:,} test examples of {args.data}"
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{args.file}: {r['model']}, test error {100 * r['test_error']:.2f}% {where}")
    return 0


# ------------------------------------------------------------------------------ errors


#: What to do about an OS error, by errno (appended to its one-line message).
_OS_HINTS = {
    errno.ENOSPC: "free some space, then rerun the same command to resume",
    errno.EDQUOT: "free some space, then rerun the same command to resume",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "check the permissions or choose another location",
    errno.EPERM: "check the permissions or choose another location",
    errno.ELOOP: "a symbolic link points (indirectly) at itself; fix the link",
    errno.ENAMETOOLONG: "shorten the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _os_error_line(e: OSError) -> str:
    """One line for an ``OSError``: the file(s), what went wrong, what to do.

    Args:
      e: the error (``filename`` / ``filename2`` / ``strerror`` when set).

    Returns:
      a single line without a newline.

    Example:
      >>> _os_error_line(OSError(28, "No space left on device", "runs/x/model.dcz"))
      'runs/x/model.dcz: No space left on device; free some space, then rerun the same command to resume'
    """  # noqa: E501
    what = e.strerror or str(e) or type(e).__name__
    files = [os.fspath(f) for f in (e.filename, e.filename2) if f is not None]
    line = f"{' -> '.join(str(f) for f in files)}: {what}" if files else what
    hint = _OS_HINTS.get(e.errno or 0)
    if hint and hint not in line:
        line += f"; {hint}"
    return " ".join(line.split())


#: tensorstore (under orbax) reports a failed write as ``ValueError: RESOURCE_EXHAUSTED: ...
#: [os_error_code='28']``, without an OSError in the chain.
_OS_CODE = re.compile(r"os_error_code='(\d+)'")
_OS_TEXTS = {os.strerror(c): c for c in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)}


def _os_cause(e: BaseException, where: str | None = None) -> OSError | None:
    """The first OSError in ``e``'s chain of causes (orbax wraps its threads' errors), or one
    rebuilt from an error message that carries an OS error code (tensorstore's), about
    ``where``."""
    seen = set()
    chain = []
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        text = str(err)
        m = _OS_CODE.search(text)
        code = int(m.group(1)) if m else next((c for t, c in _OS_TEXTS.items() if t in text), 0)
        if code:
            return OSError(code, os.strerror(code), where)
    return None


@contextlib.contextmanager
def _quiet_background():
    """While a command runs: orbax / absl log nothing below CRITICAL, and exceptions in
    background threads or in callbacks from native code (tensorstore's, which print through
    ``sys.excepthook``) are dropped, not printed: the main thread reports the error once."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "jax._src.distributed")]
    levels = [lg.level for lg in loggers]
    hooks = threading.excepthook, sys.excepthook, sys.unraisablehook
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    threading.excepthook = lambda args: None
    sys.excepthook = lambda *args: None
    sys.unraisablehook = lambda args: None
    try:
        yield
    finally:
        threading.excepthook, sys.excepthook, sys.unraisablehook = hooks
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _run(args) -> int:
    where = f"jaxcomp {args.command}: error:"
    path = args.out if args.command == "compress" else args.file
    try:
        with _quiet_background():
            return _cmd_compress(args) if args.command == "compress" else _cmd_evaluate(args)
    except OSError as e:
        print(f"{where} {_os_error_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:  # DczFormatError and MNISTFormatError included
        cause = _os_cause(e, path)
        if cause is not None:
            print(f"{where} {_os_error_line(cause)}", file=sys.stderr)
            return 1
        print(f"{where} {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Exception as e:
        cause = _os_cause(e, path)  # e.g. orbax's wrapper around a write that failed
        if cause is None:
            raise
        print(f"{where} {_os_error_line(cause)}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxcomp`` console script; returns the exit status.

    0: done; 1: the file system refused (missing file, no space, read-only, ...); 2: a bad flag
    or input (the message names it); 130: interrupted (Ctrl-C). Every error is one line on
    stderr (``docs/guides/cli-errors.md``).

    Example:
      >>> main(["compress", "--model", "lenet-300-100", "--out", "x", "--seed", "-1"])
      Traceback (most recent call last):
      ...
      SystemExit: 2
    """
    try:
        ap = _Parser(prog="jaxcomp", description=__doc__.splitlines()[0])
        sub = ap.add_subparsers(dest="command", required=True)
        _compress_parser(sub)
        ev = sub.add_parser("evaluate", help="test error of a .dcz model file, read back")
        ev.add_argument("file", help="a .dcz file written by `jaxcomp compress`")
        ev.add_argument(
            "--model",
            default=None,
            help="import string of the factory of the model in the file (not for a preset's "
            "file, which names its model)",
        )
        ev.add_argument("--data", default=None, help="import string of the data loader")
        ev.add_argument(
            "--seed", type=_int_type(0, 2**32 - 1), default=0, help="rngs seed of the factory"
        )
        ev.add_argument(
            "--data-dir", type=_dir_type, default=None, help="a preset's folder holding mnist/"
        )
        ev.add_argument("--json", action="store_true", help='print {"test_error": ...} as JSON')
        args = ap.parse_args(argv)
        return _run(args)
    except OSError as e:  # outside a command (argparse reading a path): still one line
        print(f"jaxcomp: error: {_os_error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
