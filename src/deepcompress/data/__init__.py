"""Datasets: MNIST IDX folders, scikit-learn's bundled digits, and image folders."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from .digits import load_digits_28
from .mnist import DataError, is_mnist_folder, load_mnist, load_mnist_arrays, read_idx

__all__ = ["DataError", "is_mnist_folder", "load_digits_28", "load_mnist", "load_mnist_arrays", "open_eval_data",
           "open_train_test", "read_idx"]

DIGITS = "digits"


def open_train_test(spec: str | os.PathLike, download: bool = False) -> tuple[Dataset, Dataset]:
    """(train, test) for an MNIST IDX folder, or scikit-learn's bundled digits when ``spec`` is "digits"."""
    if str(spec) == DIGITS:
        return load_digits_28()
    path = Path(spec)
    if not path.exists() and not download:
        raise DataError(f"data folder not found: {path}")
    return load_mnist(path, download=download)


def open_eval_data(spec: str | os.PathLike, class_names: list[str] | None = None,
                   input_size: list[int] | None = None, mean: list[float] | None = None,
                   std: list[float] | None = None) -> Dataset:
    """The evaluation set at ``spec``: the MNIST test split of an IDX folder, the held-out digits, or
    every image of an image folder (``<root>/<class>/<image>``), told apart automatically."""
    if str(spec) == DIGITS:
        return load_digits_28()[1]
    path = Path(spec)
    if not path.is_dir():
        raise DataError(f"data folder not found: {path}")
    if is_mnist_folder(path):
        return load_mnist(path)[1]
    from . import images  # image folders (the crop-disease data)

    if not images.is_image_folder(path):
        raise DataError(f"{path} is neither an MNIST IDX folder nor an image folder (<root>/<class>/<image>)")
    size = int(input_size[-1]) if input_size else 224
    return images.load_eval_folder(path, class_names, size, mean or [0.485, 0.456, 0.406],
                                   std or [0.229, 0.224, 0.225])
