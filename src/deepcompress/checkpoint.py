"""Checkpoints as safetensors files: weights plus the JSON needed to rebuild the model. No pickle.

A checkpoint is untrusted input: it is parsed by safetensors (never unpickled, so a ``torch.save``
file with a malicious ``__reduce__`` is refused unread), its model description is type-checked, and
the model is sized on the ``meta`` device before it is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._io import atomic_path
from .format.dcz import DEFAULT_MAX_ELEMENTS
from .models import ModelInfo, model_info
from .models.untrusted import build_untrusted, parse_info, reference_state


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not match its model."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Save ``model``'s state_dict and its :class:`ModelInfo` (plus ``extra`` JSON) atomically."""
    info = model_info(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "deepcompress-checkpoint", "version": "1", "model": json.dumps(info.to_dict()),
            "extra": json.dumps(extra or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


SAFETENSORS_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's metadata and tensors (raises one of :data:`SAFETENSORS_ERRORS`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return meta, load_file(str(path))


def read_checkpoint(path: str | os.PathLike) -> tuple[ModelInfo, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's model info, tensors and extra metadata without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        meta, tensors = read_safetensors(path)
    except SAFETENSORS_ERRORS as e:
        raise CheckpointError(f"{path} is not a readable deepcompress checkpoint (safetensors): {e}") from e
    if meta.get("format") != "deepcompress-checkpoint":
        raise CheckpointError(f"{path} is a safetensors file but not a deepcompress checkpoint "
                              "(no 'format: deepcompress-checkpoint' metadata)")
    try:  # (CheckpointError from parse_info is a ValueError too)
        info = parse_info(json.loads(meta["model"]), CheckpointError)
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint metadata: {e}") from e
    return info, tensors, extra


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint and load its weights (strictly)."""
    info, tensors, extra = read_checkpoint(path)
    # compare with the model's shapes on the meta device first: a mismatched (or absurdly large)
    # model is refused before anything is allocated
    try:
        reference = reference_state(info, DEFAULT_MAX_ELEMENTS, CheckpointError)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e
    expected = {k: tuple(t.shape) for k, t in reference.items()}
    stored = {k: tuple(t.shape) for k, t in tensors.items()}
    if expected != stored:
        key = sorted(set(expected) ^ set(stored)) or [k for k in expected if expected[k] != stored[k]]
        raise CheckpointError(f"{path}: weights do not match model {info.arch!r}: {key[0]!r} is "
                              f"{stored.get(key[0], 'missing')} in the file, {expected.get(key[0], 'absent')} "
                              "in the model")
    model = build_untrusted(info, CheckpointError)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match model {info.arch!r}: {e}") from e
    model.dc_extra = extra
    return model.to(device)
