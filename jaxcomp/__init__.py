"""jaxcomp: Deep Compression (pruning, trained quantization, Huffman coding) and DSD as pure JAX.

Public names are re-exported here one per line; see ``__all__``.
"""

# atomic
from jaxcomp.atomic import atomic_open

# checkpoint
from jaxcomp.checkpoint import CompressionTrainState
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

# encode
from jaxcomp.encode import RelativeIndex
from jaxcomp.encode import decode_relative
from jaxcomp.encode import encode_relative
from jaxcomp.encode import matrix_shape
from jaxcomp.encode import relative_index_counts

# fileformat
from jaxcomp.fileformat import DEFAULT_MAX_RATIO
from jaxcomp.fileformat import DczFormatError
from jaxcomp.fileformat import EncodedLeaf
from jaxcomp.fileformat import dumps_compressed
from jaxcomp.fileformat import encode_leaves
from jaxcomp.fileformat import load_compressed
from jaxcomp.fileformat import load_compressed_codes
from jaxcomp.fileformat import load_metadata
from jaxcomp.fileformat import loads_compressed
from jaxcomp.fileformat import loads_compressed_codes
from jaxcomp.fileformat import loads_metadata
from jaxcomp.fileformat import save_compressed
from jaxcomp.fileformat import serialize_leaves

# huffman
from jaxcomp.huffman import HuffmanStream
from jaxcomp.huffman import canonical_codes
from jaxcomp.huffman import code_lengths
from jaxcomp.huffman import entropy_bits
from jaxcomp.huffman import huffman_decode
from jaxcomp.huffman import huffman_encode
from jaxcomp.huffman import pack_bits
from jaxcomp.huffman import pack_lengths
from jaxcomp.huffman import unpack_fixed
from jaxcomp.huffman import unpack_lengths

# models
from jaxcomp.models import LeNet5
from jaxcomp.models import LeNet300100
from jaxcomp.models import make_model
from jaxcomp.models import param_count

# report
from jaxcomp.report import CompressionReport
from jaxcomp.report import LayerReport
from jaxcomp.report import compression_report

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

# optim (pruning). The factory is `jaxcomp.optim.prune`, exported here as `prune_weights` so that
# `jaxcomp.prune` stays the mask-kernel module. Schedules: `from jaxcomp import schedules`.
from jaxcomp.optim import DSDState
from jaxcomp.optim import LeafSparsity
from jaxcomp.optim import PruneState
from jaxcomp.optim import SparsitySummary
from jaxcomp.optim import add_l1_regularization
from jaxcomp.optim import add_l2_regularization
from jaxcomp.optim import apply_masks
from jaxcomp.optim import dsd
from jaxcomp.optim import l1_penalty
from jaxcomp.optim import l2_penalty
from jaxcomp.optim import prune as prune_weights
from jaxcomp.optim import sparsity_summary

# pipeline
from jaxcomp.pipeline import CompressConfig
from jaxcomp.pipeline import compress
from jaxcomp.pipeline import default_config
from jaxcomp.pipeline import evaluate_file
from jaxcomp.pipeline import load_dcz_model
from jaxcomp.pipeline import prune_stage
from jaxcomp.pipeline import quantize_stage

# prune
from jaxcomp.prune import adjusted_dropout
from jaxcomp.prune import block_mask
from jaxcomp.prune import global_magnitude_masks
from jaxcomp.prune import load_balanced_mask
from jaxcomp.prune import magnitude_mask
from jaxcomp.prune import nm_mask
from jaxcomp.prune import num_pruned
from jaxcomp.prune import random_mask
from jaxcomp.prune import structured_mask
from jaxcomp.prune import threshold_mask

# sensitivity
from jaxcomp.sensitivity import SensitivityTable
from jaxcomp.sensitivity import plot_sensitivity
from jaxcomp.sensitivity import sensitivity_sweep

# train
from jaxcomp.train import default_optimizer
from jaxcomp.train import evaluate
from jaxcomp.train import fit
from jaxcomp.train import functional
from jaxcomp.train import load_baseline
from jaxcomp.train import make_train_step
from jaxcomp.train import train_baseline

# tree
from jaxcomp.tree import check_masks
from jaxcomp.tree import default_predicate
from jaxcomp.tree import full_masks
from jaxcomp.tree import leaves_with_paths
from jaxcomp.tree import map_with_path_str
from jaxcomp.tree import mask_leaves
from jaxcomp.tree import path_to_str
from jaxcomp.tree import selected_paths
from jaxcomp.tree import selection_tree
from jaxcomp.tree import tree_map_masked

__all__ = [
    # atomic
    "atomic_open",
    # checkpoint
    "CompressionTrainState",
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
    # encode
    "RelativeIndex",
    "decode_relative",
    "encode_relative",
    "matrix_shape",
    "relative_index_counts",
    # fileformat
    "DEFAULT_MAX_RATIO",
    "DczFormatError",
    "EncodedLeaf",
    "dumps_compressed",
    "encode_leaves",
    "load_compressed",
    "load_compressed_codes",
    "load_metadata",
    "loads_compressed",
    "loads_compressed_codes",
    "loads_metadata",
    "save_compressed",
    "serialize_leaves",
    # huffman
    "HuffmanStream",
    "canonical_codes",
    "code_lengths",
    "entropy_bits",
    "huffman_decode",
    "huffman_encode",
    "pack_bits",
    "pack_lengths",
    "unpack_fixed",
    "unpack_lengths",
    # models
    "LeNet5",
    "LeNet300100",
    "make_model",
    "param_count",
    # report
    "CompressionReport",
    "LayerReport",
    "compression_report",
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
    # optim (pruning)
    "DSDState",
    "LeafSparsity",
    "PruneState",
    "SparsitySummary",
    "add_l1_regularization",
    "add_l2_regularization",
    "apply_masks",
    "dsd",
    "l1_penalty",
    "l2_penalty",
    "prune_weights",
    "sparsity_summary",
    # pipeline
    "CompressConfig",
    "compress",
    "default_config",
    "evaluate_file",
    "load_dcz_model",
    "prune_stage",
    "quantize_stage",
    # prune
    "adjusted_dropout",
    "block_mask",
    "global_magnitude_masks",
    "load_balanced_mask",
    "magnitude_mask",
    "nm_mask",
    "num_pruned",
    "random_mask",
    "structured_mask",
    "threshold_mask",
    # sensitivity
    "SensitivityTable",
    "plot_sensitivity",
    "sensitivity_sweep",
    # train
    "default_optimizer",
    "evaluate",
    "fit",
    "functional",
    "load_baseline",
    "make_train_step",
    "train_baseline",
    # tree
    "check_masks",
    "default_predicate",
    "full_masks",
    "leaves_with_paths",
    "map_with_path_str",
    "mask_leaves",
    "path_to_str",
    "selected_paths",
    "selection_tree",
    "tree_map_masked",
]
