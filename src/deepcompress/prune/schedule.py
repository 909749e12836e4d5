"""Pruning schedules and scopes: how far to prune at each step, and over which weights to rank.

- one-shot: prune to the targets once, then retrain;
- iterative (Han et al. 2015): ``rounds`` prune → retrain steps, geometric in the kept fraction;
- AGP (Zhu & Gupta 2017): during training, every Δt steps from t0 to t0 + nΔt, raise the sparsity to
  s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³.

Scope ``layer`` prunes every layer to its own target; ``global`` ranks all prunable weights together
against one threshold (one overall target, per-layer sparsities follow from the scores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from .magnitude import apply_mask, current_mask, current_weight, prunable_layers
from .methods import PruningMethod, global_masks

SCHEDULES = ("oneshot", "iterative", "agp")
SCOPES = ("layer", "global")

Targets = float | Mapping[str, float]  # one global target, or per-layer targets by layer name


def iterative_sparsity(final: float, round_: int, rounds: int) -> float:
    """Target after round ``round_`` of ``rounds``: the kept fraction shrinks geometrically to 1 − final."""
    return 1.0 - (1.0 - final) ** (round_ / rounds)


def agp_sparsity(step: int, final: float, initial: float, begin: int, frequency: int, updates: int) -> float:
    """Zhu & Gupta's s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, held at s_i before t0 and s_f after."""
    progress = min(max((step - begin) / (updates * frequency), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def scale_targets(targets: Targets, fn: Callable[[float], float]) -> Targets:
    """Apply ``fn`` to one target or to every per-layer target."""
    if isinstance(targets, Mapping):
        return {name: fn(s) for name, s in targets.items()}
    return fn(targets)


def prune_model(model: nn.Module, method: PruningMethod, targets: Targets,
                importance: Mapping[str, torch.Tensor] | None = None) -> None:
    """Prune ``model`` in place: per layer for a mapping of targets, globally for one float.

    New masks are subsets of the current ones (pruned weights stay pruned).
    """
    layers = prunable_layers(model)
    if isinstance(targets, Mapping):
        for name, sparsity in targets.items():
            module = layers[name]
            imp = None if importance is None else importance[name]
            apply_mask(module, method.mask(current_weight(module), current_mask(module), sparsity, imp))
        return
    weights = {n: current_weight(m) for n, m in layers.items()}
    masks = {n: current_mask(m).to(weights[n].device) for n, m in layers.items()}
    for name, mask in global_masks(method, weights, masks, float(targets), importance).items():
        apply_mask(layers[name], mask)


class AGP:
    """Gradual pruning during training: call :meth:`step` after every optimiser step (``fit``'s ``after_step``).

    Masks are updated at t = t0, t0 + Δt, …, t0 + nΔt (t counts optimiser steps; t = 0 is before
    training, see :meth:`start`), each time to ``agp_sparsity`` of the final targets.
    """

    def __init__(self, model: nn.Module, method: PruningMethod, targets: Targets, initial: float,
                 begin: int, end: int, frequency: int,
                 importance: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> None:
        if frequency < 1 or end <= begin:
            raise ValueError(f"AGP needs frequency >= 1 and end step > begin step, got {frequency}, {begin}..{end}")
        self.model, self.method, self.targets = model, method, targets
        self.initial, self.begin, self.frequency = initial, begin, frequency
        self.updates = max((end - begin) // frequency, 1)
        self.end = begin + self.updates * frequency
        self.importance = importance
        self.t = 0
        self.history: list[dict[str, float]] = []

    def start(self) -> None:
        """Before training: prune to the initial sparsity when t0 = 0."""
        self._maybe_update()

    def step(self) -> None:
        self.t += 1
        self._maybe_update()

    def _maybe_update(self) -> None:
        if self.t < self.begin or self.t > self.end or (self.t - self.begin) % self.frequency:
            return
        targets = scale_targets(self.targets, lambda s: agp_sparsity(
            self.t, s, min(self.initial, s), self.begin, self.frequency, self.updates))
        imp = self.importance() if self.importance is not None else None
        prune_model(self.model, self.method, targets, imp)
        self.history.append({"step": self.t, "targets": dict(targets) if isinstance(targets, Mapping) else targets})
