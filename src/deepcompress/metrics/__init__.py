"""Efficiency measures of a model: size, parameters, FLOPs/MACs, latency and energy (measured or estimated)."""

from .energy import EnergyMeter, EnergyModel, EnergyReading, estimate_inference, training_energy
from .flops import LayerProfile, profile_model
from .latency import measure_latency
from .size import (
    distinct_values,
    effective_weights,
    file_bytes,
    parameter_counts,
    zipped_dense_bytes,
)

__all__ = ["EnergyMeter", "EnergyModel", "EnergyReading", "LayerProfile", "distinct_values", "effective_weights",
           "estimate_inference", "file_bytes", "measure_latency", "parameter_counts", "profile_model",
           "training_energy", "zipped_dense_bytes"]
