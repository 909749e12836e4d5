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
