"""``deepcompress inspect FILE``: the header and per-layer table of a .dcz file."""

from __future__ import annotations

import argparse

from ..format.model import model_from_dcz, read_model_dcz
from ..report import dense_bytes, layer_rows, markdown_table, totals
from ._common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print a .dcz file's header and layer table")
    p.add_argument("file", help=".dcz file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dcz = read_model_dcz(args.file)
    model = model_from_dcz(dcz)
    rows = layer_rows(dcz.records)
    total = totals(dcz.records, dcz.size, dense_bytes(model))
    if args.json:
        print_json({"file": args.file, "header": dcz.header, "layers": rows, "totals": total})
        return 0
    m = dcz.header.get("model", {})
    print(f"{args.file}: {m.get('arch')} {m.get('kwargs') or ''}, {len(dcz.records)} tensors, "
          f"{dcz.header.get('producer', '?')}")
    if m.get("class_names"):
        print(f"classes: {', '.join(map(str, m['class_names']))}")
    print()
    print(markdown_table(rows, total))
    print()
    print(f"{total['file_bytes']:,} bytes on disk; dense fp32 parameters {total['dense_bytes']:,} bytes "
          f"→ {total['compression_ratio']:.1f}× smaller")
    return 0
