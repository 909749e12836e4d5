"""``deepcompress train``: train or fine-tune a zoo model on an image folder, a label CSV or MNIST."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..finetune import (
    PRETRAINED_FREEZE_EPOCHS,
    TRAIN_DEFAULTS,
    default_config,
    train_classifier,
    write_outputs,
)
from ..models import list_models
from ..training import cleanup_distributed, init_distributed, is_main_process, world_size

HELP = "train / fine-tune a model on an image folder, a CSV (image,label) or an MNIST folder"


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Data and split options shared by ``train`` and ``bench models``."""
    p.add_argument("--data", required=True,
                   help="an image folder (<root>/<class>/<image>), a CSV with image,label columns, "
                        "or an MNIST IDX folder (told apart automatically)")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input size in pixels (default: the model's own, 224 for the zoo)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="validation share, carved per class from the training images (default 0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="test share when the data has no split of its own (default 0.1)")
    p.add_argument("--split-file", default=None,
                   help="fixed split: CSV image,split (train/val/test, paths relative to the data root; the "
                        "split.csv a run writes) or JSON {split: [paths]}")
    p.add_argument("--split-by-prefix", choices=["auto", "yes", "no"], default="auto",
                   help="'auto' (default): when every file name starts with train_ or test_ "
                        "(as in beans_ibean) the test_ images are the test split and validation is carved "
                        "from train_; "
                        "'yes' requires it, 'no' ignores it")
    p.add_argument("--image-root", default=None, help="folder the CSV's image paths are relative to "
                                                      "(default: the CSV's folder)")
    p.add_argument("--strict", action="store_true",
                   help="fail on unreadable / non-image files instead of skipping them with a warning")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and augmentation")
    p.add_argument("--workers", default="auto",
                   help="DataLoader worker processes (default auto: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, all cores; on a busy shared machine "
                        "1 can be several times faster than 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def add_optim_args(p: argparse.ArgumentParser, epochs_default: int | None = None) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument("--epochs", type=int, default=epochs_default,
                   help=f"epochs in all, head-only warm-up included (default {d['epochs']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {d['batch_size']}")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {d['lr']:g})")
    p.add_argument("--optimizer", choices=["adamw", "sgd", "adam"], default=None,
                   help=f"default {d['optimizer']}")
    p.add_argument("--weight-decay", type=float, default=None, help=f"default {d['weight_decay']:g}")
    p.add_argument("--label-smoothing", type=float, default=None, help=f"default {d['label_smoothing']:g}")
    p.add_argument("--freeze-epochs", type=int, default=None,
                   help=f"head-only warm-up epochs with the backbone frozen "
                        f"(default {PRETRAINED_FREEZE_EPOCHS} with --pretrained, else 0)")
    p.add_argument("--patience", type=int, default=None,
                   help=f"early stopping after this many epochs without validation gain "
                        f"(default {d['patience']}; 0 = off)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"wall-clock budget; stops after the epoch that exceeds it, keeping the best weights "
                        f"(default {d['max_minutes']:g}; 0 = none)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help=HELP, description=HELP + ". Writes OUT/best.safetensors "
                              "(best-on-validation weights), OUT/metrics.json, OUT/history.json, "
                              "OUT/split.csv.")
    p.add_argument("--model", required=True, help=f"architecture: {', '.join(list_models())}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pretrained", action="store_true",
                   help="start from ImageNet weights (efficientnet-lite0: bundled, offline; torchvision "
                        "models: torch hub cache or download)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra builder argument, e.g. alpha=0.5 for mobilenet-v1 (repeatable; JSON values)")
    add_data_args(p)
    add_optim_args(p)
    p.set_defaults(func=run)


def parse_model_args(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def resolve_workers(value: str, device: torch.device) -> int:
    if value == "auto":
        return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
    try:
        n = int(value)
    except ValueError as e:
        raise ValueError(f"--workers must be a number or auto, got {value!r}") from e
    if n < 0:
        raise ValueError(f"--workers must be >= 0, got {n}")
    return n


def config_from_args(args: argparse.Namespace, pretrained: bool):
    over = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
            "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
            "freeze_epochs": args.freeze_epochs, "seed": args.seed}
    cfg = default_config(pretrained, **over)
    if args.patience is not None:
        cfg.patience = args.patience or None
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes or None
    cfg.freeze_epochs = min(cfg.freeze_epochs, cfg.epochs)
    cfg.warmup_epochs = min(cfg.warmup_epochs, max(cfg.epochs - cfg.freeze_epochs, 0))
    cfg.channels_last = True
    cfg.__post_init__()
    return cfg


def split_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"val_fraction": args.val_fraction, "test_fraction": args.test_fraction,
            "split_file": args.split_file, "split_by_prefix": args.split_by_prefix,
            "image_root": args.image_root}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    device = init_distributed(args.device)
    apply_threads(args)  # after init_distributed, which shares the cores between CPU ranks
    try:
        if is_main_process():
            out.mkdir(parents=True, exist_ok=True)
        cfg = config_from_args(args, args.pretrained)
        workers = resolve_workers(args.workers, device)
        t0 = time.monotonic()
        result = train_classifier(
            args.model, args.data, cfg, pretrained=args.pretrained, image_size=args.image_size,
            device=device, workers=workers, model_kwargs=parse_model_args(args.model_arg),
            progress=not args.quiet, split_options=split_options(args), strict=args.strict)
        wall = time.monotonic() - t0
        write_outputs(out, result, {"data": str(Path(args.data).resolve()), "pretrained": args.pretrained,
                                    "wall_seconds": wall, "world_size": world_size()})
        if is_main_process():
            m = result.metrics
            print(f"{args.model}: {result.eval_split} accuracy {m['accuracy']:.4f}, "
                  f"log-loss {m['log_loss']:.4f} "
                  f"on {m['n']} images; best epoch {result.history.best_epoch} "
                  f"({result.history.stopped}); {wall / 60:.1f} min; wrote {out / 'best.safetensors'}",
                  file=sys.stdout)
    finally:
        cleanup_distributed()
    return 0
