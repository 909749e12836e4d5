"""Inference latency at batch 1 and batch N (median and spread after warm-up), peak memory, measured energy."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .energy import EnergyMeter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


class _CpuPeak:
    """Peak CPU memory of the work inside: on Linux the growth of the resident set above its level at the
    start (the high-water mark is reset through /proc/self/clear_refs); elsewhere the process's peak RSS."""

    def __enter__(self) -> _CpuPeak:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start, self.kind = _status_kib("VmRSS"), "RSS growth during the runs"
        except OSError:
            self.start, self.kind = None, "process peak RSS"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.start is not None:
            self.bytes = max(_status_kib("VmHWM") - self.start, 0) * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.bytes = peak if sys.platform == "darwin" else peak * 1024


@torch.no_grad()
def measure_latency(model: nn.Module, input_size: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
                    warmup: int = 5, repeats: int = 30, powercap_root: str = "/sys/class/powercap"
                    ) -> dict[str, Any]:
    """Time ``repeats`` forward passes per batch size after ``warmup`` untimed ones.

    Returns per batch size the median, quartiles, min and max in milliseconds, the throughput and the
    energy of the runs (per inference when counters exist); and the peak memory (CUDA:
    ``max_memory_allocated`` during the runs; CPU: see :class:`_CpuPeak`).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "batches": {}}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for b in batch_sizes:
            with _CpuPeak() as cpu_peak:
                x = torch.randn(b, *input_size, device=device)
                for _ in range(warmup):
                    model(x)
                _sync(device)
                times = []
                with EnergyMeter(powercap_root) as meter:
                    for _ in range(repeats):
                        t = time.perf_counter()
                        model(x)
                        _sync(device)
                        times.append(1e3 * (time.perf_counter() - t))
            q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
            median = statistics.median(times)
            row = {"median_ms": median, "q1_ms": q[0], "q3_ms": q[2], "min_ms": min(times), "max_ms": max(times),
                   "throughput_per_s": 1e3 * b / median, "repeats": repeats, "cpu_peak_bytes": cpu_peak.bytes}
            r = meter.reading
            per_inference = r.joules / (repeats * b) if r.joules is not None else None
            row["energy"] = {**r.to_dict(), "per_inference_j": per_inference}
            out["batches"][str(b)] = row
    finally:
        model.train(was_training)
    if device.type == "cuda":
        out["peak_memory_bytes"], out["peak_memory_kind"] = torch.cuda.max_memory_allocated(device), "cuda allocated"
    else:
        out["peak_memory_bytes"] = max(row["cpu_peak_bytes"] for row in out["batches"].values())
        out["peak_memory_kind"] = cpu_peak.kind
    return out
