"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions with a width multiplier α.

The resolution multiplier ρ of the paper is simply the input size (224ρ) given at training / inference
time; the network itself is size-agnostic (global average pooling before the classifier).
With α = 1 and 1000 classes it has 4.23 M parameters and 569 M mult-adds at 224×224
(the paper's 4.2 M / 569 M).
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelInfo, register_model

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# (output channels, stride) of the 13 depthwise-separable layers (paper Table 1)
_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """3×3 depthwise conv + BN + ReLU, then 1×1 pointwise conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pointwise = _conv_bn(cin, cout, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, alpha: float = 1.0, dropout: float = 0.2,
                 min_depth: int = 8) -> None:
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"alpha (width multiplier) must be > 0, got {alpha}")

        def width(c: int) -> int:
            return max(min_depth, int(c * alpha))

        cin = width(32)
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
        for cout, stride in _LAYERS:
            layers.append(DepthwiseSeparable(cin, width(cout), stride))
            cin = width(cout)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model("mobilenet-v1")
def mobilenet_v1(num_classes: int = 1000, pretrained: bool = False, alpha: float = 1.0,
                 dropout: float = 0.2) -> nn.Module:
    """MobileNet v1 with width multiplier ``alpha`` (no pretrained weights are shipped)."""
    if pretrained:
        raise ValueError("mobilenet-v1 has no pretrained weights available offline; train it from scratch "
                         "(drop --pretrained) or use mobilenet-v2 / efficientnet-lite0")
    model = MobileNetV1(num_classes, alpha=alpha, dropout=dropout)
    model.dc_info = ModelInfo(arch="mobilenet-v1", input_size=[3, 224, 224], mean=IMAGENET_MEAN,
                              std=IMAGENET_STD)
    model.dc_head = "classifier.1"
    return model
