"""Coding efficiency: Huffman-coded bits / Shannon entropy of each .dcz index and gap stream.

The streams are rebuilt from the decoded tensors (cluster symbols and relative gaps with fillers, at the
record's index width) and checked against the bit counts stored in the file. An rANS coder
(``constriction``, when installed) on the same empirical distribution is shown for comparison only.

    PYTHONPATH=src python benchmarks/bench_entropy.py --dcz /work/runs/l300_a/lenet-300-100.dcz ...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, lenet_files, parser  # noqa: E402

from deepcompress.coding.huffman import code_lengths, coded_bits, entropy_bits  # noqa: E402
from deepcompress.coding.sparse import encode_positions  # noqa: E402
from deepcompress.format.dcz import read_dcz  # noqa: E402

try:
    import constriction
except ImportError:  # pragma: no cover - optional comparison
    constriction = None


def rans_bits(stream: np.ndarray, counts: np.ndarray) -> int | None:
    """Bits of an rANS coding of ``stream`` with its empirical distribution (None without constriction)."""
    if constriction is None or np.count_nonzero(counts) < 2:
        return None if constriction is None else 0
    used = np.flatnonzero(counts)
    remap = np.zeros(counts.size, dtype=np.int32)
    remap[used] = np.arange(used.size, dtype=np.int32)
    model = constriction.stream.model.Categorical(counts[used] / counts.sum(), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(remap[stream], model)
    return 32 * int(coder.get_compressed().size)


def streams(values: np.ndarray, k: int, index_bits: int) -> dict[str, tuple[np.ndarray, int]]:
    """The weight-symbol and gap streams of one shared tensor, with their alphabet sizes."""
    flat = values.ravel()
    positions = np.flatnonzero(flat)
    _, symbols = np.unique(flat[positions], return_inverse=True)
    gaps, entries = encode_positions(positions, symbols.ravel(), index_bits, filler_symbol=k)
    return {"weight": (entries, k + 1), "gap": (gaps, 1 << index_bits)}


def measure(path: Path) -> dict[str, Any]:
    """Per-layer and total Huffman / entropy (/ rANS) bits of one file."""
    dcz = read_dcz(path)
    layers: dict[str, Any] = {}
    total = {"huffman_bits": 0, "entropy_bits": 0.0, "rans_bits": 0, "table_bits": 0}
    for rec in dcz.records:
        if rec.encoding != "shared":
            continue
        row: dict[str, Any] = {}
        for kind, (stream, alphabet) in streams(dcz.tensors[rec.name], rec.codebook_size, rec.index_bits).items():
            counts = np.bincount(stream, minlength=alphabet)
            huff = coded_bits(counts, code_lengths(counts))
            stored = rec.weight_bits if kind == "weight" else rec.gap_bits
            ent = entropy_bits(counts)
            rans = rans_bits(stream, counts)
            row[kind] = {"symbols": int(stream.size), "huffman_bits": huff, "matches_file": huff == stored,
                         "entropy_bits": ent, "huffman_over_entropy": huff / ent if ent else None,
                         "rans_bits": rans, "rans_over_entropy": rans / ent if ent and rans is not None else None}
            total["huffman_bits"] += huff
            total["entropy_bits"] += ent
            total["rans_bits"] = None if rans is None or total["rans_bits"] is None else total["rans_bits"] + rans
        row["table_bits"] = 8 * rec.table_bytes
        total["table_bits"] += 8 * rec.table_bytes
        h = row["weight"]["huffman_bits"] + row["gap"]["huffman_bits"]
        e = row["weight"]["entropy_bits"] + row["gap"]["entropy_bits"]
        row["huffman_over_entropy"] = h / e if e else None
        layers[rec.name] = row
    ent = total["entropy_bits"]
    return {"file": str(path), "file_bytes": dcz.size, "layers": layers, "total": {
        **total, "huffman_over_entropy": total["huffman_bits"] / ent,
        "huffman_with_tables_over_entropy": (total["huffman_bits"] + total["table_bits"]) / ent,
        "rans_over_entropy": None if total["rans_bits"] is None else total["rans_bits"] / ent}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--dcz", type=Path, nargs="*", help="compressed models (default: LeNets built on the fly)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/deepcompress-bench"))
    p.add_argument("--bar", type=float, default=1.03)
    args = p.parse_args(argv)
    models = {name: measure(path) for name, path in lenet_files(args.dcz, args.smoke, args.cache).items()}
    worst = max(m["total"]["huffman_over_entropy"] for m in models.values())
    return finish("entropy", {"bar": f"Huffman / entropy <= {args.bar} overall", "worst_total": worst,
                              "met": worst <= args.bar, "models": models}, args.out)


if __name__ == "__main__":
    main()
