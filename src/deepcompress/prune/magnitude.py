"""Magnitude pruning (Han et al., NeurIPS 2015) with masks that keep pruned weights at exactly zero.

Masks are applied with :mod:`torch.nn.utils.prune` (a ``weight_orig`` parameter, a ``weight_mask``
buffer and a forward pre-hook), so gradients reaching pruned positions are zero and the effective
weight there stays exactly zero through any optimiser step.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from .methods import MagnitudePruning


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose ``weight`` is pruned and quantized: every Linear and Conv{1,2,3}d, by module name."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


def layer_kind(module: nn.Module) -> str:
    """"fc" for Linear layers, "conv" for convolutions (the paper's two index widths)."""
    return "fc" if isinstance(module, nn.Linear) else "conv"


def conv_kind(module: nn.Module) -> str | None:
    """"depthwise" (one filter per input channel), "pointwise" (1×1, ungrouped) or None."""
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return None
    if module.groups > 1 and module.groups == module.in_channels:
        return "depthwise"
    if module.groups == 1 and all(k == 1 for k in module.kernel_size):
        return "pointwise"
    return None


#: the keys a per-layer mapping may use besides layer names and glob patterns
LAYER_KEYS = ("default", "conv", "fc", "depthwise", "pointwise")


def resolve_layer_setting(settings: Any, name: str, module: nn.Module) -> Any:
    """Pick one layer's value from a per-layer mapping.

    ``settings`` is a scalar (same for every layer) or a mapping whose keys are exact layer names,
    glob patterns (``features.*``), the conv shapes ``depthwise``/``pointwise``, the layer kinds
    ``conv``/``fc``, or ``default``; the first of those that matches wins, in that order.
    Returns ``None`` when nothing matches.
    """
    if not isinstance(settings, Mapping):
        return settings
    if name in settings:
        return settings[name]
    for pattern, value in settings.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
            return value
    for kind in (conv_kind(module), layer_kind(module)):
        if kind is not None and kind in settings:
            return settings[kind]
    return settings.get("default")


def check_layer_names(settings: Any, layers: Mapping[str, nn.Module], what: str) -> None:
    """Raise ValueError if a per-layer mapping names a layer that does not exist."""
    if not isinstance(settings, Mapping):
        return
    for key in settings:
        if key in LAYER_KEYS or key in layers:
            continue
        if any(c in key for c in "*?[") and any(fnmatch.fnmatchcase(n, key) for n in layers):
            continue
        raise ValueError(f"{what}: no layer named {key!r}; layers are {', '.join(layers)}")


def current_weight(module: nn.Module) -> torch.Tensor:
    """The effective (masked) weight of a layer, pruned or not."""
    if prune.is_pruned(module) and hasattr(module, "weight_orig"):
        return module.weight_orig.detach() * module.weight_mask
    return module.weight.detach()


def current_mask(module: nn.Module) -> torch.Tensor:
    """The layer's keep-mask (all ones when it was never pruned)."""
    mask = getattr(module, "weight_mask", None)
    return mask.detach().clone() if mask is not None else torch.ones_like(module.weight, dtype=torch.float32)


def magnitude_mask(weight: torch.Tensor, old_mask: torch.Tensor, sparsity: float | None = None,
                   quality: float | None = None) -> torch.Tensor:
    """A new keep-mask that is a subset of ``old_mask``.

    Exactly one of ``sparsity`` (fraction of the layer's weights to be zero, in [0, 1)) and
    ``quality`` (Han's rule: prune |w| < quality × std of the surviving weights) is given.
    """
    if (sparsity is None) == (quality is None):
        raise ValueError("give exactly one of sparsity and quality")
    if sparsity is not None:
        return MagnitudePruning().mask(weight, old_mask, sparsity)
    return MagnitudePruning().quality_mask(weight, old_mask, quality)


def same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of ``like`` (a differentiable copy when they differ).

    A computed weight takes its layout from its inputs, and for a convolution with one input channel
    PyTorch cannot tell channels-last from contiguous, so ``weight_orig * mask`` or ``codebook[index]``
    comes out contiguous even when the layer was converted to channels-last; the convolution then
    runs in the slow contiguous layout and every layer after it converts back.
    """
    if t.stride() == like.stride():
        return t
    return t.new_empty_strided(like.shape, like.stride()).copy_(t)


class _Mask(prune.CustomFromMask):
    """PyTorch's custom mask, keeping the layout of ``weight_orig`` (see :func:`same_layout`)."""

    def apply_mask(self, module: nn.Module) -> torch.Tensor:
        return same_layout(super().apply_mask(module), getattr(module, self._tensor_name + "_orig"))


def apply_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Install ``mask`` on ``module.weight`` (replacing any earlier mask) and zero the pruned values."""
    if prune.is_pruned(module):
        with torch.no_grad():
            module.weight_orig.mul_(mask)
            module.weight_mask.copy_(mask)
        return
    with torch.no_grad():
        module.weight.mul_(mask)
    _Mask.apply(module, "weight", mask.to(module.weight.device))


def remove_masks(model: nn.Module) -> None:
    """Make pruning permanent: ``weight`` becomes a plain parameter holding zeros where pruned."""
    for module in prunable_layers(model).values():
        if prune.is_pruned(module):
            prune.remove(module, "weight")


def sparsity_report(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per-layer weight count, non-zeros and sparsity."""
    out = {}
    for name, module in prunable_layers(model).items():
        w = current_weight(module)
        nnz = int((w != 0).sum().item())
        out[name] = {"weights": w.numel(), "nonzero": nnz, "sparsity": 1 - nnz / max(w.numel(), 1)}
    return out
