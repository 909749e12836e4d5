"""scikit-learn's bundled 8×8 digits, upscaled to 28×28 so MNIST models run on them (no download)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from .mnist import to_tensor_dataset


def digits_arrays(seed: int = 0, test_fraction: float = 0.25) -> dict[str, np.ndarray]:
    """Train/test uint8 28×28 images and labels from the 1,797 bundled digits, split by ``seed``."""
    d = load_digits()
    imgs = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(imgs, size=(20, 20), mode="bilinear", align_corners=False)
    big = F.pad(big, (4, 4, 4, 4))  # MNIST digits sit in a 20×20 box centred in 28×28
    images = (big.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    labels = d.target.astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return {"train_images": images[train], "train_labels": labels[train],
            "test_images": images[test], "test_labels": labels[test]}


def load_digits_28(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) TensorDatasets in MNIST normalisation."""
    a = digits_arrays(seed)
    return to_tensor_dataset(a["train_images"], a["train_labels"]), to_tensor_dataset(
        a["test_images"], a["test_labels"])
