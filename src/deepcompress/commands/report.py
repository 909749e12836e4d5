"""``deepcompress report MODEL_OR_FILE... [--data DIR] [--out DIR]``: size, FLOPs, latency, accuracy, energy."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text
from ..api import load
from ..metrics.energy import MAC_PJ, EnergyMeter, EnergyModel
from ..metrics.plots import accuracy_scatter, energy_breakdown, save_figure, weight_histograms
from ..metrics.summary import csv_text, markdown, measure_file, measure_model, text_table
from ..models import create_model, list_models
from ..training import resolve_device
from ._common import add_device, output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="efficiency report of models side by side: size, FLOPs, latency, accuracy, energy",
        description="Measure .dcz files and checkpoints side by side (e.g. dense baseline vs compressed): "
                    "parameters, sizes, dense and sparse FLOPs/MACs, latency, accuracy (with --data) and energy "
                    "per inference (measured from RAPL/NVML counters when readable, always estimated from the "
                    "Horowitz 45 nm model). Writes report.json, report.csv, report.md and PNG/SVG figures.")
    p.add_argument("files", nargs="+", metavar="MODEL_OR_FILE",
                   help=".dcz files, .safetensors checkpoints, or registered model names (freshly built, untrained: "
                        "for size, FLOPs and energy estimates of an architecture)")
    p.add_argument("--data", help="evaluation data: MNIST IDX folder, image folder, or 'digits'")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--label", action="append", help="name of each model in the tables (repeat once per file)")
    p.add_argument("--batch-size", type=int, default=64, help="the batch N timed besides batch 1 (default: 64)")
    p.add_argument("--repeats", type=int, default=30, help="timed forward passes per batch size (default: 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed forward passes first (default: 5)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-latency", action="store_true", help="skip timing (and measured inference energy)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--energy-config", help="YAML/TOML/JSON file overriding the energy model's constants")
    p.add_argument("--on-chip-kib", type=float, help="on-chip SRAM budget in KiB (default: the config's, else 8192)")
    p.add_argument("--arithmetic", choices=sorted(MAC_PJ), help="MAC energy figures to use (default: fp32)")
    add_device(p)
    p.set_defaults(func=run)


def _energy_model(args: argparse.Namespace) -> EnergyModel:
    m = EnergyModel.load(args.energy_config) if args.energy_config else EnergyModel()
    overrides: dict[str, Any] = {}
    if args.on_chip_kib is not None:
        overrides["on_chip_bytes"] = int(args.on_chip_kib * 1024)
    if args.arithmetic:
        overrides["arithmetic"] = args.arithmetic
    return EnergyModel.from_dict({**{k: v for k, v in m.to_dict().items() if k != "mac_pj"}, **overrides})


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"


def run(args: argparse.Namespace) -> int:
    if args.label and len(args.label) != len(args.files):
        raise ValueError(f"give --label once per file ({len(args.files)}), got {len(args.label)}")
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        raise ValueError("--batch-size and --repeats must be >= 1, --warmup >= 0")
    for f in args.files:
        if not Path(f).is_file() and f not in list_models():
            raise FileNotFoundError(f"no such model file or registered model: {f} (models: {', '.join(list_models())})")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = output_dir(args.out)
    em = _energy_model(args)
    device = resolve_device(args.device)
    latency = None if args.no_latency else {"batch_sizes": sorted({1, args.batch_size}), "warmup": args.warmup,
                                            "repeats": args.repeats}
    labels = args.label or [Path(f).name for f in args.files]
    records = [measure_file(f, label, args.data, em, latency, device) if Path(f).is_file()
               else measure_model(create_model(f).to(device), label, None, args.data, em, latency)
               for f, label in zip(args.files, labels, strict=True)]
    with EnergyMeter() as probe:
        pass
    counters = probe.reading.notes if probe.reading.method != "measured" else list(probe.reading.sources)
    result = {"energy_model": em.to_dict(), "energy_counters": {"available": probe.reading.method == "measured",
                                                                "notes": counters}, "models": records}
    atomic_write_text(out / "report.json", json.dumps(result, indent=2, default=float) + "\n")
    atomic_write_text(out / "report.csv", csv_text(records))
    md = markdown(records, em)
    atomic_write_text(out / "report.md", f"# Efficiency report\n\n{md}\n")
    figures = [] if args.no_plots else _plots(args.files, records, out)
    print(text_table(records))
    print()
    if probe.reading.method == "measured":
        print(f"energy counters: {', '.join(counters)} (inference energy measured over the batch-1 runs)")
    else:
        print(f"energy counters: none readable here ({'; '.join(counters)}); every energy is an estimate")
    print(md.split("\n\n", 1)[1].split("\n\n### ", 1)[0])
    print(f"\nWrote {out / 'report.json'}, report.csv, report.md" + (f" and {len(figures)} figure files" if figures
                                                                      else ""))
    return 0


def _plots(files: list[str], records: list[dict[str, Any]], out: Path) -> list[Path]:
    paths = save_figure(energy_breakdown(records), out / "energy_breakdown")
    fig = accuracy_scatter(records)
    if fig is not None:
        paths += save_figure(fig, out / "accuracy_vs_size_energy")
    # a .dcz's "before" is a dense checkpoint of the same architecture from the same folder
    dense = {(r["arch"], Path(f).resolve().parent): f for f, r in zip(files, records, strict=True)
             if r["format"] == "dense" and "file" in r}
    for f, r in zip(files, records, strict=True):
        if r["format"] == "dcz":
            key = (r["arch"], Path(f).resolve().parent)
            before = load(dense[key]) if key in dense else None
            title = f"{r['label']}" + (f" (before: {Path(dense[key]).name})" if before is not None else "")
            paths += save_figure(weight_histograms(load(f), before, title), out / f"weights_{_slug(r['label'])}")
    return paths
