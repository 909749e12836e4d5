"""Han et al. 2015, Table 1, pruning alone: LeNet-300-100 and LeNet-5 at ≥ 12× fewer parameters.

Starts from a trained dense checkpoint and runs the pipeline's pruning stage (iterative magnitude
pruning with retraining, Han's per-layer kept fractions rounded towards ≥ 12×). Parameters count
every weight and bias (biases are never pruned); the paper's targets are ≤ 1.59 % top-1 error for
LeNet-300-100 and ≤ 0.77 % for LeNet-5. Prints one JSON object (also written to --out).

    PYTHONPATH=src nice -n 19 python benchmarks/bench_han2015_pruning.py \\
        --checkpoint /work/runs/l300_a/baseline.safetensors --data ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from torch.utils.data import DataLoader

from deepcompress._io import atomic_write_text
from deepcompress.checkpoint import load_checkpoint
from deepcompress.data import open_train_test
from deepcompress.models import model_info
from deepcompress.pipeline import Data, Pipeline
from deepcompress.recipe import recipe_from_dict
from deepcompress.training import evaluate

# Han 2015 Table 2/3 kept fractions: 300-100 8/9/26 %, LeNet-5 66/12/8/19 %
SETTINGS = {
    "lenet-300-100": {"sparsity": {"fc1": 0.925, "fc2": 0.91, "fc3": 0.74}, "max_error": 0.0159,
                      "retrain": {"batch_size": 128}},
    "lenet-5": {"sparsity": {"conv1": 0.34, "conv2": 0.89, "fc1": 0.925, "fc2": 0.81}, "max_error": 0.0077,
                "retrain": {"batch_size": 512, "channels_last": True}},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="trained dense model (.safetensors)")
    p.add_argument("--data", required=True, help="MNIST IDX folder")
    p.add_argument("--rounds", type=int, default=3, help="prune → retrain rounds")
    p.add_argument("--epochs", type=int, default=2, help="retraining epochs per round")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--method", default="magnitude", choices=["magnitude", "obd", "random"])
    p.add_argument("--out", help="JSON output file")
    args = p.parse_args()

    model = load_checkpoint(args.checkpoint)
    arch = model_info(model).arch
    s = SETTINGS[arch]
    recipe = recipe_from_dict({
        "model": arch, "quantize": None,
        "prune": {"method": args.method, "sparsity": s["sparsity"], "rounds": args.rounds,
                  "retrain": {"epochs": args.epochs, "optimizer": "adamw", "lr": args.lr, "weight_decay": 0.05,
                              "schedule": "cosine", **s["retrain"]}}})
    train, test = open_train_test(args.data)
    pipe = Pipeline(recipe, Data(train, test, str(args.data)), "cpu", progress=False)
    start = time.perf_counter()
    baseline = evaluate(model, DataLoader(test, batch_size=1000))
    pipe.prune(model, recipe.prune)
    pruned = pipe.results["prune"]
    total = sum(p.numel() for p in model.parameters())
    weights = sum(r["weights"] for r in pruned["layers"].values())
    kept = sum(r["nonzero"] for r in pruned["layers"].values()) + (total - weights)
    result = {"benchmark": "han2015_pruning", "arch": arch, "checkpoint": args.checkpoint, "method": args.method,
              "recipe": recipe.prune.sparsity, "rounds": args.rounds, "epochs_per_round": args.epochs,
              "baseline_error": baseline["error"], "error": pruned["error"], "parameters": total,
              "parameters_kept": kept, "compression": total / kept,
              "layers": {k: round(1 - v["sparsity"], 4) for k, v in pruned["layers"].items()},
              "rounds_log": [{k: r[k] for k in ("round", "accuracy_pruned", "accuracy")} for r in pruned["rounds"]],
              "target": {"compression": 12, "max_error": s["max_error"]},
              "passed": total / kept >= 12 and pruned["error"] <= s["max_error"],
              "seconds": time.perf_counter() - start}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
