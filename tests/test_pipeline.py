import json

import numpy as np
import pytest
import torch

import deepcompress
from deepcompress.data import open_train_test
from deepcompress.format.dcz import read_dcz
from deepcompress.models import create_model
from deepcompress.pipeline import Data, Pipeline
from deepcompress.recipe import recipe_from_dict

TINY = {
    "model": "lenet-300-100",
    "seed": 0,
    "train": {"epochs": 2, "lr": 0.002, "batch_size": 64},
    "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "rounds": 2,
              "retrain": {"epochs": 1, "lr": 0.001, "batch_size": 64}},
    "quantize": {"bits": {"fc": 4}, "finetune": {"epochs": 1, "lr": 0.0001, "batch_size": 64}},
    "encode": {"index_bits": {"fc": 5}},
}


@pytest.fixture(scope="module")
def digits():
    train, test = open_train_test("digits")
    return Data(train, test, "digits")


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("pipe") / "tiny.dcz"
    pipe = Pipeline(recipe_from_dict(TINY), digits, "cpu", progress=False)
    decoded = pipe.run(create_model("lenet-300-100"), out)
    return pipe, decoded, out


def test_pipeline_writes_a_bit_exact_file_and_reports(compressed, digits, tmp_path):
    pipe, decoded, out = compressed
    r = pipe.results
    assert r["bit_exact"] is True
    assert r["file_bytes"] == out.stat().st_size
    assert r["compression_ratio"] == pytest.approx(r["dense_bytes"] / r["file_bytes"])
    assert r["dense_bytes"] == 266_610 * 4
    assert r["final"]["accuracy"] == pytest.approx(r["in_memory"]["accuracy"])
    assert r["final"]["accuracy"] > 0.5
    layers = {row["name"]: row for row in r["layers"]}
    assert layers["fc1.weight"]["kept"] == pytest.approx(0.1, abs=0.002)
    assert layers["fc1.weight"]["clusters"] <= 16
    pipe.write_reports(tmp_path / "r.json", tmp_path / "r.md")
    assert json.loads((tmp_path / "r.json").read_text())["compression_ratio"] == r["compression_ratio"]
    assert "**total**" in (tmp_path / "r.md").read_text()
    energy = r["energy"]["training"]  # measured from RAPL/NVML where readable; here usually not
    assert energy["method"] in ("measured", "unavailable") and energy["seconds"] > 0
    assert (energy["joules"] is None) == (energy["method"] == "unavailable")


def test_loaded_model_equals_the_decoded_model(compressed):
    _, decoded, out = compressed
    again = deepcompress.load(out)
    for k, v in decoded.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(decoded(x), again(x), rtol=0, atol=0)


def test_file_stores_sparse_quantized_weights(compressed):
    _, _, out = compressed
    dcz = read_dcz(out)
    enc = {r.name: r.encoding for r in dcz.records}
    assert enc == {"fc1.weight": "shared", "fc2.weight": "shared", "fc3.weight": "shared",
                   "fc1.bias": "raw", "fc2.bias": "raw", "fc3.bias": "raw"}
    w = dcz.tensors["fc1.weight"]
    assert np.count_nonzero(w) == pytest.approx(0.1 * w.size, rel=0.02)
    assert len(np.unique(w[w != 0])) <= 16
    assert dcz.header["model"]["arch"] == "lenet-300-100"


def test_same_seed_gives_byte_identical_files(tmp_path, digits):
    recipe = {**TINY, "train": {"epochs": 1, "batch_size": 64}, "quantize": {"bits": 3}}
    paths = []
    for i in range(2):
        pipe = Pipeline(recipe_from_dict(recipe), digits, "cpu", progress=False)
        pipe.run(pipe.build_model(), tmp_path / f"{i}.dcz")
        paths.append(tmp_path / f"{i}.dcz")
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_float16_storage_stays_bit_exact(tmp_path, digits):
    recipe = {**TINY, "train": {"epochs": 1, "batch_size": 64},
              "encode": {"index_bits": "auto", "raw_dtype": "float16", "codebook_dtype": "float16"}}
    pipe = Pipeline(recipe_from_dict(recipe), digits, "cpu", progress=False)
    pipe.run(create_model("lenet-300-100"), tmp_path / "h.dcz")
    assert pipe.results["bit_exact"]
    assert {r.dtype for r in read_dcz(tmp_path / "h.dcz").records} == {"float16"}


@pytest.mark.parametrize("bad, message", [
    ({"prune": {"sparsity": {"fc9": 0.5}}}, "no layer named 'fc9'"),
    ({"prune": {"sparsity": 1.2}}, r"sparsity must be in \[0, 1\)"),
    ({"quantize": {"bits": 17}}, "bits must be integers in 1..16"),
    ({"quantize": {"init": "nope"}}, "quantize.init must be one of"),
    ({"encode": {"index_bits": 0}}, "index_bits must be integers in 1..16 or auto"),
    ({"train": {"lr": -1}}, "lr must be > 0"),
    ({"trian": {}}, r"unknown key\(s\) \['trian'\]"),
    ({"prune": {"sparsity": 0.5, "quality": 1.0}}, "exactly one of 'sparsity' and 'quality'"),
])
def test_bad_recipes_are_refused_with_a_clear_message(bad, message, digits, tmp_path):
    with pytest.raises(ValueError, match=message):
        recipe = recipe_from_dict({**TINY, **bad})
        Pipeline(recipe, digits, "cpu", progress=False).run(create_model("lenet-300-100"), tmp_path / "x.dcz")
    assert not (tmp_path / "x.dcz").exists()
