"""``deepcompress compress CKPT --data DIR --out FILE.dcz``: prune, quantize and encode a trained model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..models import model_info
from ..pipeline import Pipeline, load_data
from ..runstate import state_dir_for
from ..training import cleanup_distributed, init_distributed, is_main_process
from ._common import add_device, add_quiet, add_resume, output_dir, resolve_recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="compress a trained checkpoint into a .dcz file with a recipe")
    p.add_argument("checkpoint", help="trained model (.safetensors from `deepcompress train`)")
    p.add_argument("--recipe", help="recipe file (YAML/TOML); default: the built-in recipe of the model")
    p.add_argument("--data", required=True,
                   help="data for retraining and testing: an MNIST IDX folder, 'digits', or an image folder "
                        "(<root>/<class>/<image>; test_* images are the test split, as in `deepcompress train`)")
    p.add_argument("--out", required=True,
                   help="output .dcz file; FILE.json (results) and FILE.md (report) are written beside it")
    p.add_argument("--save-pruned", metavar="CKPT",
                   help="also save the pruned, retrained model (before quantization) as a checkpoint")
    add_device(p)
    add_quiet(p)
    add_resume(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    output_dir(out.parent if str(out.parent) else ".")
    model = load_checkpoint(args.checkpoint)
    recipe = resolve_recipe(args.recipe, model_info(model).arch)
    if args.save_pruned:
        if recipe.prune is None:
            raise ValueError("--save-pruned: the recipe has no prune stage (prune: null)")
        output_dir(Path(args.save_pruned).parent)  # before hours of pruning, not after
    data = load_data(args.data, model, recipe.seed)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and args.resume:
        raise ValueError("--resume works in single-process runs; under torchrun the run is not checkpointed")
    device = init_distributed(args.device)  # under torchrun: one rank per process, fine-tuning with DDP
    try:
        pipe = Pipeline(recipe, data, device, progress=not args.quiet)
        pipe.run(model, out, train_baseline=False, state_dir=None if distributed else state_dir_for(out),
                 resume=args.resume, pruned_path=args.save_pruned)
        if is_main_process():
            pipe.write_reports(out.with_suffix(".json"), out.with_suffix(".md"))
            pipe.clear_state()
            print(pipe.markdown())
    finally:
        cleanup_distributed()
    return 0
