"""docs/format.md is complete: a C decoder written from it alone agrees bit for bit with the Python reader."""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from dcz_samples import compressed_model, dcz_bytes, recrc

from deepcompress.errors import FormatError
from deepcompress.export import embed_graph
from deepcompress.format.dcz import DczFile, SharedTensor, decode_dcz, encode_dcz
from deepcompress.format.model import round_for_storage, save_model

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).parent / "spec_decoder" / "dczdump.c"
KINDS = {"f32": "<u4", "f16": "<u2", "i64": "<i8", "i32": "<i4", "u8": "u1"}


DOC = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")


def _hex_dump(section: str) -> tuple[int, bytes]:
    """(offset of the first line, bytes) of the first hex dump after ``section`` in docs/format.md."""
    lines = DOC.split(section)[1].split("```")[1].strip().splitlines()
    return int(lines[0][:4], 16), bytes.fromhex("".join(line[6:] for line in lines))


def doc_example() -> bytes:
    """The hex dump of section 10 of docs/format.md (a 1.0 file)."""
    start, data = _hex_dump("## 10.")
    assert start == 0
    return data


def doc_example_1_1() -> bytes:
    """Section 10.1 of docs/format.md: the same file as 1.1, given as its changed minor version and tail."""
    start, tail = _hex_dump("### 10.1")
    head = bytearray(doc_example()[:start])
    head[10] = 1
    return bytes(head) + tail


def test_doc_examples_are_what_the_writer_produces():
    tensors = {"w": np.array([[1, 0, 0, 0, 0], [0, 0, -0.5, 0.25, 0]], np.float32),
               "b": np.array([1.5, -2], np.float32)}
    shared = {"w": SharedTensor(np.array([-0.5, 0.25, 1.0], np.float32), np.array([3, 0, 0, 0, 0, 0, 0, 1, 2, 0]), 2)}
    data, _ = encode_dcz({"note": "example"}, tensors, shared)
    assert doc_example() == data
    assert re.search(r"A (\d+)-byte file", DOC).group(1) == str(len(data))
    data, _ = encode_dcz({"note": "example"}, tensors, shared, {"note": b"hi"})
    assert doc_example_1_1() == data
    assert re.search(r"grows to (\d+) bytes", DOC).group(1) == str(len(data))
    assert decode_dcz(data).sections == {"note": b"hi"}


@pytest.fixture(scope="module")
def dczdump(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc/cc) on this machine to build the independent decoder")
    exe = tmp_path_factory.mktemp("spec") / "dczdump"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def run_c(exe: Path, data: bytes, tmp_path: Path, max_elements: int = 2**28) -> tuple[dict, dict, dict] | None:
    """(header, tensors, sections) as the C decoder sees them, or None when it rejects the file; a section
    is given as (size, CRC-32 of its payload)."""
    path = tmp_path / "f.dcz"
    path.write_bytes(data)
    proc = subprocess.run([str(exe), str(path), str(max_elements)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        assert proc.stderr.startswith("error:"), proc.stderr
        return None
    lines = proc.stdout.split("\n")
    try:  # the parts the C program leaves to its caller: JSON object header, UTF-8 names
        header = json.loads(bytes.fromhex(lines[0].split(" ", 1)[1]).decode("utf-8"))
        if not isinstance(header, dict):
            return None
        tensors, sections = {}, {}
        i = 1
        while lines[i].startswith("tensor "):
            _, name, kind, ndim, *dims = lines[i].split(" ")
            assert int(ndim) == len(dims)
            parse = (lambda v: int(v, 16)) if kind in ("f32", "f16") else int
            flat = np.array([parse(v) for v in lines[i + 1].split()], dtype=KINDS[kind])
            tensors[bytes.fromhex(name).decode("utf-8")] = flat.reshape([int(d) for d in dims])
            i += 2
        while lines[i].startswith("section "):
            _, name, size, crc = lines[i].split(" ")
            sections[bytes.fromhex(name).decode("utf-8")] = (int(size), int(crc, 16))
            i += 1
        assert lines[i:] == [""], lines[i:]
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return header, tensors, sections


def as_bits(arr: np.ndarray) -> np.ndarray:
    """Float arrays as their bit patterns (so -0.0 and NaN payloads are compared too)."""
    if arr.dtype.kind == "f":
        return arr.view({4: "<u4", 2: "<u2"}[arr.dtype.itemsize])
    return arr


def assert_same(c: tuple[dict, dict[str, np.ndarray], dict[str, tuple[int, int]]], py: DczFile) -> None:
    header, tensors, sections = c
    assert header == py.header
    assert sections == {name: (len(b), zlib.crc32(b)) for name, b in py.sections.items()}
    assert list(sections) == list(py.sections)
    assert list(tensors) == list(py.tensors)
    for name, arr in py.tensors.items():
        assert tensors[name].shape == arr.shape, name
        assert np.array_equal(tensors[name], as_bits(np.asarray(arr))), name


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("real")
    lenet5 = compressed_model("lenet-5", sparsity=0.95, bits=5, shared_layers=3)
    round_for_storage(lenet5, codebook_dtype="float16")
    lenet300 = compressed_model("lenet-300-100", sparsity=0.9, bits=6)
    round_for_storage(lenet300, raw_dtype="float16")
    ints = {"i64": np.array([-(2**40), 7]), "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
            "u8": np.array(255, np.uint8), "f16": np.array([-0.0, 65504, 6e-8], np.float16)}
    graph = tmp / "graph.dcz"
    save_model(compressed_model("lenet-5", sparsity=0.9, bits=4, shared_layers=3), graph)
    embed_graph(graph)
    return {
        "lenet-5 with embedded graph (1.1)": graph.read_bytes(),
        "sections, empty and non-ASCII names (1.1)": encode_dcz({"x": 1}, ints, sections=SECTIONS)[0],
        "lenet-5, f16 codebooks, fc2 raw": dcz_bytes(lenet5, tmp, codebook_dtype="float16",
                                                     index_bits={"conv": 8, "fc": 5}),
        "lenet-300-100, f16 raw, auto index bits": dcz_bytes(lenet300, tmp, index_bits="auto",
                                                             raw_dtype="float16"),
        "integer and f16 raw tensors": encode_dcz({"x": [1, None]}, ints)[0],
        "docs/format.md example": doc_example(),
        "docs/format.md example, 1.1": doc_example_1_1(),
    }


@pytest.mark.parametrize("which", ["lenet-5, f16 codebooks, fc2 raw", "lenet-300-100, f16 raw, auto index bits",
                                   "integer and f16 raw tensors", "docs/format.md example",
                                   "lenet-5 with embedded graph (1.1)", "sections, empty and non-ASCII names (1.1)",
                                   "docs/format.md example, 1.1"])
def test_c_decoder_matches_python_bit_for_bit(dczdump, real_files, tmp_path, which):
    data = real_files[which]
    c = run_c(dczdump, data, tmp_path)
    assert c is not None
    py = decode_dcz(data)
    assert_same(c, py)
    assert (data[10] == 1) == bool(py.sections)
    if "graph" in which:
        assert list(py.sections) == ["graph.onnx"] and py.header["graph"]["section"] == "graph.onnx"
        assert zlib.decompress(py.sections["graph.onnx"])  # a zlib stream (the C decoder need not inflate it)


SECTIONS = {"graph.onnx": zlib.compress(b"not really a graph", 9), "empty": b"", "\u00e9\u4e2d": b"\x00\xff"}


def _small_file(sections: dict[str, bytes] | None = None) -> bytes:
    """Shared tensors with fillers and both codebook dtypes, plus raw ones: a few hundred bytes."""
    rng = np.random.default_rng(0)
    index = np.where(rng.random(600) < 0.1, rng.integers(1, 5, 600), 0)
    codebook = np.array([-1, -0.5, 0.5, 1], np.float32)
    conv = rng.integers(0, 3, 36)
    tensors = {"fc.weight": codebook[np.maximum(index - 1, 0)] * (index > 0), "fc.bias": rng.random(20, np.float32),
               "conv.weight": np.zeros((4, 1, 3, 3), np.float32), "half": np.ones(5, np.float16),
               "steps": np.array(3)}
    shared = {"fc.weight": SharedTensor(codebook, index, 3),
              "conv.weight": SharedTensor(np.array([2, 3], np.float16), conv, 8)}
    tensors["fc.weight"] = tensors["fc.weight"].reshape(20, 30)
    return encode_dcz({"model": {"arch": "x"}}, tensors, shared, sections)[0]


def _agree(exe: Path, data: bytes, tmp_path: Path) -> bool:
    """Whether both decoders accept ``data`` (asserting that they agree, and on the values)."""
    try:
        py = decode_dcz(data, max_elements=2**14)
    except FormatError:
        py = None
    c = run_c(exe, data, tmp_path, max_elements=2**14)
    assert (c is None) == (py is None)
    if py is not None:
        assert_same(c, py)
    return py is not None


def test_c_and_python_agree_on_mutated_files(dczdump, tmp_path):
    """Accept/reject and decoded values agree on files mutated with a recomputed CRC (with a small
    element cap, so that mutated shapes stay cheap to print)."""
    base = _small_file()
    assert_same(run_c(dczdump, base, tmp_path), decode_dcz(base))
    rng = random.Random(1)
    accepted = 0
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) - 4)
            data[at] = rng.randrange(256) if rng.random() < 0.5 else data[at] ^ (1 << rng.randrange(8))
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))] + bytes(4)
        accepted += _agree(dczdump, recrc(bytes(data)), tmp_path)
    assert 0 < accepted < 300


def test_c_and_python_agree_on_mutated_section_blocks(dczdump, tmp_path):
    """The same for a 1.1 file, with most mutations in its section block (and the minor version)."""
    base = _small_file(SECTIONS)
    block = len(base) - len(_small_file())  # size of the section block: the rest is the same
    assert _agree(dczdump, base, tmp_path)
    rng = random.Random(2)
    accepted = 0
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.choice([10, rng.randrange(len(data) - 4 - block, len(data) - 4)])
            data[at] = rng.randrange(256) if rng.random() < 0.5 else data[at] ^ (1 << rng.randrange(8))
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data) - 4 - block, len(data))] + bytes(4)
        accepted += _agree(dczdump, recrc(bytes(data)), tmp_path)
    assert 0 < accepted < 300


def _version(data: bytes, minor: int) -> bytes:
    return recrc(data[:10] + struct.pack("<H", minor) + data[12:])


def _block(*sections: tuple[bytes, bytes], count: int | None = None) -> bytes:
    out = struct.pack("<I", len(sections) if count is None else count)
    return out + b"".join(struct.pack("<H", len(n)) + n + struct.pack("<Q", len(p)) + p for n, p in sections)


@pytest.mark.parametrize("make,ok", [
    (lambda d10, d11: _version(d11, 0), False),  # what a 1.0 reader sees: bytes after the last record
    (lambda d10, d11: _version(d11, 2), True),  # any minor >= 1 carries the block
    (lambda d10, d11: _version(d10, 1), False),  # 1.1 without its block
    (lambda d10, d11: _version(d10[:-4] + _block() + bytes(4), 1), True),  # 0 sections
    (lambda d10, d11: recrc(d11[:-4] + bytes(5)), False),  # trailing bytes
    (lambda d10, d11: _version(d10[:-4] + _block((b"a", b""), (b"a", b"")) + bytes(4), 1), False),
    (lambda d10, d11: _version(d10[:-4] + _block((b"", b"x")) + bytes(4), 1), False),
    (lambda d10, d11: _version(d10[:-4] + _block((b"a", b"xy"))[:-1] + bytes(4), 1), False),
    (lambda d10, d11: _version(d10[:-4] + _block(count=2**32 - 1) + bytes(11 * 8), 1), False),
    (lambda d10, d11: _version(d10[:-4] + _block((b"a", b"x"), (b"w", b"")) + bytes(4), 1), True),
])
def test_c_and_python_agree_on_crafted_section_blocks(dczdump, tmp_path, make, ok):
    assert _agree(dczdump, make(doc_example(), doc_example_1_1()), tmp_path) == ok
