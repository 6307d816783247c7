"""eie_model: the EIE inference engine (Han et al., ISCA 2016) as arrays.

The spine: :class:`EIEStatic` (shape-setting knobs), :class:`EIEParams` (vmappable knobs),
:class:`Layer`, :class:`Counters` (every counter and derived figure);
``simulate(static, params, layer)`` and ``sweep(static, params_batch, layer)``. The fast model's
stages are importable from :mod:`eie_model.sim`; the cycle-by-cycle oracle is
:mod:`eie_model.reference`. Public names are re-exported here one per line; see ``__all__``.
"""

from eie_model.capacity import CapacityError
from eie_model.capacity import capacity_entries
from eie_model.capacity import check_capacity
from eie_model.capacity import stored_entries
from eie_model.energy import EnergyReport
from eie_model.energy import energy_report
from eie_model.format import encode_layer
from eie_model.functional import spmv_fixed
from eie_model.functional import spmv_float
from eie_model.layers import benchmark_layer
from eie_model.layers import synthetic_layer
from eie_model.lstm import LSTMGates
from eie_model.lstm import LSTMReference
from eie_model.lstm import LSTMRun
from eie_model.lstm import load_dcz_lstm
from eie_model.lstm import lstm_on_eie
from eie_model.lstm import lstm_reference
from eie_model.lstm import merge_codebooks
from eie_model.network import Network
from eie_model.network import calibrate_fracs
from eie_model.network import load_dcz_network
from eie_model.network import network_forward
from eie_model.network import network_reference
from eie_model.network import network_sweep
from eie_model.network import writeback_cycles
from eie_model.sim import simulate
from eie_model.sram import spmat_area_mm2
from eie_model.sram import spmat_leakage_mw
from eie_model.sram import spmat_read_pj
from eie_model.sweep import pareto_front
from eie_model.sweep import sweep
from eie_model.sweep import write_csv
from eie_model.types import Counters
from eie_model.types import EIEParams
from eie_model.types import EIEStatic
from eie_model.types import Layer

__all__: list[str] = [
    "CapacityError",
    "Counters",
    "EIEParams",
    "EIEStatic",
    "EnergyReport",
    "LSTMGates",
    "LSTMReference",
    "LSTMRun",
    "Layer",
    "Network",
    "benchmark_layer",
    "calibrate_fracs",
    "capacity_entries",
    "check_capacity",
    "encode_layer",
    "energy_report",
    "load_dcz_lstm",
    "load_dcz_network",
    "lstm_on_eie",
    "lstm_reference",
    "merge_codebooks",
    "network_forward",
    "network_reference",
    "network_sweep",
    "pareto_front",
    "simulate",
    "spmat_area_mm2",
    "spmat_leakage_mw",
    "spmat_read_pj",
    "spmv_fixed",
    "spmv_float",
    "stored_entries",
    "sweep",
    "synthetic_layer",
    "write_csv",
    "writeback_cycles",
]
