"""docs/format.md is complete: a C decoder written from it alone agrees bit for bit with the Python reader."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from dcz_samples import compressed_model, dcz_bytes, recrc

from deepcompress.errors import FormatError
from deepcompress.format.dcz import DczFile, SharedTensor, decode_dcz, encode_dcz
from deepcompress.format.model import round_for_storage

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).parent / "spec_decoder" / "dczdump.c"
KINDS = {"f32": "<u4", "f16": "<u2", "i64": "<i8", "i32": "<i4", "u8": "u1"}


def doc_example() -> bytes:
    """The hex dump of section 9 of docs/format.md."""
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    block = text.split("## 9.")[1].split("```")[1]
    return bytes.fromhex("".join(line[6:] for line in block.strip().splitlines()))


def test_doc_example_is_what_the_writer_produces():
    tensors = {"w": np.array([[1, 0, 0, 0, 0], [0, 0, -0.5, 0.25, 0]], np.float32),
               "b": np.array([1.5, -2], np.float32)}
    shared = {"w": SharedTensor(np.array([-0.5, 0.25, 1.0], np.float32), np.array([3, 0, 0, 0, 0, 0, 0, 1, 2, 0]), 2)}
    data, _ = encode_dcz({"note": "example"}, tensors, shared)
    assert doc_example() == data
    assert re.search(r"A (\d+)-byte file", (ROOT / "docs" / "format.md").read_text()).group(1) == str(len(data))


@pytest.fixture(scope="module")
def dczdump(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc/cc) on this machine to build the independent decoder")
    exe = tmp_path_factory.mktemp("spec") / "dczdump"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def run_c(exe: Path, data: bytes, tmp_path: Path, max_elements: int = 2**28) -> tuple[dict, dict] | None:
    """(header, tensors) as the C decoder sees them, or None when it rejects the file."""
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
        tensors = {}
        for head, values in zip(lines[1:-1:2], lines[2::2], strict=True):
            _, name, kind, ndim, *dims = head.split(" ")
            assert int(ndim) == len(dims)
            parse = (lambda v: int(v, 16)) if kind in ("f32", "f16") else int
            flat = np.array([parse(v) for v in values.split()], dtype=KINDS[kind])
            tensors[bytes.fromhex(name).decode("utf-8")] = flat.reshape([int(d) for d in dims])
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return header, tensors


def as_bits(arr: np.ndarray) -> np.ndarray:
    """Float arrays as their bit patterns (so -0.0 and NaN payloads are compared too)."""
    if arr.dtype.kind == "f":
        return arr.view({4: "<u4", 2: "<u2"}[arr.dtype.itemsize])
    return arr


def assert_same(c: tuple[dict, dict[str, np.ndarray]], py: DczFile) -> None:
    header, tensors = c
    assert header == py.header
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
    return {
        "lenet-5, f16 codebooks, fc2 raw": dcz_bytes(lenet5, tmp, codebook_dtype="float16",
                                                     index_bits={"conv": 8, "fc": 5}),
        "lenet-300-100, f16 raw, auto index bits": dcz_bytes(lenet300, tmp, index_bits="auto",
                                                             raw_dtype="float16"),
        "integer and f16 raw tensors": encode_dcz({"x": [1, None]}, ints)[0],
        "docs/format.md example": doc_example(),
    }


@pytest.mark.parametrize("which", ["lenet-5, f16 codebooks, fc2 raw", "lenet-300-100, f16 raw, auto index bits",
                                   "integer and f16 raw tensors", "docs/format.md example"])
def test_c_decoder_matches_python_bit_for_bit(dczdump, real_files, tmp_path, which):
    data = real_files[which]
    c = run_c(dczdump, data, tmp_path)
    assert c is not None
    assert_same(c, decode_dcz(data))


def _small_file() -> bytes:
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
    return encode_dcz({"model": {"arch": "x"}}, tensors, shared)[0]


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
        data = recrc(bytes(data))
        try:
            py = decode_dcz(data, max_elements=2**14)
        except FormatError:
            py = None
        c = run_c(dczdump, data, tmp_path, max_elements=2**14)
        assert (c is None) == (py is None)
        if py is not None:
            assert_same(c, py)
            accepted += 1
    assert 0 < accepted < 300
