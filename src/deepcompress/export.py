"""ONNX export (needs PyTorch and ``onnx``): a full ``.onnx`` file, or the network graph stored in a .dcz.

The graph stored in a .dcz (section ``graph.onnx``, described by ``header["graph"]``) is the ONNX graph
*without* the model's parameters, zlib-compressed: :mod:`deepcompress.runtime` fills the parameters in
from the decoded tensors, by state_dict name, so the weights are stored once, compressed. A trailing
chain of fully connected layers (``Flatten``/``Gemm``/``Relu``, e.g. a classifier head) is cut off the
ONNX graph and listed in ``header["graph"]["tail"]`` instead, so that the runtime can run those layers
with its sparse codebook kernel; the ONNX graph ("trunk") then ends at the tail's input (for an all-fc
net there is no trunk).
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper
from torch import nn

from ._io import atomic_write_bytes
from .format.dcz import DczFile, decode_dcz, replace_extras
from .format.model import model_from_dcz
from .models import model_info

OPSET = 17
INPUT, OUTPUT = "input", "logits"
GRAPH_SECTION = "graph.onnx"
MAX_CONSTANT_BYTES = 1 << 20  # non-parameter constants left in a stripped graph (shapes, scalars)


def example_input(model: nn.Module, batch: int = 1) -> torch.Tensor:
    """A zero input of the model's ``input_size`` (from its ModelInfo)."""
    size = model_info(model).input_size
    if not size:
        raise ValueError(f"model {model_info(model).arch!r} has no input_size; cannot export it")
    return torch.zeros(batch, *size)


def _export(model: nn.Module, x: torch.Tensor, **kwargs: Any) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notices
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                          **kwargs)
    return onnx.load_from_string(buf.getvalue())


def onnx_bytes(model: nn.Module) -> bytes:
    """A self-contained ONNX model (weights included, dynamic batch, ``input`` → ``logits``)."""
    model = model.cpu().eval()
    return _export(model, example_input(model)).SerializeToString()


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one inference through the model's Conv and Linear layers."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        else:
            total += out.numel() * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        with torch.no_grad():
            model.eval()(example_input(model))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _tail_op(node: onnx.NodeProto, params: set[str]) -> list[str | None] | None:
    """The tail description of one node, or None when it cannot be part of the fc tail."""
    if node.op_type == "Relu":
        return ["relu"]
    if node.op_type == "Flatten" and _attr(node, "axis", 1) == 1:
        return ["flatten"]
    if (node.op_type == "Gemm" and _attr(node, "transB", 0) == 1 and _attr(node, "transA", 0) == 0
            and _attr(node, "alpha", 1.0) == 1.0 and _attr(node, "beta", 1.0) == 1.0
            and node.input[1] in params and (len(node.input) < 3 or node.input[2] in params)):
        return ["linear", node.input[1], node.input[2] if len(node.input) > 2 else None]
    return None


def _split_tail(graph: onnx.GraphProto, params: set[str]) -> tuple[str, list[list[str | None]], list[int]]:
    """(trunk output name, tail ops in order, tail node indices) of the fc chain that ends the graph."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    ops: list[list[str | None]] = []
    nodes: list[int] = []
    name = OUTPUT
    while name in producer and (name == OUTPUT or uses.get(name, 0) == 1):
        op = _tail_op(graph.node[producer[name]], params)
        if op is None:
            break
        ops.insert(0, op)
        nodes.append(producer[name])
        name = graph.node[producer[name]].input[0]
    if not any(op[0] == "linear" for op in ops):
        return OUTPUT, [], []
    return name, ops, nodes


def graph_section(model: nn.Module) -> tuple[dict[str, Any], bytes]:
    """(``header["graph"]`` entry, section bytes) for a model: see the module docstring."""
    model = model.cpu().eval()
    state = model.state_dict()
    proto = _export(model, example_input(model), do_constant_folding=False, keep_initializers_as_inputs=True)
    g = proto.graph
    params = {t.name for t in g.initializer if t.name in state}
    trunk_output, tail, tail_nodes = _split_tail(g, params)
    if tail:
        keep = [node for i, node in enumerate(g.node) if i not in set(tail_nodes)]
        del g.node[:]
        g.node.extend(keep)
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(trunk_output, onnx.TensorProto.FLOAT, None))
    used = {name for node in g.node for name in node.input}
    initializers = {t.name: helper.tensor_dtype_to_np_dtype(t.data_type).name
                    for t in g.initializer if t.name in params and t.name in used}
    constants = [t for t in g.initializer if t.name not in params and t.name in used]
    if sum(len(t.raw_data) for t in constants) > MAX_CONSTANT_BYTES:
        raise ValueError("the exported graph holds large constants that are not model parameters; "
                         "it cannot be stored without its weights")
    del g.initializer[:]
    g.initializer.extend(constants)
    inputs = [v for v in g.input if v.name == INPUT]
    del g.input[:]
    g.input.extend(inputs)
    entry = {"format": "onnx", "opset": OPSET, "compression": "zlib", "input": INPUT, "trunk_output": trunk_output,
             "section": GRAPH_SECTION if trunk_output != INPUT else None, "initializers": initializers,
             "tail": tail, "macs": count_macs(model)}
    data = zlib.compress(proto.SerializeToString(), 9) if entry["section"] else b""
    return entry, data


def with_graph(dcz: DczFile, data: bytes) -> tuple[DczFile, bytes]:
    """Add the graph of the model in ``dcz`` (decoded from ``data``): the new DczFile and file bytes."""
    entry, section = graph_section(model_from_dcz(dcz))
    header = {**dcz.header, "graph": entry}
    sections = {k: v for k, v in dcz.sections.items() if k != GRAPH_SECTION}
    if entry["section"]:
        sections[GRAPH_SECTION] = section
    new = replace_extras(data, header, sections)
    return DczFile(header, dcz.tensors, dcz.records, len(new), sections), new


def embed_graph(path: str | os.PathLike, out: str | os.PathLike | None = None) -> int:
    """Store the model's graph in the .dcz at ``path`` (or a copy at ``out``); returns the new size."""
    data = Path(path).read_bytes()
    _, new = with_graph(decode_dcz(data), data)
    atomic_write_bytes(out or path, new)
    return len(new)
