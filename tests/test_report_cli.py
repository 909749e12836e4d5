"""``deepcompress report`` end to end on a tiny dense checkpoint and its .dcz (digits, seconds)."""

import csv
import json

import pytest
import torch

from deepcompress.checkpoint import save_checkpoint
from deepcompress.cli import main
from deepcompress.data import open_train_test
from deepcompress.metrics.energy import EnergyModel
from deepcompress.metrics.summary import markdown, measure_file, measure_model, text_table
from deepcompress.models import create_model
from deepcompress.pipeline import Data, Pipeline
from deepcompress.recipe import recipe_from_dict

TINY = {"model": "lenet-300-100", "train": {"epochs": 1, "batch_size": 128},
        "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}},
        "quantize": {"bits": 4, "max_iter": 20}, "encode": {"index_bits": 5}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: far faster than two on a busy two-core machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    pipe = Pipeline(recipe_from_dict(TINY), Data(*open_train_test("digits"), "digits"), "cpu", progress=False)
    pipe.run(create_model("lenet-300-100"), out / "tiny.dcz", baseline_path=out / "baseline.safetensors")
    pipe.write_reports(out / "results.json", out / "report.md")
    return out / "baseline.safetensors", out / "tiny.dcz"


def test_report_side_by_side(models, tmp_path, capsys):
    ckpt, dcz = models
    out = tmp_path / "rep"
    rc = main(["report", str(ckpt), str(dcz), "--data", "digits", "--out", str(out), "--label", "dense",
               "--label", "compressed", "--batch-size", "4", "--repeats", "2", "--warmup", "0", "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "dense" in printed and "compressed" in printed and "est." in printed
    report = json.loads((out / "report.json").read_text())
    dense, comp = report["models"]
    assert dense["format"] == "dense" and comp["format"] == "dcz"
    assert dense["macs"] == comp["macs"] == 266_200
    assert comp["sparse_macs"] < 0.2 * comp["macs"] and comp["nonzero"] < 0.2 * comp["params"]
    assert comp["file_bytes"] == dcz.stat().st_size < dense["file_bytes"] / 10
    assert all(v <= 16 for v in comp["distinct_values"].values())
    assert comp["energy"]["inference"]["method"] == "estimated"
    assert comp["energy"]["inference"]["total_j"] < dense["energy"]["inference"]["total_j"]
    assert dense["energy"]["training"]["method"] in ("estimated", "measured")
    assert comp["energy"]["training"]["seconds"] > dense["energy"]["training"]["seconds"] > 0
    assert 0 <= comp["eval"]["accuracy"] <= 1 and set(comp["latency"]["batches"]) == {"1", "4"}
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["label"] for r in rows] == ["dense", "compressed"]
    assert "| compressed |" in (out / "report.md").read_text()
    for stem in ("energy_breakdown", "accuracy_vs_size_energy", "weights_compressed"):
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000


def test_report_energy_overrides_and_no_latency(models, tmp_path):
    ckpt, _ = models
    cfg = tmp_path / "energy.toml"
    cfg.write_text("dram_pj_per_word = 100.0\n")
    out = tmp_path / "rep"
    assert main(["report", str(ckpt), "--out", str(out), "--no-latency", "--no-plots", "--energy-config", str(cfg),
                 "--on-chip-kib", "1", "--arithmetic", "int8"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["energy_model"]["dram_pj_per_word"] == 100.0 and r["energy_model"]["on_chip_bytes"] == 1024
    e = r["models"][0]["energy"]["inference"]
    assert not e["weights_on_chip"] and e["compute_j"] == pytest.approx(266_200 * 0.23e-12)
    assert "latency" not in r["models"][0] and "eval" not in r["models"][0]
    assert not list(out.glob("*.png"))


def test_report_registered_architecture(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "lenet-5", "--out", str(out), "--no-latency", "--no-plots"]) == 0
    assert "architecture (no file)" in capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())["models"][0]
    assert r["macs"] == 2_293_000 and r["params"] == 431_080 and "file_bytes" not in r


def test_report_errors_exit_2(models, tmp_path, capsys):
    ckpt, _ = models
    assert main(["report", str(tmp_path / "missing.dcz"), "--out", str(tmp_path / "o")]) == 2
    assert "no such model file or registered model" in capsys.readouterr().err
    assert main(["report", str(ckpt), "--label", "a", "--label", "b", "--out", str(tmp_path / "o")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("dram_pj_per_megabyte: 640\n")
    assert main(["report", str(ckpt), "--energy-config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_training_time_from_history_json(tmp_path):
    save_checkpoint(tmp_path / "best.safetensors", create_model("lenet-5"))
    history = {"model": "lenet-5", "epochs": [{"epoch": 1, "seconds": 10.0}, {"epoch": 2, "seconds": 5.0}]}
    (tmp_path / "history.json").write_text(json.dumps(history))
    r = measure_file(tmp_path / "best.safetensors", energy_model=EnergyModel(cpu_power_w=10))
    train = r["energy"]["training"]
    assert train["seconds"] == 15.0 and train["joules"] == 150.0 and train["method"] == "estimated"
    assert "not recorded" in train["notes"][0]


def test_measured_inference_energy_reported_beside_the_estimate(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    for name, value in (("name", "package-0"), ("energy_uj", "5000"), ("max_energy_range_uj", "10000")):
        (zone / name).write_text(value + "\n")
    latency = {"batch_sizes": (1,), "warmup": 0, "repeats": 2, "powercap_root": str(tmp_path)}
    r = measure_model(create_model("lenet-300-100"), "m", latency=latency)
    measured = r["energy"]["inference_measured"]
    assert measured["method"] == "measured" and measured["per_inference_j"] == 0.0  # the fake counter stood still
    assert r["energy"]["inference"]["method"] == "estimated"
    assert "0 nJ" in text_table([r]) and "| m |" in markdown([r], EnergyModel())
