"""Image-classification data: folders (``<root>/<class>/<image>``) and CSV-labelled lists, with
deterministic stratified splits and the usual augmentations.

Split rules (``resolve_splits``), in order of precedence:

1. a split file (CSV ``image,split`` or JSON ``{"train": [...], "val": [...], "test": [...]}``, paths
   relative to the data root) fixes every image's split;
2. the *prefix convention* (``split_by_prefix="auto"``, the default): when every image's file name starts
   with ``train_`` or ``test_`` (as in ``beans_ibean``) and some start with ``test_``, the ``test_``
   images are the test split, and the validation split is carved (stratified, seeded) from the
   ``train_`` images;
   ``split_by_prefix="yes"`` demands the convention, ``"no"`` ignores it;
3. otherwise a seeded stratified split into train / val / test fractions.

Unreadable, truncated or non-image files are found when the data is scanned (every image is decoded
once), reported by path and skipped with a warning; with ``strict=True`` they raise :class:`DataError`.
A file that breaks later (changed on disk mid-run) is replaced by another sample with a warning, never
a crash mid-epoch (``strict`` raises instead).
"""

from __future__ import annotations

import csv
import json
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from .mnist import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = ("train", "val", "test")


class BadImageWarning(UserWarning):
    """An image file could not be read and was skipped."""


@dataclass
class Sample:
    path: Path
    label: int


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def is_image_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` has at least one class sub-folder holding a file with an image extension."""
    root = Path(root)
    if not root.is_dir():
        return False
    for sub in root.iterdir():
        if sub.is_dir() and _visible(sub):
            for f in sub.iterdir():
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    return True
    return False


def _check_image(path: Path, full: bool = True) -> str | None:
    """None when ``path`` decodes as an image, else the reason it does not."""
    try:
        with Image.open(path) as im:
            if full:
                im.load()
            else:
                im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _report(problems: list[tuple[Path, str]], strict: bool) -> None:
    if not problems:
        return
    lines = [f"{p}: {why}" for p, why in problems]
    if strict:
        raise DataError(f"{len(problems)} unreadable or non-image file(s):\n  " + "\n  ".join(lines))
    for line in lines:
        warnings.warn(f"skipping {line}", BadImageWarning, stacklevel=3)


def _filter_readable(candidates: list[tuple[Path, str]], strict: bool, check: str) -> list[tuple[Path, str]]:
    if check not in ("full", "header", "none"):
        raise ValueError(f"check must be full, header or none, got {check!r}")
    problems: list[tuple[Path, str]] = []
    good = []
    for path, cls in candidates:
        why = None
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            why = "not an image file (extension)"
        elif check != "none":
            why = _check_image(path, full=check == "full")
        if why is None:
            good.append((path, cls))
        else:
            problems.append((path, why))
    _report(problems, strict)
    return good


def scan_image_folder(root: str | os.PathLike, strict: bool = False,
                      check: str = "full") -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, class name) for every readable image under ``root/<class>/``, and the sorted class names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and _visible(d))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected <root>/<class>/<image>)")
    candidates = []
    for cls in classes:
        for f in sorted((root / cls).rglob("*")):
            if f.is_file() and _visible(f):
                candidates.append((f, cls))
    good = _filter_readable(candidates, strict, check)
    if not good:
        raise DataError(f"{root}: no readable images in its class folders")
    empty = sorted(set(classes) - {c for _, c in good})
    if empty:
        raise DataError(f"{root}: class folder(s) {empty} hold no readable images; add images or remove the "
                        "folder(s)")
    return good, classes


def read_label_csv(csv_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                   strict: bool = False, check: str = "full") -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, label) pairs from a CSV with ``image`` and ``label`` columns (paths relative to
    ``image_root``, default the CSV's folder) and the sorted label names."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"label CSV not found: {csv_path}")
    base = Path(image_root) if image_root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "image" not in fields or "label" not in fields:
            raise DataError(f"{csv_path}: needs 'image' and 'label' columns, found {reader.fieldnames}")
        rows = []
        for i, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row["image"] or not row["label"]:
                raise DataError(f"{csv_path}:{i}: empty image or label")
            p = Path(row["image"])
            rows.append((p if p.is_absolute() else base / p, row["label"]))
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    missing = [(p, "file not found") for p, _ in rows if not p.is_file()]
    _report(missing, strict)
    rows = [(p, c) for p, c in rows if p.is_file()]
    good = _filter_readable(rows, strict, check)
    if not good:
        raise DataError(f"{csv_path}: no readable images")
    return good, sorted({c for _, c in good})


# ----------------------------------------------------------------------------------------- transforms

def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                   crop_fraction: float = 0.875) -> T.Compose:
    """Resize the short side to ``image_size / crop_fraction``, centre-crop ``image_size``, normalise."""
    return T.Compose([
        T.Resize(int(round(image_size / crop_fraction)), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(list(mean), list(std)),
    ])


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                    scale: tuple[float, float] = (0.25, 1.0), jitter: float = 0.3) -> T.Compose:
    """Random resized crop, horizontal and vertical flips (leaves have no up), colour jitter, normalise."""
    ops: list = [
        T.RandomResizedCrop(image_size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
    ]
    if jitter > 0:
        ops.append(T.ColorJitter(jitter, jitter, jitter, min(0.05, jitter / 4)))
    ops += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(ops)


# ----------------------------------------------------------------------------------------- dataset

class ImageListDataset(Dataset):
    """(transformed image tensor, label) for a list of (path, label index); ``classes`` names the labels."""

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], transform=None,
                 strict: bool = False) -> None:
        self.samples = [(Path(p), int(y)) for p, y in samples]
        self.classes = list(classes)
        self.transform = transform
        self.strict = strict
        self.bad: set[int] = set()

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> Image.Image:
        path = self.samples[index][0]
        with Image.open(path) as im:
            return im.convert("RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.samples)):
            i = (index + attempt) % len(self.samples)
            if i in self.bad:
                continue
            try:
                img = self._load(i)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                if self.strict:
                    raise DataError(f"{self.samples[i][0]}: unreadable image ({e})") from e
                self.bad.add(i)
                warnings.warn(f"skipping {self.samples[i][0]}: {type(e).__name__}: {e}", BadImageWarning,
                              stacklevel=2)
                continue
            x = self.transform(img) if self.transform is not None else T.functional.to_tensor(img)
            return x, self.samples[i][1]
        raise DataError("no readable image left in the dataset")


# ----------------------------------------------------------------------------------------- splits

def stratified_split(labels: Sequence[int], fractions: dict[str, float],
                     seed: int = 0) -> dict[str, list[int]]:
    """Indices per split; each class is shuffled with ``seed`` and cut by ``fractions`` (e.g. val/test),
    the rest going to ``train``. Deterministic for a given seed and label order."""
    for name, frac in fractions.items():
        if name not in SPLITS or name == "train":
            raise ValueError(f"split fractions are for 'val'/'test', got {name!r}")
        if not 0 <= frac < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {frac}")
    if sum(fractions.values()) >= 1:
        raise ValueError("val + test fractions must leave something to train on")
    labels = np.asarray(labels)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    rng = np.random.RandomState(seed % 2**32)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for name in ("test", "val"):
            frac = fractions.get(name, 0.0)
            k = int(round(frac * len(idx)))
            if frac > 0 and k == 0 and len(idx) - start > 1:
                k = 1  # every class gets at least one image in a requested split
            out[name].extend(idx[start:start + k].tolist())
            start += k
        out["train"].extend(idx[start:].tolist())
    return {s: sorted(v) for s, v in out.items()}


def read_split_file(path: str | os.PathLike) -> dict[str, str]:
    """Relative image path → split name, from CSV (``image,split``) or JSON (``{split: [paths]}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    mapping: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected an object {{split: [image paths]}}")
        for split, items in data.items():
            for item in items:
                mapping[str(Path(item).as_posix())] = split
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or {"image", "split"} - {c.strip().lower() for c in reader.fieldnames}:
                raise DataError(f"{path}: needs 'image' and 'split' columns, found {reader.fieldnames}")
            for row in reader:
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
                mapping[Path(row["image"]).as_posix()] = row["split"]
    bad = sorted({s for s in mapping.values() if s not in SPLITS})
    if bad:
        raise DataError(f"{path}: unknown split name(s) {bad}; use {list(SPLITS)}")
    return mapping


def write_split_file(path: str | os.PathLike, root: str | os.PathLike,
                     splits: dict[str, list[tuple[Path, int]]]) -> None:
    """Record a split as CSV ``image,split,label`` (paths relative to ``root``) so that it can be reused."""
    import io

    from .._io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "split", "label"])
    for split in SPLITS:
        for p, y in splits.get(split, []):
            w.writerow([_rel(p, Path(root)), split, y])
    atomic_write_text(path, buf.getvalue())


def _rel(p: Path, root: Path) -> str:
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def _prefix_split(path: Path) -> str | None:
    name = path.name.lower()
    if name.startswith("test_"):
        return "test"
    if name.startswith("train_"):
        return "train"
    return None


@dataclass
class ImageData:
    """Samples per split (path, label index), the class names and where they came from."""

    root: Path
    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    rule: str  # how the split was made, for reports

    def dataset(self, split: str, transform=None, strict: bool = False) -> ImageListDataset:
        return ImageListDataset(self.splits.get(split, []), self.classes, transform, strict=strict)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: sum(1 for _, y in v if y == i) for i, c in enumerate(self.classes)}
                for s, v in self.splits.items()}


def load_image_data(data: str | os.PathLike, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                    seed: int = 0, split_file: str | os.PathLike | None = None, split_by_prefix: str = "auto",
                    image_root: str | os.PathLike | None = None, strict: bool = False,
                    check: str = "full") -> ImageData:
    """Scan an image folder or a label CSV and split it (see the module docstring for the rules)."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        items, classes = read_label_csv(data, image_root=image_root, strict=strict, check=check)
        root = Path(image_root) if image_root is not None else data.parent
    elif data.is_dir():
        items, classes = scan_image_folder(data, strict=strict, check=check)
        root = data
    else:
        raise FileNotFoundError(f"data not found (expected an image folder or a .csv): {data}")
    if split_by_prefix not in ("auto", "yes", "no"):
        raise ValueError(f"split_by_prefix must be auto, yes or no, got {split_by_prefix!r}")
    cidx = {c: i for i, c in enumerate(classes)}
    samples = [(p, cidx[c]) for p, c in items]
    labels = [y for _, y in samples]

    if split_file is not None:
        mapping = read_split_file(split_file)
        splits: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
        unassigned = []
        for p, y in samples:
            s = mapping.get(_rel(p, root))
            if s is None:
                unassigned.append(p)
            else:
                splits[s].append((p, y))
        if unassigned:
            warnings.warn(f"{len(unassigned)} image(s) not in split file {split_file} are left out "
                          f"(first: {unassigned[0]})", stacklevel=2)
        if not splits["train"]:
            raise DataError(f"split file {split_file} assigns no image found under {root} to 'train'")
        return ImageData(root, classes, splits, f"split file {split_file}")

    prefixes = [_prefix_split(p) for p, _ in samples]
    use_prefix = all(prefixes) and "test" in prefixes and "train" in prefixes
    if split_by_prefix == "yes" and not use_prefix:
        raise DataError(f"{data}: split_by_prefix=yes but not every image name starts with train_/test_ "
                        "(or there are no test_ images)")
    if split_by_prefix != "no" and use_prefix:
        train_idx = [i for i, s in enumerate(prefixes) if s == "train"]
        test_idx = [i for i, s in enumerate(prefixes) if s == "test"]
        sub = stratified_split([labels[i] for i in train_idx], {"val": val_fraction}, seed)
        splits = {"train": [samples[train_idx[i]] for i in sub["train"]],
                  "val": [samples[train_idx[i]] for i in sub["val"]],
                  "test": [samples[i] for i in test_idx]}
        return ImageData(root, classes, splits,
                         f"test = test_* files; val = {val_fraction:g} of train_* files "
                         f"(stratified, seed {seed})")

    idx = stratified_split(labels, {"val": val_fraction, "test": test_fraction}, seed)
    splits = {s: [samples[i] for i in v] for s, v in idx.items()}
    return ImageData(root, classes, splits,
                     f"stratified random split val={val_fraction:g} test={test_fraction:g} (seed {seed})")


def load_eval_folder(root: str | os.PathLike, class_names: list[str] | None, image_size: int,
                     mean: Sequence[float], std: Sequence[float], strict: bool = False) -> ImageListDataset:
    """Every readable image of ``root/<class>/`` with the evaluation transform; labels index
    ``class_names`` (the model's order; sorted folder names when None). ``.classes`` is that list."""
    items, folders = scan_image_folder(root, strict=strict)
    if class_names is None:
        class_names = folders
    class_names = list(class_names)
    cidx = {c: i for i, c in enumerate(class_names)}
    unknown = [f for f in folders if f not in cidx and any(c == f for _, c in items)]
    if unknown:
        raise DataError(f"{Path(root)}: class folder(s) {unknown} are not among the model's classes "
                        f"{class_names}")
    samples = [(p, cidx[c]) for p, c in items]
    return ImageListDataset(samples, class_names, eval_transform(image_size, mean, std), strict=strict)


def seed_worker(worker_id: int) -> None:  # pragma: no cover - runs in DataLoader workers
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
