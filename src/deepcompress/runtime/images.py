"""Reading images and turning them into model inputs (PIL + numpy).

The preprocessing matches the model zoo's evaluation transform: resize the shorter side to
``round(size / 0.875)`` (bicubic), centre-crop ``size``, scale to [0, 1], normalise with the model's
mean and std. Photos are turned upright by their EXIF orientation first.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

CROP_FRACTION = 0.875


class ImageError(ValueError):
    """The data is not a readable image (``kind`` is "not-image", "corrupt" or "empty")."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def open_image(source: bytes | str | os.PathLike) -> Image.Image:
    """Open and fully decode an image from bytes or a path; raises :class:`ImageError` when it cannot."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("empty upload: no image data", "empty")
        fp = io.BytesIO(source)
    else:
        if os.path.isfile(source) and os.path.getsize(source) == 0:
            raise ImageError("empty file: no image data", "empty")
        fp = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                im.load()
                return ImageOps.exif_transpose(im)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except UnidentifiedImageError as e:
        raise ImageError("not an image (or an image format Pillow cannot read)", "not-image") from e
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageError(f"image too large to decode safely: {e}", "corrupt") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"corrupt or truncated image: {e}", "corrupt") from e


def _resize_shorter(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new = (size, new_long) if w <= h else (new_long, size)
    return img if new == (w, h) else img.resize(new, Image.Resampling.BICUBIC)


def to_input(img: Image.Image, input_size: Sequence[int], mean: Sequence[float] | None,
             std: Sequence[float] | None) -> np.ndarray:
    """A float32 batch of one, [1, C, H, W], from a PIL image for a model with ``input_size`` [C, H, W]."""
    if len(input_size) != 3 or input_size[0] not in (1, 3):
        raise ValueError(f"model input size {list(input_size)} is not an image ([1 or 3, H, W])")
    c, h, w = input_size
    try:
        img = img.convert("L" if c == 1 else "RGB")
    except ValueError as e:
        raise ImageError(f"unsupported image mode {img.mode}: {e}", "not-image") from e
    img = _resize_shorter(img, int(round(max(h, w) / CROP_FRACTION)))
    left, top = int(round((img.width - w) / 2.0)), int(round((img.height - h) / 2.0))
    img = img.crop((left, top, left + w, top + h))
    x = np.asarray(img, dtype=np.float32).reshape(h, w, c) / 255.0
    if mean is not None and std is not None:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
