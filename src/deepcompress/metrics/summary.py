"""One efficiency record per model (size, parameters, FLOPs, latency, accuracy, energy) and its tables.

A dense model is priced as it is stored and run: every fp32 weight fetched, every MAC done. A .dcz
model is priced as EIE-style sparse hardware would run it: only MACs with a non-zero weight, the
file's payload fetched, and one codebook look-up per stored non-zero weight.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..api import load
from ..data import open_eval_data
from ..format.dcz import MAGIC, DczFile, read_dcz
from ..format.model import model_from_dcz
from ..models import model_info
from ..report import dense_bytes
from ..training import evaluate
from .energy import EnergyModel, efficiency_uj_per_mflop, estimate_inference, training_energy
from .flops import profile_model
from .latency import measure_latency
from .size import distinct_values, parameter_counts, zipped_dense_bytes


def measure_model(model: nn.Module, label: str, dcz: DczFile | None = None, data: str | None = None,
                  energy_model: EnergyModel | None = None, latency: dict[str, Any] | None = None,
                  train: dict[str, Any] | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Every efficiency figure of ``model`` (built by deepcompress). Pass ``dcz`` when it was read from a
    .dcz file, ``data`` (an ``open_eval_data`` spec) for accuracy, ``latency`` (``measure_latency``
    arguments) to time it, and ``train`` (``{"seconds", "device", "joules"?, "what"?}``) for training energy."""
    em = energy_model or EnergyModel()
    info = model_info(model)
    if not info.input_size:
        raise ValueError(f"{label}: model {info.arch!r} does not state its input size")
    prof = profile_model(model, info.input_size)
    counts = parameter_counts(model)
    dense = dense_bytes(model)
    rec: dict[str, Any] = {"label": label, "arch": info.arch, "format": "dcz" if dcz else "dense",
                           "params": counts["total"], "nonzero": counts["nonzero"],
                           "distinct_values": distinct_values(model),
                           "dense_fp32_bytes": dense, "zipped_dense_bytes": zipped_dense_bytes(model),
                           "flops": prof.flops, "macs": prof.macs, "sparse_macs": prof.sparse_macs,
                           "layers": [p.to_dict() for p in prof.layers]}
    if dcz is not None:
        payload = sum(r.bytes for r in dcz.records)
        lookups = sum(r.nonzero for r in dcz.records if r.encoding == "shared")
        energy = estimate_inference(prof.sparse_macs, payload, prof.activation_numel, prof.peak_activation_numel,
                                    lookups, em)
        rec.update(dcz_bytes=dcz.size, payload_bytes=payload, lookups=lookups)
    else:
        energy = estimate_inference(prof.macs, dense, prof.activation_numel, prof.peak_activation_numel, 0, em)
    rec["energy"] = {"inference": energy.to_dict(),
                     "efficiency_uj_per_mflop": efficiency_uj_per_mflop(energy.total_j, prof.flops)}
    if train is not None:
        rec["energy"]["training"] = {**training_energy(train["seconds"], train.get("device", "cpu"),
                                                       train.get("joules"), em).to_dict(),
                                     "what": train.get("what", "training")}
    if data is not None:
        device = next(model.parameters()).device
        ds = open_eval_data(data, info.class_names, info.input_size, info.mean, info.std)
        rec["eval"] = {"data": str(data), **evaluate(model, DataLoader(ds, batch_size=batch_size), device)}
    if latency is not None:
        lat = measure_latency(model, info.input_size, **latency)
        rec["latency"] = lat
        b1 = lat["batches"].get("1", {}).get("energy", {})
        if b1.get("method") == "measured":
            rec["energy"]["inference_measured"] = b1
            rec["energy"]["efficiency_measured_uj_per_mflop"] = efficiency_uj_per_mflop(b1["per_inference_j"],
                                                                                        prof.flops)
    return rec


def _train_info(path: Path, dcz: DczFile | None, model: nn.Module) -> dict[str, Any] | None:
    """Training time (and measured energy, if the pipeline logged one) from the results JSON beside ``path``
    (``FILE.json`` or ``results.json``), a checkpoint's metadata, or the ``history.json`` beside it."""
    results: dict[str, Any] = {}
    for candidate in (path.with_suffix(".json"), path.parent / "results.json"):
        try:
            found = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        source = found.get("final", {}).get("source") if isinstance(found, dict) else None
        if isinstance(found, dict) and (candidate.stem == path.stem or dcz is None or (
                source is not None and Path(source).name == path.name)):
            results = found
            break
    device = str(results.get("device", "device not recorded: CPU figure"))
    if dcz is not None and "total" in results.get("seconds", {}):
        measured = results.get("energy", {}).get("training", {})
        what = "compression" if results.get("baseline", {}).get("given") else "baseline + compression"
        return {"seconds": float(results["seconds"]["total"]), "device": device, "what": what,
                "joules": measured.get("joules") if measured.get("method") == "measured" else None}
    if dcz is not None:
        return None
    baseline = getattr(model, "dc_extra", {}).get("baseline", {})
    if "seconds" in baseline:
        return {"seconds": float(baseline["seconds"]), "device": device, "what": "baseline training"}
    try:  # `deepcompress train` writes the epochs, with their seconds, to history.json beside the checkpoint
        history = json.loads((path.parent / "history.json").read_text(encoding="utf-8"))
        if history.get("model") == model_info(model).arch:
            seconds = sum(float(e["seconds"]) for e in history["epochs"])
            return {"seconds": seconds, "device": device, "what": "training (history.json)"}
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        pass
    return None


def measure_file(path: str | os.PathLike, label: str | None = None, data: str | None = None,
                 energy_model: EnergyModel | None = None, latency: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 256) -> dict[str, Any]:
    """:func:`measure_model` for a .dcz file or a deepcompress checkpoint, adding its file size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    with open(path, "rb") as f:
        is_dcz = f.read(len(MAGIC)) == MAGIC
    dcz = read_dcz(path) if is_dcz else None
    model = model_from_dcz(dcz, device) if dcz is not None else load(path, device)
    train = _train_info(path, dcz, model)
    rec = measure_model(model, label or path.name, dcz, data, energy_model, latency, train, batch_size)
    rec["file"] = str(path)
    rec["file_bytes"] = path.stat().st_size
    return rec


# ------------------------------------------------------------------------------------------ tables

def _fmt_j(j: float | None) -> str:
    if j is None:
        return "–"
    for scale, unit in ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j / 1e-9:.3g} nJ"


def _metric_rows(r: dict[str, Any]) -> dict[str, str]:
    """One model's column of the side-by-side table, by metric name."""
    e = r["energy"]["inference"]
    size = r.get("file_bytes")
    lat = r.get("latency", {})
    batches = lat.get("batches", {})
    sizes = sorted(batches, key=int)
    ev = r.get("eval")
    measured = r["energy"].get("inference_measured")
    train = r["energy"].get("training")
    distinct = r["distinct_values"].values()

    def timing(b: str) -> str:
        t = batches[b]
        return f"{t['median_ms']:.3f} ({t['q1_ms']:.3f}–{t['q3_ms']:.3f})"

    return {
        "format": ".dcz" if r["format"] == "dcz" else "dense checkpoint" if size else "architecture (no file)",
        "parameters": f"{r['params']:,}",
        "non-zero parameters": f"{r['nonzero']:,} ({100 * r['nonzero'] / max(r['params'], 1):.1f}%)",
        "distinct values per layer (max)": f"{max(distinct, default=0):,}",
        "dense fp32 bytes": f"{r['dense_fp32_bytes']:,}",
        "file bytes": f"{size:,}" if size else "–",
        "smaller than dense fp32": f"{r['dense_fp32_bytes'] / size:.1f}×" if size else "–",
        "zipped dense fp32 file bytes": f"{r['zipped_dense_bytes']:,}",
        "MFLOPs (dense)": f"{r['flops'] / 1e6:.3f}",
        "MACs (dense)": f"{r['macs']:,}",
        "MACs with a non-zero weight": f"{r['sparse_macs']:,}",
        "latency batch 1, ms median (IQR)": timing(sizes[0]) if sizes else "–",
        "latency batch N, ms median (IQR)": f"N={sizes[-1]}: {timing(sizes[-1])}" if len(sizes) > 1 else "–",
        "peak memory": f"{lat['peak_memory_bytes'] / 2**20:.2f} MiB ({lat['peak_memory_kind']})" if lat else "–",
        "accuracy": f"{ev['accuracy']:.4f} (n={ev['n']:,})" if ev else "–",
        "log-loss": f"{ev['log_loss']:.4f}" if ev else "–",
        "energy / inference (estimated)":
            f"{_fmt_j(e['total_j'])} (weights in {'SRAM' if e['weights_on_chip'] else 'DRAM'})",
        "energy split, compute / memory": f"{_fmt_j(e['compute_j'])} / {_fmt_j(e['memory_j'])}",
        "energy / inference (measured)": _fmt_j(measured["per_inference_j"]) if measured else "no counters",
        "energy efficiency, µJ / MFLOP (est.)": f"{r['energy']['efficiency_uj_per_mflop']:.4f}",
        "training time": f"{train['seconds']:.1f} s ({train.get('what', '')})" if train else "–",
        "training energy": f"{_fmt_j(train['joules'])} ({train['method']})" if train else "–",
    }


def table(records: list[dict[str, Any]]) -> list[list[str]]:
    """The side-by-side table: a header row of model labels, then one row per metric."""
    columns = [_metric_rows(r) for r in records]
    return [["metric", *(r["label"] for r in records)]] + [[k, *(c[k] for c in columns)] for k in columns[0]]


def text_table(records: list[dict[str, Any]]) -> str:
    """The table as aligned plain text."""
    rows = table(records)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(records: list[dict[str, Any]], energy_model: EnergyModel) -> str:
    """The table as GitHub Markdown with the energy model's constants and per-model notes underneath."""
    rows = table(records)
    lines = ["| " + " | ".join(rows[0]) + " |", "|---" + "|---:" * (len(rows[0]) - 1) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows[1:]]
    m = energy_model
    lines += ["", f"Energy per inference is **estimated** (batch 1; Horowitz, ISSCC 2014, 45 nm): {m.mac_pj:g} pJ "
                  f"per MAC ({m.arithmetic}), {m.sram_pj_per_word:g} pJ per 32-bit SRAM word, {m.dram_pj_per_word:g} "
                  f"pJ per 32-bit DRAM word, {m.lookup_pj:g} pJ per codebook look-up, on-chip budget "
                  f"{m.on_chip_bytes:,} bytes. Dense models: all MACs, fp32 weights fetched; .dcz models: only MACs "
                  "with a non-zero weight, the file payload fetched plus one look-up per non-zero weight. "
                  "µJ / MFLOP = estimated energy / dense MFLOPs (lower is better).", ""]
    for r in records:
        e = r["energy"]["inference"]
        note = (f"- {r['label']}: weights {1e6 * e['weight_memory_j']:.4g} µJ from "
                f"{'SRAM' if e['weights_on_chip'] else 'DRAM'}, activations {1e6 * e['activation_memory_j']:.4g} µJ "
                f"from {'SRAM' if e['activations_on_chip'] else 'DRAM'}, look-ups {1e6 * e['lookup_j']:.4g} µJ, "
                f"compute {1e6 * e['compute_j']:.4g} µJ")
        train = r["energy"].get("training")
        if train:
            note += f"; training energy {train['method']}"
            note += f" ({'; '.join(train['notes'])})" if train["notes"] else ""
        lines.append(note)
    for r in records:
        lines += ["", f"### {r['label']}: per layer (one sample)", "",
                  "| layer | weights | non-zero | distinct values | MACs | MACs with a non-zero weight "
                  "| activations in + out |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {p['name']} | {p['weights']:,} | {p['nonzero']:,} | {r['distinct_values'][p['name']]:,} | "
                  f"{p['macs']:,} | {p['sparse_macs']:,} | {p['input_numel'] + p['output_numel']:,} |"
                  for p in r["layers"]]
    return "\n".join(lines)


CSV_FIELDS = ["label", "file", "arch", "format", "params", "nonzero", "file_bytes", "dense_fp32_bytes",
              "zipped_dense_bytes", "payload_bytes", "flops", "macs", "sparse_macs", "latency_b1_median_ms",
              "latency_b1_q1_ms", "latency_b1_q3_ms", "latency_bN", "latency_bN_median_ms", "peak_memory_bytes",
              "accuracy", "log_loss", "n", "energy_method", "energy_compute_j", "energy_weight_memory_j",
              "energy_activation_memory_j", "energy_lookup_j", "energy_total_j", "weights_on_chip",
              "efficiency_uj_per_mflop", "measured_inference_j", "training_seconds", "training_energy_j",
              "training_energy_method"]


def csv_text(records: list[dict[str, Any]]) -> str:
    """One flat CSV row per model (raw numbers, SI units)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in records:
        e = r["energy"]["inference"]
        lat = r.get("latency", {})
        batches = lat.get("batches", {})
        sizes = sorted(batches, key=int)
        b1 = batches.get("1", {})
        bn = batches[sizes[-1]] if len(sizes) > 1 else {}
        ev = r.get("eval", {})
        train = r["energy"].get("training") or {}
        w.writerow({
            **{k: r.get(k) for k in ("label", "file", "arch", "format", "params", "nonzero", "file_bytes",
                                     "dense_fp32_bytes", "zipped_dense_bytes", "payload_bytes", "flops", "macs",
                                     "sparse_macs")},
            "latency_b1_median_ms": b1.get("median_ms"), "latency_b1_q1_ms": b1.get("q1_ms"),
            "latency_b1_q3_ms": b1.get("q3_ms"), "latency_bN": sizes[-1] if len(sizes) > 1 else None,
            "latency_bN_median_ms": bn.get("median_ms"), "peak_memory_bytes": lat.get("peak_memory_bytes"),
            "accuracy": ev.get("accuracy"), "log_loss": ev.get("log_loss"), "n": ev.get("n"),
            "energy_method": e["method"], "energy_compute_j": e["compute_j"],
            "energy_weight_memory_j": e["weight_memory_j"], "energy_activation_memory_j": e["activation_memory_j"],
            "energy_lookup_j": e["lookup_j"], "energy_total_j": e["total_j"], "weights_on_chip": e["weights_on_chip"],
            "efficiency_uj_per_mflop": r["energy"]["efficiency_uj_per_mflop"],
            "measured_inference_j": r["energy"].get("inference_measured", {}).get("per_inference_j"),
            "training_seconds": train.get("seconds"), "training_energy_j": train.get("joules"),
            "training_energy_method": train.get("method")})
    return buf.getvalue()
