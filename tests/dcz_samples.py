"""Small real .dcz files (no training) and the helpers the format tests and the fuzz campaign share."""

from __future__ import annotations

import struct
import zlib

import torch

from deepcompress.format.dcz import MAGIC
from deepcompress.format.model import save_model
from deepcompress.models import create_model
from deepcompress.prune import apply_mask, magnitude_mask, prunable_layers, remove_masks
from deepcompress.quantize import share_layer


def compressed_model(arch: str = "lenet-5", sparsity: float = 0.9, bits: int = 4, seed: int = 0,
                     shared_layers: int | None = None) -> torch.nn.Module:
    """A randomly initialised model, magnitude-pruned and weight-shared in its first ``shared_layers``
    prunable layers (all by default); the rest stay raw."""
    torch.manual_seed(seed)
    model = create_model(arch)
    layers = list(prunable_layers(model).values())[:shared_layers]
    for module in layers:
        mask = magnitude_mask(module.weight.detach(), torch.ones_like(module.weight), sparsity=sparsity)
        apply_mask(module, mask)
    remove_masks(model)
    for module in layers:
        share_layer(module, bits, max_iter=20)
    return model


def dcz_bytes(model: torch.nn.Module, tmp_path, **save_kwargs) -> bytes:
    """The .dcz bytes of ``model`` (written through :func:`save_model`)."""
    path = tmp_path / "m.dcz"
    save_model(model, path, **save_kwargs)
    return path.read_bytes()


def with_crc(body: bytes) -> bytes:
    """``body`` (a file without its CRC trailer) closed with a valid CRC-32."""
    return body + struct.pack("<I", zlib.crc32(body))


def recrc(data: bytes) -> bytes:
    """A mutated file with its CRC trailer recomputed, so the parser sees past the checksum."""
    return with_crc(data[:-4])


def sections(data: bytes) -> list[tuple[int, str]]:
    """(offset, field) of every field of a valid .dcz, in file order, ending with the CRC and the end.

    Walks the layout of docs/format.md directly (it does not use the reader).
    """
    out: list[tuple[int, str]] = [(0, "magic"), (8, "version"), (12, "header length")]
    (hlen,) = struct.unpack_from("<I", data, 12)
    pos = 16
    out.append((pos, "header"))
    pos += hlen
    out.append((pos, "tensor count"))
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4

    def stream(pos: int, what: str) -> int:
        out.append((pos, f"{what} table size"))
        (m,) = struct.unpack_from("<I", data, pos)
        out.append((pos + 4, f"{what} code lengths"))
        pos += 4 + (m + 1) // 2
        out.append((pos, f"{what} bit count"))
        (nbits,) = struct.unpack_from("<Q", data, pos)
        out.append((pos + 8, f"{what} bitstream"))
        return pos + 8 + (nbits + 7) // 8

    for _ in range(count):
        out.append((pos, "name length"))
        (nlen,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2:pos + 2 + nlen].decode()
        out.append((pos + 2, f"{name}: name"))
        pos += 2 + nlen
        enc, ndim = data[pos], data[pos + 1]
        out.append((pos, f"{name}: encoding"))
        out.append((pos + 1, f"{name}: ndim"))
        shape = struct.unpack_from(f"<{ndim}I", data, pos + 2)
        out.append((pos + 2, f"{name}: shape"))
        pos += 2 + 4 * ndim
        numel = 1
        for n in shape:
            numel *= n
        if enc == 0:
            out.append((pos, f"{name}: dtype"))
            size = {0: 4, 1: 2, 2: 8, 3: 4, 4: 1}[data[pos]]
            out.append((pos + 1, f"{name}: raw data"))
            pos += 1 + size * numel
            continue
        out.append((pos, f"{name}: codebook dtype"))
        (k,) = struct.unpack_from("<I", data, pos + 1)
        out.append((pos + 1, f"{name}: codebook size"))
        out.append((pos + 5, f"{name}: codebook"))
        pos += 5 + k * (4 if data[pos] == 0 else 2)
        out.append((pos, f"{name}: index bits"))
        out.append((pos + 1, f"{name}: entry count"))
        pos = stream(pos + 5, f"{name}: weights")
        pos = stream(pos, f"{name}: gaps")
    out.append((pos, "crc"))
    out.append((pos + 4, "end"))
    assert pos + 4 == len(data) and data[:8] == MAGIC
    return out
