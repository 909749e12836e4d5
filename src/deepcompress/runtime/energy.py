"""A first-order energy estimate per inference (45 nm figures from Horowitz 2014, as in the paper)."""

from __future__ import annotations

MULT_PJ = 3.7  # 32-bit float multiply
ADD_PJ = 0.9  # 32-bit float add
DRAM_PJ_PER_WORD = 640.0  # 32-bit DRAM access


def energy_per_inference_pj(macs: int, file_bytes: int) -> float:
    """Picojoules for ``macs`` float multiply-adds plus reading the model file's bytes once from DRAM."""
    return macs * (MULT_PJ + ADD_PJ) + -(-file_bytes // 4) * DRAM_PJ_PER_WORD
