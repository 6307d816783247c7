"""eie_model: the EIE inference engine (Han et al., ISCA 2016) as arrays.

Public names are re-exported here one per line; see ``__all__``.
"""

# config
from eie_model.config import EIEConfig, stack_configs

# cycles
from eie_model.cycles import (
    LayerEvents,
    PEWork,
    ScanTables,
    SliceGaps,
    Timing,
    counters,
    pe_work,
    prepare_layer,
    scan_tables,
    simulate_layer,
    slice_gaps,
    sram_line_reads,
    timing,
)

# energy
from eie_model.energy import EnergyReport, energy_report, full_load_counters, pe_area_mm2

# format
from eie_model.format import (
    EncodedLayer,
    StorageBits,
    decode_layer,
    encode_layer,
    storage_bits,
)

# functional
from eie_model.functional import (
    FixedResult,
    frac_bits_for,
    quantize_fixed,
    spmv_fixed,
    spmv_float,
)

# layers
from eie_model.layers import (
    BENCHMARKS,
    BenchmarkSpec,
    Layer,
    benchmark_layer,
    fit_spread,
    load_dcz_layer,
    load_layer,
    load_npz_layer,
    synthetic_layer,
    validate_layer,
)

# network
from eie_model.network import (
    Network,
    calibrate_fracs,
    load_dcz_network,
    network_forward,
    network_sweep,
)

# sweep
from eie_model.sweep import (
    CONFIG_FIELDS,
    DEFAULTS,
    ENERGY_COLUMNS,
    PreparedLayer,
    grid,
    pareto_front,
    prepare,
    sweep,
    to_records,
    write_csv,
    write_json,
)

# reference: imported lazily (module __getattr__ below), so that
# `python -m eie_model.reference` runs without runpy's "found in sys.modules" warning.
# plots: imported lazily too (matplotlib is slow to import and not needed by the models).
_LAZY = {
    "Counters": "reference",
    "simulate": "reference",
    "simulate_encoded": "reference",
    "design_space_figures": "plots",
    "fig_balance": "plots",
    "fig_codesign": "plots",
    "fig_fifo": "plots",
    "fig_fillers": "plots",
    "fig_pareto": "plots",
    "fig_speedup": "plots",
    "fig_width": "plots",
    "plot_sweep": "plots",
    "save_figure": "plots",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"eie_model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'eie_model' has no attribute {name!r}")


__all__: list[str] = [
    # config
    "EIEConfig",
    "stack_configs",
    # cycles
    "LayerEvents",
    "PEWork",
    "ScanTables",
    "SliceGaps",
    "Timing",
    "counters",
    "pe_work",
    "prepare_layer",
    "scan_tables",
    "simulate_layer",
    "slice_gaps",
    "sram_line_reads",
    "timing",
    # energy
    "EnergyReport",
    "energy_report",
    "full_load_counters",
    "pe_area_mm2",
    # format
    "EncodedLayer",
    "StorageBits",
    "decode_layer",
    "encode_layer",
    "storage_bits",
    # functional
    "FixedResult",
    "frac_bits_for",
    "quantize_fixed",
    "spmv_fixed",
    "spmv_float",
    # layers
    "BENCHMARKS",
    "BenchmarkSpec",
    "Layer",
    "benchmark_layer",
    "fit_spread",
    "load_dcz_layer",
    "load_layer",
    "load_npz_layer",
    "synthetic_layer",
    "validate_layer",
    # network
    "Network",
    "calibrate_fracs",
    "load_dcz_network",
    "network_forward",
    "network_sweep",
    # plots
    "design_space_figures",
    "fig_balance",
    "fig_codesign",
    "fig_fifo",
    "fig_fillers",
    "fig_pareto",
    "fig_speedup",
    "fig_width",
    "plot_sweep",
    "save_figure",
    # reference
    "Counters",
    "simulate",
    "simulate_encoded",
    # sweep
    "CONFIG_FIELDS",
    "DEFAULTS",
    "ENERGY_COLUMNS",
    "PreparedLayer",
    "grid",
    "pareto_front",
    "prepare",
    "sweep",
    "to_records",
    "write_csv",
    "write_json",
]
