"""Scale: quantize, encode and decode a VGG-16-sized parameter set end to end; time and peak memory.

The parameter set has VGG-16's shapes (138 M weights), He-scaled Student-t values (the heavy-tailed
shape of trained layers) magnitude-pruned to the per-layer densities of Deep Compression's Table 5
(7.5 % overall), and zero biases. Per layer: 1-D k-means of the non-zeros (conv 8 bits, fc 5 bits,
linear init), the weights replaced by their centroids, the index kept as uint8/uint16; then
``encode_dcz`` (index bits conv 8, fc 5) and ``decode_dcz``, checked bit-exact.

Each size runs in a fresh child process, so its peak resident set is its own: ``peak_rss_over_dense``
is (peak RSS − RSS before the weights exist) / dense fp32 bytes, where the input weights themselves
count once. Sizes divide every channel width (the fc widths too) by ``--divisors``, which scales the
parameter count by about 1/d². ``--smoke`` runs tiny sizes in-process (memory figures then meaningless).

    PYTHONPATH=src python benchmarks/bench_scale.py --divisors 4 2 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, parser, student_t_weights  # noqa: E402

from deepcompress.format.dcz import SharedTensor, decode_dcz, encode_dcz  # noqa: E402
from deepcompress.quantize import kmeans_1d  # noqa: E402

# (name, out channels, in channels or features, kernel size, kept fraction): VGG-16 and Table 5.
VGG16 = [("conv1_1", 64, 3, 3, 0.58), ("conv1_2", 64, 64, 3, 0.22), ("conv2_1", 128, 64, 3, 0.34),
         ("conv2_2", 128, 128, 3, 0.36), ("conv3_1", 256, 128, 3, 0.53), ("conv3_2", 256, 256, 3, 0.24),
         ("conv3_3", 256, 256, 3, 0.42), ("conv4_1", 512, 256, 3, 0.32), ("conv4_2", 512, 512, 3, 0.27),
         ("conv4_3", 512, 512, 3, 0.34), ("conv5_1", 512, 512, 3, 0.35), ("conv5_2", 512, 512, 3, 0.29),
         ("conv5_3", 512, 512, 3, 0.36), ("fc6", 4096, 512 * 7 * 7, 1, 0.04), ("fc7", 4096, 4096, 1, 0.04),
         ("fc8", 1000, 4096, 1, 0.23)]


def shapes(divisor: int) -> list[tuple[str, tuple[int, ...], float]]:
    """VGG-16 weight shapes with every width divided by ``divisor`` (image channels and classes kept)."""
    out = []
    for name, o, i, k, density in VGG16:
        o2 = o if name == "fc8" else o // divisor
        i2 = i if name == "conv1_1" else (i // divisor if name != "fc6" else (512 // divisor) * 49)
        out.append((name, (o2, i2, k, k) if k > 1 else (o2, i2), density))
    return out


def pruned_weights(divisor: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Magnitude-pruned Student-t weights and zero biases, float32."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, shape, density in shapes(divisor):
        w = student_t_weights(rng, int(np.prod(shape)), int(np.prod(shape[1:])))
        sample = np.abs(w[rng.integers(0, w.size, min(w.size, 1 << 20))])
        w[np.abs(w) < np.quantile(sample, 1 - density)] = 0
        tensors[f"{name}.weight"] = w.reshape(shape)
        tensors[f"{name}.bias"] = np.zeros(shape[0], dtype=np.float32)
    return tensors


def quantize(tensors: dict[str, np.ndarray]) -> dict[str, SharedTensor]:
    """Weight-share every weight in place (values become centroids); the index per layer."""
    shared = {}
    for name, w in tensors.items():
        if not name.endswith(".weight"):
            continue
        conv = w.ndim == 4
        flat = w.reshape(-1)
        nz = np.flatnonzero(flat)
        centroids, labels = kmeans_1d(flat[nz], 256 if conv else 32)
        codebook = centroids.astype(np.float32)
        index = np.zeros(flat.size, dtype=np.uint16 if conv else np.uint8)
        index[nz] = labels + 1
        flat[nz] = codebook[labels]
        shared[name] = SharedTensor(codebook, index, 8 if conv else 5)
    return shared


def rss_bytes() -> int:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def one_size(divisor: int) -> dict[str, Any]:
    """Run the whole pipeline once at one size (in this process) and measure it."""
    rss0 = current_rss_bytes()
    t = time.perf_counter()
    tensors = pruned_weights(divisor)
    gen_s = time.perf_counter() - t
    dense = sum(a.nbytes for a in tensors.values())
    nonzero = sum(int(np.count_nonzero(a)) for k, a in tensors.items() if k.endswith(".weight"))
    secs = {}
    t = time.perf_counter()
    shared = quantize(tensors)
    secs["quantize"] = time.perf_counter() - t
    t = time.perf_counter()
    data, _ = encode_dcz({"model": f"vgg-16/{divisor}"}, tensors, shared)
    secs["encode"] = time.perf_counter() - t
    del shared
    t = time.perf_counter()
    decoded = decode_dcz(data, max_elements=2**31 - 1)
    secs["decode"] = time.perf_counter() - t
    exact = all(np.array_equal(decoded.tensors[k], a) for k, a in tensors.items())
    peak = rss_bytes()
    return {"divisor": divisor, "weights": sum(a.size for a in tensors.values()), "nonzero": nonzero,
            "dense_fp32_bytes": dense, "dcz_bytes": len(data), "ratio": dense / len(data), "bit_exact": exact,
            "generate_s": gen_s, "seconds": secs, "total_s": sum(secs.values()),
            "rss_before_bytes": rss0, "peak_rss_bytes": peak, "peak_rss_over_dense": (peak - rss0) / dense}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--divisors", type=int, nargs="+", default=[4, 2, 1])
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--bar", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(one_size(args.child)))
        return {}
    sizes = [one_size(d) for d in (64, 32)] if args.smoke else []
    for d in [] if args.smoke else args.divisors:
        child = subprocess.run([sys.executable, __file__, "--child", str(d)], capture_output=True, text=True,
                               check=True)
        sizes.append(json.loads(child.stdout.splitlines()[-1]))
    worst = max(s["peak_rss_over_dense"] for s in sizes)
    big, small = sizes[-1], sizes[0]
    growth = np.log(big["total_s"] / small["total_s"]) / np.log(big["weights"] / small["weights"])
    return finish("scale" if not args.smoke else "scale_smoke", {
        "bar": f"peak memory <= {args.bar}x dense fp32 bytes", "met": worst <= args.bar and all(
            s["bit_exact"] for s in sizes), "worst_peak_rss_over_dense": worst,
        "time_exponent": growth, "sizes": sizes}, args.out)


if __name__ == "__main__":
    main()
