"""NASNet-A Mobile (Zoph et al. 2018, "4 @ 1056"), following the Keras ``NASNetMobile`` definition.

Stem: 3×3/2 conv (32, valid padding) and two reduction cells (11 and 22 filters); then three stacks of
4 normal cells (44, 88, 176 filters) separated by reduction cells (88, 176). Stride-2 operations use
TensorFlow "SAME" padding (asymmetric when the input size is even), average pools exclude padding, as
in the original. 5,289,978 parameters (exactly Keras' trainable ones) and 563.6 M mult-adds at
224×224 with 1000 classes (paper: 5.3 M / 564 M).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelInfo, register_model

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# eps as in Keras; momentum is PyTorch's usual 0.1, not Keras' 0.9997 (= 0.0003 here), whose running
# statistics barely move in a short fine-tuning run and leave evaluation with near-initial statistics
_BN = {"eps": 1e-3, "momentum": 0.1}


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, **_BN)


def _tf_same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Pad ``x`` like TensorFlow's SAME padding for a k×k window with stride s."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    if ph or pw:
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return x


class SamePad(nn.Module):
    """TF SAME padding for the following stride-s, k×k operation (zeros)."""

    def __init__(self, k: int, s: int) -> None:
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tf_same_pad(x, self.k, self.s)


class SepConv(nn.Module):
    """ReLU, separable k×k (stride s), BN, ReLU, separable k×k, BN — the NASNet 'sep k×k' operation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.stride, self.k = stride, k
        pad = 0 if stride > 1 else k // 2
        self.dw1 = nn.Conv2d(cin, cin, k, stride, pad, groups=cin, bias=False)
        self.pw1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn1 = _bn(cout)
        self.dw2 = nn.Conv2d(cout, cout, k, 1, k // 2, groups=cout, bias=False)
        self.pw2 = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.stride > 1:
            x = _tf_same_pad(x, self.k, self.stride)
        x = F.relu(self.bn1(self.pw1(self.dw1(x))))
        return self.bn2(self.pw2(self.dw2(x)))


class ReLUConvBN(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(F.relu(x)))


class FactorizedReduce(nn.Module):
    """Halve the previous-previous input's resolution with two shifted 1×1/2 paths (Keras adjust)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, bias=False)
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        p1 = self.conv1(x[:, :, ::2, ::2])
        p2 = F.pad(x, [0, 1, 0, 1])[:, :, 1:, 1:]
        p2 = self.conv2(p2[:, :, ::2, ::2])
        return self.bn(torch.cat([p1, p2], 1))


class Adjust(nn.Module):
    """Bring the previous-previous input ``p`` to the current cell's resolution and width."""

    def __init__(self, cin_p: int, cout: int, reduce: bool) -> None:
        super().__init__()
        if reduce:
            self.op: nn.Module = FactorizedReduce(cin_p, cout)
        elif cin_p != cout:
            self.op = ReLUConvBN(cin_p, cout)
        else:
            self.op = nn.Identity()

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.op(p)


def _avg3(stride: int) -> nn.Module:
    # TF average pooling with SAME padding does not count the padded zeros
    return nn.AvgPool2d(3, stride, 1, count_include_pad=False)


class NormalCell(nn.Module):
    """NASNet-A normal cell: 5 blocks, output = concat(p, x1..x5) (6 × filters channels)."""

    def __init__(self, cin_p: int, cin: int, filters: int, reduce_p: bool) -> None:
        super().__init__()
        self.adjust = Adjust(cin_p, filters, reduce_p)
        self.squeeze = ReLUConvBN(cin, filters)
        self.b1_left, self.b1_right = SepConv(filters, filters, 5), SepConv(filters, filters, 3)
        self.b2_left, self.b2_right = SepConv(filters, filters, 5), SepConv(filters, filters, 3)
        self.b3_left = _avg3(1)
        self.b4_left, self.b4_right = _avg3(1), _avg3(1)
        self.b5_left = SepConv(filters, filters, 3)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        p = self.adjust(p)
        h = self.squeeze(x)
        x1 = self.b1_left(h) + self.b1_right(p)
        x2 = self.b2_left(p) + self.b2_right(p)
        x3 = self.b3_left(h) + p
        x4 = self.b4_left(p) + self.b4_right(p)
        x5 = self.b5_left(h) + h
        return torch.cat([p, x1, x2, x3, x4, x5], 1)


class ReductionCell(nn.Module):
    """NASNet-A reduction cell: halves the resolution; output = concat(x2..x5) (4 × filters channels)."""

    def __init__(self, cin_p: int, cin: int, filters: int, reduce_p: bool, adjust_p: bool = True) -> None:
        super().__init__()
        # the very first cell takes the stem output as both inputs and does not adjust it (Keras: p=None)
        self.adjust = Adjust(cin_p, filters, reduce_p) if adjust_p else nn.Identity()
        cp = filters if adjust_p else cin_p
        self.squeeze = ReLUConvBN(cin, filters)
        self.b1_left, self.b1_right = SepConv(filters, filters, 5, 2), SepConv(cp, filters, 7, 2)
        self.b2_right = SepConv(cp, filters, 7, 2)
        self.b3_right = SepConv(cp, filters, 5, 2)
        self.b4_left = _avg3(1)
        self.b5_left = SepConv(filters, filters, 3)
        self.pad = SamePad(3, 2)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        p = self.adjust(p)
        h = self.squeeze(x)
        h3 = self.pad(h)  # Keras pads explicitly, then pools with 'valid' (zeros count in the average)
        maxp = F.max_pool2d(h3, 3, 2)
        x1 = self.b1_left(h) + self.b1_right(p)
        x2 = maxp + self.b2_right(p)
        x3 = F.avg_pool2d(h3, 3, 2) + self.b3_right(p)
        x4 = self.b4_left(x1) + x2
        x5 = self.b5_left(x1) + maxp
        return torch.cat([x2, x3, x4, x5], 1)


class NASNetAMobile(nn.Module):
    def __init__(self, num_classes: int = 1000, num_blocks: int = 4, penultimate_filters: int = 1056,
                 stem_filters: int = 32, filter_multiplier: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        if penultimate_filters % 24:
            raise ValueError("penultimate_filters must be a multiple of 24")
        f = penultimate_filters // 24
        m = filter_multiplier
        self.stem = nn.Sequential(nn.Conv2d(3, stem_filters, 3, 2, 0, bias=False), _bn(stem_filters))
        cells: list[nn.Module] = []
        # channels of (previous-previous, previous) outputs and their resolutions (True = p is 2× larger)
        c_pp, c_p = stem_filters, stem_filters
        p_larger = False

        def add(cell_cls: type, filters: int, **kw: bool) -> None:
            nonlocal c_pp, c_p, p_larger
            cells.append(cell_cls(c_pp, c_p, filters, p_larger, **kw))
            out = filters * (4 if cell_cls is ReductionCell else 6)
            c_pp, c_p = c_p, out
            p_larger = cell_cls is ReductionCell

        add(ReductionCell, f // m**2, adjust_p=False)  # stem_1 (its p is the stem output itself)
        add(ReductionCell, f // m)  # stem_2
        for stage in range(3):
            if stage:
                add(ReductionCell, f * m**stage)
            for _ in range(num_blocks):
                add(NormalCell, f * m**stage)
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_p, num_classes)
        self.num_features = c_p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        p = x  # the first cell's previous-previous input is its own input (Keras: p=None → p=ip)
        for cell in self.cells:
            x, p = cell(x, p), x
        x = F.relu(x)
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


@register_model("nasnet-a-mobile")
def nasnet_a_mobile(num_classes: int = 1000, pretrained: bool = False, dropout: float = 0.5) -> nn.Module:
    """NASNet-A Mobile (4 @ 1056); no pretrained weights are shipped."""
    if pretrained:
        raise ValueError("nasnet-a-mobile has no pretrained weights available offline; train it from scratch "
                         "(drop --pretrained)")
    model = NASNetAMobile(num_classes, dropout=dropout)
    model.dc_info = ModelInfo(arch="nasnet-a-mobile", input_size=[3, 224, 224], mean=IMAGENET_MEAN,
                              std=IMAGENET_STD)
    model.dc_head = "classifier"
    return model
