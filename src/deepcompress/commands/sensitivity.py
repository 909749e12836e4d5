"""``deepcompress sensitivity --model CKPT --data DIR --out DIR``: per-layer pruning sensitivity curves.

Each prunable layer is pruned alone (no retraining) to each sparsity; accuracy goes to
sensitivity.csv/.json and a plot (sensitivity.png/.svg). ``--suggest-drop`` turns the curves into
per-layer sparsity targets written as a recipe for ``deepcompress compress --recipe``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .._io import atomic_write_text
from ..api import load
from ..data import DataError, open_eval_data, open_train_test
from ..finetune import prepare_data
from ..models import model_info
from ..prune import ESTIMATORS, obd_saliency
from ..recipe import ObdSettings, PruneStage, Recipe, recipe_from_dict
from ..sensitivity import layer_sensitivity, plot_sensitivity, suggest_sparsity, write_csv, write_json
from ..training import evaluate, resolve_device
from ._common import add_device, add_quiet, output_dir, print_json, resolve_recipe

DEFAULT_SPARSITIES = "0,0.1,...,0.9,0.95"


def parse_sparsities(text: str) -> list[float]:
    """Comma-separated fractions in [0, 1); ``a,b,...,c`` continues the step b − a up to c."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    out: list[float] = []
    i = 0
    while i < len(items):
        if items[i] == "...":
            if len(out) < 2 or i + 1 >= len(items):
                raise ValueError(f"--sparsities: '...' needs two values before it and one after: {text!r}")
            step, stop = out[-1] - out[-2], float(items[i + 1])
            if step <= 0:
                raise ValueError(f"--sparsities: '...' needs increasing values: {text!r}")
            k = 1
            while (v := round(out[-1] + step, 9)) < stop - 1e-9 and k < 1000:
                out.append(v)
                k += 1
            i += 1
            continue
        try:
            out.append(float(items[i]))
        except ValueError as e:
            raise ValueError(f"--sparsities: not a number: {items[i]!r}") from e
        i += 1
    if not out or any(not 0 <= s < 1 for s in out):
        raise ValueError(f"--sparsities must be fractions in [0, 1), got {text!r}")
    return sorted(set(out))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="per-layer pruning sensitivity curves (and suggested sparsities)",
                       description="Prune one layer at a time, without retraining, to each sparsity and record the "
                                   "accuracy: CSV, JSON and a plot (conv layers solid, fc layers dashed).")
    p.add_argument("--model", required=True, help="trained checkpoint (.safetensors) or .dcz file")
    p.add_argument("--data", required=True, help="MNIST IDX folder, 'digits', or an image folder")
    p.add_argument("--method", choices=["magnitude", "obd", "random"], default="magnitude")
    p.add_argument("--sparsities", default=DEFAULT_SPARSITIES,
                   help=f"comma-separated fractions; 'a,b,...,c' fills in the steps (default: {DEFAULT_SPARSITIES})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--estimator", choices=ESTIMATORS, default="gauss-newton", help="OBD Hessian diagonal estimator")
    p.add_argument("--batches", type=int, default=8, help="OBD: training batches for the Hessian (default 8)")
    p.add_argument("--probes", type=int, default=1, help="OBD Hutchinson: Rademacher probes per batch")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (OBD batches use 64)")
    p.add_argument("--eval-samples", type=int, help="evaluate on only the first N samples (faster, noisier)")
    p.add_argument("--suggest-drop", type=float,
                   help="tolerated accuracy drop (fraction, 0.01 = one point) for per-layer sparsity suggestions")
    p.add_argument("--recipe-out", help="write the suggestions as a recipe (YAML) for `deepcompress compress`")
    p.add_argument("--recipe-base", help="recipe whose other settings the written recipe keeps "
                                         "(default: the model's built-in recipe)")
    p.add_argument("--split", choices=["val", "test", "all"], default="val",
                   help="image folders: evaluate on the validation split carved from the training images "
                        "(default; as `deepcompress train` splits them), the test split, or every image")
    p.add_argument("--seed", type=int, default=0)
    add_device(p)
    add_quiet(p)
    p.set_defaults(func=run)


def _suggested_recipe(arch: str, base_path: str | None, targets: dict[str, float], args: argparse.Namespace) -> Recipe:
    try:
        recipe = resolve_recipe(base_path, arch)
    except ValueError:
        if base_path:
            raise
        recipe = Recipe(model=arch, quantize=None)
    stage = recipe.prune or PruneStage()
    obd = ObdSettings(estimator=args.estimator, batches=args.batches, probes=args.probes) \
        if args.method == "obd" else ObdSettings()
    recipe.prune = replace(stage, method=args.method, sparsity=targets, quality=None, scope="layer", obd=obd)
    return recipe_from_dict(recipe.to_dict())  # validated, as `compress --recipe` will read it


def _image_splits(args: argparse.Namespace, model: nn.Module) -> tuple[Dataset, Dataset]:
    """(training images without augmentation, for OBD; the evaluation images of ``--split``)."""
    info = model_info(model)
    if args.split == "all":
        test = open_eval_data(args.data, info.class_names, info.input_size, info.mean, info.std)
        return test, test
    prep = prepare_data(args.data, model, info.input_size[-1] if info.input_size else None, seed=args.seed,
                        augment=False)
    test = prep.val if args.split == "val" else prep.test
    if test is None or not len(test):
        raise DataError(f"{args.data}: no {args.split} images (use --split all)")
    return prep.train, test


def run(args: argparse.Namespace) -> int:
    sparsities = parse_sparsities(args.sparsities)
    if args.recipe_out and args.suggest_drop is None:
        raise ValueError("--recipe-out needs --suggest-drop (the tolerated accuracy drop)")
    for name in ("batches", "probes", "batch_size", "eval_samples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    out = output_dir(args.out)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    device = resolve_device(args.device)
    model = load(args.model, device).eval()
    info = model_info(model)
    try:
        train, test = open_train_test(args.data)
    except DataError:  # an image folder
        train, test = _image_splits(args, model)
    if args.eval_samples:
        test = Subset(test, range(min(args.eval_samples, len(test))))
    loader = DataLoader(test, batch_size=args.batch_size)
    start = time.perf_counter()
    dense = evaluate(model, loader, device)
    log(f"{info.arch}: dense accuracy {dense['accuracy']:.4f} on {dense['n']} samples")
    importance, hessian_seconds = None, 0.0
    if args.method == "obd":
        t = time.perf_counter()
        data = DataLoader(Subset(train, range(min(64 * args.batches, len(train)))), batch_size=64)
        importance = obd_saliency(model, data, args.estimator, args.batches, probes=args.probes, seed=args.seed)
        hessian_seconds = time.perf_counter() - t
        log(f"OBD saliencies ({args.estimator}, {args.batches} batches) in {hessian_seconds:.1f} s")
    rows = layer_sensitivity(model, loader, sparsities, args.method, importance, device, args.seed, log)
    result = {"model": args.model, "arch": info.arch, "data": str(args.data), "method": args.method,
              "estimator": args.estimator if args.method == "obd" else None, "dense": dense,
              "sparsities": sparsities, "hessian_seconds": hessian_seconds,
              "seconds": time.perf_counter() - start, "rows": rows}
    if args.suggest_drop is not None:
        targets = suggest_sparsity(rows, args.suggest_drop, dense["accuracy"])
        result["suggestion"] = {"max_drop": args.suggest_drop, "sparsity": targets}
        if args.recipe_out:
            recipe = _suggested_recipe(info.arch, args.recipe_base, targets, args)
            header = (f"# Per-layer sparsities from `deepcompress sensitivity --method {args.method}` on {args.data}: "
                      f"each layer alone loses at most {args.suggest_drop:g} accuracy without retraining.\n")
            atomic_write_text(args.recipe_out, header + yaml.safe_dump(recipe.to_dict(), sort_keys=False))
            result["suggestion"]["recipe"] = str(args.recipe_out)
    write_csv(out / "sensitivity.csv", rows)
    write_json(out / "sensitivity.json", result)
    plot_sensitivity(rows, [out / "sensitivity.png", out / "sensitivity.svg"],
                     f"{info.arch}: {args.method} pruning, one layer at a time, no retraining")
    if args.quiet:
        print_json({k: v for k, v in result.items() if k != "rows"})
    else:
        for layer, s in result.get("suggestion", {}).get("sparsity", {}).items():
            print(f"suggested {layer}: {100 * s:.0f}% sparsity")
        print(f"wrote {out / 'sensitivity.csv'}, .json, .png, .svg")
    return 0
