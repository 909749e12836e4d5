"""Image-folder / CSV datasets, bad files, stratified splits, the train_/test_ prefix rule."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from _imgutil import make_image_folder

from deepcompress.data import DataError
from deepcompress.data.images import (
    BadImageWarning,
    ImageListDataset,
    is_image_folder,
    load_eval_folder,
    load_image_data,
    scan_image_folder,
    stratified_split,
    write_split_file,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def add_bad_files(root: Path) -> list[Path]:
    good_jpeg = next(root.glob("healthy/*.jpg")).read_bytes()
    bad = [root / "healthy" / "corrupt.jpg", root / "rust" / "truncated.jpg", root / "rust" / "notes.txt"]
    bad[0].write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    bad[1].write_bytes(good_jpeg[: len(good_jpeg) // 2])
    bad[2].write_text("field notes, not an image")
    return bad


def test_is_image_folder(tmp_path):
    assert not is_image_folder(tmp_path / "missing")
    assert not is_image_folder(tmp_path)
    make_image_folder(tmp_path / "imgs", 2)
    assert is_image_folder(tmp_path / "imgs")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    assert not is_image_folder(tmp_path / "flat")  # images must sit in class folders


def test_bad_files_are_skipped_with_a_warning_or_fail_strict(tmp_path):
    root = make_image_folder(tmp_path / "d", 4)
    bad = add_bad_files(root)
    with pytest.warns(BadImageWarning) as rec:
        items, classes = scan_image_folder(root)
    messages = " ".join(str(w.message) for w in rec)
    for p in bad:
        assert str(p) in messages
    assert classes == ["healthy", "rust"] and len(items) == 8
    with pytest.raises(DataError, match="truncated.jpg"):
        scan_image_folder(root, strict=True)


def test_eval_folder_uses_the_models_class_order(tmp_path):
    root = make_image_folder(tmp_path / "d", 3, classes=("healthy", "rust"))
    ds = load_eval_folder(root, ["rust", "spot", "healthy"], 16, [0.5] * 3, [0.5] * 3)
    assert ds.classes == ["rust", "spot", "healthy"]
    labels = sorted({y for _, y in ds.samples})
    assert labels == [0, 2]
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert ds.samples[0][0].parent.name == ds.classes[y]
    ds2 = load_eval_folder(root, None, 16, [0.5] * 3, [0.5] * 3)
    assert ds2.classes == ["healthy", "rust"]
    with pytest.raises(DataError, match="rust"):
        load_eval_folder(root, ["healthy", "spot"], 16, [0.5] * 3, [0.5] * 3)


def test_file_breaking_mid_run_is_skipped_not_fatal(tmp_path):
    root = make_image_folder(tmp_path / "d", 2)
    ds = load_eval_folder(root, None, 16, [0.5] * 3, [0.5] * 3)
    ds.samples[0][0].write_bytes(b"gone")
    with pytest.warns(BadImageWarning, match=ds.samples[0][0].name):
        x, y = ds[0]
    assert y == ds.samples[1][1] and x.shape == (3, 16, 16)
    strict = ImageListDataset(ds.samples, ds.classes, ds.transform, strict=True)
    with pytest.raises(DataError):
        strict[0]


def test_csv_variant(tmp_path):
    root = make_image_folder(tmp_path / "imgs", 3)
    lines = ["image,label"] + [f"imgs/{p.parent.name}/{p.name},{p.parent.name}"
                               for p in sorted(root.rglob("*.png")) + sorted(root.rglob("*.jpg"))]
    lines.append("imgs/missing.png,rust")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(BadImageWarning, match="missing.png"):
        d = load_image_data(tmp_path / "labels.csv", val_fraction=0.34, test_fraction=0.0)
    assert d.classes == ["healthy", "rust"]
    assert sum(len(v) for v in d.splits.values()) == 6
    (tmp_path / "bad.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="image"):
        load_image_data(tmp_path / "bad.csv")


def test_stratified_split_is_deterministic_and_stratified():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    a = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=3)
    b = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=3)
    c = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=4)
    assert a == b and a != c
    assert sorted(a["train"] + a["val"] + a["test"]) == list(range(100))
    for split, frac in (("val", 0.1), ("test", 0.2)):
        counts = [sum(1 for i in a[split] if labels[i] == k) for k in range(3)]
        assert counts == [round(frac * n) for n in (50, 30, 20)]


def test_prefix_rule_and_split_file(tmp_path):
    root = tmp_path / "d"
    make_image_folder(root, 10, prefix="train_")
    make_image_folder(root, 3, prefix="test_", seed=1)
    d = load_image_data(root, val_fraction=0.2, seed=0)
    assert "test_" in d.rule
    assert all(p.name.startswith("test_") for p, _ in d.splits["test"]) and len(d.splits["test"]) == 6
    assert all(p.name.startswith("train_") for p, _ in d.splits["val"] + d.splits["train"])
    assert len(d.splits["val"]) == 4
    no = load_image_data(root, split_by_prefix="no", val_fraction=0.1, test_fraction=0.1)
    assert any(p.name.startswith("train_") for p, _ in no.splits["test"])
    # a recorded split (split.csv) reproduces the same assignment
    write_split_file(tmp_path / "split.csv", root, d.splits)
    again = load_image_data(root, split_file=tmp_path / "split.csv")
    assert {s: sorted(v) for s, v in again.splits.items()} == {s: sorted(v) for s, v in d.splits.items()}
    js = {"train": [f"healthy/{p.name}" for p, _ in d.splits["train"] if p.parent.name == "healthy"],
          "test": ["rust/train_000.jpg"]}
    (tmp_path / "split.json").write_text(json.dumps(js))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = load_image_data(root, split_file=tmp_path / "split.json")
    assert len(j.splits["test"]) == 1 and not j.splits["val"]
    plain = make_image_folder(tmp_path / "plain", 3)
    with pytest.raises(DataError, match="train_"):
        load_image_data(plain, split_by_prefix="yes")


@pytest.mark.shared_data
def test_beans_split_follows_file_names():
    beans = SHARED / "beans_ibean"
    if not beans.is_dir():
        pytest.skip(f"shared dataset absent: {beans}")
    d = load_image_data(beans, check="header")
    assert d.classes == ["angular_leaf_spot", "bean_rust", "healthy"]
    counts = d.counts()
    assert counts["test"] == {"angular_leaf_spot": 32, "bean_rust": 38, "healthy": 34}
    train_val = {c: counts["train"][c] + counts["val"][c] for c in d.classes}
    assert train_val == {"angular_leaf_spot": 306, "bean_rust": 315, "healthy": 320}
