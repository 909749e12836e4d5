"""``deepcompress predict MODEL.dcz IMAGE... [--top-k 3] [--json]``: classify images without PyTorch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..format.dcz import read_dcz
from ..runtime import FC_KERNELS, ImageError, Model
from ._common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a .dcz model",
                       description="Classify images with a .dcz model through deepcompress.runtime (ONNX Runtime "
                                   "and numpy). Unreadable files are reported one by one; the exit status is 1 "
                                   "when any file failed.")
    p.add_argument("model", help=".dcz file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print one JSON list with a result per image")
    add_fc_kernel(p)
    p.set_defaults(func=run)


def add_fc_kernel(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fc-kernel", choices=FC_KERNELS, default="auto",
                   help="fully connected layers: sparse codebook kernel, dense, or whichever is faster (default)")


def open_model(path: str, fc_kernel: str = "auto") -> Model:
    """The runtime model of a .dcz; a file without a stored graph gets one built in memory (needs PyTorch)."""
    dcz = read_dcz(path)
    if "graph" not in dcz.header:
        try:
            from ..export import with_graph
        except ImportError as e:
            raise ValueError(f"{path} stores no network graph and PyTorch/onnx are not installed to build one; "
                             "run `deepcompress export FILE --embed-graph` where they are") from e
        print(f"note: {path} stores no network graph; building it with PyTorch "
              "(`deepcompress export FILE --embed-graph` stores it once)", file=sys.stderr)
        dcz, _ = with_graph(dcz, Path(path).read_bytes())
        dcz.size = os.path.getsize(path)
    return Model(dcz, fc_kernel)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    model = open_model(args.model, args.fc_kernel)
    results, failed = [], 0
    for path in args.images:
        try:
            pred = model.classify(path, args.top_k)
        except (ImageError, OSError) as e:
            failed += 1
            message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            results.append({"file": path, "error": message})
            if not args.json:
                print(f"{path}: error: {message}", file=sys.stderr)
            continue
        results.append({"file": path, **pred.to_dict()})
        if not args.json:
            top = ", ".join(f"{label} {100 * p:.1f}%" for label, p in pred.top)
            print(f"{path}: {top} ({1e3 * pred.seconds:.1f} ms)")
    if args.json:
        print_json(results)
    return 1 if failed else 0
