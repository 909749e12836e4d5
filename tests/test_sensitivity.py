"""``deepcompress sensitivity`` on a small LeNet trained on the bundled digits."""

import json

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Subset

from deepcompress.checkpoint import save_checkpoint
from deepcompress.cli import main
from deepcompress.commands.sensitivity import parse_sparsities
from deepcompress.data import load_digits_28
from deepcompress.models import create_model
from deepcompress.recipe import load_recipe
from deepcompress.sensitivity import suggest_sparsity
from deepcompress.training import TrainConfig, fit


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("lenet-5")
    train, _ = load_digits_28()  # a few steps are enough for curves that fall with sparsity
    fit(model, DataLoader(Subset(train, range(384)), batch_size=64, shuffle=True), TrainConfig(epochs=1, lr=3e-3),
        progress=False)
    path = tmp_path_factory.mktemp("sens") / "lenet5.safetensors"
    save_checkpoint(path, model)
    return path


def test_sensitivity_cli_writes_curves_plot_and_a_usable_recipe(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "sens"
    recipe = tmp_path / "suggested.yaml"
    rc = main(["sensitivity", "--model", str(digits_ckpt), "--data", "digits", "--method", "magnitude",
               "--sparsities", "0,0.45,...,0.9", "--eval-samples", "200", "--out", str(out), "--suggest-drop", "0.02",
               "--recipe-out", str(recipe), "--quiet", "--device", "cpu"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    result = json.loads((out / "sensitivity.json").read_text())
    rows = result["rows"]
    assert {r["layer"] for r in rows} == {"conv1", "conv2", "fc1", "fc2"}
    assert {r["kind"] for r in rows if r["layer"].startswith("conv")} == {"conv"}
    assert sorted({r["sparsity"] for r in rows}) == [0.0, 0.45, 0.9]
    dense = result["dense"]["accuracy"]
    assert all(r["accuracy"] == dense for r in rows if r["sparsity"] == 0)
    assert (out / "sensitivity.csv").read_text().splitlines()[0].startswith("layer,kind,weights,sparsity,accuracy")
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (out / "sensitivity.svg").read_bytes()[:500]
    targets = summary["suggestion"]["sparsity"]
    assert targets == suggest_sparsity(rows, 0.02, dense)
    loaded = load_recipe(recipe)
    assert loaded.model == "lenet-5" and loaded.prune.sparsity == targets
    assert yaml.safe_load(recipe.read_text())["prune"]["method"] == "magnitude"


def test_sensitivity_cli_obd_and_bad_arguments(digits_ckpt, tmp_path, capsys):
    rc = main(["sensitivity", "--model", str(digits_ckpt), "--data", "digits", "--method", "obd",
               "--estimator", "hutchinson", "--batches", "1", "--sparsities", "0.5", "--eval-samples", "100",
               "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu"])
    assert rc == 0
    result = json.loads((tmp_path / "o" / "sensitivity.json").read_text())
    assert result["method"] == "obd" and result["dense"]["n"] == 100 and len(result["rows"]) == 4
    capsys.readouterr()
    assert main(["sensitivity", "--model", str(digits_ckpt), "--data", "digits", "--sparsities", "0,1.2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "fractions in [0, 1)" in capsys.readouterr().err
    assert main(["sensitivity", "--model", str(digits_ckpt), "--data", "digits", "--recipe-out", "r.yaml",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--recipe-out needs --suggest-drop" in capsys.readouterr().err


def test_parse_sparsities_and_suggestions():
    assert parse_sparsities("0,0.1,...,0.9,0.95") == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    with pytest.raises(ValueError, match="needs two values"):
        parse_sparsities("0,...,0.9")
    rows = [{"layer": "a", "sparsity": s, "accuracy": acc} for s, acc in [(0, 0.99), (0.5, 0.985), (0.8, 0.97),
                                                                          (0.9, 0.989)]]
    assert suggest_sparsity(rows, 0.01) == {"a": 0.5}  # stops at the first sparsity beyond the drop
    assert suggest_sparsity(rows, 0.03) == {"a": 0.9}


def test_sensitivity_on_an_image_folder_uses_the_validation_split_and_tells_depthwise_apart(tmp_path, capsys):
    from _imgutil import make_image_folder

    from deepcompress.checkpoint import save_checkpoint
    from deepcompress.models import create_model

    data = make_image_folder(tmp_path / "leaves", n_per_class=10, size=32, prefix="train_")
    make_image_folder(data, n_per_class=3, size=32, prefix="test_", seed=1)
    model = create_model("mobilenet-v1", num_classes=2)
    model.dc_info.class_names, model.dc_info.input_size = ["healthy", "rust"], [3, 32, 32]
    save_checkpoint(tmp_path / "m.safetensors", model)
    for split, n in (("val", 2), ("test", 6)):
        out = tmp_path / split
        assert main(["sensitivity", "--model", str(tmp_path / "m.safetensors"), "--data", str(data),
                     "--sparsities", "0,0.5", "--split", split, "--out", str(out), "--quiet"]) == 0
        result = json.loads((out / "sensitivity.json").read_text())
        assert result["dense"]["n"] == n
        shapes = {r["shape"] for r in result["rows"]}
        assert shapes == {"conv", "depthwise", "pointwise", "fc"}
        assert (out / "sensitivity.png").is_file()
