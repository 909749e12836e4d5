"""Random vs magnitude vs OBD (Gauss-Newton, Hutchinson) pruning of a trained LeNet, side by side.

For each method and sparsity, the trained model is pruned one-shot (every prunable layer to the same
sparsity, or with ``--scope global`` one threshold across layers), evaluated right away (no
retraining), retrained for a fixed budget with the masks held, and evaluated again. OBD saliencies
are computed once on the dense model; the time of each step goes in the table. Prints a Markdown
table and one JSON object (also written to --out).

    PYTHONPATH=src nice -n 19 python benchmarks/bench_pruning_methods.py \\
        --checkpoint /work/runs/l300_a/baseline.safetensors --data ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from deepcompress._io import atomic_write_text
from deepcompress.checkpoint import load_checkpoint
from deepcompress.data import open_train_test
from deepcompress.models import model_info
from deepcompress.prune import make_method, obd_saliency, prunable_layers, prune_model, sparsity_report
from deepcompress.training import TrainConfig, evaluate, fit

METHODS = {"random": ("random", None), "magnitude": ("magnitude", None),
           "obd-gn": ("obd", "gauss-newton"), "obd-hutchinson": ("obd", "hutchinson")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="trained dense model (.safetensors)")
    p.add_argument("--data", required=True, help="MNIST IDX folder (or 'digits')")
    p.add_argument("--sparsities", default="0.5,0.8,0.9,0.95,0.98")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--retrain-samples", type=int, default=60000, help="retraining budget in training images")
    p.add_argument("--batch-size", type=int, default=128, help="retraining batch size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels-last", action="store_true", help="NHWC convolutions (faster on CPU)")
    p.add_argument("--obd-batches", type=int, default=8, help="batches of 64 training images for the Hessian")
    p.add_argument("--probes", type=int, default=8, help="Hutchinson Rademacher probes per batch")
    p.add_argument("--scope", choices=["layer", "global"], default="layer",
                   help="layer: every layer to the same sparsity; global: one threshold across layers")
    p.add_argument("--eval-samples", type=int, help="evaluate on the first N test images only")
    p.add_argument("--out", help="JSON output file")
    args = p.parse_args()

    torch.manual_seed(0)
    dense = load_checkpoint(args.checkpoint).eval()
    arch = model_info(dense).arch
    train, test = open_train_test(args.data)
    if args.eval_samples:
        test = Subset(test, range(min(args.eval_samples, len(test))))
    test_loader = DataLoader(test, batch_size=1000)
    g = torch.Generator().manual_seed(0)
    budget = Subset(train, torch.randperm(len(train), generator=g)[:args.retrain_samples].tolist())
    cfg = TrainConfig(epochs=1, optimizer="adamw", lr=args.lr, weight_decay=0.05, batch_size=args.batch_size,
                      schedule="cosine", channels_last=args.channels_last, seed=0)
    hessian_data = DataLoader(Subset(train, range(64 * args.obd_batches)), batch_size=64)
    base = evaluate(dense, test_loader)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    rows = []
    print(f"{arch}: dense accuracy {base['accuracy']:.4f}", flush=True)
    for label in args.methods.split(","):
        name, estimator = METHODS[label]
        importance, score_s = None, 0.0
        if estimator is not None:
            t = time.perf_counter()
            importance = obd_saliency(dense, hessian_data, estimator, args.obd_batches, probes=args.probes)
            score_s = time.perf_counter() - t
        for s in sparsities:
            model = copy.deepcopy(dense)
            t = time.perf_counter()
            targets = s if args.scope == "global" else {n: s for n in prunable_layers(model)}
            prune_model(model, make_method(name, seed=0), targets, importance)
            prune_s = time.perf_counter() - t
            pruned = evaluate(model, test_loader)
            t = time.perf_counter()
            fit(model, DataLoader(budget, batch_size=cfg.batch_size, shuffle=True, generator=g), cfg,
                progress=False)
            retrain_s = time.perf_counter() - t
            after = evaluate(model, test_loader)
            rep = sparsity_report(model)
            overall = 1 - sum(r["nonzero"] for r in rep.values()) / sum(r["weights"] for r in rep.values())
            assert abs(overall - s) < 0.01, rep
            rows.append({"method": label, "sparsity": s, "accuracy_pruned": pruned["accuracy"],
                         "accuracy_retrained": after["accuracy"], "score_seconds": score_s,
                         "prune_seconds": prune_s, "retrain_seconds": retrain_s,
                         "layer_sparsity": {k: round(r["sparsity"], 4) for k, r in rep.items()}})
            print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "pruning_methods", "arch": arch, "checkpoint": args.checkpoint,
              "dense_accuracy": base["accuracy"], "eval_n": base["n"], "retrain": {**cfg.to_dict(),
              "samples": len(budget)}, "obd": {"batches": args.obd_batches, "batch_size": 64, "probes": args.probes},
              "scope": args.scope, "schedule": "oneshot", "rows": rows}
    print(markdown(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def markdown(result: dict) -> str:
    """Accuracy (%) right after pruning / after retraining, per method and sparsity, with times."""
    sparsities = sorted({r["sparsity"] for r in result["rows"]})
    head = "| method | scoring s | " + " | ".join(f"{100 * s:g} % pruned" for s in sparsities) + " | retrain s |"
    lines = [head, "|" + "---|" * (len(sparsities) + 3)]
    for label in dict.fromkeys(r["method"] for r in result["rows"]):
        rs = {r["sparsity"]: r for r in result["rows"] if r["method"] == label}
        cells = [f"{100 * rs[s]['accuracy_pruned']:.2f} → {100 * rs[s]['accuracy_retrained']:.2f}"
                 if s in rs else "" for s in sparsities]
        first = next(iter(rs.values()))
        retrain = sum(r["retrain_seconds"] for r in rs.values()) / len(rs)
        lines.append(f"| {label} | {first['score_seconds']:.1f} | " + " | ".join(cells) + f" | {retrain:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
