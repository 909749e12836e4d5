"""``deepcompress reproduce lenet-300-100|lenet-5``: the paper's Table 1 rows on MNIST, end to end."""

from __future__ import annotations

import argparse
import time

from ..checkpoint import load_checkpoint
from ..data import open_train_test
from ..models import model_info
from ..pipeline import Data, Pipeline
from ..runstate import state_dir_for
from ._common import add_device, add_quiet, add_resume, output_dir, resolve_recipe

PAPER = {"lenet-300-100": {"error": 0.0158, "ratio": 40}, "lenet-5": {"error": 0.0074, "ratio": 39}}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce the paper's LeNet rows on MNIST (train → compress → reload)",
                       description="Train the reference model (or take --baseline), prune and retrain, quantize "
                                   "and fine-tune, write the .dcz, reload the model from it and evaluate it on "
                                   "the 10,000 MNIST test images.")
    p.add_argument("model", choices=sorted(PAPER))
    p.add_argument("--data", default="data/mnist",
                   help="MNIST IDX folder (downloaded there when missing; default: data/mnist)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>)")
    p.add_argument("--baseline", help="start from this trained checkpoint instead of training one")
    p.add_argument("--recipe", help="recipe file (default: the built-in recipe that reproduces the paper)")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    add_device(p)
    add_quiet(p)
    add_resume(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = output_dir(args.out or f"runs/{args.model}")
    recipe = resolve_recipe(args.recipe, args.model)
    if args.seed is not None:
        recipe.seed = args.seed
    train, test = open_train_test(args.data, download=True)
    pipe = Pipeline(recipe, Data(train, test, str(args.data)), args.device, progress=not args.quiet)
    if args.baseline:
        model = load_checkpoint(args.baseline)
        if model_info(model).arch != args.model:
            raise ValueError(f"--baseline holds a {model_info(model).arch!r} model, not {args.model!r}")
    else:
        model = pipe.build_model()
    dcz = out / f"{args.model}.dcz"
    pipe.run(model, dcz, train_baseline=not args.baseline, baseline_path=out / "baseline.safetensors",
             state_dir=state_dir_for(dcz), resume=args.resume)
    r = pipe.results
    r["paper"] = PAPER[args.model]
    r["meets_paper"] = {"error": r["final"]["error"] <= PAPER[args.model]["error"],
                        "ratio": r["compression_ratio"] >= PAPER[args.model]["ratio"]}
    r["seconds"]["wall"] = time.perf_counter() - start
    pipe.write_reports(out / "results.json", out / "report.md")
    pipe.clear_state()
    print()
    print(pipe.markdown())
    print(f"\npaper: error {100 * PAPER[args.model]['error']:.2f}%, {PAPER[args.model]['ratio']}×; here: error "
          f"{100 * r['final']['error']:.2f}%, {r['compression_ratio']:.1f}× ({r['seconds']['wall'] / 60:.1f} min). "
          f"Results in {out}/results.json")
    return 0
