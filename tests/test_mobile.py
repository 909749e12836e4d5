"""Compressing conv nets: BatchNorm folding, depthwise / pointwise layer policies, image-folder pipelines."""

import json
from pathlib import Path

import pytest
import torch
from _imgutil import make_image_folder
from conftest import TINY, shared_dataset
from torch import nn
from torch.utils.data import DataLoader

from deepcompress.checkpoint import save_checkpoint
from deepcompress.cli import main
from deepcompress.data import open_train_test
from deepcompress.finetune import prepare_data
from deepcompress.format.model import load_model, save_model
from deepcompress.models import create_model, list_models
from deepcompress.models.fold_bn import fold_batchnorm, normalize_batchnorm
from deepcompress.pipeline import Data, Pipeline, load_data
from deepcompress.prune import (
    apply_mask,
    current_mask,
    current_weight,
    hessian_diagonal,
    magnitude_mask,
    prunable_layers,
    remove_masks,
    resolve_layer_setting,
)
from deepcompress.prune.magnitude import check_layer_names, conv_kind
from deepcompress.quantize import share_layer
from deepcompress.quantize.mixed import bits_for_accuracy, choose_bits, quantization_costs
from deepcompress.recipe import recipe_from_dict
from deepcompress.report import dense_bytes
from deepcompress.training import TrainConfig, distillation_loss, evaluate, fit


def _random_statistics(model: nn.Module) -> None:
    """BatchNorm statistics far from the identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("arch", ["mobilenet-v2", "efficientnet-lite0"])
def test_folding_batchnorm_keeps_the_function_and_the_zeros(arch):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=3).eval()
    _random_statistics(model)
    first = model.get_submodule(next(iter(prunable_layers(model))))
    with torch.no_grad():
        first.weight[:, :, 0, 0] = 0  # pruned weights
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    pairs = fold_batchnorm(model)
    assert len(pairs) == n_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert torch.all(first.weight[:, :, 0, 0] == 0)
    assert model.dc_info.kwargs["fold_bn"] is True
    rebuilt = create_model(arch, **model.dc_info.kwargs)  # what a .dcz reader does
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="already folded"):
        fold_batchnorm(model)


def test_fold_bn_must_be_a_boolean():
    with pytest.raises(ValueError, match="fold_bn must be true or false"):
        create_model("mobilenet-v1", fold_bn="yes")


def test_depthwise_and_pointwise_keys_pick_layers():
    model = create_model("mobilenet-v1", num_classes=3)
    layers = prunable_layers(model)
    kinds = {name: conv_kind(m) for name, m in layers.items()}
    assert sum(k == "depthwise" for k in kinds.values()) == 13
    assert sum(k == "pointwise" for k in kinds.values()) == 13
    setting = {"depthwise": 0.3, "pointwise": 0.9, "conv": 0.1, "fc": 0.8}
    check_layer_names(setting, layers, "prune.sparsity")
    got = {name: resolve_layer_setting(setting, name, m) for name, m in layers.items()}
    assert {got[n] for n, k in kinds.items() if k == "depthwise"} == {0.3}
    assert {got[n] for n, k in kinds.items() if k == "pointwise"} == {0.9}
    stem = next(n for n, k in kinds.items() if k is None and isinstance(layers[n], nn.Conv2d))
    assert got[stem] == 0.1
    assert got[next(n for n, m in layers.items() if isinstance(m, nn.Linear))] == 0.8


RECIPE = """
model: test-tinynet
seed: 0
prune:
  sparsity: {conv: 0.5, fc: 0.8}
  rounds: 1
  retrain: {epochs: 1, lr: 0.001, batch_size: 8, bn_momentum: 0.1}
quantize:
  fold_bn: %s
  bits: {conv: 6, fc: 4}
  finetune: {epochs: 1, lr: 0.0001, batch_size: 8}
encode:
  raw_dtype: float16
"""


@pytest.mark.parametrize("fold", [True, False])
def test_compress_cli_on_an_image_folder(tmp_path, fold, capsys):
    data = tmp_path / "leaves"
    make_image_folder(data, n_per_class=8, size=32, classes=("healthy", "rust", "spot"), prefix="train_")
    make_image_folder(data, n_per_class=3, size=32, classes=("healthy", "rust", "spot"), prefix="test_", seed=1)
    model = create_model(TINY, num_classes=3)
    model.dc_info.class_names = ["healthy", "rust", "spot"]
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, model)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE % ("true" if fold else "false"))
    out = tmp_path / "out" / "tiny.dcz"
    assert main(["compress", str(ckpt), "--data", str(data), "--recipe", str(recipe), "--out", str(out),
                 "--quiet"]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["bit_exact"] and results["final"]["n"] == 9  # the test_ images
    decoded = load_model(out)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in decoded.modules())
    assert has_bn is not fold
    if fold:
        assert results["fold_bn"]["pairs"] == 1
        assert results["fold_bn"]["accuracy"] == results["fold_bn"]["accuracy_before"]
        assert decoded.dc_info.kwargs["fold_bn"] is True
        assert decoded.features[0].bias is not None
    else:
        assert "fold_bn" not in results


def test_mixed_precision_gives_more_bits_where_the_hessian_is_large():
    torch.manual_seed(0)
    layers = {"a": nn.Linear(64, 64), "b": nn.Linear(64, 64)}
    hessian = {"a": torch.full((64, 64), 100.0), "b": torch.full((64, 64), 0.01)}
    choice = choose_bits(layers, 4.0, [2, 3, 4, 5, 6], hessian)
    assert choice["met"] and choice["average_bits"] <= 4.0
    assert choice["bits"]["a"] > choice["bits"]["b"]
    assert choice["bits"] == {"b": 2, "a": 6}
    flipped = choose_bits(layers, 4.0, [2, 3, 4, 5, 6], {"a": hessian["b"], "b": hessian["a"]})
    assert flipped["bits"] == {"a": 2, "b": 6}
    costs = quantization_costs(layers["a"], [2, 4, 6])
    assert costs[2] > costs[4] > costs[6] > 0  # WCSS falls with the bits
    unreachable = choose_bits(layers, 1.5, [2, 3], hessian)
    assert not unreachable["met"] and unreachable["bits"] == {"a": 2, "b": 2}


@pytest.mark.parametrize("bad, message", [
    ({"average_bits": 0}, "average_bits must be a number in 1..16"),
    ({}, "give exactly one of average_bits"),
    ({"average_bits": 4, "max_drop": 0.01}, "give exactly one of average_bits"),
    ({"max_drop": 1.5}, "max_drop must be a fraction in"),
    ({"average_bits": 4, "candidates": [2, 17]}, "candidates must be integers in 1..16"),
    ({"average_bits": 4, "candidates": []}, "non-empty list"),
    ({"average_bits": 4, "estimator": "exact"}, "estimator must be one of"),
    ({"average_bits": 4, "batches": 0}, "batches must be an integer >= 1"),
    ({"bits": 4}, "unknown key"),
])
def test_bad_mixed_precision_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        recipe_from_dict({"quantize": {"mixed": bad}})


def test_pipeline_with_mixed_precision_meets_the_size_target(tmp_path):
    train, test = open_train_test("digits")
    recipe = recipe_from_dict({
        "model": "lenet-300-100", "seed": 0, "train": {"epochs": 1, "batch_size": 64},
        "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}},
        "quantize": {"mixed": {"average_bits": 3.5, "candidates": [2, 3, 4, 5], "estimator": "gauss-newton",
                               "batches": 1, "batch_size": 16}},
        "encode": {"index_bits": {"fc": 5}}})
    pipe = Pipeline(recipe, Data(train, test, "digits"), "cpu", progress=False)
    pipe.run(create_model("lenet-300-100"), tmp_path / "m.dcz")
    mixed = pipe.results["quantize"]["mixed"]
    assert mixed["met"] and mixed["average_bits"] <= 3.5
    for name, layer in pipe.results["quantize"]["layers"].items():
        assert layer["bits"] == mixed["bits"][name] and layer["clusters"] <= 2 ** layer["bits"]
    assert pipe.results["bit_exact"]


# one of each family (the larger siblings have the same layer types; resnet50's residuals are in mobilenet-v2)
SIBLINGS = {"resnet50", "mobilenet-v3-large", "mnasnet0_5", "squeezenet1_0"}
ZOO_IMAGE_MODELS = [m for m in list_models() if not m.startswith("lenet") and m not in SIBLINGS]


@pytest.mark.parametrize("arch", ZOO_IMAGE_MODELS)
def test_every_zoo_layer_type_survives_prune_fold_share_and_the_file(arch, tmp_path):
    """Depthwise, grouped, pointwise and plain convs, squeeze-excite, BatchNorm and residuals: prune,
    fold, share and store every prunable layer; the model decoded from the .dcz computes what the
    in-memory one does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = create_model(arch, num_classes=3).eval()
        _random_statistics(model)
        for module in prunable_layers(model).values():
            apply_mask(module, magnitude_mask(current_weight(module), current_mask(module),
                                              sparsity=0.2 if conv_kind(module) == "depthwise" else 0.7))
        remove_masks(model)
        fold_batchnorm(model)
        for module in prunable_layers(model).values():
            share_layer(module, 4, max_iter=20)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            expected = model(x)
        save_model(model, tmp_path / "m.dcz", raw_dtype="float32")
        decoded = load_model(tmp_path / "m.dcz")
        with torch.no_grad():
            torch.testing.assert_close(decoded(x), expected, rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_distillation_loss_is_zero_for_the_teacher_itself_and_positive_otherwise():
    logits = torch.randn(8, 3)
    assert distillation_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.zeros(8, 3), logits, 4.0).item() > 0


DISTIL = {"model": "lenet-300-100", "seed": 5, "train": {"epochs": 1, "batch_size": 64},
          "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5},
                    "retrain": {"epochs": 1, "batch_size": 64, "distill": 0.7, "temperature": 3.0}},
          "quantize": {"bits": 4, "finetune": {"epochs": 1, "batch_size": 64, "distill": 0.5}},
          "encode": {"index_bits": {"fc": 5}}}


def test_pipeline_distils_from_the_dense_model_and_resumes_with_the_same_teacher(tmp_path, monkeypatch):
    from test_resume import Interrupted, _interrupt_at

    train, test = open_train_test("digits")
    data = Data(train, test, "digits")

    def run(out, resume=False):
        pipe = Pipeline(recipe_from_dict(DISTIL), data, "cpu", progress=False)
        pipe.run(pipe.build_model(), out, state_dir=tmp_path / f"{out.name}.state", resume=resume)
        return pipe

    pipe = run(tmp_path / "ref.dcz")
    assert pipe.teacher is not None and not pipe.teacher.training
    assert all(not p.requires_grad for p in pipe.teacher.parameters())
    assert (tmp_path / "ref.dcz.state" / "teacher.safetensors").is_file()
    _interrupt_at(monkeypatch, "prune")
    with pytest.raises(Interrupted):
        run(tmp_path / "run.dcz")
    monkeypatch.undo()
    run(tmp_path / "run.dcz", resume=True)
    assert (tmp_path / "run.dcz").read_bytes() == (tmp_path / "ref.dcz").read_bytes()
    with pytest.raises(ValueError, match="distill must be in"):
        recipe_from_dict({**DISTIL, "prune": {**DISTIL["prune"], "retrain": {"distill": 1.5}}})


def test_hutchinson_on_a_model_without_second_derivatives_says_what_to_use():
    model = create_model("mobilenet-v3-small", num_classes=2)  # hardsigmoid has no double backward
    batch = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match="use the gauss-newton estimator"):
        hessian_diagonal(model, batch, "hutchinson")
    h = hessian_diagonal(model, batch, "gauss-newton")
    assert all(torch.isfinite(v).all() for v in h.values())


def test_compress_saves_the_pruned_model_for_other_quantization_settings(tmp_path):
    from deepcompress.checkpoint import load_checkpoint

    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune: {sparsity: {fc1: 0.9, fc2: 0.8, fc3: 0.5}}\nquantize: {bits: 4}\n"
                      "encode: {index_bits: {fc: 5}}\n")
    ckpt = tmp_path / "dense.safetensors"
    save_checkpoint(ckpt, create_model("lenet-300-100"))
    assert main(["compress", str(ckpt), "--data", "digits", "--recipe", str(recipe), "--out", str(tmp_path / "a.dcz"),
                 "--save-pruned", str(tmp_path / "pruned.safetensors"), "--quiet"]) == 0
    pruned = load_checkpoint(tmp_path / "pruned.safetensors")
    assert (pruned.fc1.weight == 0).float().mean().item() == pytest.approx(0.9, abs=1e-3)
    (tmp_path / "q.yaml").write_text("prune: null\nquantize: {bits: 3}\nencode: {index_bits: {fc: 5}}\n")
    assert main(["compress", str(tmp_path / "pruned.safetensors"), "--data", "digits", "--recipe",
                 str(tmp_path / "q.yaml"), "--out", str(tmp_path / "b.dcz"), "--quiet"]) == 0
    assert (load_model(tmp_path / "b.dcz").fc1.weight == 0).float().mean().item() == pytest.approx(0.9, abs=1e-3)


def test_normalizing_batchnorm_statistics_keeps_the_function_and_fine_tuning_keeps_them():
    torch.manual_seed(0)
    model = create_model("mobilenet-v2", num_classes=3).eval()
    _random_statistics(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    conv = model.features[0][0].weight.detach().clone()
    assert normalize_batchnorm(model) == 52
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    assert torch.equal(model.features[0][0].weight, conv)  # the conv weights are left as trained
    bn = model.features[0][1]
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1 - bn.eps)
    data = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))]
    fit(model, data, TrainConfig(epochs=1, lr=1e-3, freeze_bn=True), progress=False)
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1 - bn.eps)
    with pytest.raises(ValueError, match="fold_bn must be true, false or affine"):
        recipe_from_dict({"quantize": {"fold_bn": "maybe"}})


def test_constant_tensors_take_a_few_bytes_and_decode_exactly(tmp_path):
    from deepcompress.report import layer_rows

    model = create_model("mobilenet-v1", num_classes=3).eval()
    _random_statistics(model)
    normalize_batchnorm(model)
    rows = layer_rows(save_model(model, tmp_path / "m.dcz", raw_dtype="float16"))
    stats = [r for r in rows if r["name"].endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * 27 and all(r["encoding"] == "constant" and r["record_bytes"] < 100 for r in stats)
    assert all(r["encoding"] == "raw" for r in rows if r["name"].endswith("bn.weight") or ".1.weight" in r["name"])
    decoded = load_model(tmp_path / "m.dcz")
    for key, value in model.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.equal(decoded.state_dict()[key], value.half().float()), key


def test_accuracy_target_gives_each_layer_the_fewest_bits_that_keep_its_accuracy():
    torch.manual_seed(0)
    layers = {"a": nn.Linear(32, 32), "b": nn.Linear(32, 32)}
    probe = torch.randn(64, 32)
    target = {n: m(probe).detach() for n, m in layers.items()}

    def accuracy():  # "a" is fragile, "b" robust: a stand-in for validation accuracy
        err = {n: (m(probe) - target[n]).pow(2).mean().item() for n, m in layers.items()}
        return 1.0 - 50 * err["a"] - 0.5 * err["b"]

    choice = bits_for_accuracy(layers, accuracy, 0.01, [2, 3, 4, 5, 6, 8])
    assert choice["bits"]["a"] > choice["bits"]["b"] == 2
    assert choice["reference"] == pytest.approx(1.0)
    assert all(choice["reference"] - acc <= 0.01 for acc in choice["accuracy"].values())
    assert choice["evaluations"] <= 2 * 3  # bisection over six candidates
    strict = bits_for_accuracy(layers, accuracy, 0.0, [2, 3])
    assert strict["bits"] == {"a": 3, "b": 3}  # nothing meets it: the largest candidate


def test_pipeline_accuracy_target_uses_the_validation_split(tmp_path):
    data = make_image_folder(tmp_path / "leaves", n_per_class=10, size=32, classes=("healthy", "rust", "spot"),
                             prefix="train_")
    make_image_folder(data, n_per_class=2, size=32, classes=("healthy", "rust", "spot"), prefix="test_", seed=1)
    model = create_model(TINY, num_classes=3)
    recipe = recipe_from_dict({"model": TINY, "prune": None,
                               "quantize": {"mixed": {"max_drop": 0.05, "candidates": [2, 4, 6]}}})
    pipe = Pipeline(recipe, load_data(data, model), "cpu", progress=False)
    assert len(pipe.data.val) == 3
    pipe.run(model, tmp_path / "m.dcz", train_baseline=False)
    mixed = pipe.results["quantize"]["mixed"]
    assert set(mixed["bits"]) == {"features.0", "features.4", "classifier.1", "classifier.4"}
    assert 2 <= mixed["average_bits"] <= 6
    train, test = open_train_test("digits")
    with pytest.raises(ValueError, match="needs validation data"):
        Pipeline(recipe_from_dict({**recipe.to_dict(), "model": "lenet-300-100", "prune": None, "train": {}}),
                 Data(train, test), "cpu", progress=False).run(create_model("lenet-300-100"), tmp_path / "x.dcz",
                                                               train_baseline=False)


MOBILE_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "mobile"


@pytest.mark.parametrize("arch, min_ratio", [("efficientnet-lite0", 20), ("mobilenet-v2", 14), ("mobilenet-v1", 15),
                                             ("squeezenet1_1", 10)])
def test_the_published_bean_models_decode_and_keep_their_ratio(arch, min_ratio):
    path = MOBILE_RESULTS / f"{arch}.dcz"
    model = load_model(path)
    assert model.dc_info.class_names == ["angular_leaf_spot", "bean_rust", "healthy"]
    assert dense_bytes(model) / path.stat().st_size >= min_ratio


@pytest.mark.shared_data
def test_the_published_efficientnet_lite0_keeps_its_accuracy_on_the_bean_test_photos():
    data = shared_dataset("beans_ibean")
    model = load_model(MOBILE_RESULTS / "efficientnet-lite0.dcz")
    prep = prepare_data(data, model, 128, seed=0, augment=False)
    result = evaluate(model, DataLoader(prep.test, batch_size=32))
    assert result["n"] == 104 and result["accuracy"] >= 0.96  # dense 97.1 %; the file measured 97.1 %


def test_save_pruned_refuses_a_recipe_without_pruning_and_an_unwritable_place_before_running(tmp_path, capsys):
    ckpt = tmp_path / "dense.safetensors"
    save_checkpoint(ckpt, create_model("lenet-300-100"))
    (tmp_path / "q.yaml").write_text("prune: null\nquantize: {bits: 3}\n")
    (tmp_path / "file").write_text("x")
    (tmp_path / "p.yaml").write_text("prune: {sparsity: 0.5}\n")
    for recipe, target, message in (("q.yaml", tmp_path / "p.safetensors", "has no prune stage"),
                                    ("p.yaml", tmp_path / "file" / "p.safetensors", "not a folder")):
        assert main(["compress", str(ckpt), "--data", "digits", "--recipe", str(tmp_path / recipe),
                     "--out", str(tmp_path / "a.dcz"), "--save-pruned", str(target), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "a.dcz").exists()


def test_resume_is_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "dense.safetensors"
    save_checkpoint(ckpt, create_model("lenet-300-100"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["compress", str(ckpt), "--data", "digits", "--out", str(tmp_path / "a.dcz"), "--resume"]) == 2
    assert "--resume works in single-process runs" in capsys.readouterr().err
