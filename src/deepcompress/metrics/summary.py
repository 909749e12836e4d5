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
    arguments) to time it, and ``train`` (``{"seconds", "device", "joules"?}``) for training energy."""
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
        rec["energy"]["training"] = training_energy(train["seconds"], train.get("device", "cpu"),
                                                    train.get("joules"), em).to_dict()
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
    return rec


def _train_info(path: Path, dcz: DczFile | None, model: nn.Module) -> dict[str, Any] | None:
    """Training time (and measured energy, if the pipeline logged one) from the results JSON beside ``path``
    (``FILE.json`` or ``results.json``) or from a checkpoint's metadata."""
    results = None
    for candidate in (path.with_suffix(".json"), path.parent / "results.json"):
        if candidate.is_file():
            try:
                results = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            break
    device = str(results.get("device", "cpu")) if isinstance(results, dict) else "cpu"
    if dcz is not None and isinstance(results, dict) and "total" in results.get("seconds", {}):
        measured = results.get("energy", {}).get("training", {})
        return {"seconds": float(results["seconds"]["total"]), "device": device, "what": "baseline + compression",
                "joules": measured.get("joules") if measured.get("method") == "measured" else None}
    baseline = getattr(model, "dc_extra", {}).get("baseline", {})
    if dcz is None and "seconds" in baseline:
        return {"seconds": float(baseline["seconds"]), "device": device, "what": "baseline training"}
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
    if train is not None:
        rec["energy"]["training"]["what"] = train["what"]
    return rec


# ------------------------------------------------------------------------------------------ tables

COLUMNS = ["model", "params", "non-zero", "file bytes", "× vs fp32", "zip(dense)", "MFLOPs", "sparse MMACs",
           "b1 ms", "bN ms", "accuracy", "log-loss", "E/inf µJ (est.)", "memory share", "µJ/MFLOP",
           "train energy"]


def _fmt_energy_j(j: float | None, method: str) -> str:
    if j is None:
        return "–"
    value = f"{j / 1e3:.2f} kJ" if j >= 1e3 else f"{j:.1f} J"
    return f"{value} ({'meas.' if method == 'measured' else 'est.'})"


def table_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One formatted row per model, in :data:`COLUMNS` order."""
    rows = []
    for r in records:
        e = r["energy"]["inference"]
        lat = r.get("latency", {}).get("batches", {})
        sizes = sorted(lat, key=int)
        ev = r.get("eval")
        size = r.get("file_bytes", r.get("dcz_bytes", r["dense_fp32_bytes"]))
        train = r["energy"].get("training")
        rows.append([
            r["label"], f"{r['params']:,}", f"{r['nonzero']:,} ({100 * r['nonzero'] / max(r['params'], 1):.1f}%)",
            f"{size:,}", f"{r['dense_fp32_bytes'] / size:.1f}×", f"{r['zipped_dense_bytes']:,}",
            f"{r['flops'] / 1e6:.3f}", f"{r['sparse_macs'] / 1e6:.3f}",
            f"{lat[sizes[0]]['median_ms']:.3f}" if sizes else "–",
            f"{lat[sizes[-1]]['median_ms']:.3f} (N={sizes[-1]})" if len(sizes) > 1 else "–",
            f"{ev['accuracy']:.4f}" if ev else "–", f"{ev['log_loss']:.4f}" if ev else "–",
            f"{1e6 * e['total_j']:.3f}", f"{100 * e['memory_j'] / e['total_j']:.0f}%" if e["total_j"] else "–",
            f"{r['energy']['efficiency_uj_per_mflop']:.3f}",
            _fmt_energy_j(train["joules"], train["method"]) if train else "–"])
    return rows


def text_table(records: list[dict[str, Any]]) -> str:
    """The table as aligned plain text, models side by side as rows."""
    rows = [COLUMNS, *table_rows(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(records: list[dict[str, Any]], energy_model: EnergyModel) -> str:
    """The table as GitHub Markdown with the energy model's constants underneath."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(records)]
    m = energy_model
    lines += ["", f"Energy per inference is **estimated** (batch 1; Horowitz 45 nm): {m.mac_pj:g} pJ per MAC "
                  f"({m.arithmetic}), {m.sram_pj_per_word:g} pJ per 32-bit SRAM word, {m.dram_pj_per_word:g} pJ per "
                  f"32-bit DRAM word, {m.lookup_pj:g} pJ per codebook look-up, on-chip budget "
                  f"{m.on_chip_bytes:,} bytes. µJ/MFLOP = estimated energy / dense MFLOPs (lower is better)."]
    for r in records:
        e = r["energy"]["inference"]
        place = "SRAM" if e["weights_on_chip"] else "DRAM"
        note = (f"- {r['label']}: weights from {place}, activations from "
                f"{'SRAM' if e['activations_on_chip'] else 'DRAM'}; compute {1e6 * e['compute_j']:.3f} µJ, "
                f"weights {1e6 * e['weight_memory_j']:.3f} µJ, activations {1e6 * e['activation_memory_j']:.3f} µJ, "
                f"look-ups {1e6 * e['lookup_j']:.3f} µJ")
        if "inference_measured" in r["energy"]:
            note += f"; measured {1e6 * r['energy']['inference_measured']['per_inference_j']:.3f} µJ per inference"
        train = r["energy"].get("training")
        if train:
            note += f"; training ({train.get('what', '')}) {train['method']}"
            note += f": {'; '.join(train['notes'])}" if train["notes"] else ""
        lines.append(note)
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
