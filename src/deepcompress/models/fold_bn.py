"""Folding BatchNorm into the convolution before it (Jacob et al. 2018, Section 3.2).

In eval mode ``bn(conv(x)) = conv'(x)`` with, per output channel c,
``w'_c = w_c · γ_c / √(σ²_c + ε)`` and ``b'_c = (b_c − μ_c) · γ_c / √(σ²_c + ε) + β_c``.
Folding removes the BatchNorm's four tensors per channel (γ, β, μ, σ²) in favour of one bias,
keeps pruned weights at exactly zero (they are only scaled), and gives k-means the weights the
network really multiplies by.

A pair is a BatchNorm whose input is exactly the output tensor of a Conv2d (found by running the
architecture once on PyTorch's ``meta`` device, so no memory or time is spent), which is how every
conv → BN → activation block of the zoo is wired. Which pairs fold depends on the architecture
only, so a model saved folded is rebuilt by ``create_model(arch, fold_bn=True)``: the BatchNorms
become ``nn.Identity`` and the convolutions gain a bias.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_pairs(model: nn.Module, input_size: list[int]) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` of every BatchNorm2d fed directly by a Conv2d, in execution order."""
    names = {m: n for n, m in model.named_modules()}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept so its id is not reused
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()

    def conv_hook(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        outputs[id(out)] = (names[module], out)

    def bn_hook(module: nn.Module, inp: tuple) -> None:
        hit = outputs.get(id(inp[0]))
        name = names[module]
        if hit is not None and hit[1] is inp[0] and name not in seen:
            pairs.append((hit[0], name))
            seen.add(name)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    was_training = model.training
    try:
        with torch.device("meta"), torch.no_grad():
            model.eval()
            model(torch.empty(1, *input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    convs = [c for c, _ in pairs]
    if len(set(convs)) != len(convs):
        raise ValueError("a convolution feeds more than one BatchNorm; cannot fold")
    return pairs


def _meta_twin(model: nn.Module) -> nn.Module:
    from ._registry import create_model, model_info

    info = model_info(model)
    with torch.device("meta"):
        return create_model(info.arch, **{k: v for k, v in info.kwargs.items() if k != "fold_bn"})


def model_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The foldable pairs of a zoo model (found on a meta-device copy of its architecture)."""
    from ._registry import model_info

    info = model_info(model)
    if not info.input_size or len(info.input_size) != 3:
        raise ValueError(f"model {info.arch!r} has no [C, H, W] input size; cannot find conv → BatchNorm pairs")
    return conv_bn_pairs(_meta_twin(model), info.input_size)


def strip_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Make the structure of a folded model: each paired BatchNorm becomes ``nn.Identity`` and its
    convolution gets a (zero) bias if it had none. Weights are not changed."""
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device,
                                                 dtype=conv.weight.dtype))
        parent, _, leaf = bn_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())


def fold_structure(model: nn.Module) -> list[tuple[str, str]]:
    """Give a freshly built zoo model the folded structure (no weights computed) and mark it folded."""
    from ._registry import model_info

    pairs = model_pairs(model)
    strip_batchnorm(model, pairs)
    model_info(model).kwargs["fold_bn"] = True
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every conv → BatchNorm pair of a zoo model in place (eval-mode statistics) and mark the
    model as folded (``fold_bn: true`` in its kwargs, so files rebuild it folded). Returns the pairs.

    The convolutions must hold plain weights (remove pruning masks first); pruned zeros stay zero.
    """
    from ._registry import model_info

    info = model_info(model)
    if info.kwargs.get("fold_bn"):
        raise ValueError("model is already folded")
    pairs = model_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if "weight" not in conv._parameters:
            raise ValueError(f"{conv_name}: fold BatchNorm before weight sharing and after removing pruning masks")
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        new_bias = (bias - bn.running_mean) * scale + shift
        strip_batchnorm(model, [(conv_name, bn_name)])
        conv.bias.copy_(new_bias)
    info.kwargs["fold_bn"] = True
    return pairs


@torch.no_grad()
def normalize_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d's running statistics into its affine parameters, in place, keeping the layer:
    ``γ ← γ / √(σ² + ε)``, ``β ← β − μ·γ/√(σ² + ε)``, ``μ ← 0``, ``σ² ← 1 − ε``, which computes the same
    in eval mode. The convolutions keep the weights BatchNorm was trained with (easier to share than
    folded ones, whose channels are rescaled), BatchNorm costs two vectors instead of four (the
    constant statistics take no room in a .dcz), and the layers must stay in eval mode when fine-tuned
    (``freeze_bn``). Returns the number of layers."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine and m.track_running_stats:
            scale = m.weight / torch.sqrt(m.running_var + m.eps)
            m.bias.sub_(m.running_mean * scale)
            m.weight.copy_(scale)
            m.running_mean.zero_()
            m.running_var.fill_(1.0 - m.eps)
            n += 1
    return n
