"""The .dcz size against general-purpose compressors on the same pruned, quantized model.

The decoded model is laid out densely twice: every tensor as float32, and every shared tensor as its
cluster index (0 = zero, 1..k; uint8, or uint16 when k = 256) plus its float32 codebook, other tensors
as float32. Each layout is compressed with gzip, bz2, xz (and zstd when ``zstandard`` is installed) at
their strongest settings.

    PYTHONPATH=src python benchmarks/bench_compressors.py --dcz /work/runs/l300_a/lenet-300-100.dcz ...
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, lenet_files, parser  # noqa: E402

from deepcompress.coding.sparse import choose_index_bits  # noqa: E402
from deepcompress.format.dcz import SharedTensor, encode_dcz, read_dcz  # noqa: E402

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip -9": lambda b: gzip.compress(b, 9, mtime=0),
    "bz2 -9": lambda b: bz2.compress(b, 9),
    "xz -9e": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
}
try:
    import zstandard

    COMPRESSORS["zstd -22"] = zstandard.ZstdCompressor(level=22).compress
except ImportError:  # pragma: no cover - optional
    pass


def layouts(path: Path) -> tuple[int, int, dict[str, bytes]]:
    """The file size, its size re-encoded with index widths chosen per layer ("auto"), and the two
    dense layouts of its decoded model."""
    dcz = read_dcz(path)
    shared = {r.name for r in dcz.records if r.encoding == "shared"}
    fp32, idx, specs = [], [], {}
    for name, arr in dcz.tensors.items():
        fp32.append(np.asarray(arr, dtype="<f4").tobytes())
        if name in shared:
            flat = arr.ravel()
            codebook, inverse = np.unique(flat[flat != 0], return_inverse=True)
            index = np.zeros(flat.size, dtype=np.uint8 if codebook.size < 256 else np.uint16)
            index[flat != 0] = inverse.ravel() + 1
            positions = np.flatnonzero(index)
            bits = choose_index_bits(positions, np.bincount(inverse.ravel(), minlength=codebook.size))
            specs[name] = SharedTensor(codebook.astype(np.float32), index.astype(np.int64), bits)
            idx += [codebook.astype("<f4").tobytes(), index.astype(index.dtype.newbyteorder("<")).tobytes()]
        else:
            idx.append(np.asarray(arr, dtype="<f4").tobytes())
    auto = len(encode_dcz(dcz.header, dcz.tensors, specs)[0])
    return dcz.size, auto, {"dense fp32": b"".join(fp32), "uint8 indices": b"".join(idx)}


def measure(path: Path, limit: int | None = None) -> dict[str, Any]:
    """Sizes of one file, its re-encoding and the compressed layouts (each cut to ``limit`` bytes if given)."""
    size, auto, blobs = layouts(path)
    blobs = {k: v[:limit] for k, v in blobs.items()}
    sizes = {f"{c} ({layout})": len(fn(blob)) for layout, blob in blobs.items() for c, fn in COMPRESSORS.items()}
    best = min(sizes, key=sizes.__getitem__)
    return {"file": str(path), "dcz_bytes": size, "raw_bytes": {k: len(v) for k, v in blobs.items()},
            "compressed_bytes": sizes, "best": best, "dcz_over_best": size / sizes[best],
            "dcz_auto_index_bits_bytes": auto, "dcz_auto_over_best": auto / sizes[best]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--dcz", type=Path, nargs="*", help="compressed models (default: LeNets built on the fly)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/deepcompress-bench"))
    p.add_argument("--bar", type=float, default=0.8)
    args = p.parse_args(argv)
    files = lenet_files(args.dcz, args.smoke, args.cache)
    models = {name: measure(path, 1 << 15 if args.smoke else None) for name, path in files.items()}
    worst = max(m["dcz_over_best"] for m in models.values())
    return finish("compressors", {"bar": f".dcz <= {args.bar} x the best general-purpose compressor",
                                  "worst": worst, "met": worst <= args.bar, "models": models}, args.out)


if __name__ == "__main__":
    main()
