"""nn.Module ⇄ .dcz: save a (pruned, weight-shared) model and rebuild it from the file."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..coding.sparse import choose_index_bits
from ..errors import FormatError
from ..models import model_info
from ..models.untrusted import build_untrusted, parse_info, reference_state
from ..prune import layer_kind, resolve_layer_setting
from ..quantize.sharing import is_shared, shared_state
from .dcz import DEFAULT_MAX_ELEMENTS, DczFile, ExpectShapes, RecordInfo, SharedTensor, read_dcz, write_dcz

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def round_for_storage(model: nn.Module, raw_dtype: str = "float32", codebook_dtype: str = "float32") -> None:
    """Round floating tensors in place to the precision they will be stored in, so the in-memory model
    equals the decoded one bit for bit."""
    for name, dt in (("raw_dtype", raw_dtype), ("codebook_dtype", codebook_dtype)):
        if dt not in STORAGE_DTYPES:
            raise ValueError(f"{name} must be float32 or float16, got {dt!r}")
    with torch.no_grad():
        for module in model.modules():
            if is_shared(module) and codebook_dtype == "float16":
                module.weight_codebook.copy_(module.weight_codebook.half().float())
            if raw_dtype == "float16":
                tensors = list(module._parameters.items()) + list(module._buffers.items())
                for key, t in tensors:
                    if t is not None and t.is_floating_point() and key not in ("weight_codebook",):
                        t.copy_(t.half().float())


def _index_bits_for(model: nn.Module, key: str, setting: Any, index: np.ndarray, k: int) -> int:
    module = model.get_submodule(key.rpartition(".")[0])
    value = resolve_layer_setting(setting, key.rpartition(".")[0], module)
    if value is None:
        value = 5 if layer_kind(module) == "fc" else 8
    if value == "auto":
        positions = np.flatnonzero(index)
        return choose_index_bits(positions, np.bincount(index[positions] - 1, minlength=k))
    if not isinstance(value, int) or not 1 <= value <= 16:
        raise ValueError(f"index bits for {key} must be an integer in 1..16 or 'auto', got {value!r}")
    return value


def _constant_spec(values: np.ndarray) -> SharedTensor | None:
    """A tensor holding one value everywhere (e.g. BatchNorm statistics folded into its scale and shift)
    as a one-entry codebook whose index costs no bits; None for any other tensor."""
    flat = values.reshape(-1)
    if flat.size < 2 or not np.all(flat == flat[0]) or not np.isfinite(flat[0]):
        return None
    v = np.float32(flat[0])
    if v != flat[0]:  # not exact in a float32 codebook
        return None
    index = np.zeros(flat.size, dtype=np.int64) if v == 0 else np.ones(flat.size, dtype=np.int64)
    return SharedTensor(np.array([v], dtype=np.float32), index, 8)


def save_model(model: nn.Module, path: str | os.PathLike, index_bits: Any = None, raw_dtype: str = "float32",
               codebook_dtype: str = "float32", meta: dict[str, Any] | None = None) -> list[RecordInfo]:
    """Write ``model`` to a .dcz file.

    Weight-shared layers are stored as codebook + Huffman-coded indices and gaps; ``index_bits`` is a
    per-layer setting (int, "auto", or a mapping by layer name / kind, default conv 8, fc 5). All other
    tensors are stored raw in ``raw_dtype`` (floating point) or their own integer type, except that a
    floating tensor holding a single value everywhere is stored as a one-entry codebook (a few bytes).
    Call :func:`round_for_storage` first when storing anything in float16.
    """
    info = model_info(model)
    plain, shared = shared_state(model)
    tensors: dict[str, np.ndarray] = {}
    specs: dict[str, SharedTensor] = {}
    for key, t in plain.items():
        if key in shared:
            codebook, index = shared[key]
            bits = _index_bits_for(model, key, index_bits, index, codebook.size)
            specs[key] = SharedTensor(codebook.astype(codebook_dtype), index, bits)
            tensors[key] = t.numpy()
        elif t.is_floating_point():
            tensors[key] = t.to(STORAGE_DTYPES[raw_dtype]).numpy()
            constant = _constant_spec(tensors[key])
            if constant is not None:
                specs[key] = constant
        else:
            tensors[key] = t.numpy()
    header = {"format": "deepcompress.dcz", "producer": f"deepcompress {__version__}",
              "model": info.to_dict(), "meta": meta or {}}
    return write_dcz(path, header, tensors, specs)


def model_shapes(max_elements: int) -> ExpectShapes:
    """An ``expect`` hook for :func:`read_dcz`/:func:`decode_dcz`: the state_dict shapes of the model that
    the header describes (FormatError when it cannot be built or exceeds ``max_elements``)."""

    def expect(header: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        info = parse_info(header.get("model"), FormatError)
        return {k: tuple(t.shape) for k, t in reference_state(info, max_elements, FormatError).items()}

    return expect


def read_model_dcz(path: str | os.PathLike, max_elements: int = DEFAULT_MAX_ELEMENTS) -> DczFile:
    """Read a .dcz, refusing (before decoding) any tensor the model in its header does not have."""
    return read_dcz(path, max_elements, model_shapes(max_elements))


def model_from_dcz(dcz: DczFile, device: str | torch.device = "cpu",
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> nn.Module:
    """Rebuild the model described by a decoded .dcz; FormatError when the header or tensors do not fit."""
    try:
        info = parse_info(dcz.header.get("model"), FormatError)
    except FormatError as e:
        raise FormatError(f"header has no valid 'model' entry: {e}") from e
    reference = reference_state(info, max_elements, FormatError)
    for key, arr in dcz.tensors.items():
        if key not in reference:
            raise FormatError(f"tensor {key!r} does not belong to model {info.arch!r}")
        ref = reference[key]
        if tuple(arr.shape) != tuple(ref.shape):
            raise FormatError(f"tensor {key!r} has shape {tuple(arr.shape)}, model {info.arch!r} expects "
                              f"{tuple(ref.shape)}")
        if (arr.dtype.kind == "f") != ref.dtype.is_floating_point:
            raise FormatError(f"tensor {key!r} is stored as {arr.dtype}, model {info.arch!r} expects {ref.dtype}")
    missing = sorted(set(reference) - set(dcz.tensors))
    if missing:
        raise FormatError(f"file lacks tensors of model {info.arch!r}: {', '.join(missing[:5])}")
    model = build_untrusted(info, FormatError)
    model.dc_meta = dcz.header.get("meta", {})
    state = OrderedDict((key, torch.from_numpy(np.array(arr)).to(reference[key].dtype))
                        for key, arr in dcz.tensors.items())
    state._metadata = getattr(model.state_dict(), "_metadata", None)  # module versions (e.g. torchvision MNASNet)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise FormatError(f"tensors do not fit model {info.arch!r}: {e}") from e
    return model.to(device).eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> nn.Module:
    """Rebuild an ``nn.Module`` from a .dcz file (weights exactly as stored)."""
    return model_from_dcz(read_model_dcz(path, max_elements), device, max_elements)
