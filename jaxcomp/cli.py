"""The ``jaxcomp`` command: ``jaxcomp compress`` and ``jaxcomp evaluate``.

::

    jaxcomp compress --model lenet-300-100 --out runs/lenet300 [--data-dir DIR] [--baseline DIR]
    jaxcomp evaluate runs/lenet300/model.dcz [--json]

``compress`` runs :func:`jaxcomp.pipeline.compress` (dense -> pruned -> quantized -> Huffman-coded
file) and writes ``OUT/model.dcz``, ``OUT/report.json``, ``OUT/report.md`` and ``OUT/plots/``;
every hyper-parameter has a flag whose default reproduces the README's result. A rerun with the
same ``--out`` resumes: finished stages with unchanged settings are restored from their orbax
checkpoints. ``evaluate`` reads the ``.dcz`` file alone (the architecture's name is in its
manifest) and prints the test error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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

from jaxcomp.zoo.models import MODELS

__all__ = ["INTERRUPTED", "main", "parse_layer_values"]

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
    """Parse ``"6"`` (every layer) or ``"fc1/kernel=0.92,fc3/kernel=0.74"`` (some layers).

    Layers may be named by their path (``fc1/kernel``) or by their module (``fc1``). Layers not
    named keep their default.

    Args:
      text: the flag's value.
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
    """
    text = text.strip()
    try:
        if "=" not in text:
            out = {p: kind(text) for p in layers}
        else:
            out = {}
            for part in text.split(","):
                key, _, value = part.partition("=")
                key = key.strip()
                path = key if key in layers else f"{key}/kernel"
                if path not in layers:
                    raise ValueError(f"{name}: unknown layer {key!r}; layers: {', '.join(layers)}")
                out[path] = kind(value)
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(
            f"{name}: cannot parse {text!r}; give one {kind.__name__} for every layer or "
            f"'layer=value,layer=value' (e.g. fc1=0.92)"
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
    from jaxcomp.pipeline import _check_out_dir

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
    from jaxcomp.pipeline import SHARE_INITS, CompressConfig

    d = CompressConfig.__dataclass_fields__
    p = sub.add_parser(
        "compress",
        help="prune, share weights, Huffman-code and save a LeNet (Deep Compression)",
        description="Deep Compression of a LeNet on MNIST: dense -> pruned -> quantized -> "
        "Huffman-coded OUT/model.dcz, with OUT/report.json, OUT/report.md and OUT/plots/. "
        "Defaults reproduce the README (thesis Tables 2 and 3). A rerun with the same --out "
        "resumes from the finished stages' checkpoints.",
    )
    pos_int, nonneg_int = _int_type(1), _int_type(0)
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument(
        "--out", type=_out_type, required=True, help="output folder (not a file; locked while used)"
    )
    p.add_argument(
        "--data-dir",
        type=_dir_type,
        default=None,
        help="folder holding mnist/ (default: $JAXCOMP_DATA_DIR; with neither, a 5,000-image "
        "subset)",
    )
    p.add_argument(
        "--baseline",
        default=AUTO,
        help="dense baseline folder (python -m jaxcomp.zoo.train --out); 'auto' (default): "
        "runs/baselines/MODEL when present; 'none': train one in OUT with the recipe",
    )
    p.add_argument("--dense-epochs", type=pos_int, default=None, help="when training the baseline")
    p.add_argument("--seed", type=_int_type(0, 2**32 - 1), default=d["seed"].default)
    p.add_argument("--batch-size", type=pos_int, default=d["batch_size"].default)
    p.add_argument(
        "--train-limit", type=pos_int, default=None, help="use the first N training images only"
    )
    p.add_argument(
        "--sparsity",
        default=None,
        help="fraction pruned per layer, e.g. 'fc1=0.92,fc2=0.91,fc3=0.74' (default: thesis)",
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
        default=None,
        help="prune load-balance-aware for N EIE PEs (equal non-zeros per PE): '64' (every "
        "pruned layer) or 'fc1=64,fc2=64' (those layers; default: plain magnitude)",
    )
    p.add_argument(
        "--bits",
        default=None,
        help="bits per weight code, 1..16: '6' or 'conv1=8,fc1=5' (default: thesis)",
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
        "--index-bits", default=None, help="bits per relative index, 1..16: '5' or 'fc1=4,fc2=5'"
    )
    p.add_argument(
        "--redo-changed",
        action="store_true",
        help="accept an --out written with other settings: recompute the stages they change",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="do not draw OUT/plots/")


#: CompressConfig fields set by a flag of the same name (``prune_lr`` <- ``--prune-lr``).
_FIELDS = (
    "seed",
    "batch_size",
    "train_limit",
    "dense_epochs",
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
)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _config_from_args(args):
    from jaxcomp.pipeline import THESIS, _leaf_shapes, default_config

    layers = list(THESIS[args.model]["sparsity"])
    over = {}
    for field in _FIELDS[:12]:
        v = getattr(args, field)
        if v is not None:
            over[field] = v
    base = default_config(args.model)
    bits_ok = _int_range(1, 16)
    if args.sparsity is not None:
        over["sparsity"] = {
            **base.sparsity,
            **parse_layer_values(
                args.sparsity, float, layers=layers, name="--sparsity", check=_sparsity_ok
            ),
        }
    if args.bits is not None:
        over["bits"] = {
            **base.bits,
            **parse_layer_values(args.bits, int, layers=layers, name="--bits", check=bits_ok),
        }
    if args.index_bits is not None:
        over["index_bits"] = {
            **base.index_bits,
            **parse_layer_values(
                args.index_bits, int, layers=layers, name="--index-bits", check=bits_ok
            ),
        }
    if args.load_balance_pes is not None:
        shapes = _leaf_shapes(args.model)
        text = args.load_balance_pes.strip()
        lb = parse_layer_values(
            text, int, layers=layers, name="--load-balance-pes", check=_int_range(1)
        )
        # one N for all layers: at most the widest layer's outputs (narrower ones idle PEs)
        widest = max(lb, key=lambda k: shapes[k][-1])
        for path, n in lb.items() if "=" in text else [(widest, lb[widest])]:
            if n > shapes[path][-1]:
                raise ValueError(
                    f"--load-balance-pes: {n} PEs is more than {path} has outputs "
                    f"({shapes[path][-1]}); give at most {shapes[path][-1]}"
                )
        over["load_balance_pes"] = lb if "=" in text else next(iter(lb.values()))
    if args.prune_fractions is not None:
        try:
            over["prune_fractions"] = tuple(float(f) for f in args.prune_fractions.split(","))
        except ValueError:
            raise ValueError(
                f"--prune-fractions: cannot parse {args.prune_fractions!r}; "
                "give comma-separated floats ending at 1, e.g. 0.5,0.75,1"
            ) from None
    try:
        return default_config(args.model, **over)
    except ValueError as e:  # name the flag, not the field
        msg = str(e)
        for field in _FIELDS:
            if msg.startswith(field):
                raise ValueError(_flag(field) + msg[len(field) :]) from None
        raise


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


def _cmd_compress(args) -> int:
    from jaxcomp.pipeline import compress

    config = _config_from_args(args)
    baseline = _baseline_dir(args)
    result = compress(
        config,
        args.out,
        data_dir=args.data_dir,
        baseline=baseline,
        progress=not args.no_progress,
        plots=not args.no_plots,
        redo_changed=args.redo_changed,
    )
    print(f"wrote {Path(args.out) / 'model.dcz'}, report.json, report.md")
    e = result["test_error"]
    print(
        "test error: "
        + ", ".join(f"{s} {100 * e[s]:.2f}%" for s in ("dense", "pruned", "quantized", "final"))
    )
    return 0


def _cmd_evaluate(args) -> int:
    from jaxcomp.pipeline import evaluate_file

    if Path(args.file).is_dir():
        hint = Path(args.file) / "model.dcz"
        raise ValueError(
            f"{args.file} is a folder; give a .dcz file"
            + (f" (e.g. {hint})" if hint.is_file() else "")
        )
    r = evaluate_file(args.file, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"{args.file}: {r['model']}, test error {100 * r['test_error']:.2f}% "
            f"on {r['n']:,} {r['data']} MNIST test images"
        )
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
        ev = sub.add_parser("evaluate", help="test error of a .dcz model file, read alone")
        ev.add_argument("file", help="a .dcz file written by `jaxcomp compress`")
        ev.add_argument("--data-dir", type=_dir_type, default=None, help="folder holding mnist/")
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
