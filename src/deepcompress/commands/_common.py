"""Pieces shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # recipes import PyTorch; `predict` and `serve` run without it
    from ..recipe import Recipe


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage logs")


def add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (an epoch, prune round or stage), "
                        "kept in OUT.dcz.state/ beside the output until the run finishes")


def resolve_recipe(path: str | None, arch: str) -> Recipe:
    """The recipe at ``path`` (refused when it names another model), else the built-in recipe for ``arch``."""
    from ..recipe import builtin_recipe, load_recipe

    return load_recipe(path, arch) if path else builtin_recipe(arch)


def output_dir(path: str | Path) -> Path:
    """Create (if needed) and return an output folder, with a clear error when that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise NotADirectoryError(f"output path {path} exists and is not a folder") from e
    except PermissionError as e:
        raise PermissionError(f"cannot create output folder {path}: permission denied") from e
    try:  # fail now, not when the first file is written after hours of training
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise PermissionError(f"output folder {path} is not writable ({e.strerror or e})") from e
    return path


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
