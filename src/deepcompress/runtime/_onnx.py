"""Just enough protobuf to write ONNX models without the ``onnx`` package.

:func:`with_initializers` adds tensors to a serialised model: protobuf merges repeated occurrences of
an embedded message field, so appending a second ``graph`` field (ModelProto field 7) that holds only
``initializer`` entries (GraphProto field 5) adds them to the model's graph. :func:`gemm_model` writes
a one-node model ``y = x @ W.T + b`` (field numbers from onnx.proto).
"""

from __future__ import annotations

import numpy as np

# numpy dtype name → onnx.TensorProto.DataType
ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
              "float16": 10, "float64": 11}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return _varint(number << 3) + _varint(value)


def tensor_proto(name: str, array: np.ndarray) -> bytes:
    """A serialised onnx.TensorProto (dims, data_type, name, raw_data little-endian)."""
    array = np.asarray(array)
    if array.dtype.name not in ONNX_TYPES:
        raise ValueError(f"tensor {name!r}: dtype {array.dtype} has no ONNX equivalent here")
    dims = b"".join(_varint(1 << 3) + _varint(int(d)) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return dims + _int(2, ONNX_TYPES[array.dtype.name]) + _field(8, name) + _field(9, raw)


def with_initializers(model: bytes, tensors: dict[str, np.ndarray]) -> bytes:
    """``model`` (a serialised ModelProto) with ``tensors`` added to its graph as initializers."""
    graph = b"".join(_field(5, tensor_proto(name, arr)) for name, arr in tensors.items())
    return bytes(model) + _field(7, graph)


def _float_matrix(name: str, columns: int) -> bytes:
    """ValueInfoProto of a float32 [batch, columns] tensor with a symbolic batch dimension."""
    shape = _field(1, _field(2, "batch")) + _field(1, _int(1, columns))
    return _field(1, name) + _field(2, _field(1, _int(1, ONNX_TYPES["float32"]) + _field(2, shape)))


def gemm_model(weight: np.ndarray, bias: np.ndarray | None, opset: int = 17) -> bytes:
    """A serialised ONNX model computing ``y = x @ weight.T + bias`` for x [batch, in] ("x" → "y")."""
    out_features, in_features = weight.shape
    inputs = ["x", "w"] + (["b"] if bias is not None else [])
    trans_b = _field(1, "transB") + _int(3, 1) + _int(20, 2)  # AttributeProto INT
    node = b"".join(_field(1, n) for n in inputs) + _field(2, "y") + _field(4, "Gemm") + _field(5, trans_b)
    inits = {"w": weight} if bias is None else {"w": weight, "b": bias}
    graph = (_field(1, node) + _field(2, "fc") + b"".join(_field(5, tensor_proto(k, v)) for k, v in inits.items())
             + _field(11, _float_matrix("x", in_features)) + _field(12, _float_matrix("y", out_features)))
    return _int(1, 8) + _field(8, _field(1, "") + _int(2, opset)) + _field(7, graph)
