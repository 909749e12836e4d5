"""Training throughput of masked retraining and centroid fine-tuning against plain training.

For each LeNet, one epoch over the same in-memory MNIST subset is timed with ``training.fit`` and the
recipe's batch size and memory layout, in three states of the same model: plain; pruned to the paper's
densities with masks installed (as in retraining after pruning); pruned and weight-shared (centroid
fine-tuning: every forward re-materialises ``[0, codebook][index]``). Runs are interleaved and the best
of ``--repeats`` is kept; reported in images/s and as a ratio to plain training. One torch thread by
default: on a loaded machine, multi-threaded steps vary by orders of magnitude.

    PYTHONPATH=src python benchmarks/bench_training.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MNIST, finish, parser, prune_to_paper, share_all  # noqa: E402

from deepcompress.models import create_model  # noqa: E402
from deepcompress.training import TrainConfig, fit  # noqa: E402

RECIPES = {"lenet-300-100": TrainConfig(epochs=1, optimizer="adamw", batch_size=128),
           "lenet-5": TrainConfig(epochs=1, optimizer="adamw", batch_size=512, channels_last=True)}


def images(n: int, real: bool) -> TensorDataset:
    """``n`` MNIST training images (random ones when not ``real`` or the data is absent)."""
    if real and MNIST.is_dir():
        from deepcompress.data import open_train_test

        train, _ = open_train_test(str(MNIST))
        x, y = zip(*(train[i] for i in range(n)), strict=True)
        return TensorDataset(torch.stack(x), torch.tensor(y))
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def models(arch: str) -> dict[str, nn.Module]:
    """The same initial model plain, pruned with masks, and pruned + weight-shared."""
    out = {}
    for state in ("plain", "masked retraining", "centroid fine-tuning"):
        torch.manual_seed(0)
        model = create_model(arch)
        if state != "plain":
            prune_to_paper(model, arch)
        if state == "centroid fine-tuning":
            share_all(model)
        out[state] = model
    return out


def throughput(arch: str, data: TensorDataset, repeats: int) -> dict[str, Any]:
    cfg = RECIPES[arch]
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True)
    nets = models(arch)
    best = dict.fromkeys(nets, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up
        for state, model in nets.items():
            t = time.perf_counter()
            fit(model, loader, cfg, device="cpu", progress=False)
            best[state] = min(best[state], time.perf_counter() - t)
    ips = {state: len(data) / s for state, s in best.items()}
    return {"images": len(data), "batch_size": cfg.batch_size, "images_per_s": ips,
            "ratio_to_plain": {state: v / ips["plain"] for state, v in ips.items() if state != "plain"}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--images", type=int, default=10240)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bar", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: robust on a shared machine, where spinning thread pools stall)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.images, args.repeats = 64, 0
    data = images(args.images, real=not args.smoke)
    archs = {arch: throughput(arch, data, args.repeats) for arch in RECIPES}
    worst = min(r for a in archs.values() for r in a["ratio_to_plain"].values())
    return finish("training", {"bar": f"throughput >= {args.bar}x plain training", "worst_ratio": worst,
                               "met": worst >= args.bar, "torch_threads": torch.get_num_threads(),
                               "models": archs}, args.out)


if __name__ == "__main__":
    main()
