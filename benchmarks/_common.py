"""Helpers shared by the benchmark scripts: argument handling, result files and compressed LeNets.

Every benchmark is a ``main(argv) -> dict`` that prints its result as JSON and writes it to
``benchmarks/results/<name>.json`` (or ``--out``). ``--smoke`` runs it on tiny inputs in about a
second, for ``tests/test_benchmarks.py``. PyTorch is imported only by the helpers that need it, so
that numpy-only benchmarks measure memory without it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

# Kept fraction per layer (Deep Compression, Tables 2 and 3) and bits per layer kind (conv 8, fc 5).
LENET_DENSITY = {
    "lenet-300-100": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
    "lenet-5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
}


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--smoke`` and ``--out`` options."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny inputs, for the smoke test (seconds)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/<name>.json)")
    return p


def finish(name: str, result: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Print ``result`` as JSON and write it to ``out`` (default ``benchmarks/results/<name>.json``)."""
    text = json.dumps(result, indent=1, default=float)
    print(text)
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return result


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def prune_to_paper(model: nn.Module, arch: str) -> None:
    """Magnitude-prune every layer of a LeNet to the paper's density, in one shot (masks left installed)."""
    import torch

    from deepcompress.prune import apply_mask, magnitude_mask, prunable_layers

    for name, module in prunable_layers(model).items():
        mask = magnitude_mask(module.weight.detach(), torch.ones_like(module.weight),
                              sparsity=1 - LENET_DENSITY[arch][name])
        apply_mask(module, mask)


def share_all(model: nn.Module) -> None:
    """Remove pruning masks and weight-share every layer (conv 8 bits, fc 5 bits, linear init)."""
    from torch import nn

    from deepcompress.prune import prunable_layers, remove_masks
    from deepcompress.quantize import share_layer

    remove_masks(model)
    for module in prunable_layers(model).values():
        share_layer(module, 5 if isinstance(module, nn.Linear) else 8)


def compressed_lenet(arch: str, path: Path, train_batches: int) -> Path:
    """A pruned, weight-shared LeNet saved to ``path`` (kept when it exists).

    It is trained for ``train_batches`` batches on MNIST first when the data is present, so that its
    weight distributions look like trained ones; 0 keeps the random initialisation.
    """
    if path.exists():
        return path
    import torch

    from deepcompress.format.model import save_model
    from deepcompress.models import create_model

    torch.manual_seed(0)
    model = create_model(arch)
    if train_batches and MNIST.is_dir():
        from deepcompress.data import open_train_test
        from deepcompress.training import TrainConfig, fit

        train, _ = open_train_test(str(MNIST))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, range(512 * train_batches)),
                                             batch_size=512, shuffle=True)
        fit(model, loader, TrainConfig(epochs=1, batch_size=512, channels_last=arch == "lenet-5"), device="cpu",
            progress=False)
        model = model.to(memory_format=torch.contiguous_format)
    prune_to_paper(model, arch)
    share_all(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    return path


def lenet_files(given: list[Path] | None, smoke: bool, cache: Path) -> dict[str, Path]:
    """The .dcz files to measure: those given, else both LeNets built (and cached) under ``cache``."""
    if given:
        return {p.stem: p for p in given}
    batches = 0 if smoke else 117  # 117 × 512 ≈ one epoch
    tag = "smoke" if smoke else "trained"
    return {arch: compressed_lenet(arch, cache / f"{arch}-{tag}.dcz", batches) for arch in LENET_DENSITY}


def student_t_weights(rng: np.random.Generator, size: int, fan_in: int, df: float = 4.0) -> np.ndarray:
    """float32 weights with the heavy-tailed, zero-centred shape of trained layers (He-scaled Student t)."""
    out = np.empty(size, dtype=np.float32)
    scale = np.sqrt(2.0 / fan_in) / np.sqrt(df / (df - 2))
    step = 1 << 22
    for lo in range(0, size, step):
        hi = min(size, lo + step)
        out[lo:hi] = rng.standard_t(df, hi - lo) * scale
    return out
