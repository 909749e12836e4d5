"""The ``deepcompress`` command line: a thin shell over the Python API.

Each sub-command lives in ``deepcompress.commands.<name>`` with ``add_parser(subparsers)`` and
``run(args) -> int``. Errors in user input print one line and exit 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "train", "compress", "evaluate", "inspect", "reproduce", "bench", "sensitivity", "export",
            "predict", "serve", "report"]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; when ``argv`` names a command, only that command's module is imported (so that
    ``predict`` and ``serve``, which run on numpy and ONNX Runtime, never import PyTorch)."""
    named = [a for a in (argv or []) if not a.startswith("-")][:1]
    parser = argparse.ArgumentParser(
        prog="deepcompress",
        description="Deep Compression for PyTorch: prune, quantize and Huffman-code models into .dcz files; "
                    "evaluate, inspect and deploy them.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in named if named and named[0] in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f"deepcompress.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"deepcompress.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("deepcompress: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if args.debug:
            raise
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"deepcompress {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
