"""jaxcomp: Deep Compression (pruning, trained quantization, Huffman coding) and DSD as pure JAX.

Public names are re-exported here one per line; see ``__all__``.
"""

# optim (pruning). The factory is `jaxcomp.optim.prune`, exported here as `prune_weights` so that
# `jaxcomp.prune` stays the mask-kernel module. Schedules: `from jaxcomp import schedules`.
from jaxcomp.optim import LeafSparsity as LeafSparsity
from jaxcomp.optim import PruneState as PruneState
from jaxcomp.optim import SparsitySummary as SparsitySummary
from jaxcomp.optim import add_l1_regularization as add_l1_regularization
from jaxcomp.optim import add_l2_regularization as add_l2_regularization
from jaxcomp.optim import apply_masks as apply_masks
from jaxcomp.optim import l1_penalty as l1_penalty
from jaxcomp.optim import l2_penalty as l2_penalty
from jaxcomp.optim import prune as prune_weights
from jaxcomp.optim import sparsity_summary as sparsity_summary

# prune
from jaxcomp.prune import adjusted_dropout as adjusted_dropout
from jaxcomp.prune import block_mask as block_mask
from jaxcomp.prune import global_magnitude_masks as global_magnitude_masks
from jaxcomp.prune import load_balanced_mask as load_balanced_mask
from jaxcomp.prune import magnitude_mask as magnitude_mask
from jaxcomp.prune import nm_mask as nm_mask
from jaxcomp.prune import num_pruned as num_pruned
from jaxcomp.prune import structured_mask as structured_mask
from jaxcomp.prune import threshold_mask as threshold_mask

# sensitivity
from jaxcomp.sensitivity import SensitivityTable as SensitivityTable
from jaxcomp.sensitivity import plot_sensitivity as plot_sensitivity
from jaxcomp.sensitivity import sensitivity_sweep as sensitivity_sweep

# tree
from jaxcomp.tree import check_masks as check_masks
from jaxcomp.tree import default_predicate as default_predicate
from jaxcomp.tree import full_masks as full_masks
from jaxcomp.tree import leaves_with_paths as leaves_with_paths
from jaxcomp.tree import map_with_path_str as map_with_path_str
from jaxcomp.tree import mask_leaves as mask_leaves
from jaxcomp.tree import path_to_str as path_to_str
from jaxcomp.tree import selected_paths as selected_paths
from jaxcomp.tree import selection_tree as selection_tree
from jaxcomp.tree import tree_map_masked as tree_map_masked

__all__: list[str] = [
    # optim (pruning)
    "LeafSparsity",
    "PruneState",
    "SparsitySummary",
    "add_l1_regularization",
    "add_l2_regularization",
    "apply_masks",
    "l1_penalty",
    "l2_penalty",
    "prune_weights",
    "sparsity_summary",
    # prune
    "adjusted_dropout",
    "block_mask",
    "global_magnitude_masks",
    "load_balanced_mask",
    "magnitude_mask",
    "nm_mask",
    "num_pruned",
    "structured_mask",
    "threshold_mask",
    # sensitivity
    "SensitivityTable",
    "plot_sensitivity",
    "sensitivity_sweep",
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
