"""Speed of the sparse codebook fc kernel against dense products, at AlexNet fc6 shape by default.

A random weight-shared matrix (``--density`` non-zeros, ``2**bits`` shared values) is multiplied by a
batch of inputs with: the kernel (scipy and numpy back-ends), numpy's dense ``x @ W.T`` and ONNX
Runtime's dense Gemm (what a plain ONNX export runs). Prints a Markdown table and one JSON line.

    PYTHONPATH=src python benchmarks/bench_sparse_fc.py --batch 1 32
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from deepcompress.runtime._onnx import gemm_model
from deepcompress.runtime.kernels import BACKENDS, SparseCodebookLinear


def _ort_gemm(w: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime's dense path: a one-node Gemm model in ONNX Runtime."""
    session = ort.InferenceSession(gemm_model(w, b), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def _best_ms(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int) -> float:
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--in-features", type=int, default=9216)
    p.add_argument("--out-features", type=int, default=4096)
    p.add_argument("--density", type=float, default=0.09, help="fraction of non-zero weights (AlexNet fc6: 9 %%)")
    p.add_argument("--bits", type=int, default=5, help="log2 of the shared values (paper: 5 for fc)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal(2**args.bits).astype(np.float32) * 0.02
    w = codebook[rng.integers(0, codebook.size, size=(args.out_features, args.in_features))]
    w[rng.random(w.shape) >= args.density] = 0
    b = rng.standard_normal(args.out_features).astype(np.float32)
    kernels: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"sparse codebook ({backend})": SparseCodebookLinear(w, b, backend=backend) for backend in BACKENDS}
    kernels["dense numpy"] = lambda x: x @ w.T + b
    kernels["dense ONNX Runtime Gemm"] = _ort_gemm(w, b)
    rows = {}
    print(f"fc {args.in_features}→{args.out_features}, {100 * np.count_nonzero(w) / w.size:.1f} % non-zero, "
          f"{codebook.size} shared values; best of {args.repeats} runs, ms\n")
    print("| kernel | " + " | ".join(f"batch {n}" for n in args.batch) + " |")
    print("|---|" + "---|" * len(args.batch))
    for name, fn in kernels.items():
        rows[name] = {}
        for n in args.batch:
            x = rng.standard_normal((n, args.in_features)).astype(np.float32)
            np.testing.assert_allclose(fn(x), x @ w.T + b, rtol=1e-3, atol=1e-3)
            rows[name][n] = _best_ms(fn, x, args.repeats)
        print(f"| {name} | " + " | ".join(f"{rows[name][n]:.2f}" for n in args.batch) + " |")
    print()
    print(json.dumps({"shape": [args.out_features, args.in_features], "density": args.density, "bits": args.bits,
                      "ms": rows}))


if __name__ == "__main__":
    main()
