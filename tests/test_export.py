"""ONNX export of every registered model, checked with ONNX Runtime, and the export command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deepcompress import runtime
from deepcompress.cli import main
from deepcompress.export import INPUT, OUTPUT, embed_graph, onnx_bytes
from deepcompress.format.dcz import read_dcz
from deepcompress.format.model import load_model, save_model
from deepcompress.models import create_model, list_models

# zoo models whose graphs have hundreds of nodes: tracing them takes 5-60 s each on two busy cores
SLOW = {"efficientnet-b0", "mnasnet0_5", "mnasnet1_0", "mobilenet-v1", "mobilenet-v2", "mobilenet-v3-large",
        "mobilenet-v3-small", "nasnet-a-mobile", "resnet50"}


def _small(name: str) -> torch.nn.Module:
    """A fresh registry model with 5 classes and, for ImageNet-size models, 64×64 inputs."""
    model = create_model(name, num_classes=5).eval()
    size = model.dc_info.input_size
    if size and len(size) == 3 and size[1] > 64:
        model.dc_info.input_size = [size[0], 64, 64]
    return model


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in list_models()])
def test_export_every_registered_model(name: str, tmp_path: Path) -> None:
    model = _small(name)
    x = torch.randn(3, *model.dc_info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    proto = onnx.load_from_string(onnx_bytes(model))
    assert [i.name for i in proto.graph.input] == [INPUT] and [o.name for o in proto.graph.output] == [OUTPUT]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (x[:1], x):
        got = session.run([OUTPUT], {INPUT: batch.numpy()})[0]
        np.testing.assert_allclose(got, expected[:len(batch)], rtol=1e-4, atol=1e-4)
    # the same graph stored in a .dcz (without weights) and run by the torch-free runtime
    path = tmp_path / f"{name}.dcz"
    save_model(model, path)
    embed_graph(path)
    np.testing.assert_allclose(runtime.load(path)(x.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_export_command(tiny_dcz: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny_dcz), "--onnx", str(out)]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {INPUT: x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, load_model(tiny_dcz)(torch.from_numpy(x)).numpy(), atol=1e-4)
    copy = tmp_path / "copy.dcz"
    assert main(["export", str(tiny_dcz), "--embed-graph", "--out", str(copy)]) == 0
    assert read_dcz(copy).header["graph"] == read_dcz(tiny_dcz).header["graph"]
    assert main(["export", str(tiny_dcz)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.dcz"), "--onnx", str(out)]) == 2
