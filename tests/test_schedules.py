"""Pruning-method interface, global vs layer scope, AGP and the recipe keys of the pruning stage."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from deepcompress.models import create_model
from deepcompress.pipeline import Data, Pipeline
from deepcompress.prune import (
    AGP,
    PruningMethod,
    agp_sparsity,
    current_mask,
    current_weight,
    global_masks,
    iterative_sparsity,
    magnitude_mask,
    make_method,
    prunable_layers,
    prune_model,
    sparsity_report,
)
from deepcompress.recipe import recipe_from_dict
from deepcompress.training import TrainConfig, fit


def test_methods_share_one_interface_and_keep_subsets():
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    old = (torch.rand(40, 30) > 0.3).float()
    importance = torch.rand(40, 30)
    for name in ("magnitude", "random", "obd"):
        method = make_method(name, seed=1)
        assert isinstance(method, PruningMethod)
        mask = method.mask(w, old, 0.9, importance)
        assert int(mask.sum()) == 120 and torch.all(mask <= old), name
    assert torch.equal(make_method("magnitude").mask(w, old, 0.9), magnitude_mask(w, old, sparsity=0.9))
    kept = make_method("obd").mask(w, old, 0.9, importance).bool()
    assert importance[kept].min() >= importance[old.bool() & ~kept].max()
    # random: seeded and reproducible, different from magnitude
    a, b = make_method("random", 7).mask(w, old, 0.5), make_method("random", 7).mask(w, old, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, make_method("magnitude").mask(w, old, 0.5))
    with pytest.raises(ValueError, match="needs importance"):
        make_method("obd").mask(w, old, 0.5)
    with pytest.raises(ValueError, match="unknown pruning method"):
        make_method("taylor")


def test_global_scope_uses_one_threshold_across_layers():
    torch.manual_seed(0)
    weights = {"a": torch.randn(100) * 10, "b": torch.randn(400)}
    masks = {k: torch.ones_like(v) for k, v in weights.items()}
    out = global_masks(make_method("magnitude"), weights, masks, 0.8)
    assert int(sum(m.sum() for m in out.values())) == 100
    threshold = min(weights[k][out[k].bool()].abs().min() for k in out)
    assert all(weights[k][~out[k].bool()].abs().max() <= threshold for k in out)
    assert out["a"].mean() > 0.5 > out["b"].mean()  # the large-weight layer keeps far more

    model = create_model("lenet-300-100")
    prune_model(model, make_method("magnitude"), 0.9)  # one float: global
    rep = sparsity_report(model)
    total = sum(r["weights"] for r in rep.values())
    assert abs(sum(r["weights"] - r["nonzero"] for r in rep.values()) / total - 0.9) < 1e-4
    assert len({round(r["sparsity"], 3) for r in rep.values()}) > 1
    prune_model(model, make_method("magnitude"), {"fc1": 0.95, "fc3": 0.5})  # mapping: per layer
    rep = sparsity_report(model)
    assert abs(rep["fc1"]["sparsity"] - 0.95) < 1e-4 and rep["fc3"]["sparsity"] >= 0.5


def test_agp_formula():
    assert agp_sparsity(0, 0.9, 0.0, 0, 10, 10) == 0.0
    assert agp_sparsity(100, 0.9, 0.0, 0, 10, 10) == pytest.approx(0.9)
    assert agp_sparsity(500, 0.9, 0.0, 0, 10, 10) == pytest.approx(0.9)
    assert agp_sparsity(50, 0.8, 0.2, 0, 10, 10) == pytest.approx(0.8 + (0.2 - 0.8) * 0.5 ** 3)
    assert agp_sparsity(5, 0.8, 0.2, 20, 10, 10) == pytest.approx(0.2)  # before t0
    assert iterative_sparsity(0.99, 1, 2) == pytest.approx(0.9)


def test_agp_masks_only_grow_and_reach_the_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 4))
    data = DataLoader(TensorDataset(torch.randn(256, 20), torch.randint(0, 4, (256,))), batch_size=16)
    agp = AGP(model, make_method("magnitude"), {"0": 0.9, "2": 0.8}, 0.1, begin=2, end=26, frequency=4)
    snapshots = []

    def after_step() -> None:
        agp.step()
        snapshots.append({n: current_mask(m) for n, m in prunable_layers(model).items()})

    agp.start()
    fit(model, data, TrainConfig(epochs=2, lr=1e-3), after_step=after_step, progress=False)
    assert [h["step"] for h in agp.history] == [2, 6, 10, 14, 18, 22, 26]
    assert agp.history[0]["targets"]["0"] == pytest.approx(0.1)
    for prev, cur in zip(snapshots, snapshots[1:], strict=False):
        assert all(torch.all(cur[n] <= prev[n]) for n in cur)
    first = [h["targets"]["0"] for h in agp.history]
    assert first == sorted(first)
    rep = sparsity_report(model)
    assert abs(rep["0"]["sparsity"] - 0.9) < 1e-4 and abs(rep["2"]["sparsity"] - 0.8) < 1e-4
    assert rep["4"]["sparsity"] < 0.01
    assert all(torch.all(current_weight(m)[current_mask(m) == 0] == 0) for m in prunable_layers(model).values())


def _recipe(**prune):
    return {"model": "lenet-300-100", "prune": {"sparsity": 0.5, **prune}}


@pytest.mark.parametrize("prune, message", [
    ({"method": "taylor"}, "prune.method must be one of magnitude, obd, random"),
    ({"schedule": "cubic"}, "prune.schedule must be one of oneshot, iterative, agp"),
    ({"scope": "net"}, "prune.scope must be one of layer, global"),
    ({"scope": "global", "sparsity": {"fc1": 0.9}}, "must be one number"),
    ({"sparsity": None, "quality": 1.0, "method": "obd"}, "works only with method: magnitude"),
    ({"schedule": "oneshot", "rounds": 3}, "rounds applies to schedule: iterative only"),
    ({"obd": {"estimator": "hutchinson"}}, "prune.obd settings are used with method: obd only"),
    ({"method": "obd", "obd": {"estimator": "fisher"}}, "prune.obd.estimator must be one of"),
    ({"method": "obd", "obd": {"batches": 0}}, "prune.obd.batches must be an integer >= 1"),
    ({"method": "obd", "obd": {"samples": 3}}, "unknown key"),
    ({"schedule": "agp"}, "retrain.epochs must be >= 1"),
    ({"schedule": "agp", "retrain": {"epochs": 1}, "agp": {"begin": 0.8, "end": 0.5}}, "0 <= begin < end <= 1"),
    ({"schedule": "agp", "retrain": {"epochs": 1}, "agp": {"frequency": 0}}, "frequency must be an integer"),
    ({"agp": {"frequency": 5}}, "prune.agp settings are used with schedule: agp only"),
])
def test_recipe_validation_errors(prune, message):
    with pytest.raises(ValueError, match=message):
        recipe_from_dict(_recipe(**prune))


def test_new_recipe_keys_round_trip_and_defaults_are_unchanged():
    r = recipe_from_dict(_recipe())
    assert (r.prune.method, r.prune.schedule, r.prune.scope, r.prune.rounds) == ("magnitude", "iterative", "layer", 1)
    r = recipe_from_dict(_recipe(method="obd", scope="global", schedule="agp", retrain={"epochs": 2},
                                 obd={"estimator": "hutchinson", "batches": 2}, agp={"frequency": 10}))
    assert recipe_from_dict(r.to_dict()) == r
    assert r.prune.obd.estimator == "hutchinson" and r.prune.agp.frequency == 10


@pytest.fixture(scope="module")
def digits_data():
    from deepcompress.data import load_digits_28

    train, test = load_digits_28()
    return Data(Subset(train, range(320)), Subset(test, range(200)), "digits")


@pytest.mark.parametrize("prune", [
    {"schedule": "oneshot", "method": "random", "sparsity": {"fc1": 0.9, "fc2": 0.8}},
    {"schedule": "iterative", "rounds": 2, "method": "obd", "scope": "global", "sparsity": 0.9,
     "obd": {"estimator": "hutchinson", "batches": 1}},
    {"schedule": "agp", "method": "magnitude", "sparsity": {"fc": 0.8}, "agp": {"frequency": 1, "end": 0.5}},
])
def test_pipeline_schedules_reach_their_targets(prune, digits_data):
    recipe = recipe_from_dict({"model": "lenet-300-100", "prune": {
        "retrain": {"epochs": 1, "batch_size": 64}, **prune}, "quantize": None})
    pipe = Pipeline(recipe, digits_data, "cpu", progress=False)
    model = pipe.build_model()
    pipe.prune(model, recipe.prune)
    layers = pipe.results["prune"]["layers"]
    if prune.get("scope") == "global":
        total = sum(v["weights"] for v in layers.values())
        assert abs(sum(v["weights"] - v["nonzero"] for v in layers.values()) / total - 0.9) < 0.01
    else:
        assert abs(layers["fc1"]["sparsity"] - (0.9 if prune["schedule"] == "oneshot" else 0.8)) < 0.01
    assert len(pipe.results["prune"]["rounds"]) == prune.get("rounds", 1)
    if prune["schedule"] == "agp":
        assert pipe.results["prune"]["agp_updates"][-1]["targets"]["fc1"] == pytest.approx(0.8)
