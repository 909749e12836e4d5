"""A small name → builder registry, in the style of torchvision's ``get_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


@dataclass
class ModelInfo:
    """What is needed to rebuild a model and feed it: stored in checkpoints and .dcz headers."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    input_size: list[int] | None = None  # [C, H, W] or [features]
    mean: list[float] | None = None
    std: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "kwargs": self.kwargs,
            "class_names": self.class_names,
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        if not isinstance(d, dict) or not isinstance(d.get("arch"), str):
            raise ValueError("model info must be a mapping with a string 'arch'")
        return cls(
            arch=d["arch"],
            kwargs=dict(d.get("kwargs") or {}),
            class_names=d.get("class_names"),
            input_size=d.get("input_size"),
            mean=d.get("mean"),
            std=d.get("std"),
        )


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder function under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of every registered architecture."""
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; the result carries ``model.dc_info`` (a :class:`ModelInfo`).

    ``fold_bn=True`` (any model) builds the BatchNorm-folded structure of :mod:`.fold_bn`.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    fold = kwargs.get("fold_bn", False)
    if not isinstance(fold, bool):
        raise ValueError(f"fold_bn must be true or false, got {fold!r}")
    unknown = [k for k in kwargs if k != "fold_bn" and k not in params and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())]
    if unknown:
        raise ValueError(f"model {name!r} takes no argument(s) {unknown}; it takes {list(params)}")
    model = builder(**{k: v for k, v in kwargs.items() if k != "fold_bn"})
    info = getattr(model, "dc_info", None) or ModelInfo(arch=name)
    info.arch = name
    # pretrained only matters when building from scratch; a rebuilt model gets its weights from the file
    info.kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained", "fold_bn")}
    model.dc_info = info
    if fold:
        from .fold_bn import fold_structure

        fold_structure(model)
    return model


def model_info(model: nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` of a model built by :func:`create_model`."""
    info = getattr(model, "dc_info", None)
    if info is None:
        raise ValueError("model was not built by deepcompress.models.create_model; it has no dc_info")
    return info
