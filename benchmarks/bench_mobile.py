"""Deep Compression of the crop-disease mobile nets, stage by stage, against a TF-MOT clustering baseline.

For every ``ARCH=CHECKPOINT[=RECIPE]`` (a model fine-tuned with ``deepcompress train``/``bench models``;
recipe default: the built-in one for ARCH) it runs the pipeline exactly as ``deepcompress compress``
does (unless its results are already in --work and --reuse is given) and tabulates four stages:

- dense: the checkpoint, fp32;
- pruned: after pruning + retraining, sized as the paper sizes it (each kept weight 32 bits + its
  relative index, other tensors fp32);
- pruned + quantized: after k-means sharing + centroid fine-tuning (each kept weight its cluster
  index + relative index, plus the codebooks; other tensors fp32);
- .dcz: the real file, and the model decoded from it, which is what is evaluated.

Accuracy and log-loss are measured on the ``test_`` images; MACs count only multiplications by
non-zero weights; energy per inference is estimated (45 nm model, metrics/energy.py) from those MACs
and the bytes each stage fetches. ``--tfmot ARCH`` also clusters that model TensorFlow-Model-
Optimization style (k-means to 2^bits clusters on every layer, no pruning, centroids fine-tuned,
BatchNorm kept) and sizes the stripped dense fp32 file zipped. Writes JSON and a plot.

    PYTHONPATH=src python benchmarks/bench_mobile.py --data ../shared/data/beans_ibean --work runs/mobile \\
        --model efficientnet-lite0=runs/zoo/efficientnet-lite0/best.safetensors --tfmot efficientnet-lite0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from deepcompress._io import atomic_write_text
from deepcompress.checkpoint import load_checkpoint
from deepcompress.format.dcz import read_dcz
from deepcompress.format.model import model_from_dcz
from deepcompress.metrics.energy import estimate_inference
from deepcompress.metrics.flops import profile_model
from deepcompress.metrics.plots import save_figure
from deepcompress.metrics.size import parameter_counts, zipped_dense_bytes
from deepcompress.models import model_info
from deepcompress.pipeline import Pipeline, load_data
from deepcompress.recipe import builtin_recipe, load_recipe, recipe_from_dict
from deepcompress.report import dense_bytes

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures" / "mobile"


def compress(arch: str, checkpoint: str, recipe_path: str | None, data: str, work: Path, reuse: bool,
             device: str) -> dict[str, Any]:
    """Run (or reuse) the pipeline on one model; returns its results JSON."""
    out = work / arch / f"{arch}.dcz"
    if reuse and out.with_suffix(".json").is_file() and out.is_file():
        return json.loads(out.with_suffix(".json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(checkpoint)
    recipe = load_recipe(recipe_path) if recipe_path else builtin_recipe(arch)
    pipe = Pipeline(recipe, load_data(data, model, recipe.seed), device)
    pipe.run(model, out, train_baseline=False)
    pipe.write_reports(out.with_suffix(".json"), out.with_suffix(".md"))
    return pipe.results


def _stage(name: str, acc: dict[str, Any], nbytes: float, dense: int, nonzero: int, macs: int,
           prof: Any, lookups: int = 0) -> dict[str, Any]:
    e = estimate_inference(macs, nbytes, prof.activation_numel, prof.peak_activation_numel, lookups)
    return {"stage": name, "accuracy": acc["accuracy"], "log_loss": acc["log_loss"], "bytes": int(nbytes),
            "ratio": dense / nbytes, "nonzero": nonzero, "macs": macs, "energy_uj": e.total_j * 1e6}


def stage_rows(results: dict[str, Any], checkpoint: str, dcz_path: Path) -> list[dict[str, Any]]:
    """dense / pruned / pruned+quantized / .dcz rows of one compressed model."""
    dense_model = load_checkpoint(checkpoint)
    size = model_info(dense_model).input_size
    dense_prof = profile_model(dense_model, size)
    dense = dense_bytes(dense_model)  # as it came in (the pipeline folds BatchNorm later)
    n_params = sum(p.numel() for p in dense_model.parameters())
    dcz = read_dcz(dcz_path)
    decoded = model_from_dcz(dcz)
    prof = profile_model(decoded, size)
    layers = results["layers"]
    shared = [r for r in layers if r["encoding"] == "shared"]
    nonzero = parameter_counts(decoded)["nonzero"]
    # the paper's bit accounting (Han et al. 2016, Tables 2-5): pruned = 32-bit value + index per kept weight
    p_bytes = sum(r["weights"] / r["ratio_p"] * 4 for r in shared)
    pq_bytes = sum(r["weights"] / r["ratio_pq"] * 4 for r in shared)
    raw32 = 4 * (n_params - sum(r["weights"] for r in shared))
    lookups = sum(round(r["kept"] * r["weights"]) for r in shared)
    prune = results.get("prune") or results["baseline"]
    quant = results.get("quantize") or prune
    rows = [
        _stage("dense", results["baseline"], dense, dense, n_params, dense_prof.macs, dense_prof),
        _stage("pruned", prune, p_bytes + raw32, dense, nonzero, prof.sparse_macs, prof),
        _stage("pruned + quantized", quant, pq_bytes + raw32, dense, nonzero, prof.sparse_macs, prof, lookups),
        _stage(".dcz (decoded)", results["final"], dcz.size, dense, nonzero, prof.sparse_macs, prof, lookups),
    ]
    rows[-1]["payload_bytes"] = sum(r.bytes for r in dcz.records)
    return rows


def tfmot_baseline(arch: str, checkpoint: str, data: str, bits: int, epochs: int, device: str,
                   work: Path, reuse: bool) -> dict[str, Any]:
    """k-means to 2**bits clusters on every layer, no pruning; the stripped fp32 file, zipped."""
    out = work / f"{arch}_tfmot{2 ** bits}" / f"{arch}_tfmot{2 ** bits}.dcz"
    record = out.with_name("tfmot.json")
    if reuse and record.is_file():
        return json.loads(record.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(checkpoint)
    recipe = recipe_from_dict({
        "model": arch, "prune": None,
        "quantize": {"bits": bits, "init": "linear",
                     "finetune": {"epochs": epochs, "optimizer": "adam", "lr": 2e-4, "batch_size": 32,
                                  "schedule": "cosine", "label_smoothing": 0.1}}})
    t = time.perf_counter()
    pipe = Pipeline(recipe, load_data(data, model, recipe.seed), device)
    decoded = pipe.run(model, out, train_baseline=False)
    rec = {"model": arch, "clusters": 2 ** bits, "finetune_epochs": epochs,
           "accuracy": pipe.results["final"]["accuracy"], "log_loss": pipe.results["final"]["log_loss"],
           "dense_bytes": pipe.results["dense_bytes"], "zipped_bytes": zipped_dense_bytes(decoded),
           "dcz_bytes_same_model": pipe.results["file_bytes"], "seconds": time.perf_counter() - t}
    rec["ratio"] = rec["dense_bytes"] / rec["zipped_bytes"]
    atomic_write_text(record, json.dumps(rec, indent=1) + "\n")
    return rec


def plot(models: list[dict[str, Any]], tfmot: list[dict[str, Any]], stem: Path) -> list[Path]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colours = ["tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:red", "tab:brown"]
    for m, colour in zip(models, colours, strict=False):
        dense, final = m["stages"][0], m["stages"][-1]
        xs, ys = [dense["bytes"], final["bytes"]], [100 * dense["accuracy"], 100 * final["accuracy"]]
        ax.plot(xs, ys, color=colour, alpha=0.4, linewidth=1)
        ax.scatter(xs[:1], ys[:1], color=colour, marker="o", facecolors="none", s=50)
        ax.scatter(xs[1:], ys[1:], color=colour, marker="o", s=50, label=f"{m['model']} ({final['ratio']:.0f}×)")
    for t in tfmot:
        ax.scatter([t["zipped_bytes"]], [100 * t["accuracy"]], marker="x", color="black", s=50,
                   label=f"{t['model']}, TF-MOT style {t['clusters']} clusters + zip ({t['ratio']:.1f}×)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model size on disk (bytes, log scale); hollow = dense fp32, filled = .dcz")
    ax.set_ylabel("accuracy on the test_ images (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.9))  # clear of the points
    ax.set_title("Bean-leaf disease (iBean): accuracy vs size, before and after Deep Compression", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def markdown(models: list[dict[str, Any]], tfmot: list[dict[str, Any]]) -> str:
    lines = ["| model | stage | accuracy | log-loss | bytes | ratio | non-zero params | MACs (effective) "
             "| energy / inference (est.) |", "|" + "---|" * 9]
    for m in models:
        for s in m["stages"]:
            lines.append(f"| {m['model']} | {s['stage']} | {100 * s['accuracy']:.1f}% | {s['log_loss']:.3f} | "
                         f"{s['bytes']:,} | {s['ratio']:.1f}× | {s['nonzero']:,} | {s['macs'] / 1e6:.1f} M | "
                         f"{s['energy_uj']:.1f} µJ |")
    for t in tfmot:
        lines.append(f"| {t['model']} | TF-MOT style: {t['clusters']} clusters, no pruning, fp32 zipped | "
                     f"{100 * t['accuracy']:.1f}% | {t['log_loss']:.3f} | {t['zipped_bytes']:,} | {t['ratio']:.1f}× "
                     f"| – | – | – |")
    return "\n".join(lines)


def layer_table(m: dict[str, Any]) -> str:
    """Paper Tables 2-5 style: one row per weight-shared layer, then the other tensors summed."""
    lines = ["| layer | weights | kept | bits | weight bits (Huffman) | index bits (Huffman) | bytes | ratio |",
             "|" + "---|" * 8]
    shared = [r for r in m["layers"] if r["encoding"] == "shared"]
    for r in shared:
        lines.append(f"| {r['name'].removesuffix('.weight')} | {r['weights']:,} | {100 * r['kept']:.1f}% | "
                     f"{r['weight_bits_pq']} | {r['weight_bits_pqh']:.2f} | {r['index_bits_pqh']:.2f} | "
                     f"{r['record_bytes']:,} | {r['ratio_pqh']:.1f}× |")
    rest = [r for r in m["layers"] if r["encoding"] != "shared"]
    n, b = sum(r["weights"] for r in rest), sum(r["record_bytes"] for r in rest)
    lines.append(f"| {len(rest)} other tensors (BatchNorm, biases; fp16 or one value) | {n:,} | 100% | – | – | – | "
                 f"{b:,} | {32 * n / (8 * b):.1f}× |")
    final = m["stages"][-1]
    lines.append(f"| **total (file)** | {sum(r['weights'] for r in m['layers']):,} | | | | | **{final['bytes']:,}** | "
                 f"**{final['ratio']:.1f}×** |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="image folder (test_* images are the test split)")
    p.add_argument("--model", action="append", required=True, metavar="ARCH=CHECKPOINT[=RECIPE]")
    p.add_argument("--work", type=Path, required=True, help="folder for the .dcz files and their reports")
    p.add_argument("--tfmot", action="append", default=[], metavar="ARCH", help="also run the clustering baseline")
    p.add_argument("--tfmot-bits", type=int, default=4, help="log2 of the clusters of the baseline (default 4: 16)")
    p.add_argument("--tfmot-epochs", type=int, default=2, help="centroid fine-tuning epochs of the baseline")
    p.add_argument("--reuse", action="store_true", help="reuse results already in --work")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "mobile_beans.json")
    p.add_argument("--figure", type=Path, default=FIGURES / "accuracy_vs_size", help="plot path without suffix")
    args = p.parse_args()

    specs = []
    for spec in args.model:
        parts = spec.split("=")
        if len(parts) not in (2, 3):
            p.error(f"--model {spec!r}: expected ARCH=CHECKPOINT[=RECIPE]")
        specs.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    models, tfmot = [], []
    for arch, ckpt, recipe in specs:
        results = compress(arch, ckpt, recipe, args.data, args.work, args.reuse, args.device)
        rows = stage_rows(results, ckpt, args.work / arch / f"{arch}.dcz")
        models.append({"model": arch, "checkpoint": ckpt, "recipe": results["recipe"], "stages": rows,
                       "fold_bn": results.get("fold_bn"), "layers": results["layers"],
                       "seconds": results["seconds"], "drop_pp": 100 * (rows[0]["accuracy"] - rows[-1]["accuracy"])})
        if arch in args.tfmot:
            tfmot.append(tfmot_baseline(arch, ckpt, args.data, args.tfmot_bits, args.tfmot_epochs, args.device,
                                        args.work, args.reuse))
    table = markdown(models, tfmot)
    best = max(models, key=lambda m: (m["drop_pp"] <= 1.0, m["stages"][-1]["ratio"]))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure = [str(f) for f in plot(models, tfmot, args.figure)]
    result = {"data": args.data, "models": models, "tfmot": tfmot, "table_md": table, "figure": figure,
              "best": best["model"], "best_layers_md": layer_table(best)}
    atomic_write_text(args.out, json.dumps(result, indent=1, default=float) + "\n")
    print(table)
    print(result["best_layers_md"])
    for m in models:
        print(f"{m['model']}: {m['stages'][-1]['ratio']:.1f}× at {m['drop_pp']:+.2f} pp accuracy drop")


if __name__ == "__main__":
    main()
