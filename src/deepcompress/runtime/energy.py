"""Energy per inference for the runtime: the 45 nm model of :mod:`deepcompress.metrics.energy`, which
``deepcompress report`` uses too (standard library only, so no PyTorch here either)."""

from __future__ import annotations

from ..metrics.energy import estimate_inference


def energy_per_inference_pj(macs: int, file_bytes: int) -> float:
    """Picojoules for ``macs`` multiply-adds plus fetching the model file's bytes once (from on-chip SRAM
    when they fit the energy model's on-chip budget, else from DRAM); the runtime does not know the
    activation sizes, so their traffic is not counted (``deepcompress report`` counts it)."""
    return estimate_inference(macs, file_bytes).total_j * 1e12
