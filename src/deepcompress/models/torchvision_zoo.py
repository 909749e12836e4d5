"""torchvision's mobile networks (and ResNet-50 as the large baseline), with a classifier for ``num_classes``.

``pretrained=True`` loads torchvision's ImageNet weights (``DEFAULT`` enum) and replaces the classifier
head. Weights come from the torch hub cache (``$TORCH_HOME/hub/checkpoints``); when they are not there
a download is tried once, with a short timeout and no retries, and an unreachable network gives a clear
error at once. Set ``DEEPCOMPRESS_OFFLINE=1`` to never touch the network.
"""

from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from ._registry import ModelInfo, register_model

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DOWNLOAD_TIMEOUT_S = 10.0

# registry name -> (torchvision builder name, dotted path of the classifier layer)
TORCHVISION_MODELS: dict[str, tuple[str, str]] = {
    "mobilenet-v2": ("mobilenet_v2", "classifier.1"),
    "mobilenet-v3-small": ("mobilenet_v3_small", "classifier.3"),
    "mobilenet-v3-large": ("mobilenet_v3_large", "classifier.3"),
    "squeezenet1_0": ("squeezenet1_0", "classifier.1"),
    "squeezenet1_1": ("squeezenet1_1", "classifier.1"),
    "efficientnet-b0": ("efficientnet_b0", "classifier.1"),
    "mnasnet0_5": ("mnasnet0_5", "classifier.1"),
    "mnasnet1_0": ("mnasnet1_0", "classifier.1"),
    "resnet50": ("resnet50", "fc"),
}


class MNASNet(torchvision.models.MNASNet):
    """torchvision's MNASNet, also loadable from plain state dicts without ``_metadata`` (safetensors
    files, copies): torchvision's own loader refuses those ("version should be set to 1 or 2")."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):  # noqa: ANN001
        if local_metadata.get("version") is None:
            local_metadata = {**local_metadata, "version": 2}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


class PretrainedUnavailable(ValueError):
    """Pretrained weights are neither cached nor downloadable."""


def weights_cache_path(tv_name: str) -> Path:
    """Where torch hub keeps the ``DEFAULT`` weights file of torchvision model ``tv_name``."""
    weights = torchvision.models.get_model_weights(tv_name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def pretrained_cached(name: str) -> bool:
    """True when the ImageNet weights of registry model ``name`` are already on disk."""
    return name in TORCHVISION_MODELS and weights_cache_path(TORCHVISION_MODELS[name][0]).is_file()


def _load_weights(tv_name: str) -> dict[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(tv_name).DEFAULT
    cached = weights_cache_path(tv_name)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    hint = (f"put the file at {cached} (or set TORCH_HOME), or train without --pretrained")
    if os.environ.get("DEEPCOMPRESS_OFFLINE", "").strip() not in ("", "0"):
        raise PretrainedUnavailable(f"{tv_name} ImageNet weights are not cached and DEEPCOMPRESS_OFFLINE "
                                    f"is set; {hint}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise PretrainedUnavailable(f"could not download {tv_name} ImageNet weights from {weights.url} "
                                    f"({e}); no network? {hint}") from e
    finally:
        socket.setdefaulttimeout(old)


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _replace_head(model: nn.Module, dotted: str, num_classes: int) -> None:
    old = model.get_submodule(dotted)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
        nn.init.normal_(new.weight, 0, 0.01)
        nn.init.zeros_(new.bias)
    elif isinstance(old, nn.Conv2d):  # SqueezeNet's final 1×1 conv
        new = nn.Conv2d(old.in_channels, num_classes, 1)
        nn.init.normal_(new.weight, 0, 0.01)
        nn.init.zeros_(new.bias)
        model.num_classes = num_classes
    else:  # pragma: no cover
        raise TypeError(f"cannot replace a {type(old).__name__} classifier")
    _set_module(model, dotted, new)


def build_torchvision(name: str, num_classes: int = 1000, pretrained: bool = False) -> nn.Module:
    tv_name, head = TORCHVISION_MODELS[name]
    builder = torchvision.models.get_model_builder(tv_name)
    model = builder(weights=None)  # ImageNet shape; the head is replaced below when needed
    if type(model) is torchvision.models.MNASNet:
        model.__class__ = MNASNet
    if pretrained:
        model.load_state_dict(_load_weights(tv_name))
    if num_classes != 1000:
        _replace_head(model, head, num_classes)
    model.dc_info = ModelInfo(arch=name, input_size=[3, 224, 224], mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model.dc_head = head
    return model


def _register(name: str) -> None:
    def builder(num_classes: int = 1000, pretrained: bool = False) -> nn.Module:
        return build_torchvision(name, num_classes=num_classes, pretrained=pretrained)

    builder.__name__ = name.replace("-", "_")
    builder.__doc__ = f"torchvision {TORCHVISION_MODELS[name][0]} with a {{num_classes}}-way classifier."
    register_model(name)(builder)


for _name in TORCHVISION_MODELS:
    _register(_name)
