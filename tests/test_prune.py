import pytest
import torch

from deepcompress.models import create_model
from deepcompress.prune import (
    apply_mask,
    check_layer_names,
    current_mask,
    current_weight,
    magnitude_mask,
    prunable_layers,
    remove_masks,
    resolve_layer_setting,
    sparsity_report,
)
from deepcompress.training import TrainConfig, fit


def _prune_all(model, sparsity):
    for module in prunable_layers(model).values():
        apply_mask(module, magnitude_mask(current_weight(module), current_mask(module), sparsity=sparsity))


def test_target_sparsity_is_reached_and_keeps_the_largest():
    w = torch.randn(50, 40)
    mask = magnitude_mask(w, torch.ones_like(w), sparsity=0.9)
    assert int(mask.sum()) == 200
    assert w[mask.bool()].abs().min() >= w[~mask.bool()].abs().max()


def test_quality_threshold_is_quality_times_std():
    w = torch.randn(1000)
    mask = magnitude_mask(w, torch.ones_like(w), quality=1.0)
    assert torch.equal(mask.bool(), w.abs() > w.std())


def test_new_mask_is_a_subset_of_the_old_one():
    w = torch.randn(30, 30)
    old = (torch.rand(30, 30) > 0.5).float()
    new = magnitude_mask(w, old, sparsity=0.8)
    assert torch.all(new <= old)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_masks_stay_zero_through_optimizer_steps(optimizer):
    torch.manual_seed(0)
    model = create_model("lenet-5")
    _prune_all(model, 0.8)
    masks = {n: current_mask(m).clone() for n, m in prunable_layers(model).items()}
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    cfg = TrainConfig(epochs=2, optimizer=optimizer, lr=0.05, weight_decay=0.01, batch_size=16)
    fit(model, torch.utils.data.DataLoader(data, batch_size=16), cfg, progress=False)
    for name, module in prunable_layers(model).items():
        w = current_weight(module)
        assert torch.all(w[masks[name] == 0] == 0), name
        assert module.weight_orig.grad is None or torch.all(module.weight_orig.grad[masks[name] == 0] == 0)
    remove_masks(model)
    for name, module in prunable_layers(model).items():
        assert torch.all(module.weight[masks[name] == 0] == 0)
        assert not hasattr(module, "weight_orig")


def test_iterative_pruning_accumulates():
    model = create_model("lenet-300-100")
    _prune_all(model, 0.5)
    _prune_all(model, 0.9)
    report = sparsity_report(model)
    assert all(abs(r["sparsity"] - 0.9) < 0.01 for r in report.values())


def test_per_layer_settings_resolution_and_checks():
    model = create_model("lenet-5")
    layers = prunable_layers(model)
    setting = {"conv1": 0.1, "fc*": 0.9, "conv": 0.5}
    assert resolve_layer_setting(setting, "conv1", layers["conv1"]) == 0.1
    assert resolve_layer_setting(setting, "conv2", layers["conv2"]) == 0.5
    assert resolve_layer_setting(setting, "fc2", layers["fc2"]) == 0.9
    assert resolve_layer_setting({"default": 3}, "fc1", layers["fc1"]) == 3
    assert resolve_layer_setting(0.7, "fc1", layers["fc1"]) == 0.7
    with pytest.raises(ValueError, match="no layer named 'fc9'"):
        check_layer_names({"fc9": 0.5}, layers, "prune.sparsity")
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        magnitude_mask(torch.ones(3), torch.ones(3), sparsity=1.0)
