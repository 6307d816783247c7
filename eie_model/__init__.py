"""eie_model: the EIE inference engine (Han et al., ISCA 2016) as arrays.

Public names are re-exported here one per line; see ``__all__``.
"""

# config
from eie_model.config import EIEConfig, stack_configs

# format
from eie_model.format import (
    EncodedLayer,
    StorageBits,
    decode_layer,
    encode_layer,
    storage_bits,
)

# layers
from eie_model.layers import Layer, load_npz_layer, validate_layer

# reference: imported lazily (module __getattr__ below), so that
# `python -m eie_model.reference` runs without runpy's "found in sys.modules" warning.
_LAZY = {"Counters": "reference", "simulate": "reference", "simulate_encoded": "reference"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"eie_model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'eie_model' has no attribute {name!r}")


__all__: list[str] = [
    # config
    "EIEConfig",
    "stack_configs",
    # format
    "EncodedLayer",
    "StorageBits",
    "decode_layer",
    "encode_layer",
    "storage_bits",
    # layers
    "Layer",
    "load_npz_layer",
    "validate_layer",
    # reference
    "Counters",
    "simulate",
    "simulate_encoded",
]
