"""A plain, seeded training loop with evaluation (accuracy, top-1 error, log-loss)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


@dataclass
class TrainConfig:
    """Optimisation settings; every field can be set from a recipe or the CLI."""

    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"  # sgd | adam | adamw
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    step_size: int = 10
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    batch_size: int = 128
    grad_clip: float | None = None
    channels_last: bool = False  # NHWC memory layout: much faster convolutions on CPU
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in {"sgd", "adam", "adamw"}:
            raise ValueError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in {"cosine", "step", "constant"}:
            raise ValueError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """Per-epoch training loss and validation metrics."""

    epochs: list[dict[str, float]] = field(default_factory=list)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` epochs into training (linear warm-up, then the schedule)."""
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        return (progress + 1e-8) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
        t = min(max(progress - cfg.warmup_epochs, 0.0) / span, 1.0)
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.gamma ** int(progress // cfg.step_size)
    return 1.0


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
             progress: bool = False) -> dict[str, float]:
    """Accuracy (fraction), top-1 error, multi-class log-loss and the number of samples."""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    correct, nll, n = 0, 0.0, 0
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluation data is empty")
    return {"accuracy": correct / n, "error": 1 - correct / n, "log_loss": nll / n, "n": n}


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    cfg: TrainConfig,
    val_loader: DataLoader | None = None,
    device: str | torch.device | None = None,
    params: Iterable[nn.Parameter] | None = None,
    after_step: Callable[[], None] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> History:
    """Train ``model`` in place for ``cfg.epochs`` epochs.

    ``params`` restricts what is optimised (default: all parameters); ``after_step`` runs after every
    optimiser step (e.g. to re-apply pruning masks).
    """
    device = resolve_device(device)
    model.to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        model.to(memory_format=fmt)
    torch.manual_seed(cfg.seed)
    opt = make_optimizer(model.parameters() if params is None else params, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = max(len(train_loader), 1)
    history = History()
    for epoch in range(cfg.epochs):
        model.train()
        total, count = 0.0, 0
        bar = tqdm(train_loader, desc=f"{desc} {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        for i, (x, y) in enumerate(bar):
            factor = lr_factor(cfg, epoch + i / steps_per_epoch)
            for g, base in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = base * factor
            x, y = x.to(device), y.to(device)
            if x.dim() == 4:
                x = x.contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if after_step is not None:
                after_step()
            total += loss.item() * y.numel()
            count += y.numel()
            if i % 20 == 0:
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        record = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if val_loader is not None:
            m = evaluate(model, val_loader, device)
            record.update(val_accuracy=m["accuracy"], val_log_loss=m["log_loss"])
        history.epochs.append(record)
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{cfg.epochs}: "
                       + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
    return history
