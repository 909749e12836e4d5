"""The training loop's extensions, the per-class metrics and the ``train`` / ``bench models`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _imgutil import make_image_folder
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepcompress.checkpoint import load_checkpoint
from deepcompress.cli import main
from deepcompress.models import model_info
from deepcompress.training import TrainConfig, classification_metrics, fit, head_module


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.classifier = nn.Linear(8, 2)
        self.dc_head = "classifier"

    def forward(self, x):
        return self.classifier(self.body(x))


def blobs(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 4, generator=g) + 2.0 * y[:, None]
    return TensorDataset(x, y)


def test_head_only_warmup_freezes_the_backbone():
    torch.manual_seed(0)
    model = Tiny()
    body = [p.detach().clone() for p in model.body.parameters()]
    stats = model.body[1].running_mean.clone()
    head = model.classifier.weight.detach().clone()
    cfg = TrainConfig(epochs=2, freeze_epochs=2, lr=0.05, optimizer="sgd")
    hist = fit(model, DataLoader(blobs(), batch_size=16, shuffle=True), cfg, progress=False)
    assert [e["phase"] for e in hist.epochs] == ["head", "head"]
    assert all(torch.equal(a, b) for a, b in zip(body, model.body.parameters(), strict=True))
    assert torch.equal(stats, model.body[1].running_mean)  # frozen BN keeps its statistics
    assert not torch.equal(head, model.classifier.weight)
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    assert head_module(model) is model.classifier


def test_early_stopping_restores_the_best_weights():
    torch.manual_seed(0)
    model = Tiny()
    seen = []

    def snapshot(record):
        seen.append(({k: v.clone() for k, v in model.state_dict().items()}, record))

    cfg = TrainConfig(epochs=30, lr=0.5, optimizer="sgd", patience=2, restore_best=True, monitor="log_loss")
    val = DataLoader(blobs(32, seed=1), batch_size=32)
    hist = fit(model, DataLoader(blobs(), batch_size=8, shuffle=True), cfg, val_loader=val, progress=False,
               on_epoch_end=snapshot)
    best = min(range(len(seen)), key=lambda i: seen[i][1]["val_log_loss"])
    assert hist.best_epoch == best + 1
    if hist.stopped == "early_stopping":
        assert len(hist.epochs) == hist.best_epoch + 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, seen[best][0][k])


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import confusion_matrix, f1_score, log_loss, precision_score, recall_score

    rng = np.random.RandomState(0)
    probs = rng.dirichlet([1, 1, 1], size=40)
    labels = rng.randint(0, 3, 40)
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == labels).mean())
    assert m["log_loss"] == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2]))
    assert m["confusion_matrix"] == confusion_matrix(labels, pred, labels=[0, 1, 2]).tolist()
    for i, c in enumerate("abc"):
        assert m["per_class"][c]["precision"] == pytest.approx(precision_score(labels, pred, labels=[i],
                                                                               average="macro"))
        kw = {"labels": [i], "average": "macro"}
        assert m["per_class"][c]["recall"] == pytest.approx(recall_score(labels, pred, **kw))
        assert m["per_class"][c]["f1"] == pytest.approx(f1_score(labels, pred, **kw))


@pytest.mark.filterwarnings("ignore::deepcompress.data.images.BadImageWarning")
def test_train_command_on_a_tiny_image_folder(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", 8, size=20)
    (data / "rust" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc = main(["train", "--model", "mobilenet-v3-small", "--data", str(data), "--out", str(out),
               "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--quiet",
               "--val-fraction", "0.25", "--test-fraction", "0.25"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    for f in ("best.safetensors", "metrics.json", "history.json", "split.csv"):
        assert (out / f).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 4
    assert set(metrics["per_class"]) == {"healthy", "rust"}
    assert np.array(metrics["confusion_matrix"]).sum() == 4
    assert {"accuracy", "log_loss", "macro_f1"} <= set(metrics)
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2
    model = load_checkpoint(out / "best.safetensors")
    info = model_info(model)
    assert info.class_names == ["healthy", "rust"] and info.input_size == [3, 32, 32]
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
    # strict mode refuses the broken file, with exit code 2 and its path in the message
    rc = main(["train", "--model", "mobilenet-v3-small", "--data", str(data), "--out", str(out),
               "--image-size", "32", "--epochs", "1", "--quiet", "--strict"])
    assert rc == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_training_is_repeatable_on_cpu(tmp_path):
    from deepcompress.finetune import default_config, train_classifier

    data = make_image_folder(tmp_path / "data", 6, size=20)
    cfg = default_config(False, epochs=2, batch_size=4, seed=7)
    runs = [train_classifier("squeezenet1_1", data, cfg, image_size=32, progress=False) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].metrics == runs[1].metrics


def test_train_command_rejects_bad_input(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["train", "--model", "squeezenet1_1", "--data", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "neither" in capsys.readouterr().err


def test_bench_models_writes_table_and_plot(tmp_path):
    data = make_image_folder(tmp_path / "data", 6, size=20)
    out = tmp_path / "bench"
    rc = main(["bench", "models", "--data", str(data), "--models", "squeezenet1_1",
               "--out", str(out), "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--quiet",
               "--latency-repeats", "2", "--pretrained", "none"])
    assert rc == 0
    rows = json.loads((out / "models.json").read_text())["models"]
    assert [r["model"] for r in rows] == ["squeezenet1_1"]
    for r in rows:
        assert r["params"] > 0 and r["gflops"] > 0 and r["latency_ms"] > 0 and 0 <= r["accuracy"] <= 1
    assert (out / "models.csv").read_text().startswith("model,pretrained,params")
    assert "| squeezenet1_1 |" in (out / "models.md").read_text()
    assert (out / "models.png").read_bytes()[:4] == b"\x89PNG"


def test_train_command_on_a_label_csv(tmp_path):
    root = make_image_folder(tmp_path / "imgs", 6, size=20)
    rows = [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}" for p in sorted(root.rglob("*.*"))]
    (tmp_path / "train.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["train", "--model", "squeezenet1_1", "--data", str(tmp_path / "train.csv"),
                 "--out", str(out), "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                 "--quiet"]) == 0
    assert model_info(load_checkpoint(out / "best.safetensors")).class_names == ["healthy", "rust"]


def test_bn_momentum_applies_during_training_only():
    model = Tiny()
    model.body[1].momentum = 0.0003
    seen = []
    cfg = TrainConfig(epochs=1, bn_momentum=0.1)
    fit(model, DataLoader(blobs(), batch_size=16), cfg, progress=False,
        on_epoch_end=lambda r: seen.append(model.body[1].momentum))
    assert seen == [0.1] and model.body[1].momentum == 0.0003
    from deepcompress.finetune import default_config

    assert default_config(False).bn_momentum == 0.1 and default_config(True).bn_momentum is None
