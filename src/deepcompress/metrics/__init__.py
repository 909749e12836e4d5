"""Efficiency measures of a model: size, parameters, FLOPs/MACs, latency and energy (measured or estimated).

The report tables and figures live in :mod:`.summary` and :mod:`.plots` (imported on demand: matplotlib).
"""

from .energy import (
    EnergyMeter,
    EnergyModel,
    EnergyReading,
    InferenceEnergy,
    efficiency_uj_per_mflop,
    estimate_inference,
    training_energy,
)
from .flops import LayerProfile, ModelProfile, profile_model
from .latency import measure_latency
from .size import distinct_values, effective_weights, parameter_counts, zipped_dense_bytes

__all__ = ["EnergyMeter", "EnergyModel", "EnergyReading", "InferenceEnergy", "LayerProfile", "ModelProfile",
           "distinct_values", "effective_weights", "efficiency_uj_per_mflop", "estimate_inference",
           "measure_latency", "parameter_counts", "profile_model", "training_energy", "zipped_dense_bytes"]
