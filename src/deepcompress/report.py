"""Per-layer compression tables in the style of the paper's Tables 2–5, as rows, Markdown and JSON."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from .format.dcz import RecordInfo


def dense_bytes(model: nn.Module) -> int:
    """Bytes of all the model's parameters stored densely as fp32 (the compression ratio's numerator).

    Works on plain, pruned (``weight_orig``) and weight-shared (``weight_codebook``) models alike.
    """
    n = 0
    for name, p in model.named_parameters():
        if name.endswith("weight_codebook"):
            n += model.get_submodule(name.rpartition(".")[0]).weight_index.numel()
        else:
            n += p.numel()
    return 4 * n


def layer_rows(records: list[RecordInfo]) -> list[dict[str, Any]]:
    """One row per stored tensor with paper-style bit accounting and the real bytes it takes in the file.

    Columns: weights, kept (fraction non-zero), weight bits and index bits before (P+Q) and after
    Huffman (P+Q+H, per stored entry), and compression of that tensor after P, P+Q and P+Q+H, where
    P+Q+H counts the whole record (codebook, code tables, bitstreams, name and shape).
    """
    rows = []
    for r in records:
        n = math.prod(r.shape)
        dense_bits = 32 * n
        row: dict[str, Any] = {"name": r.name, "encoding": r.encoding, "shape": list(r.shape), "weights": n,
                               "record_bytes": r.bytes}
        if r.encoding == "shared" and r.codebook_size == 1 and r.nonzero in (0, n):
            row.update(encoding="constant", kept=1.0, ratio_p=1.0, ratio_pq=1.0, ratio_pqh=dense_bits / (8 * r.bytes))
        elif r.encoding == "shared":
            qbits = max((r.codebook_size - 1).bit_length(), 1)
            entries = max(r.entries, 1)
            p_bits = r.nonzero * (32 + r.index_bits)
            pq_bits = r.entries * (qbits + r.index_bits) + 32 * r.codebook_size
            row.update(
                kept=r.nonzero / max(n, 1), clusters=r.codebook_size, fillers=r.fillers,
                weight_bits_pq=qbits, weight_bits_pqh=r.weight_bits / entries,
                index_bits_pq=r.index_bits, index_bits_pqh=r.gap_bits / entries,
                ratio_p=dense_bits / max(p_bits, 1), ratio_pq=dense_bits / max(pq_bits, 1),
                ratio_pqh=dense_bits / (8 * r.bytes))
        else:
            row.update(kept=1.0, dtype=r.dtype, ratio_p=1.0, ratio_pq=1.0, ratio_pqh=dense_bits / (8 * r.bytes))
        rows.append(row)
    return rows


def totals(records: list[RecordInfo], file_bytes: int, dense_bytes: int) -> dict[str, Any]:
    """Whole-model figures: dense fp32 bytes, file bytes, the headline ratio and the non-zero share."""
    shared = [r for r in records if r.encoding == "shared"]
    weights = sum(math.prod(r.shape) for r in records)
    nonzero = sum(r.nonzero for r in shared) + sum(math.prod(r.shape) for r in records if r.encoding == "raw")
    return {"dense_bytes": dense_bytes, "file_bytes": file_bytes, "compression_ratio": dense_bytes / file_bytes,
            "weights": weights, "nonzero": nonzero, "kept": nonzero / max(weights, 1),
            "payload_bytes": sum(r.bytes for r in records), "overhead_bytes": file_bytes - sum(
                r.bytes for r in records)}


def markdown_table(rows: list[dict[str, Any]], total: dict[str, Any] | None = None) -> str:
    """The per-layer table as GitHub Markdown."""
    head = ("| layer | #weights | kept | clusters | weight bits P+Q | weight bits P+Q+H | index bits P+Q "
            "| index bits P+Q+H | ratio P | ratio P+Q | ratio P+Q+H | bytes |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if r["encoding"] == "shared":
            lines.append(
                f"| {r['name']} | {r['weights']:,} | {100 * r['kept']:.1f}% | {r['clusters']} | "
                f"{r['weight_bits_pq']} | {r['weight_bits_pqh']:.2f} | {r['index_bits_pq']} | "
                f"{r['index_bits_pqh']:.2f} | {r['ratio_p']:.1f}× | {r['ratio_pq']:.1f}× | "
                f"{r['ratio_pqh']:.1f}× | {r['record_bytes']:,} |")
        else:
            how = "one value" if r["encoding"] == "constant" else f"{r['dtype']} raw"
            lines.append(f"| {r['name']} | {r['weights']:,} | 100% | – | {how} | | | | 1.0× | 1.0× | "
                         f"{r['ratio_pqh']:.1f}× | {r['record_bytes']:,} |")
    if total:
        lines.append(f"| **total** | {total['weights']:,} | {100 * total['kept']:.1f}% | | | | | | | | "
                     f"**{total['compression_ratio']:.1f}×** | {total['file_bytes']:,} |")
    return "\n".join(lines)
