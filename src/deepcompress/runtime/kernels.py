"""A fully connected layer computed straight from the pruned, weight-shared form.

The non-zero weights are kept in CSR order (row by row), grouped within each row by their cluster: one
column index per non-zero and one cluster index per (row, cluster) group. ``y = W x`` is then computed
as in the paper's observation on shared weights: the inputs of each group are summed first, and the sum
is multiplied once by the group's codebook value — at most ``k`` multiplications per output instead of
one per weight. The group sums use ``scipy.sparse`` when it is installed and numpy otherwise.
"""

from __future__ import annotations

import numpy as np

try:
    import scipy.sparse as _sparse
except ImportError:  # pragma: no cover - scipy is optional
    _sparse = None

BACKENDS = ("scipy", "numpy")


class SparseCodebookLinear:
    """``x @ W.T + b`` for a weight matrix ``W`` [out, in] with few distinct non-zero values."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None, backend: str | None = None) -> None:
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D [out, in], got shape {weight.shape}")
        backend = backend or ("scipy" if _sparse is not None else "numpy")
        if backend not in BACKENDS or (backend == "scipy" and _sparse is None):
            raise ValueError(f"backend must be one of {BACKENDS} (scipy only when installed), got {backend!r}")
        self.out_features, self.in_features = weight.shape
        self.backend = backend
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        rows, cols = np.nonzero(weight)
        self.codebook, cluster = np.unique(weight[rows, cols], return_inverse=True)
        if self.codebook.size > 2**16:
            raise ValueError(f"{self.codebook.size} distinct weights: not a weight-shared layer")
        order = np.lexsort((cols, cluster, rows))
        rows, cluster = rows[order], cluster[order]
        self.cols = cols[order].astype(np.int32)
        group = np.r_[True, (rows[1:] != rows[:-1]) | (cluster[1:] != cluster[:-1])] if rows.size else rows
        self.group_start = np.flatnonzero(group)
        self.group_cluster = cluster[self.group_start].astype(np.uint8 if self.codebook.size <= 256 else np.uint16)
        group_row = rows[self.group_start]
        self.row_start = np.flatnonzero(np.r_[True, group_row[1:] != group_row[:-1]]) if rows.size else rows
        self.rows = group_row[self.row_start]
        if backend == "scipy":
            indptr = np.r_[self.group_start, self.cols.size]
            self._sums = _sparse.csr_matrix((np.ones(self.cols.size, np.float32), self.cols, indptr),
                                            shape=(self.group_start.size, self.in_features))

    @property
    def nnz(self) -> int:
        return int(self.cols.size)

    def _group_sums(self, xt: np.ndarray) -> np.ndarray:
        if self.backend == "scipy":
            return np.asarray(self._sums @ xt)
        return np.add.reduceat(xt[self.cols], self.group_start, axis=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"input must be [batch, {self.in_features}], got shape {x.shape}")
        out = np.zeros((self.out_features, x.shape[0]), dtype=np.float32)
        if self.nnz:
            sums = self._group_sums(np.ascontiguousarray(x.T))
            sums *= self.codebook[self.group_cluster][:, None]
            out[self.rows] = np.add.reduceat(sums, self.row_start, axis=0)
        y = out.T
        return y + self.bias if self.bias is not None else np.ascontiguousarray(y)
