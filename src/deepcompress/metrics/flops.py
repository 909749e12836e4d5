"""FLOPs and MACs from ``torch.utils.flop_counter``, per layer and in total, dense and effective-sparse.

The counter counts 2 FLOPs per multiply-accumulate of matmul and convolution (bias additions and
element-wise ops are not counted), so MACs = FLOPs / 2. A weight of a Linear or Conv layer takes part
in the same number of MACs as every other weight of that layer, so the MACs that involve a non-zero
weight are exactly ``dense MACs × non-zero weights / weights`` of the layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..prune import layer_kind, prunable_layers
from .size import layer_weight


@dataclass
class LayerProfile:
    """One Linear/Conv layer's work for one sample."""

    name: str
    kind: str  # "fc" | "conv"
    weights: int
    nonzero: int
    flops: int  # dense, from the flop counter
    macs: int  # dense: flops / 2
    sparse_macs: int  # only MACs with a non-zero weight
    input_numel: int  # activations read
    output_numel: int  # activations written

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelProfile:
    """Per-layer profiles plus whole-model totals (which include work outside Linear/Conv layers)."""

    layers: list[LayerProfile]
    flops: int
    macs: int
    sparse_macs: int

    @property
    def activation_numel(self) -> int:
        return sum(p.input_numel + p.output_numel for p in self.layers)

    @property
    def peak_activation_numel(self) -> int:
        return max((p.input_numel + p.output_numel for p in self.layers), default=0)


@torch.no_grad()
def profile_model(model: nn.Module, input_size: Sequence[int]) -> ModelProfile:
    """Count FLOPs/MACs and activations of one forward pass of a single sample of shape ``input_size``."""
    layers = prunable_layers(model)
    acts: dict[str, list[int]] = {name: [0, 0] for name in layers}

    def hook(name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def record(_m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            acts[name][0] += inputs[0].numel()
            acts[name][1] += output.numel()
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    param = next(iter(model.parameters()), None)
    x = torch.zeros(1, *input_size, device=param.device if param is not None else "cpu")
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    per_module = {key.partition(".")[2]: sum(v.values()) for key, v in counter.get_flop_counts().items()}
    rows = []
    for name, module in layers.items():
        w = layer_weight(module)
        flops = int(per_module.get(name, 0))
        nonzero = int(torch.count_nonzero(w))
        rows.append(LayerProfile(name, layer_kind(module), w.numel(), nonzero, flops, flops // 2,
                                 (flops // 2) * nonzero // max(w.numel(), 1), *acts[name]))
    total = int(counter.get_total_flops())
    saved = sum(r.macs - r.sparse_macs for r in rows)
    return ModelProfile(rows, total, total // 2, total // 2 - saved)
