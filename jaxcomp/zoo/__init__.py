"""The thesis' own models and data: MNIST loading, LeNet-300-100, LeNet-5, a small training loop,
and the thesis' Deep Compression presets of :func:`jaxcomp.compress`.

Users compressing their own Flax models never need this package; the ``jaxcomp`` command's
built-in presets and the examples use it. Public names are re-exported here one per line; see
``__all__``.
"""

# data
from jaxcomp.zoo.data import MNIST
from jaxcomp.zoo.data import MNIST_FILES
from jaxcomp.zoo.data import MNISTFormatError
from jaxcomp.zoo.data import batches
from jaxcomp.zoo.data import download_mnist
from jaxcomp.zoo.data import load_mnist
from jaxcomp.zoo.data import mnist_dir
from jaxcomp.zoo.data import read_idx
from jaxcomp.zoo.data import resolve_data_dir

# models
from jaxcomp.zoo.models import MODELS
from jaxcomp.zoo.models import LeNet5
from jaxcomp.zoo.models import LeNet300100
from jaxcomp.zoo.models import make_model
from jaxcomp.zoo.models import param_count

# presets
from jaxcomp.zoo.presets import THESIS
from jaxcomp.zoo.presets import compress_preset
from jaxcomp.zoo.presets import default_config
from jaxcomp.zoo.presets import evaluate_file
from jaxcomp.zoo.presets import load_dcz_model
from jaxcomp.zoo.presets import preset

# train
from jaxcomp.zoo.train import BASELINE_RECIPES
from jaxcomp.zoo.train import TrainHistory
from jaxcomp.zoo.train import default_optimizer
from jaxcomp.zoo.train import evaluate
from jaxcomp.zoo.train import fit
from jaxcomp.zoo.train import functional
from jaxcomp.zoo.train import load_baseline
from jaxcomp.zoo.train import make_train_step
from jaxcomp.zoo.train import train_baseline

__all__ = [
    # data
    "MNIST",
    "MNIST_FILES",
    "MNISTFormatError",
    "batches",
    "download_mnist",
    "load_mnist",
    "mnist_dir",
    "read_idx",
    "resolve_data_dir",
    # models
    "MODELS",
    "LeNet5",
    "LeNet300100",
    "make_model",
    "param_count",
    # presets
    "THESIS",
    "compress_preset",
    "default_config",
    "evaluate_file",
    "load_dcz_model",
    "preset",
    # train
    "BASELINE_RECIPES",
    "TrainHistory",
    "default_optimizer",
    "evaluate",
    "fit",
    "functional",
    "load_baseline",
    "make_train_step",
    "train_baseline",
]
