"""eie_model: the EIE inference engine (Han et al., ISCA 2016) as arrays.

Public names are re-exported here one per line; see ``__all__``.
"""

__all__: list[str] = []
