import json

import pytest
import yaml
from conftest import shared_dataset

from deepcompress.checkpoint import save_checkpoint
from deepcompress.cli import main
from deepcompress.models import create_model

TINY_RECIPE = {
    "model": "lenet-300-100",
    "train": {"epochs": 1, "batch_size": 64},
    "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "rounds": 1,
              "retrain": {"epochs": 1, "lr": 0.0005, "batch_size": 64}},
    "quantize": {"bits": {"fc": 4}, "finetune": {"epochs": 1, "lr": 0.0001, "batch_size": 64}},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    save_checkpoint(d / "dense.safetensors", create_model("lenet-300-100"))
    code = main(["compress", str(d / "dense.safetensors"), "--recipe", str(d / "tiny.yaml"), "--data", "digits",
                 "--out", str(d / "model.dcz"), "--quiet", "--device", "cpu"])
    assert code == 0
    return d


def test_compress_writes_file_results_and_report(files):
    assert (files / "model.dcz").stat().st_size > 0
    results = json.loads((files / "model.json").read_text())
    assert results["bit_exact"] and results["file_bytes"] == (files / "model.dcz").stat().st_size
    assert "ratio P+Q+H" in (files / "model.md").read_text()


def test_evaluate_json_on_dcz_and_checkpoint(files, capsys):
    for name in ("model.dcz", "dense.safetensors"):
        assert main(["evaluate", str(files / name), "--data", "digits", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert {"accuracy", "log_loss", "n"} <= set(out)
        assert 0 <= out["accuracy"] <= 1 and out["n"] == 449


def test_inspect_prints_the_layer_table(files, capsys):
    assert main(["inspect", str(files / "model.dcz")]) == 0
    out = capsys.readouterr().out
    assert "fc1.weight" in out and "lenet-300-100" in out and "smaller" in out
    assert main(["inspect", str(files / "model.dcz"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["file_bytes"] == (files / "model.dcz").stat().st_size


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "missing.dcz", "--data", "digits"], "no such model file"),
    (["inspect", "missing.dcz"], "no such .dcz file"),
    (["evaluate", "{dcz}", "--data", "/nonexistent/folder"], "data folder not found"),
    (["compress", "{ckpt}", "--data", "digits", "--out", "{dir}/x.dcz", "--recipe", "{dir}/nope.yaml"],
     "recipe not found"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    argv = [a.format(dcz=files / "model.dcz", ckpt=files / "dense.safetensors", dir=files) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_corrupt_file_gets_a_format_error(files, tmp_path, capsys):
    data = bytearray((files / "model.dcz").read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.dcz").write_bytes(bytes(data))
    assert main(["inspect", str(tmp_path / "bad.dcz")]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


@pytest.mark.shared_data
def test_reproduce_end_to_end_on_real_mnist(tmp_path, capsys):
    mnist = shared_dataset("mnist")
    recipe = {**TINY_RECIPE, "train": {"epochs": 1, "batch_size": 256},
              "prune": {**TINY_RECIPE["prune"], "retrain": {"epochs": 1, "lr": 0.0005, "batch_size": 256}},
              "quantize": {"bits": {"fc": 5}, "finetune": {"epochs": 0}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["reproduce", "lenet-300-100", "--data", str(mnist), "--out", str(tmp_path / "out"),
                 "--recipe", str(tmp_path / "r.yaml"), "--quiet", "--device", "cpu"]) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["final"]["n"] == 10_000 and r["final"]["accuracy"] > 0.9
    assert r["bit_exact"] and r["compression_ratio"] > 10
    assert (tmp_path / "out" / "baseline.safetensors").is_file()
    assert main(["evaluate", str(tmp_path / "out" / "lenet-300-100.dcz"), "--data", str(mnist), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["accuracy"] == pytest.approx(r["final"]["accuracy"])
