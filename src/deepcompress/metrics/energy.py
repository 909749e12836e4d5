"""Energy, always labelled: **measured** from hardware counters, or **estimated** from a stated model.

Measured: Intel/AMD RAPL through Linux powercap (``/sys/class/powercap/intel-rapl:N/energy_uj``) and
NVIDIA NVML's total-energy counter (``pynvml``), read before and after the measured work (RAPL also every
30 s in between, to undo its wrap-arounds); Zeus is used instead when it is installed and these readers
find no counter.

Estimated, per inference, in the style of Han et al. (2016) and EIE with Horowitz's 45 nm figures
(ISSCC 2014)::

    E = MACs × (E_mult + E_add)                                  compute
      + ceil(weight bits / 32) × E_word(weights' memory)         weight traffic
      + activation words × E_word(activations' memory)           activation traffic
      + codebook look-ups × E_lookup                             weight sharing

with E_word = 5 pJ per 32-bit word from on-chip SRAM and 640 pJ per 32-bit word from DRAM (**per word**,
not per byte or megabyte). Weights sit in SRAM when their bytes fit ``on_chip_bytes``, else in DRAM;
activations sit in SRAM when the largest layer's input + output fit beside them. Every constant is a
field of :class:`EnergyModel`, settable from a YAML/TOML/JSON file.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V: (multiply, add) in pJ.
MAC_PJ: dict[str, tuple[float, float]] = {
    "fp32": (3.7, 0.9),
    "fp16": (1.1, 0.4),
    "int32": (3.1, 0.1),
    "int8": (0.2, 0.03),
}


@dataclass
class EnergyModel:
    """Constants of the inference-energy estimate (pJ, bytes, W); every field can be overridden."""

    arithmetic: str = "fp32"  # picks (mult, add) from MAC_PJ unless mult_pj / add_pj are given
    mult_pj: float | None = None
    add_pj: float | None = None
    sram_pj_per_word: float = 5.0  # 32-bit on-chip SRAM access
    dram_pj_per_word: float = 640.0  # 32-bit off-chip DRAM access
    word_bits: int = 32
    on_chip_bytes: int = 8 * 2**20  # on-chip SRAM budget for weights + activations
    lookup_pj: float = 5.0  # one codebook read per stored non-zero weight (priced as an SRAM word)
    activation_bits: int = 32
    cpu_power_w: float = 65.0  # stated power for training-energy estimates from device time
    gpu_power_w: float = 300.0

    def __post_init__(self) -> None:
        if self.arithmetic not in MAC_PJ:
            raise ValueError(f"arithmetic must be one of {', '.join(MAC_PJ)}, got {self.arithmetic!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"energy model: {f.name} must be >= 0, got {v}")
        if self.word_bits < 1 or self.activation_bits < 1:
            raise ValueError("energy model: word_bits and activation_bits must be >= 1")

    @property
    def mac_pj(self) -> float:
        """Energy of one multiply-accumulate."""
        mult, add = MAC_PJ[self.arithmetic]
        return (self.mult_pj if self.mult_pj is not None else mult) + (self.add_pj if self.add_pj is not None
                                                                        else add)

    def word_pj(self, on_chip: bool) -> float:
        return self.sram_pj_per_word if on_chip else self.dram_pj_per_word

    def words(self, nbytes: float) -> int:
        """32-bit words (``word_bits``) needed to move ``nbytes`` bytes."""
        return math.ceil(8 * nbytes / self.word_bits)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mac_pj": self.mac_pj}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnergyModel:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"energy model: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EnergyModel:
        """Read overrides from a .yaml/.yml, .toml or .json file (missing fields keep their defaults)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"energy config not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".toml":
                d = tomllib.loads(text)
            elif path.suffix == ".json":
                d = json.loads(text)
            else:
                d = yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot parse energy config: {e}") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path}: energy config must be a mapping")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e


@dataclass
class InferenceEnergy:
    """Estimated energy of one inference (batch 1), in joules, with its parts and placement."""

    compute_j: float
    weight_memory_j: float
    activation_memory_j: float
    lookup_j: float
    weights_on_chip: bool
    activations_on_chip: bool
    method: str = "estimated"

    @property
    def memory_j(self) -> float:
        return self.weight_memory_j + self.activation_memory_j + self.lookup_j

    @property
    def total_j(self) -> float:
        return self.compute_j + self.memory_j

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_j": self.memory_j, "total_j": self.total_j}


def estimate_inference(macs: int, weight_bytes: float, activation_numel: int = 0, peak_activation_numel: int = 0,
                       lookups: int = 0, model: EnergyModel | None = None) -> InferenceEnergy:
    """Estimate one inference's energy (see the module docstring for the formula).

    ``weight_bytes`` is what has to be fetched: dense fp32 bytes for a dense model, the compressed payload
    for a .dcz. ``activation_numel`` counts activations read plus written; ``peak_activation_numel`` is the
    largest single layer's input + output, which decides whether activations fit on chip.
    """
    m = model or EnergyModel()
    weights_on_chip = weight_bytes <= m.on_chip_bytes
    room = m.on_chip_bytes - (weight_bytes if weights_on_chip else 0)
    acts_on_chip = peak_activation_numel * m.activation_bits / 8 <= room
    act_words = math.ceil(activation_numel * m.activation_bits / m.word_bits)
    pj = 1e-12
    return InferenceEnergy(
        compute_j=macs * m.mac_pj * pj,
        weight_memory_j=m.words(weight_bytes) * m.word_pj(weights_on_chip) * pj,
        activation_memory_j=act_words * m.word_pj(acts_on_chip) * pj,
        lookup_j=lookups * m.lookup_pj * pj,
        weights_on_chip=weights_on_chip, activations_on_chip=acts_on_chip)


def efficiency_uj_per_mflop(energy_j: float, flops: int) -> float:
    """Energy efficiency as the seed defines it, energy / MFLOPs (lower is better), in µJ per MFLOP."""
    return energy_j * 1e6 / (flops / 1e6) if flops else float("nan")


# ----------------------------------------------------------------------------------------- measuring

@dataclass
class EnergyReading:
    """Energy of a piece of work: measured (with its counters) or estimated (with its assumption), or none."""

    method: str  # "measured" | "estimated" | "unavailable"
    joules: float | None
    seconds: float
    sources: dict[str, float] = field(default_factory=dict)  # joules per counter
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")
_SUB_ZONE = re.compile(r"^intel-rapl:\d+:\d+$")


class RaplReader:
    """RAPL zones under a powercap folder: the top-level ones (packages, psys) and the DRAM sub-zones, which
    packages do not include; the core/uncore sub-zones are parts of their package and are not added again."""

    def __init__(self, root: str | os.PathLike = "/sys/class/powercap") -> None:
        self.root = Path(root)
        self.notes: list[str] = []

    def zones(self) -> list[Path]:
        if not self.root.is_dir():
            self.notes.append(f"RAPL: {self.root} does not exist (no powercap interface)")
            return []
        zones = sorted(p for p in self.root.iterdir() if _TOP_ZONE.match(p.name) or (
            _SUB_ZONE.match(p.name) and _zone_name(p) == "dram"))
        if not zones:
            self.notes.append(f"RAPL: no intel-rapl zones under {self.root}")
        return zones

    def read(self) -> dict[str, tuple[int, int]]:
        """``{zone: (energy_uj, max_energy_range_uj)}`` of every readable zone; unreadable ones are noted."""
        out = {}
        for zone in self.zones():
            name = _zone_name(zone)
            label = f"{zone.name} ({name})" if name else zone.name
            try:
                energy = int((zone / "energy_uj").read_text())
                wrap = int((zone / "max_energy_range_uj").read_text())
            except PermissionError:
                self.notes.append(f"RAPL: {zone / 'energy_uj'} is not readable (permission denied; root only "
                                  "on kernels since 2020)")
                continue
            except (OSError, ValueError) as e:
                self.notes.append(f"RAPL: cannot read {zone}: {e}")
                continue
            out[label] = (energy, wrap)
        return out

    @staticmethod
    def delta_j(start: dict[str, tuple[int, int]], end: dict[str, tuple[int, int]]) -> dict[str, float]:
        """Joules per zone between two reads, undoing one counter wrap-around at ``max_energy_range_uj``."""
        out = {}
        for zone, (e1, wrap) in end.items():
            if zone not in start:
                continue
            e0 = start[zone][0]
            d = e1 - e0 if e1 >= e0 else e1 + wrap - e0
            out[f"rapl {zone}"] = d / 1e6
        return out


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return ""


class NvmlReader:
    """NVIDIA GPUs' total-energy counters (millijoules since driver load) through ``pynvml``."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.handles: list[Any] = []
        try:
            import pynvml
        except ImportError:
            self.notes.append("NVML: pynvml is not installed")
            return
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as e:
            self.notes.append(f"NVML: {e}")

    def read(self) -> dict[str, int]:
        out = {}
        for i, h in enumerate(self.handles):
            try:
                out[f"nvml gpu{i}"] = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))
            except self.nvml.NVMLError as e:
                self.notes.append(f"NVML gpu{i}: energy counter unavailable ({e})")
        return out

    def close(self) -> None:
        if self.handles:
            self.nvml.nvmlShutdown()


class EnergyMeter:
    """Context manager measuring the energy of the work inside it from RAPL and NVML counters.

    RAPL counters wrap around after ``max_energy_range_uj`` (about an hour at 70 W), so while the work runs
    they are also read every ``sample_every_s`` seconds by a background thread and the wrap-corrected
    deltas are summed. ``meter.reading`` is "measured" with joules per counter when any counter was
    readable, else "unavailable" with the reasons in ``notes`` (callers then fall back to an estimate).
    """

    def __init__(self, powercap_root: str | os.PathLike = "/sys/class/powercap", use_zeus: bool = True,
                 sample_every_s: float = 30.0) -> None:
        self.rapl = RaplReader(powercap_root)
        self.use_zeus = use_zeus
        self.sample_every_s = sample_every_s
        self.reading = EnergyReading("unavailable", None, 0.0)

    def sample(self) -> None:
        """Read the RAPL counters now and add what they counted since the last read."""
        with self._lock:
            now = self.rapl.read()
            for zone, joules in self.rapl.delta_j(self._rapl_last, now).items():
                self._rapl_j[zone] = self._rapl_j.get(zone, 0.0) + joules
            self._rapl_last.update(now)

    def _sampler(self) -> None:
        while not self._stop.wait(self.sample_every_s):
            self.sample()

    def __enter__(self) -> EnergyMeter:
        self.nvml = NvmlReader()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._rapl_last, self._rapl_j = self.rapl.read(), {}
        self._nvml0 = self.nvml.read()
        self._zeus = None
        if not self._rapl_last and not self._nvml0 and self.use_zeus:
            self._zeus = _start_zeus(self.rapl.notes)
        self._thread = None
        if self._rapl_last:
            self._thread = threading.Thread(target=self._sampler, name="rapl-sampler", daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.sample()
        sources = dict(self._rapl_j)
        nvml1 = self.nvml.read()
        sources.update({k: (nvml1[k] - v) / 1e3 for k, v in self._nvml0.items() if k in nvml1})
        self.nvml.close()
        if self._zeus is not None:
            sources.update(_stop_zeus(self._zeus))
        notes = list(dict.fromkeys(self.rapl.notes + self.nvml.notes))
        if sources:
            self.reading = EnergyReading("measured", sum(sources.values()), seconds, sources, notes)
        else:
            self.reading = EnergyReading("unavailable", None, seconds, {}, notes + ["no energy counter readable"])


def _start_zeus(notes: list[str]) -> Any:
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError:
        return None
    try:
        monitor = ZeusMonitor()
        monitor.begin_window("deepcompress")
    except Exception as e:  # an optional third-party meter must never break the measured work
        notes.append(f"Zeus: {e}")
        return None
    return monitor


def _stop_zeus(monitor: Any) -> dict[str, float]:
    """Joules per device of Zeus's window (its ``total_energy`` covers GPUs only, so the parts are summed)."""
    m = monitor.end_window("deepcompress")
    out = {}
    for kind in ("gpu", "cpu", "dram"):
        for index, joules in (getattr(m, f"{kind}_energy", None) or {}).items():
            out[f"zeus {kind}{index}"] = float(joules)
    return out


def training_energy(seconds: float, device: str, measured_j: float | None = None,
                    model: EnergyModel | None = None) -> EnergyReading:
    """Training energy: the measured joules when given, else device time × the stated power of the device."""
    m = model or EnergyModel()
    if measured_j is not None:
        return EnergyReading("measured", measured_j, seconds)
    watts = m.gpu_power_w if str(device).startswith("cuda") else m.cpu_power_w
    return EnergyReading("estimated", seconds * watts, seconds,
                         notes=[f"device time {seconds:.1f} s × stated {watts:g} W ({device})"])
