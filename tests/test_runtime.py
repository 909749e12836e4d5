"""deepcompress.runtime: parity with PyTorch, the sparse codebook kernel, no torch import, graph storage."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepcompress
from deepcompress import runtime
from deepcompress.errors import FormatError
from deepcompress.export import embed_graph
from deepcompress.format.dcz import decode_dcz, read_dcz, replace_extras
from deepcompress.format.model import load_model, save_model
from deepcompress.models import create_model
from deepcompress.quantize import share_layer
from deepcompress.runtime import SparseCodebookLinear
from deepcompress.runtime.kernels import BACKENDS

SRC = Path(deepcompress.__file__).resolve().parents[1]


def _shared_matrix(rng: np.random.Generator, out: int, inp: int, density: float, k: int) -> np.ndarray:
    codebook = rng.standard_normal(k).astype(np.float32)
    w = codebook[rng.integers(0, k, size=(out, inp))]
    w[rng.random((out, inp)) >= density] = 0
    return w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.09, 0.5, 1.0])
def test_sparse_kernel_matches_dense(backend: str, density: float) -> None:
    rng = np.random.default_rng(0)
    w = _shared_matrix(rng, 70, 130, density, 16)
    w[3] = 0  # an empty row
    b = rng.standard_normal(70).astype(np.float32)
    kernel = SparseCodebookLinear(w, b, backend=backend)
    assert kernel.nnz == np.count_nonzero(w)
    assert kernel.codebook.size <= 16
    for batch in (1, 5):
        x = rng.standard_normal((batch, 130)).astype(np.float32)
        np.testing.assert_allclose(kernel(x), x @ w.T + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(SparseCodebookLinear(w, backend=backend)(x), x @ w.T, rtol=1e-5, atol=1e-5)


def test_sparse_kernel_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        SparseCodebookLinear(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="backend"):
        SparseCodebookLinear(np.zeros((2, 2), np.float32), backend="cuda")
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        SparseCodebookLinear(np.eye(2, dtype=np.float32))(np.zeros((1, 3), np.float32))


def test_graph_section_round_trip(tiny_dcz: Path) -> None:
    data = tiny_dcz.read_bytes()
    dcz = decode_dcz(data)
    assert data[8:12] == b"\x01\x00\x01\x00"  # format 1.1: sections present
    assert set(dcz.sections) == {"graph.onnx"}
    graph = dcz.header["graph"]
    assert graph["tail"][0] == ["flatten"] and graph["tail"][1][:2] == ["linear", "classifier.1.weight"]
    assert set(graph["initializers"]) <= set(dcz.tensors)
    assert graph["macs"] > 0
    # without sections the bytes are exactly format 1.0 again, records untouched
    plain = {k: v for k, v in dcz.header.items() if k != "graph"}
    stripped = replace_extras(data, plain, {})
    assert stripped[8:12] == b"\x01\x00\x00\x00"
    again = decode_dcz(stripped)
    assert again.sections == {} and all(np.array_equal(again.tensors[k], v) for k, v in dcz.tensors.items())
    assert decode_dcz(replace_extras(stripped, dcz.header, dcz.sections)).sections == dcz.sections


def test_truncated_sections_are_rejected(tiny_dcz: Path) -> None:
    import struct
    import zlib

    data = tiny_dcz.read_bytes()
    body = data[:-30]  # cut into the graph section, then re-seal with a valid CRC
    with pytest.raises(FormatError, match="truncated"):
        decode_dcz(body + struct.pack("<I", zlib.crc32(body)))


@pytest.mark.parametrize("fc_kernel", runtime.FC_KERNELS)
def test_runtime_matches_pytorch_on_trained_image_model(tiny_dcz: Path, colour_files: list[Path],
                                                        fc_kernel: str) -> None:
    model = runtime.load(tiny_dcz, fc_kernel=fc_kernel)
    reference = load_model(tiny_dcz)
    x = np.concatenate([runtime.to_input(Image.open(p), model.input_size, model.mean, model.std)
                        for p in colour_files])
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert np.abs(expected).max() > 1.0  # trained weights: far from the near-zero outputs of a fresh model
    for batch in (x[:1], x):
        np.testing.assert_allclose(model(batch), expected[:len(batch)], rtol=0, atol=1e-4)
    hits = sum(model.classify(p).top[0][0] == p.name.split("_")[0] for p in colour_files)
    assert hits >= len(colour_files) - 2


def test_runtime_runs_all_fc_model_in_numpy(tmp_path: Path) -> None:
    from deepcompress.data.digits import digits_arrays

    d = digits_arrays()
    x = (torch.from_numpy(d["train_images"]).float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    y = torch.from_numpy(d["train_labels"]).long()
    torch.manual_seed(0)
    net = create_model("lenet-300-100")
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(40):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i * 32 % 1300:][:128]), y[i * 32 % 1300:][:128]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        for layer in (net.fc1, net.fc2, net.fc3):
            layer.weight[layer.weight.abs() < layer.weight.abs().quantile(0.9)] = 0
    for layer in (net.fc1, net.fc2, net.fc3):
        share_layer(layer, bits=5)
    path = tmp_path / "mlp.dcz"
    save_model(net, path)
    with pytest.raises(FormatError, match="no network graph.*--embed-graph"):
        runtime.load(path)
    embed_graph(path)
    dcz = read_dcz(path)
    assert dcz.header["graph"]["section"] is None and dcz.sections == {}  # the whole net is the fc tail
    model = runtime.Model(dcz, fc_kernel="sparse")
    test = ((d["test_images"].astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]
    with torch.no_grad():
        expected = load_model(path)(torch.from_numpy(test)).numpy()
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(model(test), expected, rtol=0, atol=1e-4)
    assert (model(test).argmax(1) == d["test_labels"]).mean() > 0.3  # chance: 0.1


NO_HEAVY = ("heavy = sorted(n for n in ('torch', 'torchvision', 'onnx') if n in sys.modules)\n"
            "assert not heavy, heavy\n")


def _python(code: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this checkout's sources; fail the test if it fails."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def test_runtime_never_imports_torch(tiny_dcz: Path, colour_files: list[Path]) -> None:
    done = _python(f"import sys\nfrom deepcompress import runtime\nm = runtime.load({str(tiny_dcz)!r})\n"
                   f"print(m.classify({str(colour_files[0])!r}).top[0][0])\n" + NO_HEAVY)
    assert done.stdout.strip() == "red"


def test_cli_predict_never_imports_torch(tiny_dcz: Path, colour_files: list[Path]) -> None:
    done = _python("import sys\nfrom deepcompress.cli import main\n"
                   f"assert main(['predict', {str(tiny_dcz)!r}, {str(colour_files[0])!r}, '--top-k', '1']) == 0\n"
                   + NO_HEAVY)
    assert "red" in done.stdout


def test_cli_loads_without_the_deploy_extra() -> None:
    _python("import sys\nfor name in ('onnxruntime', 'onnx', 'fastapi', 'uvicorn', 'playwright'):\n"
            "    sys.modules[name] = None  # as if not installed\n"
            "from deepcompress.cli import build_parser\n"
            "build_parser().parse_args(['predict', 'm.dcz', 'leaf.jpg'])\n", timeout=120)


def test_runtime_reports_broken_graph(tiny_dcz: Path) -> None:
    dcz = read_dcz(tiny_dcz)
    dcz.sections = {"graph.onnx": b"not zlib"}
    with pytest.raises(FormatError, match="not valid zlib"):
        runtime.Model(dcz)
    dcz.sections = {"graph.onnx": zlib.compress(b"not a graph")}
    with pytest.raises(FormatError, match="ONNX Runtime cannot load"):
        runtime.Model(dcz)
    dcz.sections = {}
    with pytest.raises(FormatError, match="lacks"):
        runtime.Model(dcz)
    with pytest.raises(ValueError, match="fc_kernel"):
        runtime.Model(dcz, fc_kernel="fast")


def test_energy_estimate_is_the_report_energy_model() -> None:
    # 1 MAC = 4.6 pJ (fp32 multiply 3.7 + add 0.9); a small file sits in on-chip SRAM: 8 bytes = two
    # 32-bit words at 5 pJ, a partial word counting as a whole one; past the 8 MiB budget, DRAM at 640 pJ
    assert runtime.energy_per_inference_pj(10, 8) == pytest.approx(46 + 10)
    assert runtime.energy_per_inference_pj(0, 5) == pytest.approx(10)
    assert runtime.energy_per_inference_pj(0, 9 * 2**20) == pytest.approx(9 * 2**20 / 4 * 640)


def test_image_preprocessing_matches_the_zoo_convention() -> None:
    # 64×48 → shorter side round(32 / 0.875) = 37 → 49×37 (int(37 * 64 / 48)) → centre crop 32×32
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
    x = runtime.to_input(img, [3, 32, 32], [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    resized = np.asarray(img.resize((49, 37), Image.Resampling.BICUBIC), np.float32) / 255
    left, top = round((49 - 32) / 2), round((37 - 32) / 2)
    expected = (resized[top:top + 32, left:left + 32] - [0.5, 0.4, 0.3]) / 0.2
    np.testing.assert_allclose(x[0], expected.transpose(2, 0, 1), atol=1e-6)
    gray = runtime.to_input(img, [1, 28, 28], [0.1307], [0.3081])
    assert gray.shape == (1, 1, 28, 28) and gray.dtype == np.float32
    with pytest.raises(runtime.ImageError, match="unsupported image mode LAB"):
        runtime.to_input(Image.new("LAB", (40, 30)), [1, 28, 28], None, None)
    with pytest.raises(ValueError, match="not an image"):
        runtime.to_input(img, [64], None, None)
