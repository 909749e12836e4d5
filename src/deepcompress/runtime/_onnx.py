"""Just enough protobuf to add initializers to a serialised ONNX model, without the ``onnx`` package.

Protobuf merges repeated occurrences of an embedded message field, so appending a second ``graph``
field (ModelProto field 7) that holds only ``initializer`` entries (GraphProto field 5) adds those
tensors to the model's graph.
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


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tensor_proto(name: str, array: np.ndarray) -> bytes:
    """A serialised onnx.TensorProto (dims, data_type, name, raw_data little-endian)."""
    array = np.asarray(array)
    if array.dtype.name not in ONNX_TYPES:
        raise ValueError(f"tensor {name!r}: dtype {array.dtype} has no ONNX equivalent here")
    dims = b"".join(_varint(1 << 3) + _varint(int(d)) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return (dims + _varint(2 << 3) + _varint(ONNX_TYPES[array.dtype.name]) + _field(8, name.encode("utf-8"))
            + _field(9, raw))


def with_initializers(model: bytes, tensors: dict[str, np.ndarray]) -> bytes:
    """``model`` (a serialised ModelProto) with ``tensors`` added to its graph as initializers."""
    graph = b"".join(_field(5, tensor_proto(name, arr)) for name, arr in tensors.items())
    return bytes(model) + _field(7, graph)
