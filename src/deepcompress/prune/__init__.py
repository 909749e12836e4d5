"""Pruning: magnitude masks (Han et al. 2015) applied through torch.nn.utils.prune."""

from .magnitude import (
    apply_mask,
    check_layer_names,
    current_mask,
    current_weight,
    layer_kind,
    magnitude_mask,
    prunable_layers,
    remove_masks,
    resolve_layer_setting,
    same_layout,
    sparsity_report,
)

__all__ = [
    "apply_mask",
    "check_layer_names",
    "current_mask",
    "current_weight",
    "layer_kind",
    "magnitude_mask",
    "prunable_layers",
    "remove_masks",
    "resolve_layer_setting",
    "same_layout",
    "sparsity_report",
]
