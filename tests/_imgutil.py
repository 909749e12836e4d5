"""Tiny synthetic image folders for the data / training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"healthy": (40, 170, 40), "rust": (170, 80, 30), "spot": (200, 200, 60)}


def make_image_folder(root: Path, n_per_class: int = 6, size: int = 24, classes=("healthy", "rust"),
                      prefix: str = "", seed: int = 0) -> Path:
    """``root/<class>/<prefix><i>.png|.jpg`` with class-coloured noisy images (alternating PNG / JPEG)."""
    rng = np.random.RandomState(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = (np.array(COLOURS[c]) + rng.randint(-40, 40, (size, size, 3))).clip(0, 255).astype(np.uint8)
            ext = ".png" if i % 2 else ".jpg"
            Image.fromarray(a).save(root / c / f"{prefix}{i:03d}{ext}")
    return root
