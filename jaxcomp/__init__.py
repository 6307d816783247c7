"""jaxcomp: Deep Compression (pruning, trained quantization, Huffman coding) and DSD as pure JAX.

Public names are re-exported here one per line; see ``__all__``.
"""

# optim (weight sharing)
from jaxcomp.optim import ShareState as ShareState
from jaxcomp.optim import share_weights as share_weights

# quantize
from jaxcomp.quantize import KMeansInfo as KMeansInfo
from jaxcomp.quantize import centroid_grads as centroid_grads
from jaxcomp.quantize import codes_dtype as codes_dtype
from jaxcomp.quantize import kmeans_fit as kmeans_fit
from jaxcomp.quantize import kmeans_inertia as kmeans_inertia
from jaxcomp.quantize import nearest_codes as nearest_codes
from jaxcomp.quantize import plot_codebook as plot_codebook
from jaxcomp.quantize import shared_weight as shared_weight
from jaxcomp.quantize import uniform_fit as uniform_fit

__all__: list[str] = [
    # optim (weight sharing)
    "ShareState",
    "share_weights",
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
]
