"""``deepcompress demo``: the whole pipeline in about a minute on data bundled with scikit-learn."""

from __future__ import annotations

import argparse

from ..data import open_train_test
from ..pipeline import Data, Pipeline
from ..recipe import builtin_recipe
from ..runstate import state_dir_for
from ._common import add_device, add_quiet, add_resume, output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="compress LeNet-300-100 on scikit-learn's bundled digits (about a minute)")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    add_device(p)
    add_quiet(p)
    add_resume(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = output_dir(args.out)
    recipe = builtin_recipe("demo")
    train, test = open_train_test("digits")
    pipe = Pipeline(recipe, Data(train, test, "scikit-learn digits (8×8 upscaled to 28×28)"), args.device,
                    progress=not args.quiet)
    model = pipe.build_model()
    pipe.run(model, out / "demo.dcz", state_dir=state_dir_for(out / "demo.dcz"), resume=args.resume)
    pipe.write_reports(out / "results.json", out / "report.md")
    pipe.clear_state()
    print()
    print(pipe.markdown())
    print(f"\nWrote {out / 'demo.dcz'}; try: deepcompress inspect {out / 'demo.dcz'}")
    return 0
