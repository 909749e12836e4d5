"""Per-layer pruning sensitivity (Han et al. 2015, Fig. 5): prune one layer at a time, no retraining.

Each layer is pruned alone to each sparsity (the other layers untouched) and the model evaluated; the
curves show which layers tolerate pruning (fc layers usually far more than conv layers) and
:func:`suggest_sparsity` turns them into per-layer targets for a tolerated accuracy drop.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ._io import atomic_save, atomic_write_text
from .prune import current_mask, current_weight, layer_kind, make_method, prunable_layers
from .prune.magnitude import conv_kind
from .training import evaluate


def layer_sensitivity(model: nn.Module, loader: DataLoader, sparsities: Sequence[float], method: str = "magnitude",
                      importance: Mapping[str, torch.Tensor] | None = None, device: str | torch.device | None = None,
                      seed: int = 0, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Accuracy with each prunable layer pruned alone to each sparsity; rows of layer, kind, sparsity, metrics.

    ``importance`` (e.g. OBD saliencies) is required by ``method="obd"``. The model is restored after
    every evaluation.
    """
    pruner = make_method(method, seed)
    rows = []
    for name, module in prunable_layers(model).items():
        weight = getattr(module, "weight_orig", module.weight)  # the stored tensor, masked layers too
        original = weight.detach().clone()
        w, mask = current_weight(module), current_mask(module).to(original.device)
        for s in sparsities:
            new = pruner.mask(w, mask, float(s), None if importance is None else importance[name])
            with torch.no_grad():
                weight.mul_(new.to(weight.dtype))
            try:
                m = evaluate(model, loader, device)
            finally:
                with torch.no_grad():
                    weight.copy_(original)
            rows.append({"layer": name, "kind": layer_kind(module), "weights": original.numel(),
                         "sparsity": float(s), "accuracy": m["accuracy"], "error": m["error"],
                         "log_loss": m["log_loss"], "shape": conv_kind(module) or layer_kind(module)})
            if log is not None:
                log(f"{name} at {100 * s:.0f}% sparsity: accuracy {m['accuracy']:.4f}")
    return rows


def suggest_sparsity(rows: Sequence[Mapping[str, Any]], max_drop: float,
                     baseline: float | None = None) -> dict[str, float]:
    """Per layer, the highest sparsity whose accuracy (and that of every lower sparsity measured) stays
    within ``max_drop`` (a fraction, 0.01 = one point) of ``baseline`` (default: the dense accuracy,
    i.e. the best of the layer's sparsity-0 rows)."""
    if max_drop < 0:
        raise ValueError(f"tolerated accuracy drop must be >= 0, got {max_drop}")
    out = {}
    by_layer: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_layer.setdefault(r["layer"], []).append(r)
    dense = [r["accuracy"] for r in rows if r["sparsity"] == 0]
    ref = baseline if baseline is not None else (max(dense) if dense else None)
    if ref is None:
        raise ValueError("no baseline accuracy: give one or include sparsity 0 in the curves")
    for layer, curve in by_layer.items():
        best = 0.0
        for r in sorted(curve, key=lambda r: r["sparsity"]):
            if r["accuracy"] < ref - max_drop - 1e-12:
                break
            best = r["sparsity"]
        out[layer] = best
    return out


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def plot_sensitivity(rows: Sequence[Mapping[str, Any]], paths: Sequence[str | os.PathLike], title: str = "") -> None:
    """One accuracy-vs-sparsity curve per layer: conv layers solid (plain blues, pointwise purples,
    depthwise greens), fc layers dashed in oranges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        layers.setdefault(r["layer"], []).append(r)
    # depthwise / pointwise / other conv / fc, each a colour family (rows from before "shape": conv / fc)
    shapes = {name: curve[0].get("shape", curve[0]["kind"]) for name, curve in layers.items()}
    families = {"conv": "Blues", "pointwise": "Purples", "depthwise": "Greens", "fc": "Oranges"}
    counts = {k: sum(1 for v in shapes.values() if v == k) for k in families}
    seen = dict.fromkeys(families, 0)
    many = len(layers) > 16  # then one legend entry per family, not per layer
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in layers.items():
        shape = shapes[name]
        seen[shape] += 1
        colour = plt.get_cmap(families[shape])(0.45 + 0.5 * seen[shape] / max(counts[shape], 1))
        curve = sorted(curve, key=lambda r: r["sparsity"])
        label = f"{name} ({shape})"
        if many:  # one entry per family
            n = counts[shape]
            label = f"{shape} ({n} layer{'s' if n != 1 else ''})" if seen[shape] == 1 else None
        ax.plot([100 * r["sparsity"] for r in curve], [100 * r["accuracy"] for r in curve],
                linestyle="--" if shape == "fc" else "-", marker="s" if shape == "fc" else "o",
                markersize=3.5 if not many else 2.5, linewidth=1 if not many else 0.8, color=colour, label=label)
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "pruning sensitivity, one layer at a time, no retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if 8 < len(layers) <= 16 else 1)
    fig.tight_layout()
    try:
        for path in paths:
            fmt = os.fspath(path).rsplit(".", 1)[-1]
            atomic_save(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
    finally:
        plt.close(fig)
