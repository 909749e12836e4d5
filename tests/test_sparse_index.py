"""Relative sparse-index coding: fillers, round trips, untrusted streams and the choice of index width."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.coding.huffman import code_lengths, encode
from deepcompress.coding.sparse import choose_index_bits, count_fillers, decode_positions, encode_positions
from deepcompress.errors import CodingError

FAST = settings(max_examples=80, deadline=None)
FILLER = 32


@st.composite
def layers(draw):
    numel = draw(st.integers(1, 3000))
    positions = np.array(sorted(draw(st.sets(st.integers(0, numel - 1), max_size=200))), dtype=np.int64)
    symbols = np.array(
        draw(st.lists(st.integers(0, FILLER - 1), min_size=len(positions), max_size=len(positions))),
        dtype=np.int64,
    )
    return numel, positions, symbols


@FAST
@given(layers(), st.integers(1, 16))
def test_roundtrip(layer, bits):
    numel, positions, symbols = layer
    gaps, syms = encode_positions(positions, symbols, bits, FILLER)
    assert gaps.dtype == np.int64 and gaps.shape == syms.shape
    assert gaps.size == 0 or (gaps.min() >= 0 and gaps.max() < 2**bits)
    fillers = syms == FILLER
    assert np.count_nonzero(fillers) == count_fillers(positions, bits)
    assert np.all(gaps[fillers] == 2**bits - 1)
    assert np.array_equal(syms[~fillers], symbols)
    pos, out = decode_positions(gaps, syms, FILLER, numel)
    assert np.array_equal(pos, positions) and np.array_equal(out, symbols)


@pytest.mark.parametrize("bits", [1, 3, 5, 8, 16])
def test_gap_of_exactly_2_pow_b_needs_no_filler(bits):
    span = 2**bits
    gaps, syms = encode_positions(np.array([span - 1, 2 * span - 1]), np.array([4, 5]), bits, FILLER)
    assert gaps.tolist() == [span - 1, span - 1] and syms.tolist() == [4, 5]
    gaps, syms = encode_positions(np.array([span]), np.array([4]), bits, FILLER)  # g = 2**b + 1
    assert gaps.tolist() == [span - 1, 0] and syms.tolist() == [FILLER, 4]
    gaps, syms = encode_positions(np.array([2 * span]), np.array([4]), bits, FILLER)  # g = 2**(b+1) + 1
    assert gaps.tolist() == [span - 1, span - 1, 0] and syms.tolist() == [FILLER, FILLER, 4]
    assert decode_positions(gaps, syms, FILLER, 2 * span + 1)[0].tolist() == [2 * span]


def test_index_bits_1():
    positions = np.array([0, 1, 3, 8])
    gaps, syms = encode_positions(positions, np.array([7, 8, 9, 10]), 1, FILLER)
    # gaps 1, 1, 2, 5 -> stored 0; 0; 1; two fillers (jump 2 each) then 0
    assert gaps.tolist() == [0, 0, 1, 1, 1, 0]
    assert syms.tolist() == [7, 8, 9, FILLER, FILLER, 10]
    assert count_fillers(positions, 1) == 2


def test_first_and_last_position():
    numel = 1000
    positions = np.array([0, numel - 1])
    gaps, syms = encode_positions(positions, np.array([1, 2]), 5, FILLER)
    assert gaps[0] == 0
    pos, out = decode_positions(gaps, syms, FILLER, numel)
    assert pos.tolist() == [0, numel - 1] and out.tolist() == [1, 2]
    with pytest.raises(CodingError):
        decode_positions(gaps, syms, FILLER, numel - 1)


def test_all_zero_layer():
    empty = np.zeros(0, dtype=np.int64)
    gaps, syms = encode_positions(empty, empty, 8, FILLER)
    assert gaps.size == 0 and syms.size == 0
    pos, out = decode_positions(gaps, syms, FILLER, 100)
    assert pos.size == 0 and out.size == 0
    assert count_fillers(empty, 8) == 0
    assert choose_index_bits(empty, np.zeros(FILLER, dtype=np.int64)) == 1


def test_symbols_keep_their_dtype():
    gaps, syms = encode_positions(np.array([0, 300]), np.array([1, 2], dtype=np.uint8), 4, 255)
    assert syms.dtype == np.uint8 and syms.tolist() == [1] + [255] * 18 + [2]


@pytest.mark.parametrize(
    ("positions", "symbols", "bits"),
    [
        ([3, 3], [1, 2], 8),
        ([5, 2], [1, 2], 8),
        ([-1, 2], [1, 2], 8),
        ([1, 2], [1], 8),
        ([1, 2], [1, FILLER], 8),
        ([1, 2], [1, 2], 0),
        ([1, 2], [1, 2], 17),
        ([1.0, 2.0], [1, 2], 8),
        ([[1, 2]], [[1, 2]], 8),
    ],
)
def test_encode_rejects_bad_input(positions, symbols, bits):
    with pytest.raises(CodingError):
        encode_positions(np.array(positions), np.array(symbols), bits, FILLER)


@pytest.mark.parametrize(
    ("gaps", "symbols", "numel"),
    [
        ([0, 1], [1], 10),  # lengths differ
        ([0, -1], [1, 2], 10),  # negative gap
        ([3, 6], [1, 2], 10),  # second entry at position 10
        ([10], [1], 10),  # first entry at position 10
        ([0, 255], [1, FILLER], 100),  # a filler outside the layer
        ([2**62, 2**62, 2**62], [1, 2, 3], 10),  # would overflow a cumulative sum
        ([0], [1], 0),
    ],
)
def test_decode_rejects_out_of_range_entries(gaps, symbols, numel):
    with pytest.raises(CodingError):
        decode_positions(np.array(gaps), np.array(symbols), FILLER, numel)


def test_decode_accepts_the_last_position():
    assert decode_positions(np.array([3, 5]), np.array([1, 2]), FILLER, 11)[0].tolist() == [3, 9]


# --- choice of the index width --------------------------------------------------------------------


def real_size(positions: np.ndarray, symbols: np.ndarray, alphabet: int, bits: int) -> int:
    """Bits of both Huffman-coded streams plus 4 bits per code-table entry, by actually encoding."""
    gaps, syms = encode_positions(positions, symbols, bits, alphabet)
    size = 4 * (2**bits + alphabet + 1)
    for stream, size_of_alphabet in ((gaps, 2**bits), (syms, alphabet + 1)):
        lengths = code_lengths(np.bincount(stream, minlength=size_of_alphabet))
        size += encode(stream, lengths)[1]
    return size


def random_layer(rng: np.random.Generator, numel: int, density: float, clustered: bool):
    if clustered:  # rows of very different density, as after pruning a conv layer
        rows = numel // 100
        keep = rng.random((rows, 100)) < density * rng.exponential(1.0, size=(rows, 1))
        positions = np.flatnonzero(keep)
    else:
        positions = np.flatnonzero(rng.random(numel) < density)
    probs = np.exp(-np.abs(np.arange(FILLER) - 16) / 3)
    symbols = rng.choice(FILLER, size=positions.size, p=probs / probs.sum())
    return positions, symbols


@pytest.mark.parametrize(
    ("numel", "density", "clustered"),
    [
        (20_000, 0.3, False),
        (20_000, 0.05, True),
        (50_000, 0.005, False),
        (3000, 0.9, True),
        (500, 0.002, False),
    ],
)
def test_choose_index_bits_minimises_the_real_size(numel, density, clustered):
    rng = np.random.default_rng(int(numel * density))
    positions, symbols = random_layer(rng, numel, density, clustered)
    counts = np.bincount(symbols, minlength=FILLER)
    sizes = {b: real_size(positions, symbols, FILLER, b) for b in range(1, 17)}
    chosen = choose_index_bits(positions, counts)
    assert sizes[chosen] == min(sizes.values())
    narrow = choose_index_bits(positions, counts, candidates=[3, 5, 8])
    assert sizes[narrow] == min(sizes[b] for b in (3, 5, 8))


def test_choose_index_bits_rejects_bad_input():
    positions = np.array([1, 5, 9])
    with pytest.raises(CodingError):
        choose_index_bits(positions, np.array([1, 1]))  # counts do not total the positions
    with pytest.raises(CodingError):
        choose_index_bits(positions, np.array([3]), candidates=[0, 4])
    with pytest.raises(CodingError):
        choose_index_bits(positions, np.array([3]), candidates=[])
