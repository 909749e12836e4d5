"""Shared fixtures: where the real datasets live, and a tiny registered image model compressed to a .dcz."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deepcompress.export import embed_graph
from deepcompress.format.model import save_model
from deepcompress.models import ModelInfo, create_model, list_models, register_model
from deepcompress.quantize import share_layer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, skipping the test with a reason when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data lives beside the checkout in ../shared/data)")
    return path


TINY = "test-tinynet"
COLOURS = ["red", "green", "blue"]


class TinyNet(nn.Module):
    """Two convolutions and a two-layer fully connected classifier, for 3×32×32 images."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Dropout(0.2),
                                        nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


if TINY not in list_models():
    @register_model(TINY)
    def tinynet(num_classes: int = 3) -> nn.Module:
        model = TinyNet(num_classes)
        model.dc_info = ModelInfo(arch=TINY, input_size=[3, 32, 32], mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
        return model


def colour_images(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB images [N, 40, 48, 3] whose dominant colour is the class, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(COLOURS)), n_per_class)
    images = rng.integers(0, 90, size=(labels.size, 40, 48, 3))
    for i, c in enumerate(labels):
        y, x = rng.integers(0, 20), rng.integers(0, 24)
        images[i, y:y + 20, x:x + 24, c] += 150
    return images.clip(0, 255).astype(np.uint8), labels


def compress_tiny(path: Path, x: torch.Tensor, y: torch.Tensor, class_names: list[str], steps: int = 60) -> Path:
    """Train TinyNet on (x, y) for a few steps, prune 70 %, share weights (4 bits), write a .dcz with graph."""
    torch.manual_seed(0)
    model = create_model(TINY, num_classes=len(class_names))
    model.dc_info.class_names = class_names
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend with the rest of the machine
    try:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight[m.weight.abs() < m.weight.abs().flatten().quantile(0.7)] = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            share_layer(m, bits=4)
    save_model(model, path)
    embed_graph(path)
    return path


@pytest.fixture(scope="session")
def colour_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two JPEG and one PNG test photo per colour class."""
    folder = tmp_path_factory.mktemp("photos")
    images, labels = colour_images(3, seed=1)
    paths = []
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        p = folder / f"{COLOURS[c]}_{i}.{'png' if i % 3 == 2 else 'jpg'}"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_dcz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained, pruned, weight-shared TinyNet on coloured images, stored with its graph."""
    from deepcompress.runtime import to_input

    images, labels = colour_images(24)
    x = np.concatenate([to_input(Image.fromarray(im), [3, 32, 32], [0.5] * 3, [0.25] * 3) for im in images])
    return compress_tiny(tmp_path_factory.mktemp("tiny") / "tiny.dcz", torch.from_numpy(x),
                         torch.from_numpy(labels), COLOURS)


@pytest.fixture(scope="session")
def make_tiny() -> Callable[..., Path]:
    return compress_tiny
