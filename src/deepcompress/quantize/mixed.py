"""Mixed precision: bits per layer chosen for a size target (by a loss estimate) or an accuracy target.

Quantizing layer l to b bits moves each non-zero weight w_q to its centroid ŵ_q; to second order
(the OBD argument, at a trained minimum where the gradient vanishes) the loss grows by
``ΔL_l(b) ≈ ½ Σ_q h_qq (w_q − ŵ_q)²`` with h_qq the Hessian diagonal. Every layer starts at the
largest candidate width; the greedy search then lowers, one step at a time, the layer whose next
step costs the least estimated loss per bit saved, until the non-zero weights average at most
``average_bits`` index bits. Without a Hessian (h = 1) the estimate is the k-means WCSS.

For an accuracy target (:func:`bits_for_accuracy`) each layer instead gets the fewest bits with which
quantizing that layer alone (k-means, no fine-tuning) costs at most ``max_drop`` accuracy on held-out
data, found by bisection over the candidates (accuracy is taken to grow with the bits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def _accuracy_quantized(weight: torch.Tensor, bits: int, accuracy: Callable[[], float], init: str, seed: int,
                        max_iter: int) -> float:
    """``accuracy()`` with ``weight``'s non-zero values replaced by their k-means centroids, then restored."""
    original = weight.detach().clone()
    flat = original.flatten().cpu().double().numpy()
    nz = np.flatnonzero(flat)
    centroids, labels = kmeans_1d(flat[nz], 2 ** bits, init=init, seed=seed, max_iter=max_iter,
                                  relocate_empty=False)
    q = np.zeros_like(flat)
    q[nz] = centroids[labels]
    with torch.no_grad():
        weight.copy_(torch.from_numpy(q).view_as(weight).to(weight.dtype))
    try:
        return accuracy()
    finally:
        with torch.no_grad():
            weight.copy_(original)


def bits_for_accuracy(layers: Mapping[str, nn.Module], accuracy: Callable[[], float], max_drop: float,
                      candidates: Sequence[int], init: str = "linear", seed: int = 0,
                      max_iter: int = 300) -> dict[str, Any]:
    """The fewest candidate bits per layer keeping ``accuracy()`` within ``max_drop`` of its value now,
    one layer quantized at a time (the others left as they are). Returns ``{"bits", "average_bits" (per
    non-zero weight), "reference", "accuracy": {layer: accuracy at its bits}, "evaluations"}``; a layer
    no candidate satisfies gets the largest."""
    cands = sorted(set(int(b) for b in candidates))
    if not cands or cands[0] < 1 or cands[-1] > 16:
        raise ValueError(f"quantize.mixed.candidates must be integers in 1..16, got {list(candidates)}")
    if not 0 <= max_drop < 1:
        raise ValueError(f"quantize.mixed.max_drop must be in [0, 1), got {max_drop}")
    reference = accuracy()
    bits, reached, evaluations = {}, {}, 0
    for name, module in layers.items():
        lo, hi, found = 0, len(cands) - 1, {}
        while lo <= hi:  # the smallest candidate whose accuracy is good enough
            mid = (lo + hi) // 2
            found[mid] = _accuracy_quantized(module.weight, cands[mid], accuracy, init, seed, max_iter)
            evaluations += 1
            if reference - found[mid] <= max_drop:
                hi = mid - 1
            else:
                lo = mid + 1
        pick = min(lo, len(cands) - 1)
        bits[name] = cands[pick]
        reached[name] = found.get(pick)
    nnz = {name: int(torch.count_nonzero(current_weight(m))) for name, m in layers.items()}
    average = sum(nnz[n] * b for n, b in bits.items()) / max(sum(nnz.values()), 1)
    return {"bits": bits, "average_bits": average, "reference": reference, "accuracy": reached,
            "evaluations": evaluations}
