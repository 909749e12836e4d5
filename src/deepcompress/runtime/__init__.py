"""Inference on .dcz files with numpy and ONNX Runtime only (no PyTorch).

A .dcz with a stored graph (``deepcompress export FILE --embed-graph``) carries an ONNX graph without
weights plus a short list of trailing fully connected layers (see :mod:`deepcompress.export`). The
runtime decodes the Huffman/codebook/sparse tensors, fills them into the graph as initializers and runs
it with ONNX Runtime. Each layer of the fully connected tail runs either as a dense ONNX Runtime Gemm or,
for weight-shared layers, with :class:`SparseCodebookLinear` — whichever is faster, timed once per
batch size (``fc_kernel="auto"``).

    >>> from deepcompress.runtime import load
    >>> model = load("leaf.dcz")
    >>> model.classify("leaf.jpg", top_k=3).top
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FormatError
from ..format.dcz import DczFile, read_dcz
from ._onnx import gemm_model, with_initializers
from .energy import energy_per_inference_pj
from .images import ImageError, open_image, to_input
from .kernels import SparseCodebookLinear

__all__ = ["FC_KERNELS", "ImageError", "Model", "Prediction", "SparseCodebookLinear", "energy_per_inference_pj",
           "load", "open_image", "softmax", "to_input"]

FC_KERNELS = ("auto", "sparse", "dense")
NO_GRAPH_HINT = "run `deepcompress export FILE --embed-graph` (with PyTorch installed) once to store it"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _session(model: bytes, threads: int | None) -> Any:
    """An ONNX Runtime CPU session (onnxruntime is imported here, so that the CLI loads without it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad graphs
        raise FormatError(f"ONNX Runtime cannot load the stored graph: {e}") from e


class _Linear:
    """One fc layer of the tail: a dense ONNX Runtime Gemm, or the sparse codebook kernel where faster."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, shared: bool, mode: str,
                 threads: int | None) -> None:
        self.session = _session(gemm_model(weight, bias), threads) if mode != "sparse" or not shared else None
        self.sparse = SparseCodebookLinear(weight, bias) if shared and mode != "dense" else None
        self.use_sparse: dict[int, bool] = {}  # batch size → choice, filled by timing in "auto" mode

    def dense(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.sparse is None:
            return self.dense(x)
        if self.session is None:
            return self.sparse(x)
        n = x.shape[0]
        if n not in self.use_sparse:
            times = {}
            for name, fn in (("sparse", self.sparse), ("dense", self.dense)):
                t = time.perf_counter()
                y = fn(x)
                times[name] = time.perf_counter() - t
            self.use_sparse[n] = times["sparse"] < times["dense"]
            return y
        return self.sparse(x) if self.use_sparse[n] else self.dense(x)


def _tail_op(op: list, tensors: dict[str, np.ndarray], shared: set[str], mode: str,
             threads: int | None) -> Callable:
    kind = op[0]
    if kind == "relu":
        return lambda x: np.maximum(x, 0, dtype=np.float32)
    if kind == "flatten":
        return lambda x: np.ascontiguousarray(x.reshape(x.shape[0], -1))
    if kind == "linear":
        _, wname, bname = op
        if wname not in tensors or (bname is not None and bname not in tensors):
            raise FormatError(f"graph tail names tensors missing from the file: {wname}, {bname}")
        w = np.asarray(tensors[wname], dtype=np.float32)
        b = None if bname is None else np.asarray(tensors[bname], dtype=np.float32)
        return _Linear(w, b, wname in shared, mode, threads)
    raise FormatError(f"unknown graph tail operation {kind!r}")


@dataclass
class Prediction:
    """Top classes of one input, with the inference time."""

    top: list[tuple[str, float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.top[0][0], "confidence": self.top[0][1],
                "top": [{"label": c, "probability": p} for c, p in self.top], "time_ms": 1e3 * self.seconds}


class Model:
    """A .dcz model ready for inference; ``model(x)`` maps a float32 batch to logits."""

    def __init__(self, dcz: DczFile, fc_kernel: str = "auto", threads: int | None = None) -> None:
        if fc_kernel not in FC_KERNELS:
            raise ValueError(f"fc_kernel must be one of {FC_KERNELS}, got {fc_kernel!r}")
        info, graph = dcz.header.get("model"), dcz.header.get("graph")
        if not isinstance(info, dict):
            raise FormatError("header has no 'model' entry")
        if not isinstance(graph, dict):
            raise FormatError(f"this .dcz file stores no network graph; {NO_GRAPH_HINT}")
        self.arch: str = info.get("arch", "?")
        self.input_size: list[int] | None = info.get("input_size")
        self.mean, self.std = info.get("mean"), info.get("std")
        self.class_names: list[str] | None = info.get("class_names")
        self.file_bytes: int = dcz.size
        self.macs: int | None = graph.get("macs")
        self.input_name: str = graph.get("input", "input")
        self._output: str = graph.get("trunk_output", "logits")
        self._session = None
        if graph.get("section"):
            self._session = self._open_session(dcz, graph, threads)
        shared = {r.name for r in dcz.records if r.encoding == "shared"}
        self._tail = [_tail_op(op, dcz.tensors, shared, fc_kernel, threads) for op in graph.get("tail", [])]

    def _open_session(self, dcz: DczFile, graph: dict[str, Any], threads: int | None) -> Any:
        section = dcz.sections.get(graph["section"])
        if section is None:
            raise FormatError(f"header names graph section {graph['section']!r}, which the file lacks")
        if graph.get("compression") != "zlib":
            raise FormatError(f"unknown graph compression {graph.get('compression')!r} (this runtime reads zlib)")
        try:
            section = zlib.decompress(section)
        except zlib.error as e:
            raise FormatError(f"graph section is not valid zlib data: {e}") from e
        inits = {}
        for name, dtype in graph.get("initializers", {}).items():
            if name not in dcz.tensors:
                raise FormatError(f"graph needs tensor {name!r}, which the file lacks")
            inits[name] = np.asarray(dcz.tensors[name], dtype=dtype)
        return _session(with_initializers(section, inits), threads)

    @property
    def energy_pj(self) -> float | None:
        """Estimated energy of one inference (see :mod:`deepcompress.runtime.energy`)."""
        return None if self.macs is None else energy_per_inference_pj(self.macs, self.file_bytes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._session is not None:
            x = self._session.run([self._output], {self.input_name: x})[0]
        for op in self._tail:
            x = op(x)
        return x

    def labels(self, n: int) -> list[str]:
        names = self.class_names or []
        return [str(names[i]) if i < len(names) else str(i) for i in range(n)]

    def classify(self, image: bytes | str | os.PathLike, top_k: int = 3) -> Prediction:
        """Top-k classes of an image (bytes or path); raises :class:`ImageError` for unreadable images."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        x = to_input(open_image(image), self.input_size or [], self.mean, self.std)
        t = time.perf_counter()
        p = softmax(self(x))[0]
        seconds = time.perf_counter() - t
        names = self.labels(p.size)
        order = np.argsort(-p, kind="stable")[:top_k]
        return Prediction([(names[i], float(p[i])) for i in order], seconds)

    def describe(self) -> dict[str, Any]:
        """Model facts for people and programs: architecture, classes, size, MACs, energy."""
        energy = self.energy_pj
        return {"arch": self.arch, "classes": self.class_names, "input_size": self.input_size,
                "file_bytes": self.file_bytes, "macs": self.macs,
                "energy_uj": None if energy is None else energy * 1e-6}


def load(path: str | os.PathLike, fc_kernel: str = "auto", threads: int | None = None) -> Model:
    """Load a .dcz file (with a stored graph) for inference."""
    return Model(read_dcz(path), fc_kernel, threads)
