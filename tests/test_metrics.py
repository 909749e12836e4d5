"""FLOPs/MACs against hand-derived counts, sparse MACs, parameter counts, sizes and latency."""

import torch

from deepcompress.metrics import (
    distinct_values,
    effective_weights,
    measure_latency,
    parameter_counts,
    profile_model,
    zipped_dense_bytes,
)
from deepcompress.metrics.size import dense_fp32_blob
from deepcompress.models import create_model
from deepcompress.prune import apply_mask, remove_masks
from deepcompress.quantize import share_layer


def test_lenet_300_100_macs_by_hand():
    p = profile_model(create_model("lenet-300-100"), [1, 28, 28])
    assert [(layer.name, layer.macs) for layer in p.layers] == [("fc1", 784 * 300), ("fc2", 300 * 100),
                                                                ("fc3", 100 * 10)]
    assert p.macs == 266_200 and p.flops == 2 * 266_200 and p.sparse_macs == 266_200
    assert [(layer.input_numel, layer.output_numel) for layer in p.layers] == [(784, 300), (300, 100), (100, 10)]


def test_lenet_5_macs_by_hand():
    p = profile_model(create_model("lenet-5"), [1, 28, 28])
    conv1 = 24 * 24 * 20 * (1 * 5 * 5)  # output positions × channels × kernel
    conv2 = 8 * 8 * 50 * (20 * 5 * 5)
    assert {layer.name: layer.macs for layer in p.layers} == {"conv1": conv1, "conv2": conv2, "fc1": 800 * 500,
                                                             "fc2": 500 * 10}
    assert p.macs == 2_293_000 == conv1 + conv2 + 400_000 + 5_000
    assert p.peak_activation_numel == 784 + 20 * 24 * 24


def _keep_first(module: torch.nn.Module, keep: int) -> None:
    mask = torch.zeros(module.weight.numel())
    mask[:keep] = 1
    apply_mask(module, mask.view_as(module.weight))


def test_sparse_macs_of_pruned_layers():
    model = create_model("lenet-5")
    _keep_first(model.conv1, 100)  # 100 of 500 weights, each used at 24×24 positions
    _keep_first(model.fc1, 4_000)  # masked (torch.nn.utils.prune), not yet removed
    p = profile_model(model, [1, 28, 28])
    rows = {layer.name: layer for layer in p.layers}
    assert rows["conv1"].nonzero == 100 and rows["conv1"].sparse_macs == 100 * 24 * 24
    assert rows["fc1"].sparse_macs == 4_000
    assert rows["conv2"].sparse_macs == rows["conv2"].macs
    assert p.sparse_macs == p.macs - (500 - 100) * 24 * 24 - (400_000 - 4_000)
    remove_masks(model)
    assert profile_model(model, [1, 28, 28]).sparse_macs == p.sparse_macs


def test_counts_and_distinct_values_after_sharing():
    model = create_model("lenet-300-100")
    assert parameter_counts(model) == {"total": 266_610, "nonzero": 266_610}
    _keep_first(model.fc2, 3_000)
    remove_masks(model)
    share_layer(model.fc2, bits=3)
    weights = effective_weights(model)
    assert set(weights) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}
    assert parameter_counts(model) == {"total": 266_610, "nonzero": 266_610 - 27_000}
    distinct = distinct_values(model)
    assert distinct["fc2"] <= 8 and distinct["fc1"] > 1000
    assert profile_model(model, [1, 28, 28]).sparse_macs == 266_200 - 27_000


def test_zipped_dense_file_shrinks_with_pruning():
    model = create_model("lenet-300-100")
    dense_zip = zipped_dense_bytes(model)
    assert len(dense_fp32_blob(model)) > 4 * 266_610 > dense_zip > 0.8 * 4 * 266_610  # random fp32 barely zips
    _keep_first(model.fc1, 10_000)
    remove_masks(model)
    assert zipped_dense_bytes(model) < 0.4 * dense_zip


def test_latency_reports_median_and_spread():
    r = measure_latency(create_model("lenet-300-100"), [1, 28, 28], batch_sizes=(1, 8), warmup=1, repeats=5)
    assert set(r["batches"]) == {"1", "8"}
    for row in r["batches"].values():
        assert row["min_ms"] <= row["q1_ms"] <= row["median_ms"] <= row["q3_ms"] <= row["max_ms"]
        assert row["energy"]["method"] in ("measured", "unavailable")
    # memory the allocator already holds is reused, so the growth may be 0 late in a test session
    assert r["peak_memory_bytes"] >= 0
    assert r["peak_memory_kind"] in ("RSS growth during the runs", "process peak RSS", "cuda allocated")
