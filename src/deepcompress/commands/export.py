"""``deepcompress export FILE [--onnx OUT.onnx] [--embed-graph [--out OUT.dcz]]``: ONNX for deployment."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write an ONNX file, or store the network graph in the .dcz",
                       description="Export a .dcz model for deployment. --onnx writes a self-contained ONNX file "
                                   "(input 'input' [batch, ...], output 'logits', dynamic batch). --embed-graph "
                                   "stores the ONNX graph without weights inside the .dcz (in place, or in --out), "
                                   "so that deepcompress.runtime, predict and serve run it without PyTorch.")
    p.add_argument("file", help=".dcz file")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write a self-contained ONNX model here")
    p.add_argument("--embed-graph", action="store_true", help="store the graph inside the .dcz file")
    p.add_argument("--out", metavar="OUT.dcz", help="with --embed-graph: write a copy here instead of in place")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.onnx and not args.embed_graph:
        raise ValueError("nothing to do: give --onnx OUT.onnx and/or --embed-graph")
    if args.out and not args.embed_graph:
        raise ValueError("--out only applies with --embed-graph")
    from .._io import atomic_write_bytes
    from ..export import embed_graph, onnx_bytes
    from ..format.model import load_model

    if args.onnx:
        data = onnx_bytes(load_model(args.file))
        atomic_write_bytes(args.onnx, data)
        print(f"wrote {args.onnx} ({len(data):,} bytes)", file=sys.stderr)
    if args.embed_graph:
        out = args.out or args.file
        size = embed_graph(args.file, out)
        print(f"stored the graph in {out} ({size:,} bytes)", file=sys.stderr)
    return 0
