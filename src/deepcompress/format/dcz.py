"""Reading and writing .dcz files (the layout is specified byte for byte in docs/format.md).

A .dcz holds a JSON header (model architecture and constructor arguments, class names, input
normalisation) and one record per state_dict tensor. Pruned, weight-shared tensors are stored as a
codebook plus two canonical-Huffman-coded streams: cluster indices of the non-zero weights and
relative position gaps of fixed width (with filler entries). Everything else is stored raw.
Format 1.1 adds optional named byte sections after the records (e.g. ``graph.onnx``, the network
graph for :mod:`deepcompress.runtime`); files without sections are written as 1.0, byte for byte.
A CRC-32 of the whole file closes it. No pickle anywhere.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..coding import huffman
from ..coding.sparse import MAX_INDEX_BITS, decode_positions, encode_positions
from ..errors import CodingError, FormatError

MAGIC = b"\x89DCZ\r\n\x1a\n"
VERSION = (1, 0)
VERSION_SECTIONS = (1, 1)  # written only when the file carries named sections after the records
RAW, SHARED = 0, 1
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("<i8"), 3: np.dtype("<i4"), 4: np.dtype("u1")}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
MAX_NDIM = 8
MAX_NUMEL = 2**31 - 1
MAX_CODEBOOK = 2**16
DEFAULT_MAX_ELEMENTS = 2**28
"""Default limit on the elements all tensors of one file decode to (1 GiB of float32)."""
MIN_RECORD_BYTES = 7  # name length, 1-byte name, encoding, ndim 0, dtype u1, 1 byte of data


@dataclass
class SharedTensor:
    """A pruned, weight-shared tensor: ``value = [0, *codebook][index]`` element-wise."""

    codebook: np.ndarray  # float32 or float16 [k]
    index: np.ndarray  # int64 [numel]; 0 = zero, 1..k = cluster
    index_bits: int


@dataclass
class RecordInfo:
    """How one tensor was stored (for ``inspect`` and reports)."""

    name: str
    encoding: str
    shape: tuple[int, ...]
    bytes: int
    dtype: str = "float32"
    codebook_size: int = 0
    index_bits: int = 0
    entries: int = 0
    nonzero: int = 0
    fillers: int = 0
    weight_bits: int = 0
    gap_bits: int = 0
    table_bytes: int = 0


@dataclass
class DczFile:
    """A decoded .dcz: its header, tensors (numpy, by state_dict key) and per-record details."""

    header: dict[str, Any]
    tensors: dict[str, np.ndarray]
    records: list[RecordInfo] = field(default_factory=list)
    size: int = 0
    sections: dict[str, bytes] = field(default_factory=dict)  # named byte blobs (format 1.1), e.g. "graph.onnx"


# ----------------------------------------------------------------------------------------- writing

def _pack_lengths(lengths: np.ndarray) -> bytes:
    """Code-length table: u32 m (symbols 0..m-1 listed; later ones unused), then m 4-bit lengths."""
    nz = np.flatnonzero(lengths)
    m = int(nz[-1]) + 1 if nz.size else 0
    nib = np.zeros(m + (m & 1), dtype=np.uint8)
    nib[:m] = lengths[:m]
    return struct.pack("<I", m) + ((nib[0::2] << 4) | nib[1::2]).astype(np.uint8).tobytes()


def _encode_stream(symbols: np.ndarray, alphabet: int) -> tuple[bytes, int, int]:
    """(table + bit count + bitstream bytes, payload bits, table bytes) for one Huffman stream."""
    counts = np.bincount(symbols, minlength=alphabet) if symbols.size else np.zeros(alphabet, np.int64)
    lengths = huffman.code_lengths(counts)
    table = _pack_lengths(lengths)
    data, nbits = huffman.encode(symbols, lengths)
    return table + struct.pack("<Q", nbits) + data, nbits, len(table)


def _encode_shared(t: SharedTensor, numel: int) -> tuple[bytes, dict[str, int]]:
    k = int(t.codebook.size)
    if not 1 <= k <= MAX_CODEBOOK:
        raise FormatError(f"codebook size {k} outside 1..{MAX_CODEBOOK}")
    if t.index.size != numel or t.index.min(initial=0) < 0 or t.index.max(initial=0) > k:
        raise FormatError("index array does not match the tensor or the codebook")
    cb = np.asarray(t.codebook)
    if cb.dtype not in (np.float32, np.float16):
        raise FormatError(f"codebook dtype must be float32 or float16, got {cb.dtype}")
    positions = np.flatnonzero(t.index)
    symbols = t.index[positions] - 1
    gaps, entries = encode_positions(positions, symbols, t.index_bits, filler_symbol=k)
    wstream, wbits, wtable = _encode_stream(entries, k + 1)
    gstream, gbits, gtable = _encode_stream(gaps, 2**t.index_bits)
    cb_dtype = cb.dtype.newbyteorder("<")
    body = (struct.pack("<BI", DTYPE_CODES[cb_dtype], k) + cb.astype(cb_dtype).tobytes()
            + struct.pack("<BI", t.index_bits, entries.size) + wstream + gstream)
    stats = {"codebook_size": k, "index_bits": t.index_bits, "entries": int(entries.size),
             "nonzero": int(positions.size), "fillers": int(entries.size - positions.size),
             "weight_bits": wbits, "gap_bits": gbits, "table_bytes": wtable + gtable}
    return body, stats


def _encode_head(header: dict[str, Any], version: tuple[int, int]) -> bytes:
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return MAGIC + struct.pack("<HHI", *version, len(head)) + head


def _encode_sections(sections: dict[str, bytes]) -> bytes:
    """Section block (format 1.1): u32 count, then per section u16 name length, UTF-8 name, u64 size, bytes."""
    parts = [struct.pack("<I", len(sections))]
    for name, blob in sections.items():
        bname = name.encode("utf-8")
        if not 0 < len(bname) < 2**16:
            raise FormatError(f"section name {name!r} must be 1..65535 bytes of UTF-8")
        parts += [struct.pack("<H", len(bname)), bname, struct.pack("<Q", len(blob)), bytes(blob)]
    return b"".join(parts)


def _finish(head: bytes, records: bytes, sections: dict[str, bytes] | None) -> bytes:
    body = head + records + (_encode_sections(sections) if sections else b"")
    return body + struct.pack("<I", zlib.crc32(body))


def encode_dcz(header: dict[str, Any], tensors: dict[str, np.ndarray],
               shared: dict[str, SharedTensor] | None = None,
               sections: dict[str, bytes] | None = None) -> tuple[bytes, list[RecordInfo]]:
    """Serialise a header and tensors (shared ones given as :class:`SharedTensor`) to .dcz bytes.

    ``sections`` (named byte blobs, e.g. an ONNX graph) make it a format 1.1 file; without them the
    bytes are exactly format 1.0.
    """
    shared = shared or {}
    parts = [struct.pack("<I", len(tensors))]
    infos = []
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        bname = name.encode("utf-8")
        if not 0 < len(bname) < 2**16:
            raise FormatError(f"tensor name {name!r} must be 1..65535 bytes of UTF-8")
        if arr.ndim > MAX_NDIM or arr.size > MAX_NUMEL:
            raise FormatError(f"tensor {name!r}: shape {arr.shape} exceeds the format's limits")
        rec_head = struct.pack("<H", len(bname)) + bname
        dims = struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape)
        if name in shared:
            body, stats = _encode_shared(shared[name], arr.size)
            rec = rec_head + bytes([SHARED]) + dims + body
            infos.append(RecordInfo(name, "shared", arr.shape, len(rec),
                                    str(np.asarray(shared[name].codebook).dtype), **stats))
        else:
            dt = arr.dtype.newbyteorder("<")
            if dt not in DTYPE_CODES:
                raise FormatError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored raw")
            rec = rec_head + bytes([RAW]) + dims + bytes([DTYPE_CODES[dt]]) + arr.astype(dt).tobytes()
            infos.append(RecordInfo(name, "raw", arr.shape, len(rec), str(arr.dtype)))
        parts.append(rec)
    head = _encode_head(header, VERSION_SECTIONS if sections else VERSION)
    return _finish(head, b"".join(parts), sections), infos


def write_dcz(path: str | os.PathLike, header: dict[str, Any], tensors: dict[str, np.ndarray],
              shared: dict[str, SharedTensor] | None = None,
              sections: dict[str, bytes] | None = None) -> list[RecordInfo]:
    """Encode and write atomically; returns the per-record details."""
    data, infos = encode_dcz(header, tensors, shared, sections)
    atomic_write_bytes(path, data)
    return infos


def replace_extras(data: bytes, header: dict[str, Any], sections: dict[str, bytes]) -> bytes:
    """Copy .dcz bytes with a new header and sections; the tensor records are kept byte for byte."""
    dcz = decode_dcz(data)
    start = len(MAGIC) + 8 + struct.unpack_from("<I", data, len(MAGIC) + 4)[0]
    end = start + 4 + sum(r.bytes for r in dcz.records)
    head = _encode_head(header, VERSION_SECTIONS if sections else VERSION)
    return _finish(head, bytes(data[start:end]), sections)


# ----------------------------------------------------------------------------------------- reading

ExpectShapes = Callable[[dict[str, Any]], Mapping[str, tuple[int, ...]]]
"""Called with the parsed header; returns the shape every tensor must have, by name (see decode_dcz)."""


class _Reader:
    """Bounds-checked cursor over the file bytes; every read names the field and offset on failure."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data, self.pos, self.end = data, 0, end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise FormatError(f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                              f"only {self.end - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _read_lengths(r: _Reader, alphabet: int, what: str) -> np.ndarray:
    at = r.pos
    (m,) = r.unpack("<I", f"{what} table size")
    if m > alphabet:
        raise FormatError(f"{what} code table at offset {at} lists {m} symbols, alphabet has {alphabet}")
    packed = np.frombuffer(r.take((m + 1) // 2, f"{what} code lengths"), dtype=np.uint8)
    nib = np.empty(packed.size * 2, dtype=np.uint8)
    nib[0::2], nib[1::2] = packed >> 4, packed & 0x0F
    lengths = np.zeros(alphabet, dtype=np.uint8)
    lengths[:m] = nib[:m]
    try:
        huffman.validate_lengths(lengths)
    except CodingError as e:
        raise FormatError(f"{what} code table at offset {at}: {e}") from e
    return lengths


class _Stream:
    """One Huffman-coded stream of a shared record, decoded lazily in chunks of symbols.

    A multi-symbol code spends at least one bit per symbol, so its symbol count is bounded by the bits
    in the file and it is decoded at once. The single-symbol code spends none: its ``count`` copies are
    produced chunk by chunk, so a tiny file claiming many entries never allocates them all.
    """

    def __init__(self, r: _Reader, alphabet: int, count: int, what: str) -> None:
        at = r.pos
        lengths = _read_lengths(r, alphabet, what)
        self.table_bytes = r.pos - at
        at = r.pos
        (self.nbits,) = r.unpack("<Q", f"{what} bit count")
        if self.nbits > 8 * r.left():
            raise FormatError(f"{what} at offset {at} claims {self.nbits} bits, more than the file holds")
        data = r.take((self.nbits + 7) // 8, f"{what} bitstream")
        used = np.flatnonzero(lengths)
        self.constant = int(used[0]) if used.size == 1 else None
        if self.constant is not None and count:
            if self.nbits:
                raise FormatError(f"{what} at offset {at}: a single-symbol code takes 0 bits, got {self.nbits}")
            self.symbols = None
            return
        try:
            self.symbols = huffman.decode(data, lengths, count, self.nbits)
        except CodingError as e:
            raise FormatError(f"{what} at offset {at}: {e}") from e

    def chunk(self, start: int, stop: int) -> np.ndarray:
        if self.symbols is None:
            return np.full(stop - start, self.constant, dtype=np.int64)
        return self.symbols[start:stop]


_ENTRY_CHUNK = 1 << 20  # entries placed per step when expanding a shared record


def _read_shared(r: _Reader, name: str, numel: int, start: int) -> tuple[np.ndarray, RecordInfo]:
    at = r.pos
    code, k = r.unpack("<BI", f"{name}: codebook dtype and size")
    if code not in (0, 1) or not 1 <= k <= MAX_CODEBOOK:
        raise FormatError(f"{name}: bad codebook (dtype code {code}, size {k}) at offset {at}")
    dt = DTYPES[code]
    codebook = np.frombuffer(r.take(k * dt.itemsize, f"{name}: codebook"), dtype=dt).astype(np.float32)
    at = r.pos
    bits, n_entries = r.unpack("<BI", f"{name}: index bits and entry count")
    if not 1 <= bits <= MAX_INDEX_BITS:
        raise FormatError(f"{name}: index bits {bits} at offset {at} outside 1..{MAX_INDEX_BITS}")
    if n_entries > numel:
        raise FormatError(f"{name}: {n_entries} entries at offset {at + 1} exceed its {numel} elements")
    weights = _Stream(r, k + 1, n_entries, f"{name}: weight indices")
    gaps = _Stream(r, 2**bits, n_entries, f"{name}: index gaps")
    values = np.zeros(numel, dtype=np.float32)
    base = nonzero = 0  # base: position after the previous entry
    for lo in range(0, n_entries, _ENTRY_CHUNK):
        hi = min(n_entries, lo + _ENTRY_CHUNK)
        g, s = gaps.chunk(lo, hi), weights.chunk(lo, hi)
        try:
            positions, symbols = decode_positions(g, s, filler_symbol=k, numel=numel - base)
        except CodingError as e:
            raise FormatError(f"{name}: record at offset {start}, entries {lo}..{hi - 1}: {e}") from e
        values[base + positions] = codebook[symbols]
        nonzero += positions.size
        base += int(g.sum()) + g.size
    info = RecordInfo(name, "shared", (), r.pos - start, str(dt.newbyteorder("=")), codebook_size=k,
                      index_bits=bits, entries=n_entries, nonzero=nonzero, fillers=n_entries - nonzero,
                      weight_bits=weights.nbits, gap_bits=gaps.nbits,
                      table_bytes=weights.table_bytes + gaps.table_bytes)
    return values, info


def _read_record(r: _Reader, budget: int, expect: Mapping[str, tuple[int, ...]] | None) -> tuple[
        str, np.ndarray, RecordInfo]:
    """One record; ``budget`` is how many more elements the file may decode to."""
    start = r.pos
    (nlen,) = r.unpack("<H", "tensor name length")
    if nlen == 0:
        raise FormatError(f"empty tensor name at offset {start}")
    try:
        name = r.take(nlen, "tensor name").decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"tensor name at offset {start + 2} is not UTF-8") from e
    at = r.pos
    enc, ndim = r.unpack("<BB", f"{name}: encoding and ndim")
    if enc not in (RAW, SHARED):
        raise FormatError(f"{name}: unknown encoding {enc} at offset {at}")
    if ndim > MAX_NDIM:
        raise FormatError(f"{name}: ndim {ndim} at offset {at + 1} exceeds {MAX_NDIM}")
    at = r.pos
    shape = r.unpack(f"<{ndim}I", f"{name}: shape")
    numel = math.prod(shape)
    if numel > MAX_NUMEL:
        raise FormatError(f"{name}: shape {shape} at offset {at} has {numel} elements, over the limit {MAX_NUMEL}")
    if expect is not None:
        if name not in expect:
            raise FormatError(f"tensor {name!r} at offset {start} does not belong to the model")
        if tuple(expect[name]) != shape:
            raise FormatError(f"{name}: shape {shape} at offset {at} does not match the model's "
                              f"{tuple(expect[name])}")
    if numel > budget:
        raise FormatError(f"{name}: shape {shape} at offset {at} would take the file past its limit of "
                          "decoded elements (max_elements)")
    if enc == RAW:
        (code,) = r.unpack("<B", f"{name}: dtype")
        if code not in DTYPES:
            raise FormatError(f"{name}: unknown dtype code {code} at offset {r.pos - 1}")
        dt = DTYPES[code]
        arr = np.frombuffer(r.take(numel * dt.itemsize, f"{name}: raw data"), dtype=dt).reshape(shape)
        return name, arr, RecordInfo(name, "raw", shape, r.pos - start, str(dt.newbyteorder("=")))
    values, info = _read_shared(r, name, numel, start)
    info.shape = shape
    return name, values.reshape(shape), info


def _read_sections(r: _Reader) -> dict[str, bytes]:
    (count,) = r.unpack("<I", "section count")
    if count > (r.end - r.pos) // 11:
        raise FormatError(f"section count {count} at offset {r.pos - 4} is larger than the file can hold")
    sections: dict[str, bytes] = {}
    for _ in range(count):
        at = r.pos
        (nlen,) = r.unpack("<H", "section name length")
        try:
            name = r.take(nlen, "section name").decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"section name at offset {at + 2} is not UTF-8") from e
        if not name or name in sections:
            raise FormatError(f"section at offset {at} has an empty or repeated name {name!r}")
        (size,) = r.unpack("<Q", f"section {name!r} size")
        sections[name] = r.take(size, f"section {name!r}")
    return sections


def decode_dcz(data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS, expect: ExpectShapes | None = None) -> DczFile:
    """Parse .dcz bytes, validating every field; raises :class:`FormatError` on any problem.

    The tensors may hold at most ``max_elements`` elements in all (a shared record decodes to a dense
    array, and an all-zero one costs almost nothing in the file). ``expect``, when given, is called with
    the header before any record is decoded and returns the shape of every tensor the file may hold;
    records with other names or shapes are refused before their data is decoded.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError("expected bytes")
    data = bytes(data)
    if data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a .dcz file (bad magic bytes at offset 0)")
    if len(data) < len(MAGIC) + 16:
        raise FormatError(f"file too short to be a .dcz ({len(data)} bytes)")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise FormatError(f"checksum mismatch: CRC-32 stored at offset {len(data) - 4} does not match the "
                          "file contents (corrupted or truncated file)")
    r = _Reader(data, len(data) - 4)
    r.pos = len(MAGIC)
    major, minor, hlen = r.unpack("<HHI", "version and header length")
    if major != VERSION[0]:
        raise FormatError(f"unsupported .dcz format version {major}.{minor} at offset {len(MAGIC)} "
                          f"(this reader reads {VERSION[0]}.x)")
    at = r.pos
    try:
        header = json.loads(r.take(hlen, "header").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: bad JSON, huge integers
        raise FormatError(f"header at offset {at} is not valid UTF-8 JSON: {e}") from e
    if not isinstance(header, dict):
        raise FormatError(f"header at offset {at} is not a JSON object")
    shapes = None if expect is None else expect(header)
    (count,) = r.unpack("<I", "tensor count")
    if count > r.left() // MIN_RECORD_BYTES:
        raise FormatError(f"tensor count {count} at offset {r.pos - 4} is larger than the file can hold")
    tensors, infos = {}, []
    budget = max_elements
    for _ in range(count):
        at = r.pos
        name, arr, info = _read_record(r, budget, shapes)
        if name in tensors:
            raise FormatError(f"tensor {name!r} at offset {at} appears twice")
        budget -= arr.size
        tensors[name] = arr
        infos.append(info)
    sections = _read_sections(r) if (major, minor) >= VERSION_SECTIONS else {}
    if r.pos != r.end:
        raise FormatError(f"{r.end - r.pos} unexpected bytes after the last record at offset {r.pos}")
    return DczFile(header, tensors, infos, len(data), sections)


def read_dcz(path: str | os.PathLike, max_elements: int = DEFAULT_MAX_ELEMENTS,
             expect: ExpectShapes | None = None) -> DczFile:
    """Read and fully decode a .dcz file (see :func:`decode_dcz`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such .dcz file: {path}")
    if not path.is_file():
        raise FormatError(f"{path} is not a regular file")
    try:
        return decode_dcz(path.read_bytes(), max_elements, expect)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from e
