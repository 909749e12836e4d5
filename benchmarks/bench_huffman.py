"""Huffman codec throughput against the pure-Python ``dahuffman``, and .dcz load time against dense checkpoints.

Codec: 10 M symbols of a 33-symbol alphabet shaped like a weight-index stream (a Gaussian over 32
clusters plus a rare filler symbol), encoded and decoded by ``deepcompress.coding.huffman`` and by
``dahuffman`` (from the same symbol frequencies); symbols/s, best of ``--repeats`` (dahuffman once).

Loading: each .dcz is decoded (``read_dcz``: all tensors as numpy) and rebuilt as a model
(``load_model``), against ``torch.load`` and ``safetensors`` of its decoded weights saved densely.

    PYTHONPATH=src python benchmarks/bench_huffman.py --dcz /work/runs/l300_a/lenet-300-100.dcz ...
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_seconds, finish, lenet_files, parser  # noqa: E402

from deepcompress.coding import huffman  # noqa: E402
from deepcompress.format.dcz import read_dcz  # noqa: E402
from deepcompress.format.model import load_model  # noqa: E402


def index_stream(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` symbols 0..32 distributed like a 5-bit weight-index stream with fillers (symbol 32)."""
    syms = np.clip(np.round(rng.normal(15.5, 6.0, n)), 0, 31).astype(np.int64)
    syms[rng.random(n) < 0.01] = 32
    return syms


def codec(symbols: np.ndarray, repeats: int) -> dict[str, Any]:
    """Encode/decode symbols/s of ours and dahuffman on the same symbols."""
    from dahuffman import HuffmanCodec

    n = symbols.size
    counts = np.bincount(symbols)
    lengths = huffman.code_lengths(counts)
    enc_s = best_seconds(lambda: huffman.encode(symbols, lengths), repeats)
    data, nbits = huffman.encode(symbols, lengths)
    dec_s = best_seconds(lambda: huffman.decode(data, lengths, n, nbits), repeats)
    assert np.array_equal(huffman.decode(data, lengths, n, nbits), symbols)
    dh = HuffmanCodec.from_frequencies({int(s): int(c) for s, c in enumerate(counts) if c})
    as_list = symbols.tolist()
    t = time.perf_counter()
    dh_data = dh.encode(as_list)
    dh_enc_s = time.perf_counter() - t
    t = time.perf_counter()
    dh_out = dh.decode(dh_data)
    dh_dec_s = time.perf_counter() - t
    assert dh_out == as_list
    return {"symbols": n, "ours_bytes": len(data), "dahuffman_bytes": len(dh_data),
            "ours_encode_sym_per_s": n / enc_s, "ours_decode_sym_per_s": n / dec_s,
            "dahuffman_encode_sym_per_s": n / dh_enc_s, "dahuffman_decode_sym_per_s": n / dh_dec_s,
            "encode_speedup": dh_enc_s / enc_s, "decode_speedup": dh_dec_s / dec_s}


def loading(path: Path, repeats: int) -> dict[str, Any]:
    """Seconds to decode/rebuild the .dcz vs loading its dense weights with torch.load and safetensors."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in read_dcz(path).tensors.items()}
    with tempfile.TemporaryDirectory() as tmp:
        pt, st = Path(tmp) / "dense.pt", Path(tmp) / "dense.safetensors"
        torch.save(state, pt)
        save_file(state, st)
        sizes = {"dcz": path.stat().st_size, "torch": pt.stat().st_size, "safetensors": st.stat().st_size}
        secs = {"read_dcz": best_seconds(lambda: read_dcz(path), repeats),
                "load_model (dcz to nn.Module)": best_seconds(lambda: load_model(path), repeats),
                "torch.load": best_seconds(lambda: torch.load(pt, weights_only=True), repeats),
                "safetensors load_file": best_seconds(lambda: load_file(st), repeats)}
    return {"file": str(path), "bytes": sizes, "seconds": secs,
            "read_dcz_over_torch_load": secs["read_dcz"] / secs["torch.load"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--symbols", type=int, default=10_000_000)
    p.add_argument("--dcz", type=Path, nargs="*", help="compressed models (default: LeNets built on the fly)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/deepcompress-bench"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bar", type=float, default=20.0)
    args = p.parse_args(argv)
    n = 20_000 if args.smoke else args.symbols
    result = codec(index_stream(n, np.random.default_rng(0)), args.repeats)
    loads = {name: loading(path, args.repeats) for name, path in lenet_files(args.dcz, args.smoke, args.cache).items()}
    return finish("huffman", {"bar": f"decode >= {args.bar}x faster than dahuffman",
                              "met": result["decode_speedup"] >= args.bar, "codec": result, "loading": loads},
                  args.out)


if __name__ == "__main__":
    main()
