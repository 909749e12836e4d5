"""Speed of the sparse codebook fc kernel against dense products, at AlexNet fc6 shape by default.

A random weight-shared matrix (``--density`` non-zeros, ``2**bits`` shared values) is multiplied by a
batch of inputs with: the kernel (scipy and numpy back-ends), PyTorch's dense
``torch.nn.functional.linear``, numpy's dense ``x @ W.T`` and ONNX Runtime's dense Gemm (what a plain
ONNX export runs). Prints a Markdown table (stderr) and the JSON result; the bar compares the fastest
kernel back-end with dense PyTorch at batch 1.

    PYTHONPATH=src python benchmarks/bench_sparse_fc.py --batch 1 32
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_seconds, finish, parser  # noqa: E402

from deepcompress.runtime._onnx import gemm_model  # noqa: E402
from deepcompress.runtime.kernels import BACKENDS, SparseCodebookLinear  # noqa: E402


def _ort_gemm(w: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime's dense path: a one-node Gemm model in ONNX Runtime."""
    session = ort.InferenceSession(gemm_model(w, b), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def _torch_linear(w: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Dense ``torch.nn.functional.linear`` (numpy in and out; the conversions share memory)."""
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return F.linear(torch.from_numpy(x), wt, bt).numpy()

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--in-features", type=int, default=9216)
    p.add_argument("--out-features", type=int, default=4096)
    p.add_argument("--density", type=float, default=0.09, help="fraction of non-zero weights (AlexNet fc6: 9 %%)")
    p.add_argument("--bits", type=int, default=5, help="log2 of the shared values (paper: 5 for fc)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--bar", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.smoke:
        args.in_features, args.out_features, args.repeats = 256, 128, 2
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal(2**args.bits).astype(np.float32) * 0.02
    w = codebook[rng.integers(0, codebook.size, size=(args.out_features, args.in_features))]
    w[rng.random(w.shape) >= args.density] = 0
    b = rng.standard_normal(args.out_features).astype(np.float32)
    kernels: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"sparse codebook ({backend})": SparseCodebookLinear(w, b, backend=backend) for backend in BACKENDS}
    kernels["dense torch F.linear"] = _torch_linear(w, b)
    kernels["dense numpy"] = lambda x: x @ w.T + b
    kernels["dense ONNX Runtime Gemm"] = _ort_gemm(w, b)
    ms: dict[str, dict[int, float]] = {}
    log = sys.stderr
    print(f"fc {args.in_features}→{args.out_features}, {100 * np.count_nonzero(w) / w.size:.1f} % non-zero, "
          f"{codebook.size} shared values, {torch.get_num_threads()} torch threads; best of {args.repeats} runs, "
          "ms\n", file=log)
    print("| kernel | " + " | ".join(f"batch {n}" for n in args.batch) + " |", file=log)
    print("|---|" + "---|" * len(args.batch), file=log)
    for name, fn in kernels.items():
        ms[name] = {}
        for n in args.batch:
            x = rng.standard_normal((n, args.in_features)).astype(np.float32)
            np.testing.assert_allclose(fn(x), x @ w.T + b, rtol=1e-3, atol=1e-3)
            ms[name][n] = 1e3 * best_seconds(lambda fn=fn, x=x: fn(x), args.repeats)
        print(f"| {name} | " + " | ".join(f"{ms[name][n]:.3f}" for n in args.batch) + " |", file=log)
    sparse = [f"sparse codebook ({backend})" for backend in BACKENDS]
    speedup = {n: ms["dense torch F.linear"][n] / min(ms[k][n] for k in sparse) for n in args.batch}
    first = args.batch[0]
    return finish("sparse_fc", {
        "bar": f"sparse kernel >= {args.bar}x faster than dense torch at batch {first}",
        "met": speedup[first] >= args.bar, "speedup_vs_torch": speedup,
        "dense_torch_wins_at_batch": [n for n, s in speedup.items() if s < 1],
        "fastest": {n: min(ms, key=lambda k, n=n: ms[k][n]) for n in args.batch},
        "shape": [args.out_features, args.in_features],
        "density": args.density, "bits": args.bits, "torch_threads": torch.get_num_threads(), "ms": ms}, args.out)


if __name__ == "__main__":
    main()
