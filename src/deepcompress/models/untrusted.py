"""Rebuilding a model from untrusted metadata (.dcz headers, checkpoint metadata) safely.

The model description is type-checked, the model is first built on PyTorch's ``meta`` device (no
memory is allocated, so absurd constructor arguments cost nothing) and its size is checked against a
limit before the real model is built. Every failure is raised as the caller's error class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ._registry import ModelInfo, create_model

_SCALAR = (str, int, float, bool, type(None))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_value(v: Any) -> bool:
    """True for a JSON scalar or a flat list of them."""
    return isinstance(v, _SCALAR) or isinstance(v, list) and all(isinstance(x, _SCALAR) for x in v)


def parse_info(d: Any, error: type[ValueError]) -> ModelInfo:
    """A :class:`ModelInfo` from an untrusted mapping, with the type of every field checked."""
    try:
        info = ModelInfo.from_dict(d)
        kwargs = d.get("kwargs") or {}
    except (TypeError, ValueError) as e:
        raise error(f"model description: {e}") from e
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and _json_value(v) for k, v in kwargs.items()):
        raise error("model kwargs must be a mapping of names to JSON scalars or flat lists of them")
    if "pretrained" in info.kwargs:
        raise error("model kwargs may not ask for pretrained weights (the file holds the weights)")
    if info.class_names is not None and not (
            isinstance(info.class_names, list) and all(isinstance(c, str) for c in info.class_names)):
        raise error("model class_names must be a list of strings")
    if info.input_size is not None and not (
            isinstance(info.input_size, list) and 1 <= len(info.input_size) <= 4
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 65536 for n in info.input_size)):
        raise error("model input_size must be a list of 1 to 4 integers in 1..65536")
    for key in ("mean", "std"):
        value = getattr(info, key)
        if value is not None and not (isinstance(value, list) and value and all(_is_number(v) for v in value)):
            raise error(f"model {key} must be a non-empty list of finite numbers")
    if info.std is not None and any(v == 0 for v in info.std):
        raise error("model std must not contain zeros")
    return info


def reference_state(info: ModelInfo, max_elements: int, error: type[ValueError]) -> dict[str, torch.Tensor]:
    """The state_dict of the described model as meta tensors (shapes and dtypes, no data).

    Raises ``error`` when the model cannot be built from ``info`` or holds more than ``max_elements``
    elements.
    """
    try:
        with torch.device("meta"):
            state = create_model(info.arch, **info.kwargs).state_dict()
    except Exception as e:  # any failure of a builder on untrusted arguments is the file's fault
        raise error(f"cannot build model {info.arch!r} with arguments {info.kwargs}: "
                    f"{type(e).__name__}: {e}") from e
    total = sum(t.numel() for t in state.values())
    if total > max_elements:
        raise error(f"model {info.arch!r} with arguments {info.kwargs} has {total:,} elements, "
                    f"over the limit of {max_elements:,}")
    return state


def build_untrusted(info: ModelInfo, error: type[ValueError]) -> nn.Module:
    """Build the described model (randomly initialised); call :func:`reference_state` first to vet it."""
    try:
        model = create_model(info.arch, **info.kwargs)
    except Exception as e:
        raise error(f"cannot build model {info.arch!r}: {type(e).__name__}: {e}") from e
    model.dc_info = info
    return model
