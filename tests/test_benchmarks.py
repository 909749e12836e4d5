"""Smoke test: every benchmark script runs on tiny inputs (``--smoke``) and writes its JSON result."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["bench_entropy", "bench_compressors", "bench_kmeans", "bench_huffman", "bench_sparse_fc",
           "bench_training", "bench_scale"]
CACHED = {"bench_entropy", "bench_compressors", "bench_huffman"}  # take the LeNet cache folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lenets")


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_on_tiny_inputs(name: str, cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("dahuffman") if name == "bench_huffman" else None
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = tmp_path / "result.json"
        argv = ["--smoke", "--out", str(out)] + (["--cache", str(cache)] if name in CACHED else [])
        result = module.main(argv)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=float))
    assert "met" in result
