"""Mixed precision: bits per layer chosen for a size target by a second-order loss estimate.

Quantizing layer l to b bits moves each non-zero weight w_q to its centroid ŵ_q; to second order
(the OBD argument, at a trained minimum where the gradient vanishes) the loss grows by
``ΔL_l(b) ≈ ½ Σ_q h_qq (w_q − ŵ_q)²`` with h_qq the Hessian diagonal. Every layer starts at the
largest candidate width; the greedy search then lowers, one step at a time, the layer whose next
step costs the least estimated loss per bit saved, until the non-zero weights average at most
``average_bits`` index bits. Without a Hessian (h = 1) the estimate is the k-means WCSS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..prune import current_weight
from .kmeans import kmeans_1d


def quantization_costs(module: nn.Module, candidates: Sequence[int], h: torch.Tensor | None = None,
                       init: str = "linear", seed: int = 0, max_iter: int = 300) -> dict[int, float]:
    """``{bits: ½ Σ h (w − ŵ)²}`` over the layer's non-zero weights, for each candidate width."""
    w = current_weight(module).detach().flatten().cpu().double().numpy()
    nz = np.flatnonzero(w)
    hv = np.ones(nz.size) if h is None else h.detach().flatten().cpu().double().numpy()[nz]
    v = w[nz]
    out = {}
    for bits in candidates:
        centroids, labels = kmeans_1d(v, 2 ** bits, init=init, seed=seed, max_iter=max_iter, relocate_empty=False)
        out[bits] = float(0.5 * (hv * (v - centroids[labels]) ** 2).sum()) if v.size else 0.0
    return out


def choose_bits(layers: Mapping[str, nn.Module], average_bits: float, candidates: Sequence[int],
                hessian: Mapping[str, torch.Tensor] | None = None, init: str = "linear", seed: int = 0,
                max_iter: int = 300) -> dict[str, Any]:
    """Bits per layer meeting ``average_bits`` per non-zero weight with the least estimated loss increase.

    Returns ``{"bits": {layer: bits}, "average_bits": reached, "estimated_loss_increase": ΔL,
    "met": bool}``; ``met`` is false when even the smallest candidate everywhere exceeds the target.
    """
    cands = sorted(set(int(b) for b in candidates))
    if not cands or cands[0] < 1 or cands[-1] > 16:
        raise ValueError(f"quantize.mixed.candidates must be integers in 1..16, got {list(candidates)}")
    if not average_bits > 0:
        raise ValueError(f"quantize.mixed.average_bits must be > 0, got {average_bits}")
    nnz = {name: int(torch.count_nonzero(current_weight(m))) for name, m in layers.items()}
    costs = {name: quantization_costs(m, cands, (hessian or {}).get(name), init, seed, max_iter)
             for name, m in layers.items()}
    level = {name: len(cands) - 1 for name in layers}
    total = sum(nnz.values())
    budget = average_bits * total

    def used() -> int:
        return sum(nnz[n] * cands[level[n]] for n in layers)

    while used() > budget:
        best, best_rate = None, np.inf
        for n in layers:
            if level[n] == 0 or nnz[n] == 0:
                continue
            hi, lo = cands[level[n]], cands[level[n] - 1]
            rate = (costs[n][lo] - costs[n][hi]) / (nnz[n] * (hi - lo))
            if rate < best_rate:
                best, best_rate = n, rate
        if best is None:
            break
        level[best] -= 1
    bits = {n: cands[level[n]] for n in layers}
    return {"bits": bits, "average_bits": used() / max(total, 1),
            "estimated_loss_increase": sum(costs[n][bits[n]] for n in layers), "met": used() <= budget}
