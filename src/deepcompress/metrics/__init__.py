"""Efficiency measures of a model: size, parameters, FLOPs/MACs, latency and energy (measured or estimated).

Names load on first use, so the energy model and meters (:mod:`.energy`, standard library only) work
without PyTorch, e.g. in the deployment runtime. The report tables and figures live in :mod:`.summary`
and :mod:`.plots`.
"""

from typing import Any

_LAZY = {
    **{name: "energy" for name in ("EnergyMeter", "EnergyModel", "EnergyReading", "InferenceEnergy",
                                   "efficiency_uj_per_mflop", "estimate_inference", "training_energy")},
    **{name: "flops" for name in ("LayerProfile", "ModelProfile", "profile_model")},
    "measure_latency": "latency",
    **{name: "size" for name in ("distinct_values", "effective_weights", "parameter_counts", "zipped_dense_bytes")},
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
