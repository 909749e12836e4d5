"""Canonical, length-limited Huffman coding, vectorised with numpy.

A code is described only by its table of code lengths (one entry per alphabet symbol, 0 = unused);
codes are assigned canonically as in DEFLATE (RFC 1951 §3.2.2). Valid tables are:

* all zero: the empty code, which can only encode zero symbols;
* exactly one non-zero length, equal to 1: the *single-symbol code*. Its symbol costs **0 bits**:
  ``encode`` writes an empty stream and ``decode`` emits ``count`` copies of the symbol;
* otherwise a complete prefix code: lengths in 1..15 with Kraft sum exactly 1.

Bit streams are packed MSB-first and zero-padded to a whole byte.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepcompress.errors import CodingError

__all__ = [
    "MAX_CODE_LENGTH",
    "canonical_codes",
    "code_lengths",
    "coded_bits",
    "decode",
    "encode",
    "entropy_bits",
    "validate_lengths",
]

MAX_CODE_LENGTH = 15
"""Longest code allowed: lengths are stored in 4 bits in the file format."""

_ENCODE_CHUNK = 1 << 16  # symbols per encoding chunk (bounds the 16-bits-per-symbol scratch array)
_DECODE_CHUNK_BITS = 1 << 16  # bit positions examined per decoding chunk (small chunks stay in cache)
_JUMP_LOG = 4  # the decoder finds every 2**_JUMP_LOG-th code start by pointer doubling
# Long streams of codes averaging 3+ bits are decoded by speculative chains instead (see _chain), which
# evaluate the code table only where codes start rather than at every bit: about twice as fast there.
_SPECULATIVE_MIN_BITS = 1 << 20
_SPECULATIVE_MIN_AVG_BITS = 3
_SPECULATIVE_CHUNK_BITS = 1 << 22
_SEGMENT_BITS = 512  # one speculative chain of codes per segment of this many bits
_MAX_TOTAL_COUNT = 1 << 56  # keeps package weights (sums of up to 15 * total) inside int64


def _as_int_array(values: np.ndarray, what: str) -> np.ndarray:
    """Return ``values`` as a 1-D int64 array; CodingError unless it holds integers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CodingError(f"{what} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise CodingError(f"{what} must have an integer dtype, got {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise CodingError(f"{what} has values too large for int64")
    return arr.astype(np.int64, copy=False)


def _checked_lengths(lengths: np.ndarray) -> np.ndarray:
    """Validate a code-length table (see the module docstring) and return it as uint8."""
    lens = _as_int_array(lengths, "code lengths")
    if lens.size and (lens.min() < 0 or lens.max() > MAX_CODE_LENGTH):
        raise CodingError(f"code lengths must lie in 0..{MAX_CODE_LENGTH}")
    used = lens[lens > 0]
    if used.size == 1:
        if used[0] != 1:
            raise CodingError(f"a single-symbol code must have length 1, got {int(used[0])}")
    elif used.size > 1:
        kraft = int(np.sum(np.int64(1) << (MAX_CODE_LENGTH - used)))
        full = 1 << MAX_CODE_LENGTH
        if kraft > full:
            raise CodingError("code lengths are over-subscribed (Kraft sum > 1)")
        if kraft < full:
            raise CodingError("code lengths are incomplete (Kraft sum < 1)")
    return lens.astype(np.uint8)


def validate_lengths(lengths: np.ndarray) -> None:
    """Raise CodingError unless ``lengths`` is a valid table: all zero, single-symbol, or complete."""
    _checked_lengths(lengths)


def code_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Optimal code lengths (uint8, one per symbol) with no code longer than ``max_len``.

    Uses package-merge (Larmore & Hirschberg), so the total ``sum(counts * lengths)`` is minimal among
    all prefix codes limited to ``max_len`` bits. Unused symbols (count 0) get length 0; a lone used
    symbol gets length 1 (the zero-bit single-symbol code). Raises CodingError for negative counts,
    ``max_len`` outside 1..15, or more used symbols than ``2**max_len``.
    """
    c = _as_int_array(counts, "counts")
    if c.size and c.min() < 0:
        raise CodingError("counts must be non-negative")
    if float(c.sum(dtype=np.float64)) >= _MAX_TOTAL_COUNT:
        raise CodingError("counts are too large")
    if not 1 <= max_len <= MAX_CODE_LENGTH:
        raise CodingError(f"max_len must lie in 1..{MAX_CODE_LENGTH}, got {max_len}")
    lengths = np.zeros(c.size, dtype=np.uint8)
    used = np.flatnonzero(c)
    n = used.size
    if n > 1 << max_len:
        raise CodingError(f"{n} used symbols do not fit in codes of at most {max_len} bits")
    if n <= 1:
        lengths[used] = 1
        return lengths
    order = used[np.argsort(c[used], kind="stable")]
    leaves = c[order]
    # Lists of the coin-collector problem, from the deepest level (width 2**-L) upwards. Each list is
    # the sorted merge of the leaves with the pairwise packages of the previous list; leaves sort
    # first among equal weights, so the leaves inside any prefix of a list are a prefix of ``order``.
    is_leaf = [np.ones(n, dtype=bool)]
    prev = leaves
    for _ in range(min(max_len, n - 1) - 1):
        half = prev.size // 2
        merged = np.concatenate([leaves, prev[0 : 2 * half : 2] + prev[1 : 2 * half : 2]])
        perm = np.argsort(merged, kind="stable")
        prev = merged[perm]
        is_leaf.append(perm < n)
    # Select the 2n-2 cheapest items of the top list and expand the chosen packages level by level:
    # every level at which a leaf is chosen adds one bit to its code.
    depth = np.zeros(n + 1, dtype=np.int64)
    take = 2 * n - 2
    for flags in reversed(is_leaf):
        chosen_leaves = int(np.count_nonzero(flags[:take]))
        depth[chosen_leaves] -= 1
        take = 2 * (take - chosen_leaves)
    depth[0] += len(is_leaf)
    lengths[order] = np.cumsum(depth[:n])
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes (uint32, right-aligned in ``lengths[i]`` bits; 0 where the length is 0).

    Symbols are sorted by (length, index) and receive increasing codes, as in DEFLATE.
    """
    lens = _checked_lengths(lengths)
    codes = np.zeros(lens.size, dtype=np.uint32)
    used = np.flatnonzero(lens)
    if used.size == 0:
        return codes
    order = used[np.argsort(lens[used], kind="stable")]
    sorted_lens = lens[order].astype(np.int64)
    # Code of the k-th sorted symbol = (sum of 2**(15 - l_j) over j < k) >> (15 - l_k).
    weights = np.int64(1) << (MAX_CODE_LENGTH - sorted_lens)
    starts = np.cumsum(weights) - weights
    codes[order] = (starts >> (MAX_CODE_LENGTH - sorted_lens)).astype(np.uint32)
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Encode integer ``symbols`` (flattened) with the canonical code of ``lengths``.

    Returns ``(data, nbits)``: the bits packed MSB-first, zero-padded to a byte, and the number of
    valid bits. The single-symbol code yields ``(b"", 0)``. Raises CodingError for symbols outside the
    alphabet or without a code.
    """
    lens = _checked_lengths(lengths)
    syms = np.asarray(symbols).ravel()
    if syms.size == 0:
        return b"", 0
    if not np.issubdtype(syms.dtype, np.integer):
        raise CodingError(f"symbols must have an integer dtype, got {syms.dtype}")
    if int(syms.min()) < 0 or int(syms.max()) >= lens.size:
        raise CodingError(f"symbols must lie in 0..{lens.size - 1}")
    syms = syms.astype(np.intp, copy=False)
    sym_lens = lens[syms]
    if not sym_lens.all():
        bad = int(syms[np.argmin(sym_lens)])
        raise CodingError(f"symbol {bad} has no code (length 0)")
    if np.count_nonzero(lens) == 1:
        return b"", 0
    # Each code left-aligned in a big-endian 16-bit word; unpack, keep the first `length` bits, repack.
    left = (canonical_codes(lens) << (16 - lens.astype(np.uint32))).astype(">u2")
    column = np.arange(16, dtype=np.uint8)
    pieces = []
    carry = np.zeros(0, dtype=np.uint8)
    for start in range(0, syms.size, _ENCODE_CHUNK):
        chunk = syms[start : start + _ENCODE_CHUNK]
        bits = np.unpackbits(left[chunk].view(np.uint8)).reshape(-1, 16)
        bits = np.concatenate([carry, bits[column < sym_lens[start : start + _ENCODE_CHUNK, None]]])
        whole = bits.size - bits.size % 8
        pieces.append(np.packbits(bits[:whole]).tobytes())
        carry = bits[whole:]
    pieces.append(np.packbits(carry).tobytes())
    return b"".join(pieces), int(sym_lens.sum(dtype=np.int64))


def decode(data: bytes, lengths: np.ndarray, count: int, nbits: int | None = None) -> np.ndarray:
    """Decode exactly ``count`` symbols (returned as int64) from ``data`` with the code of ``lengths``.

    With ``nbits`` the codes must end exactly at bit ``nbits`` (later bits of ``data`` are ignored);
    without it they must end in the last byte of ``data`` and the padding bits must be zero. Raises
    CodingError when the stream is too short, has trailing or non-zero padding bits, or when
    ``nbits``/``count`` are out of range. The single-symbol code reads no bits, so there the caller
    must bound ``count``.
    """
    lens = _checked_lengths(lengths)
    buf = np.frombuffer(data, dtype=np.uint8)
    avail = 8 * buf.size
    if nbits is not None and not 0 <= nbits <= avail:
        raise CodingError(f"nbits={nbits} is outside the {avail} bits of data")
    limit = avail if nbits is None else nbits
    if count < 0:
        raise CodingError(f"count must be non-negative, got {count}")
    used = np.flatnonzero(lens)
    if count == 0:
        out, end = np.zeros(0, dtype=np.int64), 0
    elif used.size == 0:
        raise CodingError(f"cannot decode {count} symbols with an empty code")
    elif used.size == 1:
        out, end = np.full(count, used[0], dtype=np.int64), 0
    else:
        out, end = _decode_stream(buf, lens, count, limit)
    if nbits is not None and end != nbits:
        raise CodingError(f"codes end at bit {end}, but nbits={nbits}")
    if nbits is None:
        if avail - end >= 8:
            raise CodingError(f"{(avail - end) // 8} trailing bytes after the last code")
        if end % 8 and buf[-1] & ((1 << (8 - end % 8)) - 1):
            raise CodingError("padding bits after the last code are not zero")
    return out


def _decode_stream(buf: np.ndarray, lens: np.ndarray, count: int, limit: int) -> tuple[np.ndarray, int]:
    """Decode ``count`` symbols of a complete code from the first ``limit`` bits; return (symbols, end)."""
    used = np.flatnonzero(lens)
    if count * int(lens[used].min()) > limit:
        raise CodingError(f"{limit} bits cannot hold {count} symbols")
    # Lookup table indexed by the next `peek` bits: canonical codes left-aligned tile the table in order.
    peek = int(lens.max())
    order = used[np.argsort(lens[used], kind="stable")]
    span = np.int64(1) << (peek - lens[order].astype(np.int64))
    lut_sym = np.repeat(order.astype(np.int64), span)
    lut_len = np.repeat(lens[order], span).astype(np.int32)
    speculative = limit >= _SPECULATIVE_MIN_BITS and limit >= _SPECULATIVE_MIN_AVG_BITS * count
    chunk_bits = _SPECULATIVE_CHUNK_BITS if speculative else _DECODE_CHUNK_BITS
    shifts = (24 - peek - np.arange(8)).astype(np.uint32)
    padded = np.concatenate([buf, np.zeros(5, dtype=np.uint8)])
    out = np.empty(count, dtype=np.int64)
    done = pos = 0
    while done < count:
        if pos >= limit:
            raise CodingError(f"stream ends after {done} of {count} symbols")
        # The `peek` bits at bit p (relative to the chunk's first byte) are bits p & 7 onwards of the 24-bit
        # word at byte p >> 3; the words cover every position up to MAX_CODE_LENGTH bits past `stop`.
        first_byte = pos >> 3
        stop = min(limit, pos + chunk_bits)
        width = stop - 8 * first_byte
        if speculative:
            b = padded[first_byte : ((stop + MAX_CODE_LENGTH) >> 3) + 3].astype(np.int64)
            words = (b[:-2] << 16) | (b[1:-1] << 8) | b[2:]

            def window(p: np.ndarray, words: np.ndarray = words) -> np.ndarray:
                return (words[p >> 3] >> (24 - peek - (p & 7))) & ((1 << peek) - 1)

            starts = _chain(lambda p, window=window: lut_len[window(p)], pos - 8 * first_byte, width)
            starts = starts[: count - done]
            windows = window(starts)
        else:
            b = padded[first_byte : ((stop - 1) >> 3) + 3].astype(np.uint32)
            words = (b[:-2] << 16) | (b[1:-1] << 8) | b[2:]
            all_windows = ((words[:, None] >> shifts) & np.uint32((1 << peek) - 1)).ravel()[:width]
            starts = _chain_doubling(lut_len[all_windows], pos - 8 * first_byte)[: count - done]
            windows = all_windows[starts]
        out[done : done + starts.size] = lut_sym[windows]
        done += starts.size
        pos = 8 * first_byte + int(starts[-1]) + int(lut_len[windows[-1]])
    if pos > limit:
        raise CodingError(f"last code runs past the end of the stream (bit {pos} > {limit})")
    return out, pos


def _chain(step_at: Callable[[np.ndarray], np.ndarray], start: int, width: int) -> np.ndarray:
    """Positions ``start, start + step[start], ...`` below ``width``, where ``step_at(p)`` gives the steps
    at positions ``p`` (it must accept positions up to ``width + MAX_CODE_LENGTH``).

    First, speculatively, a chain starts at the beginning of every segment of ``_SEGMENT_BITS`` bits,
    all followed in lock-step. Then the true chain is followed from where it enters each segment (where
    the previous segment's chain leaves it) until it meets that segment's speculative chain (Huffman
    codes resynchronise within a few codes); from there on they coincide. Should a segment not meet
    its speculative chain (e.g. codes of equal length never resynchronise), pointer doubling decides.
    Steps are evaluated only where chains go, not at every bit.
    """
    ends = np.minimum(np.arange(start + _SEGMENT_BITS, width + _SEGMENT_BITS, _SEGMENT_BITS), width)
    cur = np.arange(start, width, _SEGMENT_BITS, dtype=np.int64)
    rows = [cur]
    live = cur < ends
    while live.any():
        cur = cur + step_at(cur) * live
        rows.append(cur)
        live = cur < ends
    chains = np.stack(rows, axis=1)  # one speculative chain per segment, increasing along the row
    inside = chains < ends[:, None]
    leave = chains[np.arange(ends.size), inside.sum(axis=1)]  # first position at or past the segment's end
    on_chain = np.zeros(width + MAX_CODE_LENGTH + 1, dtype=bool)
    on_chain[chains[inside]] = True
    is_start = np.zeros(width, dtype=bool)
    cur = np.concatenate(([start], leave[:-1]))  # where the true chain enters each segment
    live = (cur < ends) & ~on_chain[cur]
    while live.any():
        is_start[cur[live]] = True
        cur = cur + step_at(cur) * live
        live &= (cur < ends) & ~on_chain[cur]
    if not ((cur < ends) | (cur == leave) | (cur >= width)).all():
        return _chain_doubling(step_at(np.arange(width)).astype(np.int32), start)
    is_start[chains[inside & (chains >= cur[:, None])]] = True
    return np.flatnonzero(is_start)


def _chain_doubling(step: np.ndarray, start: int) -> np.ndarray:
    """Positions ``start, start + step[start], ...`` below ``step.size``, by pointer doubling."""
    width = step.size
    nxt = np.empty(width + 1, dtype=np.int32)
    np.minimum(np.arange(width, dtype=np.int32) + step, width, out=nxt[:width])
    nxt[width] = width  # absorbing end node
    jump = nxt
    for _ in range(_JUMP_LOG):
        jump = jump[jump]
    jumps = memoryview(jump)
    heads = []
    p = start
    while p < width:
        heads.append(p)
        p = jumps[p]
    rows = np.empty((len(heads), 1 << _JUMP_LOG), dtype=np.int32)
    rows[:, 0] = heads
    for k in range(1, rows.shape[1]):
        rows[:, k] = nxt[rows[:, k - 1]]
    flat = rows.ravel()
    return flat[flat < width]


def coded_bits(counts: np.ndarray, lengths: np.ndarray) -> int:
    """Size in bits of coding symbols with these ``counts`` using ``lengths`` (0 for single-symbol)."""
    c = _as_int_array(counts, "counts")
    lens = _checked_lengths(lengths)
    if c.size != lens.size:
        raise CodingError(f"{c.size} counts for an alphabet of {lens.size} code lengths")
    if np.any((c != 0) & (lens == 0)):
        raise CodingError("a counted symbol has no code (length 0)")
    if np.count_nonzero(lens) == 1:
        return 0
    return int(np.dot(c, lens.astype(np.int64)))


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy of the empirical distribution times the number of symbols (a lower bound)."""
    c = _as_int_array(counts, "counts")
    if c.size and c.min() < 0:
        raise CodingError("counts must be non-negative")
    c = c[c > 0].astype(np.float64)
    total = c.sum()
    if total == 0:
        return 0.0
    return float(total * np.log2(total) - np.dot(c, np.log2(c)))
