"""Relative sparse-index coding (Deep Compression, Section 4 and Fig. 2).

The non-zero weights of a pruned layer are stored as entries ``(gap, symbol)`` in row-major order.
With the previous position starting at -1, an entry at position ``pos`` has gap ``g = pos - prev >= 1``
and stores ``g - 1`` in ``index_bits = b`` bits. A gap larger than ``2**b`` is bridged by
``(g - 1) // 2**b`` *filler* entries, each storing ``2**b - 1`` (a jump of ``2**b`` positions) and
carrying ``filler_symbol``: it stands for a zero weight at the position it lands on. The decoder
recognises fillers by their symbol, so real entries must never carry ``filler_symbol``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from deepcompress.coding.huffman import MAX_CODE_LENGTH, code_lengths, coded_bits
from deepcompress.errors import CodingError

__all__ = [
    "MAX_INDEX_BITS",
    "choose_index_bits",
    "count_fillers",
    "decode_positions",
    "encode_positions",
]

MAX_INDEX_BITS = 16
_TABLE_BITS_PER_ENTRY = 4  # one 4-bit code length per alphabet entry


def _int_vector(values: np.ndarray, what: str) -> np.ndarray:
    """Return ``values`` as a 1-D int64 array; CodingError unless it holds integers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CodingError(f"{what} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise CodingError(f"{what} must have an integer dtype, got {arr.dtype}")
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise CodingError(f"{what} has values too large for int64")
    return arr.astype(np.int64, copy=False)


def _check_index_bits(index_bits: int) -> None:
    if not 1 <= index_bits <= MAX_INDEX_BITS:
        raise CodingError(f"index_bits must lie in 1..{MAX_INDEX_BITS}, got {index_bits}")


def _gaps_minus_one(positions: np.ndarray) -> np.ndarray:
    """``pos - prev - 1`` for every position (prev starts at -1); CodingError unless strictly increasing."""
    pos = _int_vector(positions, "positions")
    if pos.size and pos[0] < 0:
        raise CodingError("positions must be non-negative")
    gaps = np.diff(pos, prepend=-1) - 1
    if gaps.size and gaps.min() < 0:
        raise CodingError("positions must be strictly increasing")
    return gaps


def encode_positions(
    positions: np.ndarray, symbols: np.ndarray, index_bits: int, filler_symbol: int
) -> tuple[np.ndarray, np.ndarray]:
    """Relative-index entries for ``symbols`` at the strictly increasing flat ``positions``.

    Returns ``(gaps, symbols)`` with fillers inserted: stored gaps (int64 in ``[0, 2**index_bits - 1]``)
    and the symbols (the dtype of ``symbols`` promoted to hold ``filler_symbol``).
    """
    _check_index_bits(index_bits)
    gaps = _gaps_minus_one(positions)
    syms = np.asarray(symbols)
    if syms.shape != gaps.shape:
        raise CodingError(f"{syms.size} symbols for {gaps.size} positions")
    if np.any(syms == filler_symbol):
        raise CodingError(f"a real entry uses the filler symbol {filler_symbol}")
    fillers = gaps >> index_bits
    real = np.arange(gaps.size) + np.cumsum(fillers)
    total = gaps.size + int(fillers.sum())
    out_gaps = np.full(total, (1 << index_bits) - 1, dtype=np.int64)
    out_gaps[real] = gaps & ((1 << index_bits) - 1)
    out_syms = np.full(total, filler_symbol, dtype=np.result_type(syms, np.min_scalar_type(filler_symbol)))
    out_syms[real] = syms
    return out_gaps, out_syms


def decode_positions(
    gaps: np.ndarray, symbols: np.ndarray, filler_symbol: int, numel: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_positions`: ``(positions, symbols)`` with fillers removed.

    ``positions`` is int64. Raises CodingError if the streams differ in length, a gap is negative, or
    an entry (filler or real) lands at or beyond ``numel``.
    """
    g = _int_vector(gaps, "gaps")
    syms = np.asarray(symbols)
    if syms.shape != g.shape:
        raise CodingError(f"{syms.size} symbols for {g.size} gaps")
    if g.size == 0:
        return np.zeros(0, dtype=np.int64), syms
    if g.min() < 0:
        raise CodingError("gaps must be non-negative")
    if g.max() >= numel:  # also keeps the cumulative sum below from overflowing
        raise CodingError(f"a gap of {int(g.max())} leaves a layer of {numel} weights")
    positions = np.cumsum(g + 1) - 1
    if positions[-1] >= numel:
        raise CodingError(f"entry position {int(positions[-1])} is outside a layer of {numel} weights")
    real = syms != filler_symbol
    return positions[real], syms[real]


def count_fillers(positions: np.ndarray, index_bits: int) -> int:
    """Number of filler entries :func:`encode_positions` inserts for ``positions``."""
    _check_index_bits(index_bits)
    return int((_gaps_minus_one(positions) >> index_bits).sum())


def choose_index_bits(
    positions: np.ndarray, symbol_counts: np.ndarray, candidates: Iterable[int] = range(1, MAX_INDEX_BITS + 1)
) -> int:
    """Index width that minimises the Huffman-coded size of the gap and symbol streams.

    ``symbol_counts[s]`` counts the real entries with symbol ``s``; the filler symbol is taken to be
    ``len(symbol_counts)``. The size of a width is the coded bits of both streams (from the optimal
    code lengths, fillers included) plus 4 bits per code-table entry: ``2**b`` for gaps and
    ``len(symbol_counts) + 1`` for symbols. Ties go to the smaller width; widths whose gap alphabet
    has too many used values for 15-bit codes are skipped.
    """
    gaps = _gaps_minus_one(positions)
    counts = _int_vector(symbol_counts, "symbol_counts")
    if int(counts.sum()) != gaps.size:
        raise CodingError(f"symbol counts total {int(counts.sum())} for {gaps.size} positions")
    best: tuple[int, int] | None = None
    for b in sorted(set(candidates)):
        _check_index_bits(b)
        fillers = gaps >> b
        num_fillers = int(fillers.sum())
        gap_counts = np.bincount(gaps & ((1 << b) - 1), minlength=1 << b)
        gap_counts[-1] += num_fillers
        if np.count_nonzero(gap_counts) > 1 << MAX_CODE_LENGTH:
            continue
        sym_counts = np.append(counts, num_fillers)
        size = (
            coded_bits(gap_counts, code_lengths(gap_counts))
            + coded_bits(sym_counts, code_lengths(sym_counts))
            + _TABLE_BITS_PER_ENTRY * ((1 << b) + sym_counts.size)
        )
        if best is None or size < best[0]:
            best = (size, b)
    if best is None:
        raise CodingError("no candidate index width can be Huffman-coded")
    return best[1]
