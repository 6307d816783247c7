"""jaxcomp: Deep Compression (pruning, trained quantization, Huffman coding) and DSD as pure JAX.

Public names are re-exported here one per line; see ``__all__``.
"""

# checkpoint
from jaxcomp.checkpoint import latest_step
from jaxcomp.checkpoint import restore_checkpoint
from jaxcomp.checkpoint import save_checkpoint

# data
from jaxcomp.data import MNIST
from jaxcomp.data import MNISTFormatError
from jaxcomp.data import batches
from jaxcomp.data import download_mnist
from jaxcomp.data import load_mnist
from jaxcomp.data import read_idx
from jaxcomp.data import resolve_data_dir

# models
from jaxcomp.models import LeNet5
from jaxcomp.models import LeNet300100
from jaxcomp.models import make_model
from jaxcomp.models import param_count

# optim (weight sharing)
from jaxcomp.optim import ShareState
from jaxcomp.optim import share_weights
from jaxcomp.optim import shared_params

# quantize
from jaxcomp.quantize import KMeansInfo
from jaxcomp.quantize import centroid_grads
from jaxcomp.quantize import codes_dtype
from jaxcomp.quantize import kmeans_fit
from jaxcomp.quantize import kmeans_inertia
from jaxcomp.quantize import nearest_codes
from jaxcomp.quantize import plot_codebook
from jaxcomp.quantize import shared_weight
from jaxcomp.quantize import uniform_fit

# train
from jaxcomp.train import default_optimizer
from jaxcomp.train import evaluate
from jaxcomp.train import fit
from jaxcomp.train import functional
from jaxcomp.train import load_baseline
from jaxcomp.train import make_train_step
from jaxcomp.train import train_baseline

# tree
from jaxcomp.tree import leaves_with_paths
from jaxcomp.tree import path_to_str

__all__ = [
    # checkpoint
    "latest_step",
    "restore_checkpoint",
    "save_checkpoint",
    # data
    "MNIST",
    "MNISTFormatError",
    "batches",
    "download_mnist",
    "load_mnist",
    "read_idx",
    "resolve_data_dir",
    # models
    "LeNet5",
    "LeNet300100",
    "make_model",
    "param_count",
    # optim (weight sharing)
    "ShareState",
    "share_weights",
    "shared_params",
    # quantize
    "KMeansInfo",
    "centroid_grads",
    "codes_dtype",
    "kmeans_fit",
    "kmeans_inertia",
    "nearest_codes",
    "plot_codebook",
    "shared_weight",
    "uniform_fit",
    # train
    "default_optimizer",
    "evaluate",
    "fit",
    "functional",
    "load_baseline",
    "make_train_step",
    "train_baseline",
    # tree
    "leaves_with_paths",
    "path_to_str",
]
