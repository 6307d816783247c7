"""Benchmark layers for the EIE model: the shared real layer and loaders.

A layer is a ``Layer``: ``codes`` (m outputs x n inputs, unsigned, 0 = pruned), ``codebook``
(float32, ``codebook[0] == 0.0``), ``act`` (n,) and optional ``bias_codes`` (m,).

Example:
    >>> import numpy as np
    >>> from eie_model.layers import Layer
    >>> layer = Layer(np.array([[1, 0]], np.uint8), np.arange(16, dtype=np.float32),
    ...               np.array([2.0, 3.0], np.float32))
    >>> layer.shape, layer.code_bits
    ((1, 2), 4)
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

__all__ = ["Layer", "load_npz_layer", "validate_layer"]


class Layer(NamedTuple):
    """One fully-connected layer as EIE sees it.

    Attributes:
        codes: ``(m, n)`` uint8/uint16 weight codes (outputs x inputs), 0 = pruned.
        codebook: ``(2**code_bits,)`` float32, entry 0 is 0.0.
        act: ``(n,)`` float32 input activations.
        bias_codes: ``(m,)`` codes of the bias, or ``None``.
        name: a label.
    """

    codes: np.ndarray
    codebook: np.ndarray
    act: np.ndarray
    bias_codes: np.ndarray | None = None
    name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: outputs x inputs."""
        return tuple(self.codes.shape)

    @property
    def code_bits(self) -> int:
        """Bits of a weight code: ``log2(len(codebook))``."""
        return int(self.codebook.shape[0]).bit_length() - 1

    @property
    def weight_density(self) -> float:
        """Fraction of non-zero codes."""
        return float(np.count_nonzero(self.codes)) / max(self.codes.size, 1)

    @property
    def act_density(self) -> float:
        """Fraction of non-zero activations."""
        return float(np.count_nonzero(self.act)) / max(self.act.size, 1)

    def weights(self) -> np.ndarray:
        """Dense ``(m, n)`` float32 weights ``codebook[codes]``."""
        return self.codebook[self.codes]


def validate_layer(layer: Layer) -> Layer:
    """Check a ``Layer``'s shapes, dtypes and codebook convention; return it with canonical dtypes.

    Raises:
        ValueError, TypeError: naming the offending field.
    """
    codes = np.asarray(layer.codes)
    codebook = np.asarray(layer.codebook)
    act = np.asarray(layer.act)
    if codes.ndim != 2:
        raise ValueError(f"layer codes must be 2-D (m, n), got shape {codes.shape}")
    if codes.dtype == bool or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"layer codes must be unsigned integers, got {codes.dtype}")
    k = codebook.shape[0] if codebook.ndim == 1 else 0
    if codebook.ndim != 1 or k < 2 or k & (k - 1):
        raise ValueError(
            f"layer codebook must be 1-D with a power-of-2 length, got {codebook.shape}"
        )
    if codebook[0] != 0.0:
        raise ValueError(f"layer codebook[0] must be 0.0 (code 0 = pruned), got {codebook[0]}")
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"layer codes must lie in 0..{k - 1}, got max {int(codes.max())}")
    if act.shape != (codes.shape[1],):
        raise ValueError(f"layer act must have shape ({codes.shape[1]},) = (n,), got {act.shape}")
    bias = layer.bias_codes
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (codes.shape[0],):
            raise ValueError(
                f"layer bias_codes must have shape ({codes.shape[0]},) = (m,), got {bias.shape}"
            )
        if bias.size and (bias.min() < 0 or bias.max() >= k):
            raise ValueError(f"layer bias_codes must lie in 0..{k - 1}")
    dt = np.uint8 if k <= 256 else np.uint16
    return Layer(
        codes.astype(dt, copy=False),
        codebook.astype(np.float32, copy=False),
        act.astype(np.float32, copy=False),
        None if bias is None else bias.astype(dt, copy=False),
        layer.name,
    )


def load_npz_layer(path: str | os.PathLike) -> Layer:
    """Load a layer from an ``.npz`` with keys ``codes``, ``codebook``, ``act`` [, ``bias_codes``].

    These are the keys of the shared real layer (``eie-layer/layer.npz``).

    Args:
        path: the ``.npz`` file.

    Returns:
        The validated ``Layer`` (name = file stem).

    Example:
        >>> import os
        >>> from eie_model.layers import load_npz_layer
        >>> p = os.path.join(os.environ.get("JAXCOMP_DATA_DIR", "/nonexistent"),
        ...                  "eie-layer", "layer.npz")
        >>> load_npz_layer(p).shape if os.path.exists(p) else (1000, 4096)
        (1000, 4096)
    """
    with np.load(path) as d:
        missing = {"codes", "codebook", "act"} - set(d.files)
        if missing:
            raise ValueError(
                f"layer file {path} lacks keys {sorted(missing)}; it needs codes, codebook, act "
                "and optionally bias_codes"
            )
        bias = d["bias_codes"] if "bias_codes" in d.files else None
        layer = Layer(d["codes"], d["codebook"], d["act"], bias, os.path.basename(str(path)))
    return validate_layer(layer)
