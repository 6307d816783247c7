"""jaxcomp: Deep Compression (pruning, trained quantization, Huffman coding) and DSD as pure JAX.

Public names are re-exported here one per line; see ``__all__``.
"""

__all__: list[str] = []
