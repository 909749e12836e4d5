"""The two LeNets of the Deep Compression paper's Table 1 (Caffe definitions)."""

from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelInfo, register_model

MNIST_MEAN, MNIST_STD = [0.1307], [0.3081]


class LeNet300100(nn.Module):
    """784-300-100-10 fully connected net with ReLU (266,610 parameters).

    ``dropout`` (training only; no parameters) regularises the hidden layers during (re)training.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe LeNet-5: conv5x5x20, pool, conv5x5x50, pool, fc 800→500, ReLU, fc 500→10 (431,080 parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = self.drop(torch.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def _mnist_info(name: str) -> ModelInfo:
    return ModelInfo(arch=name, class_names=[str(i) for i in range(10)], input_size=[1, 28, 28],
                     mean=MNIST_MEAN, std=MNIST_STD)


@register_model("lenet-300-100")
def lenet_300_100(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    model = LeNet300100(num_classes, dropout=dropout)
    model.dc_info = _mnist_info("lenet-300-100")
    return model


@register_model("lenet-5")
def lenet_5(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    model = LeNet5(num_classes, dropout=dropout)
    model.dc_info = _mnist_info("lenet-5")
    return model
