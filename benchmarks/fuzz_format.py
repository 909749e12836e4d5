"""Fuzz campaign for the .dcz reader: mutated files of several models must decode or raise FormatError.

Every case goes through both reading paths, timed and memory-traced separately: the bare container
(``decode_dcz``, default element cap) and the model path of ``deepcompress.load`` (``decode_dcz``
with the header's model shapes, then ``model_from_dcz``). Most mutations recompute the CRC-32 so that
the structural checks, not the checksum, are what is exercised. Prints one JSON object (counts per
mutator and outcome, the slowest case and peak traced memory per path, max RSS) and exits 1 on any
crash (another exception) or hang.

    nice -n 10 env PYTHONPATH=src python benchmarks/fuzz_format.py --cases 10000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dcz_samples import compressed_model, dcz_bytes, recrc, sections  # noqa: E402

from deepcompress.errors import FormatError  # noqa: E402
from deepcompress.format.dcz import DEFAULT_MAX_ELEMENTS, decode_dcz  # noqa: E402
from deepcompress.format.model import model_from_dcz, model_shapes, round_for_storage  # noqa: E402

# Field name suffixes (from dcz_samples.sections) → struct format of the number stored there.
NUMERIC_FIELDS = {"version": "<H", "header length": "<I", "tensor count": "<I", "name length": "<H", "ndim": "<B",
                  "shape": "<I", "encoding": "<B", "dtype": "<B", "codebook dtype": "<B", "codebook size": "<I",
                  "index bits": "<B", "entry count": "<I", "table size": "<I", "bit count": "<Q"}


class Hang(Exception):
    """A case ran past the time limit."""


def _on_alarm(_signum: int, _frame: object) -> None:
    raise Hang


def sample_files() -> dict[str, bytes]:
    """Real .dcz files of several models and settings (random weights: no training needed)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = compressed_model("lenet-300-100", sparsity=0.92, bits=5)
        out["lenet-300-100"] = dcz_bytes(m, tmp)
        m = compressed_model("lenet-300-100", sparsity=0.99, bits=2, seed=1)
        round_for_storage(m, raw_dtype="float16")
        out["lenet-300-100 auto/f16"] = dcz_bytes(m, tmp, index_bits="auto", raw_dtype="float16")
        m = compressed_model("lenet-5", sparsity=0.9, bits=8, shared_layers=3)
        round_for_storage(m, codebook_dtype="float16")
        out["lenet-5 f16 codebooks"] = dcz_bytes(m, tmp, codebook_dtype="float16")
        m = compressed_model("lenet-5", sparsity=0.999, bits=1, seed=2)
        out["lenet-5 1-bit"] = dcz_bytes(m, tmp, index_bits=2)
    return out


# ------------------------------------------------------------------------------------------- mutators

def _interesting(fmt: str, rng: random.Random) -> int:
    top = 2 ** (8 * struct.calcsize(fmt)) - 1
    return rng.choice([0, 1, 2, top, top - 1, top // 2 + 1, min(top, 2**28 + 1), min(top, 2**31 - 1),
                       min(top, 2**31), min(top, 2**16), rng.randrange(top + 1)])


def crafted_count(data: bytes, rng: random.Random, fields: list[tuple[int, str]]) -> bytes:
    """Set one numeric field (a size, count, width, length) to an extreme value; CRC recomputed."""
    candidates = [(o, f) for o, f in fields if f.rsplit(": ", 1)[-1].split(" ", 1)[-1] in NUMERIC_FIELDS
                  or f.rsplit(": ", 1)[-1] in NUMERIC_FIELDS]
    offset, field = rng.choice(candidates)
    name = field.rsplit(": ", 1)[-1]
    fmt = NUMERIC_FIELDS.get(name) or NUMERIC_FIELDS[name.split(" ", 1)[-1]]
    if name == "shape":  # one of the dimensions
        offset += 4 * rng.randrange(max(1, data[offset - 1]))
    value = _interesting(fmt, rng)
    return recrc(data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):])


def truncation(data: bytes, rng: random.Random, fields: list[tuple[int, str]]) -> bytes:
    """Cut the file at a section boundary (±2) or anywhere; usually with a valid CRC over the rest."""
    cut = rng.choice([o + rng.randint(-2, 2) for o, _ in fields] + [rng.randrange(len(data))])
    cut = max(0, min(len(data) - 1, cut))
    return recrc(data[:cut] + bytes(4)) if rng.random() < 0.8 else data[:cut]


def bit_flips(data: bytes, rng: random.Random, fields: list[tuple[int, str]]) -> bytes:
    """Flip 1–8 bits, near section boundaries or anywhere; usually with the CRC recomputed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.choice([rng.choice(fields)[0] + rng.randint(0, 3), rng.randrange(len(out))])
        at = min(at, len(out) - 1)
        out[at] ^= 1 << rng.randrange(8)
    return recrc(bytes(out)) if rng.random() < 0.9 else bytes(out)


def byte_replacements(data: bytes, rng: random.Random, fields: list[tuple[int, str]]) -> bytes:
    """Overwrite 1–16 bytes with 0x00, 0xff, 0x7f, 0x80 or random values; CRC recomputed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        at = rng.choice([rng.choice(fields)[0], rng.randrange(len(out) - 4)])
        out[min(at, len(out) - 5)] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    return recrc(bytes(out))


def splices(data: bytes, rng: random.Random, fields: list[tuple[int, str]], other: bytes = b"") -> bytes:
    """Delete, duplicate or insert a span (often whole sections, or a piece of another file); CRC recomputed."""
    body = data[:-4]
    a, b = sorted(rng.choice([rng.randrange(len(body) + 1), min(rng.choice(fields)[0], len(body))]) for _ in range(2))
    kind = rng.choice(["delete", "duplicate", "foreign", "zeros"])
    if kind == "delete":
        body = body[:a] + body[b:]
    elif kind == "duplicate":
        body = body[:b] + body[a:b] + body[b:]
    elif kind == "foreign" and other:
        start = rng.randrange(len(other))
        body = body[:a] + other[start:start + rng.randint(1, 4096)] + body[b:]
    else:
        body = body[:a] + bytes(rng.randint(1, 64)) + body[a:]
    return recrc(body + bytes(4))


def header_json(data: bytes, rng: random.Random, fields: list[tuple[int, str]]) -> bytes:
    """Replace the JSON header by a mutated one (model entry of wrong types or sizes); CRC recomputed."""
    (hlen,) = struct.unpack_from("<I", data, 12)
    header = json.loads(data[16:16 + hlen])
    model = header["model"]
    weird = [None, -1, 0, 1, 2**40, 10**30, 1.5, float("inf"), "x", [], [1, "a"], {"a": 1}, True]
    key = rng.choice(["arch", "kwargs", "class_names", "input_size", "mean", "std", "model", "kwarg", "nesting"])
    if key == "arch":
        model["arch"] = rng.choice(["lenet-5", "lenet-300-100", "nope", "", 5, None])
    elif key == "kwarg":
        model["kwargs"] = {rng.choice(["num_classes", "pretrained", "in_channels", "zzz"]): rng.choice(weird)}
    elif key == "model":
        header["model"] = rng.choice(weird)
    elif key == "nesting":  # deeper than Python's JSON parser can recurse, or just deep
        model["kwargs"] = {"num_classes": "@"}
    else:
        model[key] = rng.choice(weird)
    depth = rng.choice([50, 500, 5000])
    head = json.dumps(header).replace('"@"', "[" * depth + "]" * depth).encode()
    return recrc(data[:12] + struct.pack("<I", len(head)) + head + data[16 + hlen:])


MUTATORS: dict[str, Callable[..., bytes]] = {
    "crafted_count": crafted_count, "header_json": header_json, "truncation": truncation, "bit_flips": bit_flips,
    "byte_replacements": byte_replacements, "splice": splices,
}


# ----------------------------------------------------------------------------------------------- run

def read_container(data: bytes) -> str:
    """The bare container: ``decode_dcz`` with the default element cap."""
    try:
        decode_dcz(data)
    except FormatError as e:
        return "rejected by checksum" if "checksum mismatch" in str(e) else "rejected by structure"
    return "decoded"


def read_model(data: bytes) -> str:
    """The path of ``deepcompress.load``: records checked against the header's model, then rebuilt."""
    try:
        model_from_dcz(decode_dcz(data, expect=model_shapes(DEFAULT_MAX_ELEMENTS)))
    except FormatError:
        return "refused"
    return "loaded"


STAGES = {"container": read_container, "model": read_model}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds after which a stage counts as a hang")
    p.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"), help="where crashing inputs are saved")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    files = sample_files()
    layouts = {name: sections(data) for name, data in files.items()}
    signal.signal(signal.SIGALRM, _on_alarm)
    tracemalloc.start()
    counts: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    crashes: list[dict] = []
    slowest = {stage: {"seconds": 0.0} for stage in STAGES}
    max_traced = dict.fromkeys(STAGES, 0)
    start = time.perf_counter()
    for case in range(args.cases):
        source = rng.choice(sorted(files))
        mutator = rng.choice(sorted(MUTATORS))
        other = files[rng.choice(sorted(files))]
        extra = {"other": other} if mutator == "splice" else {}
        data = MUTATORS[mutator](files[source], rng, layouts[source], **extra)
        results = []
        for stage, read in STAGES.items():
            tracemalloc.reset_peak()
            t = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            try:
                result = read(data)
            except Hang:
                result = "HANG"
            except Exception as e:  # noqa: BLE001 - anything but FormatError is a finding
                result = f"CRASH {type(e).__name__}"
                crashes.append({"case": case, "stage": stage, "source": source, "mutator": mutator,
                                "error": repr(e)[:300]})
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - t
            max_traced[stage] = max(max_traced[stage], tracemalloc.get_traced_memory()[1])
            if seconds > slowest[stage]["seconds"]:
                slowest[stage] = {"seconds": round(seconds, 4), "case": case, "source": source, "mutator": mutator,
                                  "bytes": len(data), "result": result}
            if result.startswith(("CRASH", "HANG")):
                args.crash_dir.mkdir(parents=True, exist_ok=True)
                (args.crash_dir / f"case{case}.dcz").write_bytes(data)
            results.append(f"{stage} {result}")
        outcome = ", ".join(results)
        counts[mutator][outcome] += 1
        totals[outcome] += 1
    hangs = sum(n for o, n in totals.items() if "HANG" in o)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "cases": args.cases, "seed": args.seed, "wall_seconds": round(time.perf_counter() - start, 1),
        "sources": {name: len(data) for name, data in files.items()},
        "outcomes": dict(totals.most_common()),
        "by_mutator": {m: dict(c.most_common()) for m, c in sorted(counts.items())},
        "max_seconds_per_file": {stage: slowest[stage]["seconds"] for stage in STAGES}, "slowest": slowest,
        "max_traced_bytes_per_file": max_traced,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "crashes": len(crashes), "hangs": hangs, "first_crashes": crashes[:20],
        "numpy": np.__version__,
    }
    print(json.dumps(report, indent=2))
    return 1 if crashes or hangs else 0


if __name__ == "__main__":
    sys.exit(main())
