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
]
