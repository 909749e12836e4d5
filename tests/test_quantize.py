import numpy as np
import pytest
import torch

from deepcompress.models import create_model
from deepcompress.prune import apply_mask, current_mask, current_weight, magnitude_mask, remove_masks
from deepcompress.quantize import codebook_parameters, share_layer, shared_state, unshare
from deepcompress.training import TrainConfig, fit


def _pruned_linear(sparsity=0.7, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(40, 30)
    apply_mask(layer, magnitude_mask(current_weight(layer), current_mask(layer), sparsity=sparsity))
    remove_masks(layer)  # prunable_layers(layer) includes the layer itself
    return layer


def test_weights_come_from_the_codebook_and_zeros_stay_zero():
    layer = _pruned_linear()
    zeros = layer.weight.detach() == 0
    info = share_layer(layer, bits=3)
    assert info["clusters"] <= 8
    w = layer.weight.detach()
    assert torch.all(w[zeros] == 0)
    assert set(w[~zeros].unique().tolist()) <= set(layer.weight_codebook.detach().tolist())


def test_centroid_gradient_is_the_grouped_sum_of_weight_gradients():
    layer = _pruned_linear()
    share_layer(layer, bits=2)
    x = torch.randn(8, 40)
    y = layer(x)
    y.pow(2).sum().backward()
    grad_w = (2 * y.detach()).T @ x  # dL/dW of L = sum(y**2), y = x W^T + b
    index = layer.weight_index
    expected = torch.stack([grad_w[index == j + 1].sum() for j in range(layer.weight_codebook.numel())])
    torch.testing.assert_close(layer.weight_codebook.grad, expected)


def test_fine_tuning_moves_centroids_not_the_pattern():
    torch.manual_seed(0)
    model = create_model("lenet-300-100")
    for m in (model.fc1, model.fc2, model.fc3):
        apply_mask(m, magnitude_mask(current_weight(m), current_mask(m), sparsity=0.8))
    remove_masks(model)
    for m in (model.fc1, model.fc2, model.fc3):
        share_layer(m, bits=4)
    before = [p.detach().clone() for p in codebook_parameters(model)]
    index_before = model.fc1.weight_index.clone()
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    fit(model, torch.utils.data.DataLoader(data, batch_size=16), TrainConfig(epochs=1, lr=0.01), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, codebook_parameters(model), strict=True))
    assert torch.equal(model.fc1.weight_index, index_before)
    assert torch.all(model.fc1.weight[index_before == 0] == 0)


def test_shared_state_and_unshare_agree():
    layer = _pruned_linear()
    share_layer(layer, bits=4)
    model = torch.nn.Sequential(layer)
    plain, shared = shared_state(model)
    assert set(plain) == {"0.weight", "0.bias"} and set(shared) == {"0.weight"}
    codebook, index = shared["0.weight"]
    values = np.concatenate([[0], codebook])[index].reshape(30, 40)
    np.testing.assert_array_equal(values, plain["0.weight"].numpy())
    unshare(model)
    assert torch.equal(model[0].weight.detach(), plain["0.weight"])
    assert isinstance(model[0].weight, torch.nn.Parameter)


def test_bad_bits_and_double_sharing_are_refused():
    layer = _pruned_linear()
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        share_layer(layer, bits=0)
    share_layer(layer, bits=2)
    with pytest.raises(ValueError, match="already weight-shared"):
        share_layer(layer, bits=2)
