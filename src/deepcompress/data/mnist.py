"""MNIST from the four standard IDX files (raw or .gz), validated."""

from __future__ import annotations

import gzip
import os
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED = {"train_images": (2051, 60000), "train_labels": (2049, 60000),
            "test_images": (2051, 10000), "test_labels": (2049, 10000)}
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]
MEAN, STD = 0.1307, 0.3081


class DataError(ValueError):
    """A dataset file or folder is missing or malformed."""


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def is_mnist_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` holds the four MNIST IDX files."""
    root = Path(root)
    return all(_find(root, stem) is not None for stem in FILES.values())


def read_idx(path: str | os.PathLike, magic: int | None = None, count: int | None = None) -> np.ndarray:
    """Read one IDX file (uint8 data), checking magic number, count and byte length."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if len(raw) < 8:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic not in (2049, 2051) or (magic is not None and found_magic != magic):
        raise DataError(f"{path}: bad IDX magic number {found_magic} (expected {magic or '2049/2051'})")
    ndim = found_magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if count is not None and dims[0] != count:
        raise DataError(f"{path}: holds {dims[0]} items, expected {count}")
    expected_len = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected_len:
        raise DataError(f"{path}: {len(raw)} bytes, expected {expected_len} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def download_mnist(root: str | os.PathLike) -> None:
    """Fetch the four IDX .gz files from a public mirror into ``root`` (needs the internet)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stem in FILES.values():
        if _find(root, stem):
            continue
        errors = []
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=30) as r:
                    data = r.read()
                tmp = root / (stem + ".gz.part")
                tmp.write_bytes(data)
                os.replace(tmp, root / (stem + ".gz"))
                break
            except OSError as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(f"could not download {stem}.gz: " + "; ".join(errors))


def load_mnist_arrays(root: str | os.PathLike, download: bool = False) -> dict[str, np.ndarray]:
    """The four MNIST arrays (uint8 images N×28×28, uint8 labels N), validated."""
    root = Path(root)
    if not is_mnist_folder(root):
        if download:
            download_mnist(root)
        else:
            missing = [s for s in FILES.values() if _find(root, s) is None]
            raise DataError(f"{root}: not an MNIST folder, missing {', '.join(missing)} (raw or .gz)")
    out = {}
    for key, stem in FILES.items():
        magic, count = EXPECTED[key]
        out[key] = read_idx(_find(root, stem), magic, count)
    for split in ("train", "test"):
        if out[f"{split}_images"].shape[1:] != (28, 28):
            raise DataError(f"{root}: {split} images are {out[f'{split}_images'].shape[1:]}, expected 28x28")
        if out[f"{split}_labels"].max() > 9:
            raise DataError(f"{root}: {split} labels outside 0..9")
    return out


def to_tensor_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """uint8 N×28×28 images → normalised float N×1×28×28 tensors with int64 labels."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - MEAN) / STD
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def load_mnist(root: str | os.PathLike, download: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) TensorDatasets of normalised MNIST."""
    a = load_mnist_arrays(root, download)
    return to_tensor_dataset(a["train_images"], a["train_labels"]), to_tensor_dataset(
        a["test_images"], a["test_labels"])
