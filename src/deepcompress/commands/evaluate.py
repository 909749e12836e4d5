"""``deepcompress evaluate FILE --data DIR [--json]``: accuracy and log-loss of a .dcz or checkpoint."""

from __future__ import annotations

import argparse

from torch.utils.data import DataLoader

from ..api import load
from ..data import open_eval_data
from ..models import model_info
from ..training import evaluate, resolve_device
from ._common import add_device, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a .dcz file or checkpoint on a dataset",
                       description="Evaluate a .dcz file or a checkpoint. --data takes an MNIST IDX folder (its "
                                   "10,000 test images are used), an image folder (<root>/<class>/<image>, every "
                                   "image) or 'digits' (scikit-learn's held-out digits).")
    p.add_argument("file", help=".dcz file or .safetensors checkpoint")
    p.add_argument("--data", required=True, help="MNIST IDX folder, image folder, or 'digits'")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print one JSON object (accuracy, log_loss, n, ...)")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    model = load(args.file, device)
    info = model_info(model)
    ds = open_eval_data(args.data, info.class_names, info.input_size, info.mean, info.std)
    m = evaluate(model, DataLoader(ds, batch_size=args.batch_size), device, progress=not args.json)
    result = {"file": args.file, "model": info.arch, "data": str(args.data), **m}
    if args.json:
        print_json(result)
    else:
        print(f"{args.file} ({info.arch}) on {args.data}: accuracy {m['accuracy']:.4f} "
              f"(top-1 error {100 * m['error']:.2f}%), log-loss {m['log_loss']:.4f}, n = {m['n']}")
    return 0
