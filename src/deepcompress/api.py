"""The top-level Python API: load any model file, compress a model with a recipe."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .format.dcz import MAGIC
from .format.model import load_model


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an ``nn.Module`` from a .dcz file or a deepcompress safetensors checkpoint.

    Files starting with the .dcz magic or named ``*.dcz`` are read as .dcz, anything else as a
    safetensors checkpoint; neither is ever unpickled.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file (expected a .dcz file or a checkpoint)")
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    if head == MAGIC or path.suffix == ".dcz":
        return load_model(path, device)
    return load_checkpoint(path, device)
