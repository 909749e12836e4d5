"""DistributedDataParallel on CPU (gloo): ``deepcompress train`` under ``torchrun --nproc_per_node 2``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from _imgutil import make_image_folder
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_cpu_processes_agree(tmp_path):
    data = make_image_folder(tmp_path / "data", 10, size=20)
    out = tmp_path / "out"
    out.mkdir()
    path = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "_ddp_worker.py"), str(out),
           "--model", "mobilenet-v3-small", "--data", str(data), "--image-size", "32", "--epochs", "3",
           "--freeze-epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    with safe_open(str(out / "rank0.safetensors"), "pt") as f:
        assert f.metadata()["world_size"] == "2"
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # only rank 0 wrote the run's files, and the run trained in both phases
    hist = json.loads((out / "history.json").read_text())
    assert [e["phase"] for e in hist["epochs"]][:2] == ["head", "full"]
    assert (out / "best.safetensors").is_file()
    assert proc.stdout.count("accuracy") == 1


def test_compress_under_torchrun_keeps_the_ranks_in_step_and_writes_once(tmp_path):
    from deepcompress.checkpoint import save_checkpoint
    from deepcompress.models import create_model

    data = make_image_folder(tmp_path / "data", 8, size=20, prefix="train_")
    make_image_folder(data, 3, size=20, prefix="test_", seed=1)
    model = create_model("mobilenet-v3-small", num_classes=2)
    model.dc_info.class_names, model.dc_info.input_size = ["healthy", "rust"], [3, 32, 32]
    save_checkpoint(tmp_path / "m.safetensors", model)
    (tmp_path / "r.yaml").write_text(
        "prune: {sparsity: {pointwise: 0.6}, retrain: {epochs: 2, batch_size: 4, distill: 0.5}}\n"
        "quantize: {fold_bn: true, finetune: {epochs: 1, batch_size: 4},\n"
        "           mixed: {average_bits: 4, candidates: [3, 4, 5], estimator: gauss-newton, batches: 1,\n"
        "                   batch_size: 4}}\n")
    out = tmp_path / "out"
    out.mkdir()
    path = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "_ddp_compress_worker.py"), str(out), str(tmp_path / "m.safetensors"),
           "--data", str(data), "--recipe", str(tmp_path / "r.yaml"), "--out", str(out / "m.dcz"),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    results = json.loads((out / "m.json").read_text())
    assert results["bit_exact"] and results["final"]["n"] == 6
    assert proc.stdout.count("compressed") == 1  # one report, from rank 0
