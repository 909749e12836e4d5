"""``deepcompress bench models``: the model-selection table (same split and budget for every model)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..bench import bench_models
from ..finetune import default_config
from ..training import resolve_device
from .train import add_data_args, add_optim_args, apply_threads, resolve_workers, split_options

HELP = "benchmarks: 'models' trains several zoo models with one budget and tabulates them"
DEFAULT_MODELS = ["squeezenet1_1", "mobilenet-v2", "mobilenet-v1", "efficientnet-lite0", "nasnet-a-mobile",
                  "resnet50"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help=HELP, description=HELP)
    sub = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    m = sub.add_parser("models", help="train each model on the same split with the same budget; write "
                                      "OUT/models.md, .json, .csv and models.png",
                       description="Train each model on the same split with the same budget and write "
                                   "OUT/models.md, OUT/models.json, OUT/models.csv, OUT/models.png "
                                   "(accuracy vs fp32 size, bubble area ∝ FLOPs) and OUT/<model>/.")
    m.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help=f"default: {' '.join(DEFAULT_MODELS)}")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--pretrained", choices=["auto", "none", "all"], default="auto",
                   help="ImageNet init: auto (default) where weights are available offline "
                        "(efficientnet-lite0 always; torchvision models when in the torch hub cache), "
                        "none, or all")
    m.add_argument("--latency-repeats", type=int, default=30, help="batch-1 CPU forward passes timed")
    m.add_argument("--resume", action="store_true", help="keep models already finished in OUT")
    add_data_args(m)
    add_optim_args(m)
    m.set_defaults(func=run)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    device = resolve_device(args.device)
    over = {"epochs": args.epochs if args.epochs is not None else 8, "batch_size": args.batch_size,
            "lr": args.lr, "optimizer": args.optimizer, "weight_decay": args.weight_decay,
            "label_smoothing": args.label_smoothing, "seed": args.seed,
            "freeze_epochs": args.freeze_epochs if args.freeze_epochs is not None else 1}
    cfg = default_config(False, **over)
    cfg.patience = (args.patience or None) if args.patience is not None else cfg.patience
    cfg.max_minutes = (args.max_minutes or None) if args.max_minutes is not None else None
    cfg.freeze_epochs = min(cfg.freeze_epochs, cfg.epochs)
    cfg.warmup_epochs = min(cfg.warmup_epochs, max(cfg.epochs - cfg.freeze_epochs, 0))
    cfg.channels_last = True
    cfg.__post_init__()
    rows = bench_models(args.data, args.models, Path(args.out), cfg, image_size=args.image_size or 128,
                        pretrained=args.pretrained, device=device,
                        workers=resolve_workers(args.workers, device),
                        split_options=split_options(args), strict=args.strict, progress=not args.quiet,
                        latency_repeats=args.latency_repeats, resume=args.resume,
                        command="deepcompress " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                        log=lambda s: print(s, flush=True))
    print(f"wrote {Path(args.out) / 'models.md'} ({len(rows)} models)")
    return 0
