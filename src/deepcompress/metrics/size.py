"""Model size: parameter counts, distinct values per layer and the zipped dense-file baseline."""

from __future__ import annotations

import io
import zipfile

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..prune import prunable_layers
from ..quantize.sharing import is_shared


def layer_weight(module: nn.Module) -> torch.Tensor:
    """The weight a layer's forward pass uses: materialised from its codebook, or masked when pruned."""
    if is_shared(module):
        codebook = torch.cat([module.weight_codebook.new_zeros(1), module.weight_codebook])
        return codebook[module.weight_index].detach()
    if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as the forward pass sees it, by its plain name (``fc1.weight``), on the CPU.

    Weight-shared (``weight_codebook`` + ``weight_index``) and pruned (``weight_orig`` + ``weight_mask``)
    layers are reported as one ``weight`` tensor holding the effective values.
    """
    out: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        for pname, p in module.named_parameters(recurse=False):
            if pname in ("weight_codebook", "weight_orig"):
                out[prefix + "weight"] = layer_weight(module).cpu()
            else:
                out[prefix + pname] = p.detach().cpu()
    return out


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total and non-zero parameters (every parameter, biases included, shared weights counted densely)."""
    weights = effective_weights(model)
    return {"total": sum(t.numel() for t in weights.values()),
            "nonzero": sum(int(torch.count_nonzero(t)) for t in weights.values())}


def distinct_values(model: nn.Module) -> dict[str, int]:
    """Per Linear/Conv layer: how many distinct non-zero weight values it holds (≤ 2**bits after sharing)."""
    out = {}
    for name, module in prunable_layers(model).items():
        w = layer_weight(module)
        out[name] = int(torch.unique(w[w != 0]).numel())
    return out


def dense_fp32_blob(model: nn.Module) -> bytes:
    """The model's effective parameters as one fp32 safetensors blob (the uncompressed file)."""
    return safetensors_bytes({k: v.float().contiguous() for k, v in effective_weights(model).items()})


def zipped_dense_bytes(model: nn.Module, level: int = 6) -> int:
    """Bytes of the dense fp32 file after ``zip`` (DEFLATE), TensorFlow Model Optimization's size measure.

    Pruned zeros and shared values make the dense file compressible; this is the baseline a general-purpose
    compressor reaches without a dedicated format.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        z.writestr("model.safetensors", dense_fp32_blob(model))
    return len(buf.getvalue())
