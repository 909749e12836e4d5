"""A plain, seeded training loop with evaluation (accuracy, top-1 error, log-loss).

Beyond the plain loop, :func:`fit` does (all off by default, so the compression pipeline's calls keep
their meaning): a frozen-backbone warm-up (``freeze_epochs`` head-only epochs), early stopping on the
validation set with the best weights restored (``patience`` / ``restore_best``), a wall-clock budget
(``max_minutes``), mixed precision on CUDA (``amp``), channels-last memory on CPU/GPU (``channels_last``)
and DistributedDataParallel when a process group is initialised (``torchrun --nproc_per_node N``; see
:func:`init_distributed` and :func:`make_loader`). Every rank evaluates the whole validation set, so
early-stopping decisions agree across ranks; only rank 0 should write files (:func:`is_main_process`).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
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
    seed: int = 0
    freeze_epochs: int = 0  # head-only epochs first (backbone frozen, in eval mode); part of ``epochs``
    head_lr: float | None = None  # learning rate of the head-only epochs (default: lr)
    patience: int | None = None  # early stopping: epochs without validation improvement
    monitor: str = "accuracy"  # accuracy (ties broken by log_loss) | log_loss
    restore_best: bool = False  # load the best-on-validation weights at the end
    max_minutes: float | None = None  # wall-clock budget; training stops after the epoch that exceeds it
    amp: bool = True  # mixed precision (CUDA only)
    channels_last: bool = False  # channels-last memory format for 4-D inputs
    bn_momentum: float | None = None  # BatchNorm momentum while training (None: the model's own)
    freeze_bn: bool = False  # keep BatchNorm layers in eval mode (their statistics fixed) while training
    distill: float = 0.0  # weight of the distillation loss (Hinton et al. 2015) when a teacher is given
    temperature: float = 4.0  # softmax temperature of distillation

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
        if not 0 <= self.freeze_epochs <= max(self.epochs, 0):
            raise ValueError(f"freeze_epochs must be in [0, epochs], got {self.freeze_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.monitor not in {"accuracy", "log_loss"}:
            raise ValueError(f"monitor must be accuracy or log_loss, got {self.monitor!r}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")

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
    """Per-epoch training loss and validation metrics, and where the best epoch was."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped: str = "completed"  # completed | early_stopping | time_budget

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "stopped": self.stopped}


@dataclass
class FitState:
    """Where :func:`fit` stands after a completed epoch: enough to continue it exactly (same batches,
    same optimiser moments, same learning rate, same dropout draws) after the process died."""

    epoch: int  # epochs completed
    phase: str  # head | full: which optimiser ``optimizer`` belongs to
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    history: History
    best: dict[str, float] | None
    bad_epochs: int
    seconds: float  # training time so far (for max_minutes)
    rng: dict[str, Any]  # rng_state() at the end of the epoch
    loader_rng: torch.Tensor | None  # the training DataLoader's shuffle generator state
    best_state: dict[str, torch.Tensor] | None = None  # restore_best's weights


# ----------------------------------------------------------------------------------------- distributed

def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): the only process that should write files."""
    return rank() == 0


def init_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1):
    NCCL on CUDA (one GPU per local rank), gloo on CPU. Returns this process's device.
    Without torchrun it does nothing and returns :func:`resolve_device`'s answer."""
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return dev
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cpu":  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return dev


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, workers: int = 0, seed: int = 0,
                drop_last: bool = False, distributed: bool | None = None,
                pin_memory: bool = False) -> DataLoader:
    """A seeded DataLoader; with a process group (and ``shuffle``), a DistributedSampler shards it."""
    if distributed is None:
        distributed = world_size() > 1 and shuffle
    g = torch.Generator()
    g.manual_seed(seed)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    from .data.images import seed_worker

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=workers, drop_last=drop_last, generator=g,
                      worker_init_fn=seed_worker if workers else None, pin_memory=pin_memory,
                      persistent_workers=workers > 0)


def sync_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks and copy the others
    from rank 0, so that every rank holds the same model (DDP only syncs parameters)."""
    if world_size() <= 1:
        return
    n = world_size()
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b.data)
            b.data /= n
        else:
            dist.broadcast(b.data, 0)


def _agree(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, on every rank."""
    if world_size() <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def rng_state() -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python), for :func:`set_rng_state`."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, keys.tolist(), pos, has_gauss, gauss], "python": [version, list(internal), gauss_next]}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only when this machine has as many GPUs)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but CUDA is not available; use --device cpu or auto")
    return dev


def head_module(model: nn.Module) -> nn.Module:
    """The classifier layer: ``model.dc_head`` (set by the zoo builders) or the last Linear layer."""
    name = getattr(model, "dc_head", None)
    if name:
        return model.get_submodule(name)
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError("cannot find the classifier head (no dc_head and no nn.Linear)")
    return last


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
        if x.dim() == 4 and _is_channels_last(model):
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        check_labels(logits, y)
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluation data is empty")
    return {"accuracy": correct / n, "error": 1 - correct / n, "log_loss": nll / n, "n": n}


def check_labels(logits: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse class labels the model has no output for (a checkpoint for other classes than the data's),
    before cross-entropy fails on them (with an IndexError on the CPU, a device assert on CUDA)."""
    if y.numel() and int(y.max()) >= logits.shape[-1]:
        raise ValueError(f"the data has class label {int(y.max())}, but the model has only {logits.shape[-1]} "
                         "outputs: the model was made for other classes than this data's")


def _is_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
            progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N × C, float64) and labels (N) for every sample of ``loader``."""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    probs, labels = [], []
    for x, y in tqdm(loader, desc="predict", leave=False, disable=not progress):
        x = x.to(device)
        if x.dim() == 4 and _is_channels_last(model):
            x = x.contiguous(memory_format=torch.channels_last)
        probs.append(torch.softmax(model(x).double(), 1).cpu().numpy())
        labels.append(y.numpy())
    model.train(was_training)
    if not probs:
        raise ValueError("evaluation data is empty")
    return np.concatenate(probs), np.concatenate(labels)


def classification_metrics(probs: np.ndarray, labels: np.ndarray,
                           class_names: list[str] | None = None, eps: float = 1e-15) -> dict[str, Any]:
    """Accuracy, multi-class log-loss (probabilities clipped to [eps, 1-eps] and renormalised, as in
    scikit-learn / Zindi), per-class precision / recall / F1 / support, macro F1 and the confusion
    matrix (rows = true class, columns = predicted)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    if class_names is None:
        class_names = [str(i) for i in range(c)]
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} model outputs")
    pred = probs.argmax(1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    p = np.clip(probs, eps, 1 - eps)
    p = p / p.sum(1, keepdims=True)
    log_loss = float(-np.log(p[np.arange(n), labels]).mean())
    per_class = {}
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[name] = {"precision": float(prec), "recall": float(rec), "f1": float(f1),
                           "support": int(cm[i].sum())}
    acc = float((pred == labels).mean())
    present = [v["f1"] for v in per_class.values() if v["support"]]
    return {"accuracy": acc, "error": 1 - acc, "log_loss": log_loss, "n": int(n),
            "macro_f1": float(np.mean(present)) if present else 0.0,
            "per_class": per_class, "confusion_matrix": cm.tolist(), "class_names": list(class_names)}


def _better(m: dict[str, float], best: dict[str, float] | None, monitor: str) -> bool:
    if best is None:
        return True
    if monitor == "log_loss":
        return m["log_loss"] < best["log_loss"]
    return (m["accuracy"], -m["log_loss"]) > (best["accuracy"], -best["log_loss"])


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher / T) ‖ softmax(student / T)), averaged over the batch (Hinton et al. 2015)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


@torch.no_grad()
def _teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return teacher(x)


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
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: Callable[[FitState], None] | None = None,
    resume: FitState | None = None,
    teacher: nn.Module | None = None,
) -> History:
    """Train ``model`` in place for ``cfg.epochs`` epochs.

    ``params`` restricts what is optimised (default: all parameters; the head-only warm-up only applies
    when ``params`` is None); ``after_step`` runs after every optimiser step (e.g. to re-apply pruning
    masks); ``on_epoch_end`` gets each epoch's record; ``on_checkpoint`` gets a :class:`FitState` after
    every epoch, and ``resume`` (one of those) continues from there as if never interrupted (the model
    must already hold that epoch's weights). With a ``teacher`` (in eval mode, not trained) and
    ``cfg.distill`` = α > 0 the loss is (1 − α)·CE + α·T²·KL(teacher_T ‖ student_T) at temperature T
    (knowledge distillation: the dense model teaching its pruned or quantized self). Under an
    initialised process group the model is wrapped in DistributedDataParallel; ``model`` itself holds
    the trained weights afterwards.
    """
    device = resolve_device(device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        if teacher is not None:  # the same layout, so the same kernels, however the teacher was made
            teacher.to(memory_format=torch.channels_last)
    torch.manual_seed(cfg.seed)
    distributed = world_size() > 1
    main = is_main_process()
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    steps_per_epoch = max(len(train_loader), 1)
    history = History()
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start = time.monotonic()
    first = 0
    if resume is not None:
        first, history, best, bad_epochs = resume.epoch, resume.history, resume.best, resume.bad_epochs
        best_state, start = resume.best_state, start - resume.seconds
    freeze = cfg.freeze_epochs if params is None else 0
    head = head_module(model) if freeze else None
    all_params = [p for p in (model.parameters() if params is None else params)]
    saved_flags = {id(p): p.requires_grad for p in model.parameters()}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved_momentum = [m.momentum for m in bns]
    if cfg.bn_momentum is not None:
        for m in bns:
            m.momentum = cfg.bn_momentum

    def setup(phase: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        if phase == "head":
            for p in model.parameters():
                p.requires_grad_(False)
            for p in head.parameters():
                p.requires_grad_(True)
            opt = make_optimizer(head.parameters(), cfg)
            for g in opt.param_groups:
                g["lr"] = cfg.head_lr or cfg.lr
        else:
            for p in model.parameters():
                p.requires_grad_(saved_flags[id(p)])
            opt = make_optimizer(all_params, cfg)
        net: nn.Module = model
        if distributed:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        return net, opt

    try:  # a failure (or an interruption) leaves no layer frozen and no BatchNorm momentum changed
        phase = "head" if first < freeze else "full"
        net, opt = setup(phase)
        base_lrs = [g["lr"] for g in opt.param_groups]
        full_cfg = TrainConfig.from_dict({**cfg.to_dict(), "epochs": cfg.epochs - freeze,
                                          "freeze_epochs": 0})
        loader_rng = getattr(train_loader, "generator", None)
        if resume is not None:
            if resume.phase == phase:
                opt.load_state_dict(resume.optimizer)
            if resume.scaler:
                scaler.load_state_dict(resume.scaler)
            if loader_rng is not None and resume.loader_rng is not None:
                loader_rng.set_state(resume.loader_rng)
            set_rng_state(resume.rng)
        for epoch in range(first, cfg.epochs if history.stopped == "completed" else first):
            if phase == "head" and epoch >= freeze:
                phase = "full"
                net, opt = setup(phase)
                base_lrs = [g["lr"] for g in opt.param_groups]
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            model.train()
            if phase == "head":  # frozen backbone: keep its BatchNorm statistics, train only the head
                model.eval()
                head.train()
            if cfg.freeze_bn:
                for m in bns:
                    m.eval()
            total, correct, count = 0.0, 0, 0
            t0 = time.monotonic()
            label = f"{desc} {epoch + 1}/{cfg.epochs}" + (" (head)" if phase == "head" else "")
            bar = tqdm(train_loader, desc=label, leave=False, disable=not (progress and main))
            for i, (x, y) in enumerate(bar):
                if phase == "full":
                    factor = lr_factor(full_cfg, epoch - freeze + i / steps_per_epoch)
                    for g, base in zip(opt.param_groups, base_lrs, strict=True):
                        g["lr"] = base * factor
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cfg.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = net(x)
                    check_labels(logits, y)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    if teacher is not None and cfg.distill > 0:
                        loss = (1 - cfg.distill) * loss + cfg.distill * distillation_loss(
                            logits.float(), _teacher_logits(teacher, x).float(), cfg.temperature)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if after_step is not None:
                    after_step()
                total += loss.item() * y.numel()
                correct += (logits.detach().argmax(1) == y).sum().item()
                count += y.numel()
                if i % 5 == 0:
                    bar.set_postfix(loss=f"{total / max(count, 1):.4f}", acc=f"{correct / max(count, 1):.3f}")
            if distributed:
                sync_buffers(model)
                t = torch.tensor([total, correct, count], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                total, correct, count = t[0].item(), int(t[1].item()), int(t[2].item())
            record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase, "lr": opt.param_groups[0]["lr"],
                                      "train_loss": total / max(count, 1),
                                      "train_accuracy": correct / max(count, 1)}
            improved = False
            if val_loader is not None:
                m = evaluate(model, val_loader, device)
                record.update(val_accuracy=m["accuracy"], val_log_loss=m["log_loss"])
                if _better(m, best, cfg.monitor):
                    best, improved, bad_epochs = m, True, 0
                    history.best_epoch = epoch + 1
                    if cfg.restore_best:
                        state = model.state_dict()
                        best_state = type(state)((k, v.detach().clone()) for k, v in state.items())
                        best_state._metadata = getattr(state, "_metadata", None)  # type: ignore[attr-defined]
                else:
                    bad_epochs += 1
            record["seconds"] = time.monotonic() - t0
            history.epochs.append(record)
            if progress and main:
                tqdm.write(f"{desc} epoch {epoch + 1}/{cfg.epochs} [{phase}]: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in record.items() if k not in ("epoch", "phase"))
                    + (" *" if improved else ""))
            if on_epoch_end is not None:
                on_epoch_end(record)
            # the warm-up epochs do not count towards early stopping
            if cfg.patience is not None and phase == "full" and bad_epochs >= cfg.patience \
                    and epoch + 1 < cfg.epochs:
                history.stopped = "early_stopping"
            else:
                over = cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60
                if _agree(over, device) and epoch + 1 < cfg.epochs:
                    history.stopped = "time_budget"
                    if progress and main:
                        tqdm.write(f"{desc}: stopping after epoch {epoch + 1}, "
                                   f"time budget of {cfg.max_minutes:g} min used")
            if on_checkpoint is not None:
                on_checkpoint(FitState(epoch + 1, phase, opt.state_dict(), scaler.state_dict(), history, best,
                                       bad_epochs, time.monotonic() - start, rng_state(),
                                       loader_rng.get_state() if loader_rng is not None else None, best_state))
            if history.stopped != "completed":
                break
    finally:
        for p in model.parameters():
            p.requires_grad_(saved_flags[id(p)])
        for m, mom in zip(bns, saved_momentum, strict=True):
            m.momentum = mom
    if cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history
