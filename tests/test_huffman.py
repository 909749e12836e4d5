"""Canonical, length-limited Huffman coding: optimality, canonical codes, round trips and bad streams."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.coding import huffman
from deepcompress.coding.huffman import (
    MAX_CODE_LENGTH,
    canonical_codes,
    code_lengths,
    coded_bits,
    decode,
    encode,
    entropy_bits,
    validate_lengths,
)
from deepcompress.errors import CodingError

FAST = settings(max_examples=60, deadline=None)


def huffman_cost(counts: list[int]) -> int:
    """Total coded bits of an unrestricted Huffman code (sum of the merged weights)."""
    heap = [c for c in counts if c > 0]
    if len(heap) < 2:
        return 0
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


def brute_force_cost(counts: list[int], max_len: int) -> int:
    """Cheapest complete prefix code with lengths <= max_len, by trying every length assignment."""
    used = sorted((c for c in counts if c > 0), reverse=True)
    best = None
    # Optimal lengths are non-decreasing when counts are sorted decreasingly.
    for lens in itertools.combinations_with_replacement(range(1, max_len + 1), len(used)):
        if sum(2.0**-l for l in lens) == 1.0:
            cost = sum(c * l for c, l in zip(used, lens, strict=True))
            best = cost if best is None else min(best, cost)
    assert best is not None
    return best


def kraft(lengths: np.ndarray) -> float:
    used = lengths[lengths > 0].astype(np.int64)
    return float(np.sum(2.0**-used))


def assert_prefix_free(lengths: np.ndarray, codes: np.ndarray) -> None:
    words = [format(int(c), f"0{int(l)}b") for c, l in zip(codes, lengths, strict=True) if l > 0]
    assert len(set(words)) == len(words)
    for a, b in itertools.permutations(words, 2):
        assert not b.startswith(a), (a, b)


# --- code lengths -------------------------------------------------------------------------------


@FAST
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=40))
def test_lengths_match_unrestricted_huffman_when_limit_does_not_bind(counts):
    c = np.array(counts, dtype=np.int64)
    lengths = code_lengths(c)
    assert lengths.dtype == np.uint8 and lengths.shape == c.shape
    assert np.array_equal(lengths == 0, c == 0)
    used = np.count_nonzero(c)
    if used >= 2:
        assert kraft(lengths) == 1.0
        # Counts <= 1000 over <= 40 symbols cannot force a Huffman code past 15 bits.
        assert coded_bits(c, lengths) == huffman_cost(counts)


@FAST
@given(st.lists(st.integers(1, 50), min_size=2, max_size=7), st.integers(1, 5))
def test_length_limited_code_is_optimal(counts, max_len):
    c = np.array(counts)
    if len(counts) > 2**max_len:
        with pytest.raises(CodingError):
            code_lengths(c, max_len)
        return
    lengths = code_lengths(c, max_len)
    assert lengths.max() <= max_len and kraft(lengths) == 1.0
    assert coded_bits(c, lengths) == brute_force_cost(counts, max_len)


def test_fibonacci_counts_are_limited_to_15_bits():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib, dtype=np.int64)
    lengths = code_lengths(counts)
    assert lengths.max() == MAX_CODE_LENGTH
    assert kraft(lengths) == 1.0
    assert coded_bits(counts, lengths) >= huffman_cost(fib)  # the unrestricted code would need 39 bits
    # Heavier symbols never get longer codes.
    assert np.all(np.diff(lengths.astype(int)) <= 0)


def test_full_alphabet_at_the_limit():
    counts = np.ones(1 << 15, dtype=np.int64)
    assert np.all(code_lengths(counts) == 15)
    counts[0] = 1 << 20
    lengths = code_lengths(counts)
    assert lengths.max() == 15 and kraft(lengths) == 1.0
    with pytest.raises(CodingError):
        code_lengths(np.ones((1 << 15) + 1, dtype=np.int64))


def test_special_cases_of_code_lengths():
    assert code_lengths(np.zeros(5, dtype=int)).tolist() == [0] * 5
    assert code_lengths(np.zeros(0, dtype=int)).size == 0
    assert code_lengths(np.array([0, 0, 7, 0])).tolist() == [0, 0, 1, 0]
    assert code_lengths(np.array([3, 0, 9])).tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    ("counts", "max_len"),
    [([-1, 2], 15), ([0.5, 2.0], 15), ([1, 1, 1], 1), ([1, 2], 0), ([1, 2], 16), ([[1, 2]], 15)],
)
def test_code_lengths_rejects_bad_input(counts, max_len):
    with pytest.raises(CodingError):
        code_lengths(np.array(counts), max_len)


# --- canonical codes and table validation ---------------------------------------------------------


def test_canonical_codes_match_rfc1951_example():
    lengths = np.array([3, 3, 3, 3, 3, 2, 4, 4])
    codes = canonical_codes(lengths)
    assert codes.dtype == np.uint32
    assert [format(int(c), f"0{l}b") for c, l in zip(codes, lengths, strict=True)] == [
        "010",
        "011",
        "100",
        "101",
        "110",
        "00",
        "1110",
        "1111",
    ]


@FAST
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=60))
def test_canonical_codes_are_prefix_free(counts):
    lengths = code_lengths(np.array(counts))
    codes = canonical_codes(lengths)
    assert np.all(codes[lengths == 0] == 0)
    assert np.all(codes < (np.uint32(1) << lengths.astype(np.uint32)))
    assert_prefix_free(lengths, codes)


@pytest.mark.parametrize(
    "lengths",
    [[1, 1, 1], [1, 2, 2, 3], [1, 2, 0], [2, 2, 2], [0, 2], [0, 16, 1], [-1, 1, 1], [1, 1, 3], [[1, 1]]],
)
def test_invalid_tables_are_rejected(lengths):
    table = np.array(lengths)
    with pytest.raises(CodingError):
        validate_lengths(table)
    with pytest.raises(CodingError):
        canonical_codes(table)
    with pytest.raises(CodingError):
        decode(b"\x00\x00", table, 1)


def test_valid_tables_are_accepted():
    for lengths in ([], [0, 0], [0, 1, 0], [1, 1], [1, 2, 3, 3], [15] * (1 << 15)):
        validate_lengths(np.array(lengths, dtype=np.int64))
    with pytest.raises(CodingError):
        validate_lengths(np.array([1.0, 1.0]))


# --- round trips ----------------------------------------------------------------------------------


def roundtrip(symbols: np.ndarray, alphabet: int) -> tuple[bytes, int, np.ndarray]:
    counts = np.bincount(symbols, minlength=alphabet)
    lengths = code_lengths(counts)
    data, nbits = encode(symbols, lengths)
    assert nbits == coded_bits(counts, lengths)
    assert len(data) == (nbits + 7) // 8
    for limit in (nbits, None):
        out = decode(data, lengths, symbols.size, limit)
        assert out.dtype == np.int64
        assert np.array_equal(out, symbols)
    return data, nbits, lengths


@FAST
@given(st.integers(1, 300).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1)))))
def test_roundtrip(case):
    alphabet, symbols = case
    roundtrip(np.array(symbols, dtype=np.int64), alphabet)


@pytest.mark.parametrize("speculative", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_roundtrip_across_chunk_boundaries(monkeypatch, seed, speculative):
    monkeypatch.setattr(huffman, "_DECODE_CHUNK_BITS", 61 + 8 * seed)
    monkeypatch.setattr(huffman, "_SPECULATIVE_CHUNK_BITS", 661 + 8 * seed)
    monkeypatch.setattr(huffman, "_SPECULATIVE_MIN_BITS", 0 if speculative else 1 << 62)
    monkeypatch.setattr(huffman, "_SPECULATIVE_MIN_AVG_BITS", 0)
    monkeypatch.setattr(huffman, "_SEGMENT_BITS", 40 + seed)
    monkeypatch.setattr(huffman, "_ENCODE_CHUNK", 7 + seed)
    rng = np.random.default_rng(seed)
    probs = np.exp(-np.arange(40) / (1 + seed))
    symbols = rng.choice(40, size=5000, p=probs / probs.sum())
    roundtrip(symbols, 40)


@pytest.mark.parametrize("seed", range(6))
def test_speculative_chains_match_pointer_doubling(monkeypatch, seed):
    monkeypatch.setattr(huffman, "_SEGMENT_BITS", 48)
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 3000))
    step = rng.integers(1, [2, 4, 16, 6, 3, 9][seed], size=width).astype(np.int32)
    if seed == 5:
        step[:] = 7  # equal-length codes never resynchronise: the fallback decides
    start = int(rng.integers(0, min(width, 15)))
    padded = np.concatenate([step, np.zeros(huffman.MAX_CODE_LENGTH + 1, dtype=np.int32)])
    np.testing.assert_array_equal(huffman._chain(padded.__getitem__, start, width),
                                  huffman._chain_doubling(step, start))


def test_roundtrip_of_equal_length_codes():
    symbols = np.random.default_rng(0).integers(0, 32, size=50_000)
    _, nbits, lengths = roundtrip(symbols, 32)
    assert set(lengths.tolist()) == {5}


def test_roundtrip_of_a_large_skewed_stream():
    rng = np.random.default_rng(0)
    probs = np.exp(-np.abs(np.arange(33) - 16) / 2.5)
    symbols = rng.choice(33, size=300_000, p=probs / probs.sum()).astype(np.uint8)
    _, nbits, _ = roundtrip(symbols, 33)
    counts = np.bincount(symbols, minlength=33)
    assert entropy_bits(counts) <= nbits < entropy_bits(counts) + symbols.size


def test_roundtrip_with_15_bit_codes():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    symbols = np.repeat(np.arange(30), fib[::-1])
    np.random.default_rng(1).shuffle(symbols)
    _, _, lengths = roundtrip(symbols, 30)
    assert lengths.max() == 15


def test_two_symbols_use_one_bit_each():
    symbols = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1])
    data, nbits, lengths = roundtrip(symbols, 2)
    assert lengths.tolist() == [1, 1] and nbits == 9
    assert data == bytes([0b01101000, 0b10000000])


def test_single_symbol_stream_is_empty():
    lengths = code_lengths(np.array([0, 0, 0, 12]))
    assert lengths.tolist() == [0, 0, 0, 1]
    assert encode(np.full(12, 3), lengths) == (b"", 0)
    assert coded_bits(np.array([0, 0, 0, 12]), lengths) == 0
    assert decode(b"", lengths, 12).tolist() == [3] * 12
    assert decode(b"\xff", lengths, 12, nbits=0).tolist() == [3] * 12  # bits after nbits are ignored
    with pytest.raises(CodingError):
        decode(b"\x00", lengths, 12)  # a whole trailing byte
    with pytest.raises(CodingError):
        decode(b"\x00", lengths, 12, nbits=1)


def test_empty_stream():
    empty = np.zeros(4, dtype=np.int64)
    assert encode(np.zeros(0, dtype=np.int64), empty) == (b"", 0)
    assert decode(b"", empty, 0).size == 0
    assert decode(b"", np.array([1, 1]), 0, nbits=0).size == 0
    with pytest.raises(CodingError):
        decode(b"", empty, 1)
    with pytest.raises(CodingError):
        decode(b"\x00", np.array([1, 1]), 0)


# --- bad input and corrupted streams --------------------------------------------------------------


@pytest.fixture(scope="module")
def stream():
    rng = np.random.default_rng(5)
    probs = np.exp(-np.arange(20) / 3)
    symbols = rng.choice(20, size=2001, p=probs / probs.sum())
    lengths = code_lengths(np.bincount(symbols, minlength=20))
    data, nbits = encode(symbols, lengths)
    assert nbits % 8  # the cases below rely on some padding bits
    return symbols, lengths, data, nbits


def test_truncated_streams_raise(stream):
    symbols, lengths, data, nbits = stream
    for cut in (data[:-1], data[: len(data) // 2], data[:1], b""):
        with pytest.raises(CodingError):
            decode(cut, lengths, symbols.size)
    with pytest.raises(CodingError):
        decode(data, lengths, symbols.size, nbits - 1)
    with pytest.raises(CodingError):
        decode(data, lengths, symbols.size + 1, nbits)  # without nbits, zero padding may decode
    with pytest.raises(CodingError):
        decode(data, lengths, 10**15)  # an absurd count from a corrupted header allocates nothing


def test_trailing_bits_raise(stream):
    symbols, lengths, data, nbits = stream
    with pytest.raises(CodingError):
        decode(data + b"\x00", lengths, symbols.size)
    with pytest.raises(CodingError):
        decode(data, lengths, symbols.size - 1, nbits)
    with pytest.raises(CodingError):
        decode(data, lengths, symbols.size, nbits + 1)
    with pytest.raises(CodingError):
        decode(data[:-1] + bytes([data[-1] | 1]), lengths, symbols.size)  # non-zero padding
    with pytest.raises(CodingError):
        decode(data, lengths, symbols.size, 8 * len(data) + 1)
    with pytest.raises(CodingError):
        decode(data, lengths, -1)
    # Extra bytes beyond an explicit nbits are not part of the stream.
    assert np.array_equal(decode(data + b"\xff", lengths, symbols.size, nbits), symbols)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 600), st.sampled_from([None, 0, 1, 100, 511]))
def test_garbage_raises_only_coding_error(data, count, nbits):
    lengths = np.array([2, 3, 3, 1, 0, 0])
    try:
        out = decode(data, lengths, count, nbits)
    except CodingError:
        return
    assert out.size == count and set(out.tolist()) <= {0, 1, 2, 3}


def test_encode_rejects_symbols_outside_the_code():
    lengths = np.array([1, 0, 1])
    with pytest.raises(CodingError):
        encode(np.array([0, 1]), lengths)
    with pytest.raises(CodingError):
        encode(np.array([0, 3]), lengths)
    with pytest.raises(CodingError):
        encode(np.array([-1, 0]), lengths)
    with pytest.raises(CodingError):
        encode(np.array([0.0, 2.0]), lengths)
    with pytest.raises(CodingError):
        encode(np.array([0]), np.array([1, 2]))  # incomplete table


def test_coded_bits_and_entropy():
    counts = np.array([50, 50, 50, 50])
    lengths = code_lengths(counts)
    assert coded_bits(counts, lengths) == 400
    assert entropy_bits(counts) == pytest.approx(400.0)
    assert entropy_bits(np.array([0, 9, 0])) == 0.0
    assert entropy_bits(np.zeros(3, dtype=int)) == 0.0
    with pytest.raises(CodingError):
        coded_bits(np.array([1, 1, 1]), np.array([1, 1, 0]))
    with pytest.raises(CodingError):
        coded_bits(np.array([1, 1]), np.array([1, 1, 0]))
