"""Speed and quality of the per-layer 1-D k-means against scikit-learn's ``KMeans``.

Both start from the same linear initial centroids with the same k, on real layers: LeNet-300-100 fc1
(235 200 trained weights, k = 32) from a dense checkpoint, and a 2.4 M-weight layer with the shape of
VGG-16 conv5 (3×3×512×512, k = 256; He-scaled Student-t values, as no trained layer that large is at
hand). Reports wall time (best of ``--repeats``; scikit-learn once) and the final within-cluster sum of
squares (WCSS). scikit-learn runs with its defaults (``tol=1e-4``, ``max_iter=300``, ``n_init=1``), ours
with its defaults (to the fixed point, at most 10 000 iterations); its WCSS after 300 iterations (the
recipes' ``quantize.max_iter``) is shown too.

    PYTHONPATH=src python benchmarks/bench_kmeans.py --checkpoint /work/runs/l300_a/baseline.safetensors
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_seconds, finish, parser, student_t_weights  # noqa: E402

from deepcompress.quantize import init_centroids, kmeans_1d, wcss  # noqa: E402


def compare(values: np.ndarray, k: int, repeats: int) -> dict[str, Any]:
    """Ours vs scikit-learn from the same linear initialisation."""
    v = values.astype(np.float64).ravel()
    init = init_centroids(v, k, "linear")
    ours_s = best_seconds(lambda: kmeans_1d(v, k, centroids=init), repeats)
    c, labels = kmeans_1d(v, k, centroids=init)
    t = time.perf_counter()
    km = KMeans(k, init=init.reshape(-1, 1), n_init=1).fit(v.reshape(-1, 1))
    sk_s = time.perf_counter() - t
    sk_wcss = wcss(v, km.cluster_centers_.ravel(), km.labels_)
    ours_wcss = wcss(v, c, labels)
    c300, labels300 = kmeans_1d(v, k, centroids=init, max_iter=300)
    return {"weights": int(v.size), "k": k, "ours_s": ours_s, "sklearn_s": sk_s, "speedup": sk_s / ours_s,
            "ours_wcss": ours_wcss, "sklearn_wcss": sk_wcss, "wcss_ratio": ours_wcss / sk_wcss,
            "sklearn_iterations": int(km.n_iter_), "ours_wcss_max_iter_300": wcss(v, c300, labels300)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="dense LeNet-300-100 safetensors (default: a random He-scaled fc1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bar", type=float, default=5.0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.checkpoint:
        from safetensors.numpy import load_file

        fc1 = load_file(args.checkpoint)["fc1.weight"]
    else:
        fc1 = student_t_weights(rng, 300 * 784, 784)
    big = student_t_weights(rng, 5000 if args.smoke else 3 * 3 * 512 * 512, 3 * 3 * 512)
    if args.smoke:
        fc1 = fc1.ravel()[:5000]
    layers = {"lenet-300-100 fc1 (k=32)": compare(fc1, 32, args.repeats),
              "vgg-16 conv5-shaped (k=256)": compare(big, 256, args.repeats)}
    met = all(r["speedup"] >= args.bar and r["wcss_ratio"] <= 1 + 1e-9 for r in layers.values())
    return finish("kmeans", {"bar": f">= {args.bar}x faster than scikit-learn at equal or lower WCSS",
                             "checkpoint": str(args.checkpoint), "met": met, "layers": layers}, args.out)


if __name__ == "__main__":
    main()
