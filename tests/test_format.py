"""The .dcz container: bit-exact round trips, and malformed files always raise FormatError (never crash)."""

from __future__ import annotations

import json
import random
import struct
import time

import numpy as np
import pytest
import torch
from dcz_samples import compressed_model, dcz_bytes, recrc, sections, with_crc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcompress.errors import FormatError
from deepcompress.export import with_graph
from deepcompress.format.dcz import MAGIC, SharedTensor, decode_dcz, encode_dcz, read_dcz
from deepcompress.format.model import load_model, model_from_dcz, read_model_dcz, round_for_storage, save_model
from deepcompress.quantize import shared_state


def outcome(data: bytes, **kwargs) -> str:
    """"ok" or "FormatError"; any other exception fails the test."""
    try:
        decode_dcz(data, **kwargs)
    except FormatError as e:
        assert str(e)
        return "FormatError"
    return "ok"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> bytes:
    """LeNet-5, 99% pruned: conv1, conv2 and fc1 shared (3 bits, float16 codebooks), fc2 raw."""
    model = compressed_model("lenet-5", sparsity=0.99, bits=3, shared_layers=3)
    round_for_storage(model, codebook_dtype="float16")
    return dcz_bytes(model, tmp_path_factory.mktemp("dcz"), codebook_dtype="float16")


def test_sections_walk_the_whole_file(sample):
    fields = sections(sample)
    assert fields[-1] == (len(sample), "end")
    assert [o for o, _ in fields] == sorted(o for o, _ in fields)


# ------------------------------------------------------------------------------------------ round trip

@pytest.mark.parametrize("arch,raw_dtype,codebook_dtype,index_bits", [
    ("lenet-5", "float32", "float32", None),
    ("lenet-300-100", "float16", "float16", {"fc1": 3, "default": "auto"}),
])
def test_round_trip_is_bit_exact(tmp_path, arch, raw_dtype, codebook_dtype, index_bits):
    model = compressed_model(arch, sparsity=0.9, bits=4, shared_layers=2)
    round_for_storage(model, raw_dtype, codebook_dtype)
    path = tmp_path / "m.dcz"
    records = save_model(model, path, index_bits, raw_dtype, codebook_dtype)
    assert {r.encoding for r in records} == {"raw", "shared"}
    expected, shared = shared_state(model)
    got = load_model(path).state_dict()
    assert set(got) == set(expected)
    for key, t in expected.items():
        assert got[key].dtype == t.dtype
        assert torch.equal(got[key].view(-1).view(torch.uint8) if t.is_floating_point() else got[key], (
            t.view(-1).view(torch.uint8) if t.is_floating_point() else t)), key
    again = path.read_bytes()
    save_model(model, path, index_bits, raw_dtype, codebook_dtype)
    assert path.read_bytes() == again  # deterministic bytes


def test_empty_and_degenerate_shared_records_round_trip():
    tensors = {"all_zero": np.zeros((3, 5), np.float32), "one_value": np.full(7, 0.5, np.float32),
               "empty": np.zeros((0, 4), np.float32), "scalar": np.float32(2.0)}
    shared = {"all_zero": SharedTensor(np.array([1.0], np.float32), np.zeros(15, np.int64), 1),
              "one_value": SharedTensor(np.array([0.5], np.float32), np.ones(7, np.int64), 1),
              "empty": SharedTensor(np.array([1.0], np.float32), np.zeros(0, np.int64), 16),
              "scalar": SharedTensor(np.array([2.0], np.float32), np.ones(1, np.int64), 8)}
    data, _ = encode_dcz({"x": 1}, tensors, shared)
    dcz = decode_dcz(data)
    for key, arr in tensors.items():
        assert dcz.tensors[key].shape == np.shape(arr)
        assert np.array_equal(dcz.tensors[key], arr)


# ---------------------------------------------------------------------------- truncations and bit flips

def test_every_truncation_at_section_boundaries(sample):
    cuts = sorted({c for o, _ in sections(sample) for c in (o - 1, o, o + 1) if 0 <= c < len(sample)})
    for n in cuts:
        assert outcome(sample[:n]) == "FormatError", n
        if n >= 4:  # a file of n bytes whose checksum is valid: the structure itself must be refused
            assert outcome(with_crc(sample[:n - 4])) == "FormatError", n


def test_bit_flips_at_section_boundaries_and_random_places(sample):
    rng = random.Random(0)
    places = [(o, b) for o, _ in sections(sample)[:-1] for b in (0, 7)]
    places += [(rng.randrange(len(sample)), rng.randrange(8)) for _ in range(200)]
    seen = set()
    for offset, bit in places:
        data = bytearray(sample)
        data[offset] ^= 1 << bit
        assert outcome(bytes(data)) == "FormatError", (offset, bit)  # the CRC-32 catches every single flip
        if offset < len(sample) - 4:
            seen.add(outcome(recrc(bytes(data))))
    assert seen == {"ok", "FormatError"}  # value bits decode; structural bits are refused


# ------------------------------------------------------------------------------------- crafted inputs

def _file(records: bytes, count: int, header: bytes = b"{}", version: tuple[int, int] = (1, 0)) -> bytes:
    return with_crc(MAGIC + struct.pack("<HHI", *version, len(header)) + header + struct.pack("<I", count) + records)


def _shared_record(shape: tuple[int, ...], n_entries: int, gap_table: bytes = b"\x01\x00\x00\x00\x10",
                   weight_table: bytes = b"\x01\x00\x00\x00\x10") -> bytes:
    """A shared record whose streams use the zero-bit single-symbol code (symbol 0)."""
    stream = lambda table: table + struct.pack("<Q", 0)  # noqa: E731
    return (struct.pack("<H", 1) + b"w" + bytes([1, len(shape)]) + struct.pack(f"<{len(shape)}I", *shape)
            + struct.pack("<BIf", 0, 1, 0.25) + struct.pack("<BI", 1, n_entries)
            + stream(weight_table) + stream(gap_table))


def test_tiny_file_claiming_a_huge_tensor_is_refused_fast():
    t = time.perf_counter()
    for shape in [(2**31 - 1,), (65536, 32768), (2**32 - 1,) * 8, (2**28 + 1,)]:
        with pytest.raises(FormatError, match="elements"):
            decode_dcz(_file(_shared_record(shape, 2**31 - 1 if len(shape) == 1 else 0), 1))
    with pytest.raises(FormatError, match="max_elements"):
        decode_dcz(_file(_shared_record((1000,), 1000), 1), max_elements=999)
    assert time.perf_counter() - t < 1


def test_zero_bit_streams_decode_in_chunks():
    # 3 * 2**20 + 5 entries of gap 0 and symbol 0 in a 70-byte record: a dense layer of one value
    n = 3 * 2**20 + 5
    dcz = decode_dcz(_file(_shared_record((n,), n), 1))
    assert dcz.tensors["w"].shape == (n,) and np.all(dcz.tensors["w"] == 0.25)
    with pytest.raises(FormatError, match="outside a layer|leaves a layer"):  # gap 1: 2n positions needed
        decode_dcz(_file(_shared_record((n,), n, gap_table=b"\x02\x00\x00\x00\x01"), 1))


@pytest.mark.parametrize("mutate,match", [
    (lambda d: b"PK\x03\x04" + d[4:], "magic"),
    (lambda d: recrc(d[:8] + struct.pack("<HH", 2, 0) + d[12:]), "version 2.0"),
    (lambda d: recrc(d[:12] + struct.pack("<I", 2**32 - 1) + d[16:]), "header needs"),
    (lambda d: recrc(d + b"\x00" * 8), "unexpected bytes"),
    (lambda d: d[:20], "too short"),
])
def test_crafted_headers(sample, mutate, match):
    with pytest.raises(FormatError, match=match):
        decode_dcz(mutate(sample))


@pytest.mark.parametrize("header,match", [
    (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    (b'{"a": ' + b"9" * 5000 + b"}", "JSON"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"[1, 2]", "JSON object"),
])
def test_bad_header_json(header, match):
    with pytest.raises(FormatError, match=match):
        decode_dcz(_file(b"", 0, header))


@pytest.mark.parametrize("record,count,match", [
    (b"", 2**32 - 1, "tensor count"),
    (struct.pack("<H", 0) + bytes([0, 0, 4, 0, 0]), 1, "empty tensor name"),
    (struct.pack("<H", 2) + b"\xc3\x28" + bytes([0, 0, 4, 0]), 1, "not UTF-8"),
    (struct.pack("<H", 1) + b"x" + bytes([7, 0, 4, 0]), 1, "unknown encoding 7"),
    (struct.pack("<H", 1) + b"x" + bytes([0, 9]) + bytes(40), 1, "ndim 9"),
    (struct.pack("<H", 1) + b"x" + bytes([0, 0, 9, 0]), 1, "dtype code 9"),
    (struct.pack("<H", 1) + b"x" + bytes([0, 1]) + struct.pack("<I", 10**6) + b"\x00" * 9, 1, "raw data needs"),
    (struct.pack("<H", 1) + b"x" + bytes([1, 0]) + struct.pack("<BI", 0, 0), 1, "bad codebook"),
    (struct.pack("<H", 1) + b"x" + bytes([1, 0]) + struct.pack("<BIfBI", 0, 1, 1.0, 17, 0), 1, "index bits 17"),
    (struct.pack("<H", 1) + b"x" + bytes([1, 0]) + struct.pack("<BIfBI", 0, 1, 1.0, 4, 2), 1, "exceed"),
    (_shared_record((4,), 1, weight_table=struct.pack("<I", 3) + b"\x11\x10"), 1, "alphabet has 2"),
    (_shared_record((4,), 1, weight_table=struct.pack("<I", 2) + b"\x22"), 1, "incomplete"),
    (_shared_record((4,), 1, weight_table=struct.pack("<I", 2) + b"\x20"), 1, "length 1"),
    (_shared_record((4,), 1, weight_table=struct.pack("<I", 0)), 1, "empty code"),
    (_shared_record((4,), 1) * 2, 2, "twice"),
])
def test_crafted_records(record, count, match):
    with pytest.raises(FormatError, match=match):
        decode_dcz(_file(record, count))


def test_bit_count_beyond_the_file_and_nonzero_bits_of_a_zero_bit_code():
    rec = _shared_record((4,), 1)
    gap_bits, weight_bits = len(rec) - 8, len(rec) - 8 - 5 - 8
    for at, value, match in [(gap_bits, 2**64 - 1, "more than the file holds"), (gap_bits, 8, "more than the file"),
                             (weight_bits, 3, "takes 0 bits, got 3")]:
        bad = rec[:at] + struct.pack("<Q", value) + rec[at + 8:]
        with pytest.raises(FormatError, match=match):
            decode_dcz(_file(bad, 1))


# ------------------------------------------------------------------------- section block (format 1.1)

def _block(*sections: tuple[bytes, bytes], count: int | None = None) -> bytes:
    """A section block from (name bytes, payload) pairs; ``count`` overrides the section count."""
    out = struct.pack("<I", len(sections) if count is None else count)
    return out + b"".join(struct.pack("<H", len(n)) + n + struct.pack("<Q", len(p)) + p for n, p in sections)


_RAW = struct.pack("<H", 1) + b"x" + bytes([0, 0, 4, 7])  # tensor x: raw u8 scalar 7


def test_sections_round_trip_and_set_the_minor_version():
    tensors = {"x": np.arange(3, dtype=np.float32)}
    plain, _ = encode_dcz({"a": 1}, tensors)
    assert plain[8:12] == b"\x01\x00\x00\x00" and encode_dcz({"a": 1}, tensors, sections={})[0] == plain
    blobs = {"z": b"\x00" * 3, "graph.onnx": b"\x78\x9c", "x": b""}  # order kept; may share a tensor's name
    data, _ = encode_dcz({"a": 1}, tensors, sections=blobs)
    assert data[8:12] == b"\x01\x00\x01\x00"
    # the same bytes as 1.0 up to the records, then the block (u32 count; u16 name length, name, u64 size, bytes)
    block = _block(*((k.encode(), v) for k, v in blobs.items()))
    assert data[:10] + data[12:-4] == plain[:10] + plain[12:-4] + block
    dcz = decode_dcz(data)
    assert list(dcz.sections.items()) == list(blobs.items()) and np.array_equal(dcz.tensors["x"], tensors["x"])
    assert decode_dcz(recrc(data[:10] + b"\x07\x00" + data[12:])).sections == blobs  # any minor >= 1 has the block
    with pytest.raises(FormatError, match="unexpected bytes"):  # minor 0: the block is left over, as in a 1.0 reader
        decode_dcz(recrc(data[:10] + b"\x00\x00" + data[12:]))
    assert decode_dcz(_file(_RAW + _block(), 1, version=(1, 1))).sections == {}


@pytest.mark.parametrize("block,match", [
    (b"", "truncated file: section count"),
    (_block(count=2**32 - 1) + bytes(44), "section count 4294967295"),
    (_block((b"", b"x")), "empty or repeated name ''"),
    (_block((b"a", b""), (b"b", b"1"), (b"a", b"2")), "empty or repeated name 'a'"),
    (_block((b"\xc3\x28", b"")), "not UTF-8"),
    (struct.pack("<IH", 1, 100) + b"a" * 20, "truncated file: section name needs 100"),
    (_block((b"a", b"xy"))[:-1], "section 'a' needs 2 bytes"),
    (_block((b"a", b""))[:-8] + struct.pack("<Q", 2**64 - 1), "section 'a' needs 18446744073709551615"),
    (_block((b"a", b"x" * 12), (b"b", b""))[:-4], "truncated file: section 'b' size"),
    (_block((b"a", b"x")) + b"\x00", "1 unexpected bytes"),
    (_block((b"a", b"x"), count=0), "12 unexpected bytes"),
])
def test_bad_section_blocks(block, match):
    with pytest.raises(FormatError, match=match):
        decode_dcz(_file(_RAW + block, 1, version=(1, 1)))


def test_writer_refuses_bad_section_names():
    for name in ["", "x" * 2**16]:
        with pytest.raises(FormatError, match="section name"):
            encode_dcz({}, {}, sections={name: b""})


def _block_fields(data: bytes, start: int) -> list[tuple[int, str]]:
    """(offset, field) of the section block starting at ``start``, then the CRC and the end."""
    (count,) = struct.unpack_from("<I", data, start)
    out, pos = [(start, "section count")], start + 4
    for _ in range(count):
        (nlen,) = struct.unpack_from("<H", data, pos)
        (size,) = struct.unpack_from("<Q", data, pos + 2 + nlen)
        out += [(pos, "name length"), (pos + 2, "name"), (pos + 2 + nlen, "size"), (pos + 10 + nlen, "payload")]
        pos += 10 + nlen + size
    assert pos + 4 == len(data)
    return [*out, (pos, "crc"), (pos + 4, "end")]


def test_embedded_graph_block_truncations_and_flips(sample):
    dcz, data = with_graph(decode_dcz(sample), sample)
    assert data[8:12] == b"\x01\x00\x01\x00" and list(dcz.sections) == ["graph.onnx"]
    (old, new) = (struct.unpack_from("<I", d, 12)[0] for d in (sample, data))
    start = len(sample) - 4 + new - old  # the records are copied byte for byte; only the header grew
    assert data[16 + new:start] == sample[16 + old:-4]
    fields = _block_fields(data, start)
    for n in sorted({c for o, _ in fields for c in (o - 1, o, o + 1) if start <= c < len(data)}):
        assert outcome(data[:n]) == "FormatError", n
        assert outcome(with_crc(data[:n - 4])) == "FormatError", n
    for offset, what in fields[:-2]:
        for bit in (0, 7):
            flipped = bytearray(data)
            flipped[offset] ^= 1 << bit
            assert outcome(bytes(flipped)) == "FormatError"  # the CRC covers the block
            got = outcome(recrc(bytes(flipped)))
            if what in ("section count", "size"):  # structure: any other value misplaces the end
                assert got == "FormatError", (what, bit)


# ------------------------------------------------------------------------------ model_from_dcz headers

def _with_model(sample: bytes, model: object) -> bytes:
    dcz = decode_dcz(sample)
    header = {**dcz.header, "model": model}
    head = json.dumps(header).encode()
    (hlen,) = struct.unpack_from("<I", sample, 12)
    return recrc(sample[:12] + struct.pack("<I", len(head)) + head + sample[16 + hlen:])


@pytest.mark.parametrize("change,match", [
    ({"arch": "resnet-9000"}, "unknown model"),
    ({"arch": 5}, "string 'arch'"),
    ({"kwargs": {"num_classes": "ten"}}, "cannot build"),
    ({"kwargs": {"num_classes": 10**30}}, "cannot build"),
    ({"kwargs": {"num_classes": 2**40}}, "over the limit"),
    ({"kwargs": {"num_classes": -3}}, "cannot build"),
    ({"kwargs": {"depth": 3}}, "takes no argument"),
    ({"kwargs": {"num_classes": 12}}, "shape"),
    ({"kwargs": {"pretrained": True}}, "pretrained"),
    ({"kwargs": [["num_classes", 10]]}, "kwargs"),
    ({"kwargs": {"num_classes": {"a": 1}}}, "kwargs"),
    ({"class_names": "0123456789"}, "class_names"),
    ({"input_size": [1, -28, 28]}, "input_size"),
    ({"std": [0.0]}, "std"),
    ({"mean": ["x"]}, "mean"),
])
def test_bad_model_header(sample, change, match):
    model = {**decode_dcz(sample).header["model"], **change}
    data = _with_model(sample, model)
    with pytest.raises(FormatError, match=match):
        model_from_dcz(decode_dcz(data))


def test_model_header_is_checked_before_records_are_decoded(sample, tmp_path):
    path = tmp_path / "x.dcz"
    path.write_bytes(_with_model(sample, {**decode_dcz(sample).header["model"], "arch": "lenet-300-100"}))
    with pytest.raises(FormatError, match="does not belong|does not match"):
        read_model_dcz(path)
    assert read_dcz(path).tensors  # the container itself is fine
    path.write_bytes(_with_model(sample, None))
    with pytest.raises(FormatError, match="string 'arch'"):
        load_model(path)


def test_read_dcz_non_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dcz(tmp_path / "missing.dcz")
    with pytest.raises(FormatError, match="not a regular file"):
        read_dcz(tmp_path)


# ---------------------------------------------------------------------------------------- hypothesis

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=12)
_names = st.text(min_size=1, max_size=12).filter(lambda s: len(s.encode()) < 2**16)


@st.composite
def _tensors(draw) -> tuple[dict, dict, dict]:
    """Random raw and shared tensors (with a random JSON header)."""
    tensors, shared = {}, {}
    for name in draw(st.lists(_names, max_size=4, unique=True)):
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
        numel = int(np.prod(shape))
        if draw(st.booleans()):
            k = draw(st.integers(1, 6))
            index = np.array(draw(st.lists(st.integers(0, k), min_size=numel, max_size=numel)), np.int64)
            codebook = np.array(draw(st.lists(st.floats(-4, 4, width=32), min_size=k, max_size=k)), np.float32)
            shared[name] = SharedTensor(codebook, index, draw(st.integers(1, 16)))
            tensors[name] = np.concatenate([[0], codebook])[index].reshape(shape).astype(np.float32)
        else:
            dtype = draw(st.sampled_from(["<f4", "<f2", "<i8", "<i4", "u1"]))
            tensors[name] = np.arange(numel).astype(dtype).reshape(shape)
    return draw(st.dictionaries(st.text(max_size=6), _json, max_size=4)), tensors, shared


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tensors(), st.data())
def test_generated_files_round_trip_and_survive_mutation(spec, data):
    header, tensors, shared = spec
    blob, _ = encode_dcz(header, tensors, shared)
    dcz = decode_dcz(blob)
    assert dcz.header == header
    for name, arr in tensors.items():
        assert dcz.tensors[name].shape == arr.shape
        assert dcz.tensors[name].tobytes() == arr.tobytes()
    # then mutate it (checksum recomputed): the parser must answer ok or FormatError
    body = bytearray(blob[:-4])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    outcome(with_crc(bytes(body[:cut])))
    outcome(with_crc(bytes(body)))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 3), st.binary(max_size=200))
def test_random_records_after_a_valid_header(header, count, records):
    outcome(_file(records, count, header))
    outcome(_file(records, count))
