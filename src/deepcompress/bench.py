"""Model selection ("the seed's Model Selection slide"): train several zoo models on the same split with
the same budget and tabulate size, FLOPs, accuracy, log-loss, CPU latency and training time."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._io import atomic_save, atomic_write_text
from .finetune import train_classifier, write_outputs
from .training import TrainConfig

COLUMNS = ["model", "pretrained", "params", "fp32_mb", "gflops", "accuracy", "log_loss", "macro_f1",
           "latency_ms", "train_min", "epochs_run", "best_epoch"]


def pretrained_available(name: str) -> bool:
    """True when ``name`` can load ImageNet weights without the network."""
    if name == "efficientnet-lite0":
        return True
    from .models.torchvision_zoo import pretrained_cached

    return pretrained_cached(name)


def count_flops(model: nn.Module, input_size: list[int]) -> int:
    """FLOPs of one forward pass at batch 1 (``torch.utils.flop_counter``; a multiply-add counts 2)."""
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *input_size))
    model.train(was)
    return int(fc.get_total_flops())


def cpu_latency_ms(model: nn.Module, input_size: list[int], warmup: int = 5, repeats: int = 30,
                   threads: int | None = None) -> float:
    """Median wall time (ms) of a batch-1 forward pass on the CPU, after ``warmup`` passes."""
    model = model.cpu().eval()
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    x = torch.randn(1, *input_size)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                t = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(old)
    return statistics.median(times)


def model_row(name: str, result: Any, pretrained: bool, latency_repeats: int = 30) -> dict[str, Any]:
    model = result.model
    info = model.dc_info
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name, "pretrained": pretrained, "params": params,
        "fp32_mb": params * 4 / 1e6,
        "gflops": count_flops(model, info.input_size) / 1e9,
        "accuracy": result.metrics["accuracy"], "log_loss": result.metrics["log_loss"],
        "macro_f1": result.metrics["macro_f1"],
        "latency_ms": cpu_latency_ms(model, info.input_size, repeats=latency_repeats),
        "train_min": result.train_seconds / 60, "epochs_run": len(result.history.epochs),
        "best_epoch": result.history.best_epoch,
    }


def _fmt(col: str, v: Any) -> str:
    if v is None:
        return ""
    if col == "params":
        return f"{v / 1e6:.2f} M"
    if col in ("accuracy", "macro_f1"):
        return f"{100 * v:.1f} %"
    if col in ("log_loss",):
        return f"{v:.3f}"
    if col in ("fp32_mb", "gflops", "latency_ms", "train_min"):
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


HEADERS = {"model": "model", "pretrained": "ImageNet init", "params": "params", "fp32_mb": "fp32 MB",
           "gflops": "GFLOPs", "accuracy": "accuracy", "log_loss": "log-loss", "macro_f1": "macro F1",
           "latency_ms": "CPU latency b=1 (ms)", "train_min": "train min", "epochs_run": "epochs",
           "best_epoch": "best epoch"}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|" + "|".join("---" if c == "model" else "---:" for c in COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(c, r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def write_plot(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    fmax = max(r["gflops"] for r in rows) or 1.0
    for r in rows:
        area = 2500 * r["gflops"] / fmax + 30  # bubble area ∝ FLOPs
        ax.scatter(r["fp32_mb"], 100 * r["accuracy"], s=area, alpha=0.45,
                   color="tab:green" if r["pretrained"] else "tab:blue", edgecolors="k")
        ax.annotate(f"{r['model']}\n{r['gflops']:.2f} GFLOPs", (r["fp32_mb"], 100 * r["accuracy"]),
                    textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%.0f"))
    ax.margins(x=0.25, y=0.12)
    ax.set_xlabel("fp32 model size (MB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="tab:green", label="ImageNet init"),
                       Line2D([], [], marker="o", ls="", color="tab:blue", label="from scratch")],
              loc="lower right", fontsize=8, title="bubble area ∝ FLOPs", title_fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def write_tables(out: Path, rows: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    atomic_write_text(out / "models.json", json.dumps({"settings": settings, "models": rows},
                                                      indent=2, default=float) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c) for c in COLUMNS})
    atomic_write_text(out / "models.csv", buf.getvalue())
    md = [f"# Model selection on `{settings['data']}`", "",
          f"Same split ({settings['split_rule']}) and budget for every model: {settings['epochs']} epochs at "
          f"{settings['image_size']}×{settings['image_size']} px, batch {settings['batch_size']}, "
          f"{settings['optimizer']} lr {settings['lr']:g}, label smoothing {settings['label_smoothing']:g}, "
          f"early stopping patience {settings['patience']}. Accuracy and log-loss on the "
          f"{settings['eval_split']} split ({settings['eval_n']} images). FLOPs from "
          "`torch.utils.flop_counter` at batch 1 (a multiply-add = 2 FLOPs); CPU latency is the median of "
          f"{settings['latency_repeats']} batch-1 forward passes after 5 warm-up passes on "
          f"{settings['cpu_threads']} thread(s) of this machine ({settings['cpu_count']} cores, shared).", "",
          markdown_table(rows), "", f"Command: `{settings['command']}`", ""]
    atomic_write_text(out / "models.md", "\n".join(md))
    if rows:
        write_plot(out / "models.png", rows,
                   f"{Path(settings['data']).name}: {settings['epochs']} epochs "
                   f"at {settings['image_size']} px")


def rewrite_outputs(out: str | os.PathLike) -> None:
    """Re-write models.md / .csv / .png from an existing models.json."""
    saved = json.loads((Path(out) / "models.json").read_text())
    write_tables(Path(out), saved["models"], saved["settings"])


def bench_models(data: str | os.PathLike, models: list[str], out: str | os.PathLike, cfg: TrainConfig, *,
                 image_size: int = 128, pretrained: str = "auto", device: torch.device | str = "cpu",
                 workers: int = 0, split_options: dict[str, Any] | None = None, strict: bool = False,
                 progress: bool = True, latency_repeats: int = 30, resume: bool = False, command: str = "",
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train each of ``models`` with ``cfg`` at ``image_size`` and write OUT/models.{md,json,csv,png}
    (after every model, so partial results survive) and OUT/<model>/ (checkpoint and metrics)."""
    if pretrained not in ("auto", "none", "all"):
        raise ValueError(f"pretrained must be auto, none or all, got {pretrained!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] = {
        "data": str(data), "image_size": image_size, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "lr": cfg.lr, "optimizer": cfg.optimizer, "label_smoothing": cfg.label_smoothing,
        "patience": cfg.patience, "pretrained": pretrained, "latency_repeats": latency_repeats,
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "command": command,
        "split_rule": "", "eval_split": "", "eval_n": 0, "config": cfg.to_dict(),
    }
    for name in models:
        mdir = out / name
        row_file = mdir / "row.json"
        if resume and row_file.is_file():
            saved = json.loads(row_file.read_text())
            rows.append(saved["row"])
            settings.update(saved["settings"])
            log(f"[bench] {name}: kept earlier result ({saved['row']['accuracy']:.4f})")
            continue
        use_pre = pretrained == "all" or (pretrained == "auto" and pretrained_available(name))
        mcfg = TrainConfig.from_dict({**cfg.to_dict(), "freeze_epochs": cfg.freeze_epochs if use_pre else 0,
                                      "bn_momentum": None if use_pre else cfg.bn_momentum})
        log(f"[bench] {name}: training ({'ImageNet init' if use_pre else 'from scratch'}) ...")
        result = train_classifier(name, data, mcfg, pretrained=use_pre, image_size=image_size, device=device,
                                  workers=workers, progress=progress, split_options=split_options,
                                  strict=strict)
        mdir.mkdir(parents=True, exist_ok=True)
        write_outputs(mdir, result, {"data": str(data), "pretrained": use_pre})
        row = model_row(name, result, use_pre, latency_repeats)
        part = {"split_rule": result.prepared.rule, "eval_split": result.eval_split,
                "eval_n": result.metrics["n"]}
        settings.update(part)
        atomic_write_text(row_file, json.dumps({"row": row, "settings": part}, default=float))
        rows.append(row)
        log(f"[bench] {name}: accuracy {row['accuracy']:.4f}, log-loss {row['log_loss']:.3f}, "
            f"{row['train_min']:.1f} min")
        write_tables(out, rows, settings)
    write_tables(out, rows, settings)
    return rows
