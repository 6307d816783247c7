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

# report
from jaxcomp.report import CompressionReport
from jaxcomp.report import LayerReport
from jaxcomp.report import compression_report

# sharing
from jaxcomp.sharing import ShareState
from jaxcomp.sharing import share_weights
from jaxcomp.sharing import shared_params

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

# pruning. Schedules: `from jaxcomp import schedules`.
from jaxcomp.pruning import LeafSparsity
from jaxcomp.pruning import PruneState
from jaxcomp.pruning import SparsitySummary
from jaxcomp.pruning import apply_masks
from jaxcomp.pruning import prune
from jaxcomp.pruning import sparsity_summary

# dsd
from jaxcomp.dsd import DSDState
from jaxcomp.dsd import dsd

# regularizers
from jaxcomp.regularizers import add_l1_regularization
from jaxcomp.regularizers import add_l2_regularization
from jaxcomp.regularizers import l1_penalty
from jaxcomp.regularizers import l2_penalty

# compress (the driver; the thesis' LeNet presets are in jaxcomp.zoo)
from jaxcomp.compress import CompressConfig
from jaxcomp.compress import compress
from jaxcomp.compress import default_optimizer
from jaxcomp.compress import evaluate_model
from jaxcomp.compress import load_model
from jaxcomp.compress import prune_stage
from jaxcomp.compress import quantize_stage

# masks
from jaxcomp.masks import adjusted_dropout
from jaxcomp.masks import block_mask
from jaxcomp.masks import global_magnitude_masks
from jaxcomp.masks import load_balanced_mask
from jaxcomp.masks import magnitude_mask
from jaxcomp.masks import nm_mask
from jaxcomp.masks import num_pruned
from jaxcomp.masks import random_mask
from jaxcomp.masks import structured_mask
from jaxcomp.masks import threshold_mask

# sensitivity
from jaxcomp.sensitivity import SensitivityTable
from jaxcomp.sensitivity import plot_sensitivity
from jaxcomp.sensitivity import sensitivity_sweep

# shrink
from jaxcomp.shrink import shrink

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
    # report
    "CompressionReport",
    "LayerReport",
    "compression_report",
    # sharing
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
    # pruning
    "LeafSparsity",
    "PruneState",
    "SparsitySummary",
    "apply_masks",
    "prune",
    "sparsity_summary",
    # dsd
    "DSDState",
    "dsd",
    # regularizers
    "add_l1_regularization",
    "add_l2_regularization",
    "l1_penalty",
    "l2_penalty",
    # compress
    "CompressConfig",
    "compress",
    "default_optimizer",
    "evaluate_model",
    "load_model",
    "prune_stage",
    "quantize_stage",
    # masks
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
    # shrink
    "shrink",
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
