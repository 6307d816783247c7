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
import json
import sys
from pathlib import Path

from jaxcomp.zoo.models import MODELS

__all__ = ["main", "parse_layer_values"]

#: ``--baseline`` default: use ``runs/baselines/MODEL`` when it exists, else train.
AUTO = "auto"


def parse_layer_values(text: str, kind: type, *, layers: list[str], name: str) -> dict:
    """Parse ``"6"`` (every layer) or ``"fc1/kernel=0.92,fc3/kernel=0.74"`` (some layers).

    Layers may be named by their path (``fc1/kernel``) or by their module (``fc1``). Layers not
    named keep their default.

    Args:
      text: the flag's value.
      kind: ``int`` or ``float``.
      layers: the compressed layers' paths.
      name: the flag's name, for error messages.

    Returns:
      ``{path: value}``.

    Raises:
      ValueError: an unknown layer or a value that does not parse.

    Example:
      >>> parse_layer_values("fc1=5,fc3/kernel=4", int, layers=["fc1/kernel", "fc3/kernel"],
      ...                    name="--bits")
      {'fc1/kernel': 5, 'fc3/kernel': 4}
    """
    text = text.strip()
    try:
        if "=" not in text:
            v = kind(text)
            return {p: v for p in layers}
        out = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            path = key if key in layers else f"{key}/kernel"
            if path not in layers:
                raise ValueError(f"{name}: unknown layer {key!r}; layers: {', '.join(layers)}")
            out[path] = kind(value)
        return out
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(
            f"{name}: cannot parse {text!r}; give one {kind.__name__} for every layer or "
            f"'layer=value,layer=value' (e.g. fc1=0.92)"
        ) from None


def _compress_parser(sub) -> None:
    from jaxcomp.pipeline import CompressConfig

    d = CompressConfig.__dataclass_fields__
    p = sub.add_parser(
        "compress",
        help="prune, share weights, Huffman-code and save a LeNet (Deep Compression)",
        description="Deep Compression of a LeNet on MNIST: dense -> pruned -> quantized -> "
        "Huffman-coded OUT/model.dcz, with OUT/report.json, OUT/report.md and OUT/plots/. "
        "Defaults reproduce the README (thesis Tables 2 and 3). A rerun with the same --out "
        "resumes from the finished stages' checkpoints.",
    )
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: see README)")
    p.add_argument(
        "--baseline",
        default=AUTO,
        help="dense baseline folder (python -m jaxcomp.train --out); 'auto' (default): "
        "runs/baselines/MODEL when present; 'none': train one in OUT with the recipe",
    )
    p.add_argument("--dense-epochs", type=int, default=None, help="when training the baseline")
    p.add_argument("--seed", type=int, default=d["seed"].default)
    p.add_argument("--batch-size", type=int, default=d["batch_size"].default)
    p.add_argument(
        "--train-limit", type=int, default=None, help="use the first N training images only"
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
    p.add_argument("--epochs-per-step", type=int, default=None, help="epochs between steps")
    p.add_argument("--prune-epochs", type=int, default=None, help="pruning + retraining epochs")
    p.add_argument("--prune-lr", type=float, default=None, help="retraining peak lr (cosine)")
    p.add_argument("--prune-weight-decay", type=float, default=None)
    p.add_argument(
        "--load-balance-pes",
        default=None,
        help="prune load-balance-aware for N EIE PEs (equal non-zeros per PE): '64' (every "
        "pruned layer) or 'fc1=64,fc2=64' (those layers; default: plain magnitude)",
    )
    p.add_argument(
        "--bits",
        default=None,
        help="bits per weight code: '6' or 'conv1=8,fc1=5' (default: thesis)",
    )
    p.add_argument(
        "--share-init",
        default=None,
        choices=("linear", "density", "random", "kmeans++", "uniform"),
        help="k-means initialisation (default linear)",
    )
    p.add_argument(
        "--kmeans-iters", type=int, default=None, help="Lloyd iterations (0: initial centroids)"
    )
    p.add_argument("--finetune-epochs", type=int, default=None, help="centroid fine-tuning epochs")
    p.add_argument("--finetune-lr", type=float, default=None, help="centroid Adam lr")
    p.add_argument(
        "--index-bits", default=None, help="bits per relative index: '5' or 'fc1=4,fc2=5'"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="do not draw OUT/plots/")


def _config_from_args(args):
    from jaxcomp.pipeline import THESIS, default_config

    layers = list(THESIS[args.model]["sparsity"])
    over = {}
    for flag, field in (
        ("seed", "seed"),
        ("batch_size", "batch_size"),
        ("train_limit", "train_limit"),
        ("dense_epochs", "dense_epochs"),
        ("epochs_per_step", "epochs_per_step"),
        ("prune_epochs", "prune_epochs"),
        ("prune_lr", "prune_lr"),
        ("prune_weight_decay", "prune_weight_decay"),
        ("share_init", "share_init"),
        ("kmeans_iters", "kmeans_iters"),
        ("finetune_epochs", "finetune_epochs"),
        ("finetune_lr", "finetune_lr"),
    ):
        v = getattr(args, flag)
        if v is not None:
            over[field] = v
    base = default_config(args.model)
    if args.sparsity is not None:
        over["sparsity"] = {
            **base.sparsity,
            **parse_layer_values(args.sparsity, float, layers=layers, name="--sparsity"),
        }
    if args.bits is not None:
        over["bits"] = {
            **base.bits,
            **parse_layer_values(args.bits, int, layers=layers, name="--bits"),
        }
    if args.index_bits is not None:
        over["index_bits"] = {
            **base.index_bits,
            **parse_layer_values(args.index_bits, int, layers=layers, name="--index-bits"),
        }
    if args.load_balance_pes is not None:
        text = args.load_balance_pes.strip()
        if "=" in text:
            over["load_balance_pes"] = parse_layer_values(
                text, int, layers=layers, name="--load-balance-pes"
            )
        else:
            try:
                over["load_balance_pes"] = int(text)
            except ValueError:
                raise ValueError(
                    f"--load-balance-pes: cannot parse {text!r}; give an int (e.g. 64) or "
                    "layer=int pairs (e.g. fc1=64,fc2=64)"
                ) from None
    if args.prune_fractions is not None:
        try:
            over["prune_fractions"] = tuple(float(f) for f in args.prune_fractions.split(","))
        except ValueError:
            raise ValueError(
                f"--prune-fractions: cannot parse {args.prune_fractions!r}; "
                "give comma-separated floats ending at 1, e.g. 0.5,0.75,1"
            ) from None
    return default_config(args.model, **over)


def _cmd_compress(args) -> int:
    from jaxcomp.pipeline import compress

    config = _config_from_args(args)
    baseline = args.baseline
    if baseline == AUTO:
        auto = Path("runs") / "baselines" / args.model
        baseline = str(auto) if (auto / "params").exists() else None
        print(f"dense baseline: {auto}" if baseline else "dense baseline: none found, training one")
    elif baseline.lower() == "none":
        baseline = None
    result = compress(
        config,
        args.out,
        data_dir=args.data_dir,
        baseline=baseline,
        progress=not args.no_progress,
        plots=not args.no_plots,
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

    r = evaluate_file(args.file, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"{args.file}: {r['model']}, test error {100 * r['test_error']:.2f}% "
            f"on {r['n']:,} {r['data']} MNIST test images"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxcomp`` console script; returns the exit status."""
    ap = argparse.ArgumentParser(prog="jaxcomp", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    _compress_parser(sub)
    ev = sub.add_parser("evaluate", help="test error of a .dcz model file, read alone")
    ev.add_argument("file", help="a .dcz file written by `jaxcomp compress`")
    ev.add_argument("--data-dir", default=None, help="folder holding mnist/")
    ev.add_argument("--json", action="store_true", help='print {"test_error": ...} as JSON')
    args = ap.parse_args(argv)
    try:
        if args.command == "compress":
            return _cmd_compress(args)
        return _cmd_evaluate(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"jaxcomp {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
