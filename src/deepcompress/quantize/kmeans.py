"""One-dimensional k-means for weight sharing, with the paper's centroid initialisations.

Lloyd iterations run on the sorted values with prefix sums: each iteration costs O(k log n)
after one O(n log n) sort, whatever the number of weights. An empty cluster (common with the linear
initialisation on heavy-tailed layers, whose extreme weights leave most of the range empty) is moved
onto the value farthest from its centroid, as scikit-learn does. Iterations are cheap, so the default
runs Lloyd to its fixed point: convergence from a linear start takes thousands of them on such layers.
"""

from __future__ import annotations

import numpy as np

INITS = ("linear", "density", "random", "kmeans++")


def init_centroids(values: np.ndarray, k: int, method: str = "linear", seed: int = 0) -> np.ndarray:
    """Initial centroids (sorted, float64).

    - ``linear``: evenly spaced over [min, max] (the paper's best for accuracy);
    - ``density``: evenly spaced on the CDF (quantiles at (i + ½)/k);
    - ``random``: Forgy, k distinct weights drawn at random;
    - ``kmeans++``: D²-sampling (Arthur & Vassilvitskii 2007).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("cannot initialise centroids of an empty set of weights")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    if method == "linear":
        c = np.linspace(v.min(), v.max(), k)
    elif method == "density":
        c = np.quantile(v, (np.arange(k) + 0.5) / k)
    elif method == "random":
        c = rng.choice(v, size=k, replace=v.size < k)
    elif method == "kmeans++":
        c = np.empty(k)
        c[0] = v[rng.integers(v.size)]
        d2 = (v - c[0]) ** 2
        for i in range(1, k):
            total = d2.sum()
            c[i] = v[rng.integers(v.size)] if total == 0 else v[rng.choice(v.size, p=d2 / total)]
            d2 = np.minimum(d2, (v - c[i]) ** 2)
    else:
        raise ValueError(f"unknown centroid init {method!r}; choose from {', '.join(INITS)}")
    return np.sort(c)


def _segments(sorted_v: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Start index in ``sorted_v`` of each centroid's cluster (nearest-centroid boundaries)."""
    mids = (centroids[1:] + centroids[:-1]) / 2
    return np.concatenate(([0], np.searchsorted(sorted_v, mids, side="right"), [sorted_v.size]))


def _relocate_empty(sv: np.ndarray, b: np.ndarray, old: np.ndarray, sums: np.ndarray, new: np.ndarray) -> None:
    """Move the centroids of empty clusters in place onto the values farthest from the centroid they
    were assigned to, and take each such value out of its old cluster's mean (as scikit-learn does)."""
    counts = np.diff(b)
    empty = np.flatnonzero(counts == 0)
    labels = np.repeat(np.arange(counts.size), counts)
    dist = np.abs(sv - old[labels])
    m = min(empty.size, sv.size)
    far = np.argpartition(-dist, m - 1)[:m] if m < sv.size else np.arange(sv.size)
    far = far[dist[far] > 0]
    donors = labels[far]
    np.subtract.at(sums, donors, sv[far])
    left = counts.astype(np.float64)
    np.subtract.at(left, donors, 1.0)
    moved = np.unique(donors)
    new[moved] = np.where(left[moved] > 0, sums[moved] / np.maximum(left[moved], 1), old[moved])
    new[empty[:far.size]] = sv[far]


def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", max_iter: int = 10_000, tol: float = 0.0,
              seed: int = 0, centroids: np.ndarray | None = None,
              relocate_empty: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``values`` into at most ``k`` groups minimising the within-cluster sum of squares.

    Returns ``(centroids, labels)``: sorted float64 centroids with no empty cluster, and for each
    value the index of its nearest centroid. Empty clusters are relocated (see the module docstring)
    unless ``relocate_empty`` is false, in which case they are dropped as the paper's plain Lloyd
    iterations would; fewer than ``k`` centroids come back only when the values have fewer distinct
    levels than ``k`` or a cluster is still empty when the iterations stop.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    prefix = np.concatenate(([0.0], np.cumsum(sv)))
    c = np.sort(np.asarray(centroids, dtype=np.float64)) if centroids is not None else init_centroids(
        v, k, init, seed)
    for _ in range(max_iter):
        b = _segments(sv, c)
        counts = np.diff(b)
        sums = prefix[b[1:]] - prefix[b[:-1]]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if relocate_empty and not counts.all():
            _relocate_empty(sv, b, c, sums, new)
        shift = np.abs(new - c).max()
        c = np.sort(new)
        if shift <= tol:
            break
    b = _segments(sv, c)
    counts = np.diff(b)
    c = c[counts > 0]
    b = _segments(sv, c)
    sorted_labels = np.repeat(np.arange(c.size), np.diff(b))
    labels = np.empty(v.size, dtype=np.int64)
    labels[order] = sorted_labels
    return c, labels


def wcss(values: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Within-cluster sum of squares of a clustering."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(((v - centroids[labels]) ** 2).sum())
