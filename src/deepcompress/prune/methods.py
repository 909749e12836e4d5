"""Pruning methods behind one interface: a method scores weights, a mask keeps the highest scores.

In the spirit of :class:`torch.nn.utils.prune.BasePruningMethod`, but split so that schedules can
reuse it: :meth:`PruningMethod.scores` ranks the weights of one layer (optionally from importance
scores such as OBD saliencies), :meth:`PruningMethod.mask` keeps the top fraction of one layer, and
:func:`global_masks` applies a single threshold across several layers. New masks are always subsets
of the old ones, so pruned weights stay pruned.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def _keep_top(scores: torch.Tensor, old_mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep-mask of the ``keep`` highest ``scores`` among the positions ``old_mask`` keeps."""
    alive = old_mask.flatten().bool()
    keep = min(max(keep, 0), int(alive.sum().item()))
    ranked = torch.where(alive, scores.flatten().float(), torch.tensor(-torch.inf, device=scores.device))
    new = torch.zeros(ranked.numel(), dtype=old_mask.dtype, device=old_mask.device)
    new[torch.topk(ranked, keep, sorted=False).indices] = 1
    return new.view_as(old_mask)


class PruningMethod:
    """Ranks the weights of a layer; masks keep the highest-ranked ones."""

    name = "base"
    needs_importance = False  # True when scores come from importance (e.g. OBD saliency)

    def scores(self, weight: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
        """A score per weight, same shape as ``weight``; higher means more worth keeping."""
        raise NotImplementedError

    def _scores(self, weight: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        if self.needs_importance and importance is None:
            raise ValueError(f"pruning method {self.name!r} needs importance scores")
        s = self.scores(weight, importance)
        if s.shape != weight.shape:
            raise ValueError(f"{self.name}: scores shape {tuple(s.shape)} != weight shape {tuple(weight.shape)}")
        return s

    def mask(self, weight: torch.Tensor, old_mask: torch.Tensor, sparsity: float,
             importance: torch.Tensor | None = None) -> torch.Tensor:
        """New keep-mask, a subset of ``old_mask``, with ``sparsity`` of the layer's weights zero.

        At least one weight is kept; a target below the current sparsity keeps the old mask.
        """
        _check_sparsity(sparsity)
        keep = max(int(round((1.0 - sparsity) * weight.numel())), 1)
        return _keep_top(self._scores(weight, importance), old_mask, keep)


class MagnitudePruning(PruningMethod):
    """Han et al. 2015: keep the largest |w|."""

    name = "magnitude"

    def scores(self, weight: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
        return weight.abs()

    def quality_mask(self, weight: torch.Tensor, old_mask: torch.Tensor, quality: float) -> torch.Tensor:
        """Han's threshold rule instead of a target: prune |w| < quality × std of the surviving weights."""
        if quality < 0:
            raise ValueError(f"quality must be >= 0, got {quality}")
        survivors = weight[old_mask.bool()]
        std = survivors.std().item() if survivors.numel() > 1 else 0.0
        return ((weight * old_mask).abs() > quality * std).to(old_mask.dtype) * old_mask


class RandomPruning(PruningMethod):
    """A baseline: keep a uniformly random subset (seeded; each call draws anew)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, weight: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)


class SaliencyPruning(PruningMethod):
    """Keep the weights of highest importance (OBD: s_q = ½·h_qq·w_q², see :mod:`.obd`)."""

    name = "obd"
    needs_importance = True

    def scores(self, weight: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
        return importance


METHODS = ("magnitude", "obd", "random")


def make_method(name: str, seed: int = 0) -> PruningMethod:
    """The pruning method called ``name`` (one of :data:`METHODS`)."""
    if name == "magnitude":
        return MagnitudePruning()
    if name == "random":
        return RandomPruning(seed)
    if name == "obd":
        return SaliencyPruning()
    raise ValueError(f"unknown pruning method {name!r}; known: {', '.join(METHODS)}")


def global_masks(method: PruningMethod, weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                 sparsity: float, importance: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One threshold across layers: keep the top ``1 - sparsity`` of all their weights by score.

    Layers then end up with different sparsities; each new mask is a subset of its old mask.
    """
    _check_sparsity(sparsity)
    names = list(weights)
    if not names:
        return {}
    scores = [method._scores(weights[n], None if importance is None else importance[n]) for n in names]
    device = scores[0].device
    flat = torch.cat([s.flatten().float().to(device) for s in scores])
    alive = torch.cat([masks[n].flatten().to(device) for n in names])
    total = flat.numel()
    merged = _keep_top(flat, alive, max(int(round((1.0 - sparsity) * total)), 1))
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = merged[start:start + size].view_as(masks[n]).to(masks[n].device)
        start += size
    return out
