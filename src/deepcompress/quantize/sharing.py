"""Trained quantization: per-layer weight sharing with fine-tuned centroids (paper Section 3, Fig. 3).

A shared layer keeps a trainable ``weight_codebook`` (k centroids) and a ``weight_index`` buffer
(0 = pruned / zero, 1..k = cluster). A forward pre-hook re-materialises
``weight = [0, codebook][index]`` before every forward pass, so autograd sums the gradients of all
weights of a cluster into its centroid (the grouped gradient of the paper) and pruned positions
stay exactly zero.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..prune import current_weight, prunable_layers, same_layout
from .kmeans import kmeans_1d


class _SharedWeight(torch.autograd.Function):
    """``[0, codebook][index]`` built from the non-zero positions only (most of a pruned layer is
    zero): the forward scatters their centroids into zeros, the backward sums the gradients at them
    per cluster into the centroids (the grouped gradient of the paper)."""

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, positions: torch.Tensor, clusters: torch.Tensor,
                shape: torch.Size) -> torch.Tensor:
        ctx.save_for_backward(positions, clusters)
        ctx.k = codebook.numel()
        flat = codebook.new_zeros(shape.numel())
        flat[positions] = codebook[clusters]
        return flat.view(shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        positions, clusters = ctx.saved_tensors
        at = grad.reshape(-1)[positions]
        return torch.bincount(clusters, weights=at, minlength=ctx.k).to(grad.dtype), None, None, None


def _nonzero_entries(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions of the non-zero weights and their 0-based clusters, cached until the index changes."""
    index = module.weight_index
    key = (index.data_ptr(), index._version, index.device)
    cached = module.__dict__.get("_shared_entries")
    if cached is None or cached[0] != key:
        flat = index.reshape(-1)
        positions = flat.nonzero().squeeze(1)
        cached = (key, positions, flat[positions] - 1)
        module.__dict__["_shared_entries"] = cached
    return cached[1], cached[2]


def _materialize(module: nn.Module, _inputs: object = None) -> None:
    positions, clusters = _nonzero_entries(module)
    weight = _SharedWeight.apply(module.weight_codebook, positions, clusters, module.weight_index.shape)
    module.weight = same_layout(weight, module.weight_index)


def is_shared(module: nn.Module) -> bool:
    """True when ``module.weight`` is produced from a codebook."""
    return hasattr(module, "weight_codebook") and hasattr(module, "weight_index")


def share_layer(module: nn.Module, bits: int, init: str = "linear", seed: int = 0,
                max_iter: int = 300, relocate_empty: bool = False) -> dict[str, float]:
    """Cluster the non-zero weights of one layer into at most 2**bits shared values, in place."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if is_shared(module):
        raise ValueError("layer is already weight-shared")
    w = current_weight(module).float()
    if hasattr(module, "weight_orig"):
        raise ValueError("remove pruning re-parametrisation (prune.remove_masks) before sharing weights")
    flat = w.flatten().cpu().numpy().astype(np.float64)
    nz = np.flatnonzero(flat)
    centroids, labels = kmeans_1d(flat[nz], 2**bits, init=init, seed=seed, max_iter=max_iter,
                                   relocate_empty=relocate_empty)
    index = np.zeros(flat.size, dtype=np.int64)
    index[nz] = labels + 1
    install_shared(module, torch.tensor(centroids, dtype=torch.float32),
                   torch.from_numpy(index).view(w.shape))
    err = float(((w.flatten().cpu().double().numpy() - module.weight.detach().flatten().cpu().double().numpy())
                 ** 2).sum())
    return {"clusters": int(centroids.size), "nonzero": int(nz.size), "wcss": err}


def install_shared(module: nn.Module, codebook: torch.Tensor, index: torch.Tensor) -> None:
    """Replace the plain ``weight`` parameter by ``codebook`` (a parameter) and ``index`` (a buffer of
    ``weight``'s shape, 0 = zero, 1..k = centroid) materialised before every forward pass."""
    device = module.weight.device
    del module._parameters["weight"]
    module.register_parameter("weight_codebook", nn.Parameter(codebook.to(device, torch.float32)))
    module.register_buffer("weight_index", index.to(device, torch.int64))
    module.register_forward_pre_hook(_materialize)
    _materialize(module)


def codebook_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The centroid tensors of every shared layer (what centroid fine-tuning updates)."""
    return [m.weight_codebook for m in model.modules() if is_shared(m)]


def shared_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A plain state_dict (shared weights materialised) and, per shared weight key,
    ``(codebook float32 [k], index int64 [numel])`` with index 0 meaning zero."""
    state = model.state_dict()
    plain: dict[str, torch.Tensor] = {}
    shared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shared_names = {name for name, m in model.named_modules() if is_shared(m)}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in shared_names and leaf in ("weight_codebook", "weight_index"):
            if leaf == "weight_codebook":
                module = model.get_submodule(prefix)
                _materialize(module)
                plain[f"{prefix}.weight"] = module.weight.detach().cpu().clone()
                shared[f"{prefix}.weight"] = (module.weight_codebook.detach().cpu().numpy().astype(np.float32),
                                             module.weight_index.detach().cpu().numpy().ravel().astype(np.int64))
            continue
        plain[key] = value.detach().cpu().clone()
    return plain, shared


def unshare(model: nn.Module) -> None:
    """Turn shared layers back into plain ``weight`` parameters holding the shared values."""
    for module in model.modules():
        if is_shared(module):
            _materialize(module)
            w = module.weight.detach().clone()
            for hook_id, hook in list(module._forward_pre_hooks.items()):
                if hook is _materialize:
                    del module._forward_pre_hooks[hook_id]
            del module.weight
            del module._parameters["weight_codebook"]
            del module._buffers["weight_index"]
            module.weight = nn.Parameter(w)


def sharing_targets(model: nn.Module) -> dict[str, nn.Module]:
    """Layers eligible for weight sharing (the same as for pruning)."""
    return prunable_layers(model)
