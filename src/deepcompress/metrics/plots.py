"""Report figures (PNG + SVG): weight histograms before/after sharing, energy breakdown, accuracy vs size
and accuracy vs energy. Built with matplotlib's object API (``Figure``), which renders with Agg without
touching pyplot's global backend or figure registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import nn

from .._io import atomic_save
from ..prune import prunable_layers
from .size import layer_weight


def save_figure(fig: Figure, stem: str | os.PathLike) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; returns the paths."""
    paths = []
    for fmt in ("png", "svg"):
        path = Path(f"{stem}.{fmt}")
        atomic_save(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
        paths.append(path)
    return paths


def _nonzero(module: nn.Module) -> np.ndarray:
    w = layer_weight(module).flatten().cpu().numpy()
    return w[w != 0]


def weight_histograms(after: nn.Module, before: nn.Module | None = None, title: str = "") -> Figure:
    """Per layer, the distribution of non-zero weights before weight sharing (the dense model, when given)
    and after it (the .dcz model), with the shared values marked — the paper's Fig. 4/5 style."""
    layers = prunable_layers(after)
    cols = 2 if before is not None else 1
    fig = Figure(figsize=(5 * cols, 2.2 * len(layers)))
    axes = fig.subplots(len(layers), cols, squeeze=False)
    ref = prunable_layers(before) if before is not None else {}
    for row, (name, module) in enumerate(layers.items()):
        w = _nonzero(module)
        values, counts = np.unique(w, return_counts=True)
        ax = axes[row][-1]
        lo, hi = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
        if name in ref:
            wb = _nonzero(ref[name])
            lo, hi = min(lo, float(wb.min(initial=0))), max(hi, float(wb.max(initial=0)))
            axes[row][0].hist(wb, bins=100, range=(lo, hi), color="tab:blue")
            axes[row][0].set_title(f"{name}: before sharing ({wb.size:,} non-zero)", fontsize=9)
            axes[row][0].set_ylabel("count")
        ax.vlines(values, 0, counts, color="tab:orange", linewidth=1.5)
        ax.plot(values, np.zeros_like(values), "o", color="tab:red", markersize=3)
        ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
        ax.set_title(f"{name}: after sharing ({values.size} distinct values, {w.size:,} non-zero)", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("weight value")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


PARTS = [("compute_j", "compute (MACs)"), ("weight_memory_j", "weight fetches"),
         ("activation_memory_j", "activation traffic"), ("lookup_j", "codebook look-ups")]


def energy_breakdown(records: list[dict[str, Any]]) -> Figure:
    """Stacked bars of each model's estimated energy per inference: absolute (µJ) and as shares."""
    labels = [r["label"] for r in records]
    fig = Figure(figsize=(max(8, 1.8 * len(records) + 4), 4))
    ax_abs, ax_rel = fig.subplots(1, 2)
    x = np.arange(len(records))
    bottom_abs, bottom_rel = np.zeros(len(records)), np.zeros(len(records))
    totals = np.array([r["energy"]["inference"]["total_j"] for r in records]) * 1e6
    for key, name in PARTS:
        v = np.array([r["energy"]["inference"][key] for r in records]) * 1e6
        ax_abs.bar(x, v, bottom=bottom_abs, label=name)
        share = np.divide(v, totals, out=np.zeros_like(v), where=totals > 0)
        ax_rel.bar(x, 100 * share, bottom=bottom_rel, label=name)
        bottom_abs += v
        bottom_rel += 100 * share
    for xi, t in zip(x, totals, strict=True):
        ax_abs.annotate(f"{t:.3g}", (xi, t), ha="center", va="bottom", fontsize=8)
    ax_abs.set_ylabel("µJ per inference (estimated)")
    ax_rel.set_ylabel("share of energy (%)")
    for ax in (ax_abs, ax_rel):
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax_rel.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.suptitle("Estimated energy per inference: compute vs memory (Horowitz 45 nm)")
    fig.tight_layout()
    return fig


def accuracy_scatter(records: list[dict[str, Any]]) -> Figure | None:
    """Accuracy vs file size and vs estimated energy per inference (log x); None without accuracies."""
    recs = [r for r in records if "eval" in r]
    if not recs:
        return None
    fig = Figure(figsize=(10, 4))
    ax_s, ax_e = fig.subplots(1, 2)
    acc = [100 * r["eval"]["accuracy"] for r in recs]
    size = [r.get("file_bytes", r["dense_fp32_bytes"]) for r in recs]
    energy = [1e6 * r["energy"]["inference"]["total_j"] for r in recs]
    for ax, xs, xlabel in ((ax_s, size, "model size (bytes on disk)"),
                           (ax_e, energy, "energy per inference (µJ, estimated)")):
        ax.scatter(xs, acc, color="tab:blue")
        for r, xv, yv in zip(recs, xs, acc, strict=True):
            ax.annotate(r["label"], (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.3, y=0.15)  # room for the labels
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Accuracy on {Path(recs[0]['eval']['data']).name}")
    fig.tight_layout()
    return fig
