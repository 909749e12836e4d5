"""Train (fine-tune) a zoo model on an image folder, a label CSV or MNIST, and write its results.

This is the library behind ``deepcompress train`` and ``deepcompress bench models``:
:func:`prepare_data` builds the train / val / test datasets with the model's own input size and
normalisation, :func:`train_classifier` runs :func:`deepcompress.training.fit` with early stopping on the
validation split, restores the best weights and measures them on the test split (validation when there
is none), and :func:`write_outputs` writes ``best.safetensors``, ``metrics.json``, ``history.json`` and
``split.csv`` (rank 0 only).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ._io import atomic_write_text
from .checkpoint import save_checkpoint
from .data import DataError, is_mnist_folder, load_mnist
from .data.images import eval_transform, is_image_folder, load_image_data, train_transform, write_split_file
from .models import create_model, model_info
from .training import (
    TrainConfig,
    classification_metrics,
    fit,
    is_main_process,
    make_loader,
    predict,
    set_seed,
)

#: defaults of ``deepcompress train`` (tuned on the train_ images of beans with a carved validation split)
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 12, "batch_size": 32, "lr": 1e-3, "optimizer": "adamw", "weight_decay": 0.05,
    "label_smoothing": 0.1, "schedule": "cosine", "warmup_epochs": 1.0, "patience": 5,
    "monitor": "accuracy", "restore_best": True, "max_minutes": 25.0, "grad_clip": 5.0,
}
PRETRAINED_FREEZE_EPOCHS = 2
PRETRAINED_HEAD_LR = 3e-3
SCRATCH_BN_MOMENTUM = 0.1


@dataclass
class PreparedData:
    kind: str  # images | mnist
    classes: list[str]
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    input_size: list[int]
    rule: str
    counts: dict[str, Any] = field(default_factory=dict)
    image_data: Any = None


def data_kind(data: str | os.PathLike) -> str:
    """``mnist`` (IDX folder), ``images`` (class folders) or ``csv`` (label CSV); DataError otherwise."""
    p = Path(data)
    if not p.exists():
        raise FileNotFoundError(f"data not found: {p}")
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    if p.is_dir() and is_mnist_folder(p):
        return "mnist"
    if p.is_dir() and is_image_folder(p):
        return "images"
    raise DataError(f"{p}: neither an MNIST IDX folder, an image folder (<root>/<class>/<image>) nor a "
                    ".csv with image,label columns")


def prepare_data(data: str | os.PathLike, model: nn.Module, image_size: int | None = None, *,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                 split_file: str | None = None, split_by_prefix: str = "auto", image_root: str | None = None,
                 strict: bool = False, augment: bool = True) -> PreparedData:
    """Datasets for ``model`` (its normalisation; ``image_size`` defaults to its native input size)."""
    info = model_info(model)
    kind = data_kind(data)
    if kind == "mnist":
        if info.input_size is not None and info.input_size != [1, 28, 28]:
            raise DataError(f"{data} is MNIST (1×28×28) but model {info.arch} expects {info.input_size}")
        train_full, test = load_mnist(data)
        n_val = int(round(val_fraction * len(train_full)))
        perm = np.random.RandomState(seed).permutation(len(train_full))
        val = Subset(train_full, sorted(perm[:n_val].tolist())) if n_val else None
        train = Subset(train_full, sorted(perm[n_val:].tolist()))
        return PreparedData("mnist", [str(i) for i in range(10)], train, val, test, [1, 28, 28],
                            f"MNIST: test = t10k; val = {n_val} train images (seed {seed})",
                            {"train": len(train), "val": n_val, "test": len(test)})
    if info.input_size is not None and info.input_size[0] != 3:
        raise DataError(f"model {info.arch} takes {info.input_size} inputs, not RGB images")
    size = int(image_size or (info.input_size[-1] if info.input_size else 224))
    if size < 16:
        raise ValueError(f"image size must be >= 16, got {size}")
    mean, std = info.mean or [0.485, 0.456, 0.406], info.std or [0.229, 0.224, 0.225]
    d = load_image_data(data, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                        split_file=split_file, split_by_prefix=split_by_prefix, image_root=image_root,
                        strict=strict)
    if not d.splits["train"]:
        raise DataError(f"{data}: the training split is empty")
    ttf = train_transform(size, mean, std) if augment else eval_transform(size, mean, std)
    etf = eval_transform(size, mean, std)
    train = d.dataset("train", ttf, strict)
    val = d.dataset("val", etf, strict) if d.splits["val"] else None
    test = d.dataset("test", etf, strict) if d.splits["test"] else None
    return PreparedData("images", d.classes, train, val, test, [3, size, size], d.rule, d.counts(), d)


def default_config(pretrained: bool, **overrides: Any) -> TrainConfig:
    """The ``deepcompress train`` defaults; pretrained models get a head-only warm-up first, models
    trained from scratch a BatchNorm momentum of 0.1 (some builders use 0.01 or 0.0003, TensorFlow-style,
    whose running statistics still remember the random initialisation after a short run)."""
    d = dict(TRAIN_DEFAULTS)
    if pretrained:
        d.update(freeze_epochs=PRETRAINED_FREEZE_EPOCHS, head_lr=PRETRAINED_HEAD_LR)
    else:
        d.update(bn_momentum=SCRATCH_BN_MOMENTUM)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(d)


@dataclass
class TrainResult:
    model: nn.Module
    history: Any
    metrics: dict[str, Any]
    val_metrics: dict[str, Any] | None
    eval_split: str
    train_seconds: float
    prepared: PreparedData
    config: TrainConfig


def train_classifier(model_name: str, data: str | os.PathLike, cfg: TrainConfig, *, pretrained: bool = False,
                     image_size: int | None = None, device: torch.device | str = "cpu", workers: int = 0,
                     model_kwargs: dict[str, Any] | None = None, progress: bool = True,
                     split_options: dict[str, Any] | None = None, strict: bool = False) -> TrainResult:
    """Build ``model_name`` for the data's classes, fine-tune it and measure the best weights."""
    device = torch.device(device)
    set_seed(cfg.seed)
    probe = create_model(model_name, **(model_kwargs or {}))  # to learn input size / normalisation
    prep = prepare_data(data, probe, image_size, seed=cfg.seed, strict=strict, **(split_options or {}))
    del probe
    set_seed(cfg.seed)
    kwargs = {**(model_kwargs or {}), **({"pretrained": True} if pretrained else {})}
    model = create_model(model_name, num_classes=len(prep.classes), **kwargs)
    info = model_info(model)
    info.class_names = list(prep.classes)
    info.input_size = list(prep.input_size)
    pin = device.type == "cuda"
    train_loader = make_loader(prep.train, cfg.batch_size, shuffle=True, workers=workers, seed=cfg.seed,
                               drop_last=len(prep.train) > cfg.batch_size, pin_memory=pin)
    eval_bs = max(cfg.batch_size, 64)
    val_loader = make_loader(prep.val, eval_bs, workers=workers, distributed=False) if prep.val else None
    t0 = time.monotonic()
    history = fit(model, train_loader, cfg, val_loader=val_loader, device=device, desc=model_name,
                  progress=progress)
    train_seconds = time.monotonic() - t0
    model.to(memory_format=torch.contiguous_format)
    val_metrics = None
    if val_loader is not None:
        val_metrics = classification_metrics(*predict(model, val_loader, device), prep.classes)
    if prep.test is not None and len(prep.test):
        loader = make_loader(prep.test, eval_bs, workers=workers, distributed=False)
        metrics, split = classification_metrics(*predict(model, loader, device), prep.classes), "test"
    elif val_metrics is not None:
        metrics, split = val_metrics, "val"
    else:
        raise DataError(f"{data}: no validation or test images to measure the model on")
    return TrainResult(model.cpu(), history, metrics, val_metrics, split, train_seconds, prep, cfg)


def write_outputs(out: str | os.PathLike, result: TrainResult, extra: dict[str, Any] | None = None) -> None:
    """``best.safetensors``, ``metrics.json``, ``history.json`` and (image data) ``split.csv`` in ``out``."""
    if not is_main_process():
        return
    out = Path(out)
    info = model_info(result.model)
    summary = {"split": result.eval_split, "accuracy": result.metrics["accuracy"],
               "log_loss": result.metrics["log_loss"], "n": result.metrics["n"]}
    save_checkpoint(out / "best.safetensors", result.model,
                    {"metrics": summary, "train_config": result.config.to_dict(), **(extra or {})})
    metrics = {
        "model": info.arch, "split": result.eval_split, **result.metrics,
        "validation": result.val_metrics, "best_epoch": result.history.best_epoch,
        "stopped": result.history.stopped, "epochs_run": len(result.history.epochs),
        "train_seconds": result.train_seconds, "input_size": info.input_size,
        "split_rule": result.prepared.rule, "split_counts": result.prepared.counts, **(extra or {}),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
    hist = {"model": info.arch, "config": result.config.to_dict(), **result.history.to_dict()}
    atomic_write_text(out / "history.json", json.dumps(hist, indent=2, default=float) + "\n")
    if result.prepared.image_data is not None:
        d = result.prepared.image_data
        write_split_file(out / "split.csv", d.root, d.splits)
