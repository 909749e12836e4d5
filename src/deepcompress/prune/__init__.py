"""Pruning: methods (magnitude, OBD, random) behind one interface, masks applied through
torch.nn.utils.prune, and schedules (one-shot, iterative, AGP) with layer-wise or global scope."""

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
from .methods import (
    METHODS,
    MagnitudePruning,
    PruningMethod,
    RandomPruning,
    SaliencyPruning,
    global_masks,
    make_method,
)
from .obd import ESTIMATORS, hessian_diagonal, obd_saliency
from .schedule import AGP, SCHEDULES, SCOPES, agp_sparsity, iterative_sparsity, prune_model, scale_targets

__all__ = [
    "AGP",
    "ESTIMATORS",
    "METHODS",
    "SCHEDULES",
    "SCOPES",
    "MagnitudePruning",
    "PruningMethod",
    "RandomPruning",
    "SaliencyPruning",
    "agp_sparsity",
    "apply_mask",
    "check_layer_names",
    "current_mask",
    "current_weight",
    "global_masks",
    "hessian_diagonal",
    "iterative_sparsity",
    "layer_kind",
    "magnitude_mask",
    "make_method",
    "obd_saliency",
    "prunable_layers",
    "prune_model",
    "remove_masks",
    "resolve_layer_setting",
    "same_layout",
    "scale_targets",
    "sparsity_report",
]
