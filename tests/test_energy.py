"""The energy model (pinned to the seed's worked example) and the RAPL/NVML/Zeus meters."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

from deepcompress.metrics import energy
from deepcompress.metrics.energy import (
    EnergyMeter,
    EnergyModel,
    RaplReader,
    efficiency_uj_per_mflop,
    estimate_inference,
    training_energy,
)


def test_seed_worked_example_1g_connections_20fps_from_dram_is_12_8_w():
    # (20 Hz)(1G)(640 pJ) = 12.8 W: one fp32 weight (one 32-bit word) fetched from DRAM per connection
    e = estimate_inference(macs=0, weight_bytes=4 * 10**9)
    assert not e.weights_on_chip
    assert 20 * e.weight_memory_j == pytest.approx(12.8)
    assert 20 * e.total_j == pytest.approx(12.8)


def test_memory_is_priced_per_32_bit_word_not_per_megabyte():
    # 1 MiB of fp32 weights = 262,144 words × 640 pJ = 168 µJ; pricing 640 pJ per MB would give 0.00067 µJ
    e = estimate_inference(macs=0, weight_bytes=2**20, model=EnergyModel(on_chip_bytes=0))
    assert e.weight_memory_j == pytest.approx(2**18 * 640e-12)
    assert e.weight_memory_j > 1e-4
    assert EnergyModel().dram_pj_per_word / 0.9 > 700  # "3 orders of magnitude" above a 0.9 pJ fp32 add


def test_weights_on_chip_when_they_fit_the_budget():
    m = EnergyModel(on_chip_bytes=1024)
    on = estimate_inference(0, 1024, model=m)
    off = estimate_inference(0, 1025, model=m)
    assert on.weights_on_chip and not off.weights_on_chip
    assert on.weight_memory_j == pytest.approx(256 * 5e-12)
    assert off.weight_memory_j == pytest.approx(257 * 640e-12)  # 1025 bytes need 257 words


def test_compute_activation_and_lookup_terms():
    e = estimate_inference(macs=1000, weight_bytes=0, activation_numel=100, peak_activation_numel=50, lookups=10)
    assert e.compute_j == pytest.approx(1000 * (3.7 + 0.9) * 1e-12)
    assert e.activations_on_chip and e.activation_memory_j == pytest.approx(100 * 5e-12)
    assert e.lookup_j == pytest.approx(10 * 5e-12)
    assert e.total_j == pytest.approx(e.compute_j + e.memory_j)
    int8 = estimate_inference(1000, 0, model=EnergyModel(arithmetic="int8", activation_bits=8))
    assert int8.compute_j == pytest.approx(1000 * 0.23e-12)
    # activations that do not fit beside on-chip weights go to DRAM
    big = estimate_inference(0, 900, activation_numel=100, peak_activation_numel=100,
                             model=EnergyModel(on_chip_bytes=1000))
    assert big.weights_on_chip and not big.activations_on_chip
    assert big.activation_memory_j == pytest.approx(100 * 640e-12)


def test_constants_overridable_from_file(tmp_path):
    cfg = tmp_path / "energy.yaml"
    cfg.write_text("dram_pj_per_word: 100\nmult_pj: 1.0\nadd_pj: 0.5\non_chip_bytes: 0\n")
    m = EnergyModel.load(cfg)
    assert m.mac_pj == 1.5 and m.dram_pj_per_word == 100
    assert estimate_inference(2, 4, model=m).total_j == pytest.approx((3 + 100) * 1e-12)
    (tmp_path / "e.toml").write_text("sram_pj_per_word = 2.0\n")
    assert EnergyModel.load(tmp_path / "e.toml").sram_pj_per_word == 2.0
    (tmp_path / "bad.yaml").write_text("dram_pj_per_MB: 640\n")
    with pytest.raises(ValueError, match="unknown setting"):
        EnergyModel.load(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="arithmetic"):
        EnergyModel(arithmetic="int4")
    with pytest.raises(ValueError, match=">= 0"):
        EnergyModel(dram_pj_per_word=-1)


def test_efficiency_and_training_energy():
    assert efficiency_uj_per_mflop(2e-6, 4_000_000) == pytest.approx(0.5)
    est = training_energy(10.0, "cpu", model=EnergyModel(cpu_power_w=50))
    assert est.method == "estimated" and est.joules == 500 and "50 W" in est.notes[0]
    assert training_energy(10.0, "cuda:0", model=EnergyModel(gpu_power_w=200)).joules == 2000
    meas = training_energy(10.0, "cpu", measured_j=123.0)
    assert meas.method == "measured" and meas.joules == 123.0


def _zone(root: Path, name: str, label: str, uj: int, max_uj: int = 1000) -> Path:
    z = root / name
    z.mkdir()
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setattr(energy.NvmlReader, "read", lambda self: {})


def test_rapl_meter_on_fake_sysfs_with_wraparound(tmp_path, no_nvml):
    pkg0 = _zone(tmp_path, "intel-rapl:0", "package-0", 900)
    core = _zone(tmp_path, "intel-rapl:0:0", "core", 500)  # part of package-0: not added again
    dram = _zone(tmp_path, "intel-rapl:0:1", "dram", 10)  # not part of package-0: added
    pkg1 = _zone(tmp_path, "intel-rapl:1", "package-1", 100)
    with EnergyMeter(tmp_path, use_zeus=False) as meter:
        (pkg0 / "energy_uj").write_text("100\n")  # wrapped past max_energy_range_uj = 1000
        (pkg1 / "energy_uj").write_text("400\n")
        (core / "energy_uj").write_text("999\n")
        (dram / "energy_uj").write_text("60\n")
    r = meter.reading
    assert r.method == "measured"
    assert r.sources == {"rapl intel-rapl:0 (package-0)": pytest.approx(200e-6),
                         "rapl intel-rapl:0:1 (dram)": pytest.approx(50e-6),
                         "rapl intel-rapl:1 (package-1)": pytest.approx(300e-6)}
    assert r.joules == pytest.approx(550e-6)


def test_rapl_sampling_survives_several_wraparounds(tmp_path, no_nvml):
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 100)
    with EnergyMeter(tmp_path, use_zeus=False, sample_every_s=3600) as meter:
        for uj in (700, 200, 900, 50):  # wraps twice at 1000 µJ between samples
            (pkg / "energy_uj").write_text(f"{uj}\n")
            meter.sample()
        (pkg / "energy_uj").write_text("80\n")
    assert meter.reading.joules == pytest.approx((600 + 500 + 700 + 150 + 30) * 1e-6)


def test_rapl_permission_denied_is_reported(tmp_path, monkeypatch, no_nvml):
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with EnergyMeter(tmp_path, use_zeus=False) as meter:
        pass
    r = meter.reading
    assert r.method == "unavailable" and r.joules is None
    assert any("permission denied" in n for n in r.notes)
    assert RaplReader.delta_j({}, {"z": (5, 10)}) == {}


def test_no_counters_reported_plainly(tmp_path, no_nvml):
    with EnergyMeter(tmp_path / "absent", use_zeus=False) as meter:
        pass
    assert meter.reading.method == "unavailable"
    assert any("does not exist" in n for n in meter.reading.notes)
    assert "no energy counter readable" in meter.reading.notes


def test_zeus_used_when_installed_and_no_own_counter(tmp_path, monkeypatch, no_nvml):
    class FakeMonitor:
        def begin_window(self, name):
            self.name = name

        def end_window(self, name):
            assert name == self.name
            return types.SimpleNamespace(total_energy=2.5, gpu_energy={0: 2.5}, cpu_energy={0: 1.0},
                                         dram_energy=None)

    zeus = types.ModuleType("zeus")
    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = FakeMonitor
    monkeypatch.setitem(sys.modules, "zeus", zeus)
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    with EnergyMeter(tmp_path / "absent") as meter:
        pass
    assert meter.reading.method == "measured" and meter.reading.joules == 3.5
    assert meter.reading.sources == {"zeus gpu0": 2.5, "zeus cpu0": 1.0}


def test_zeus_failure_does_not_break_the_work(tmp_path, monkeypatch, no_nvml):
    class BrokenMonitor:
        def __init__(self):
            raise RuntimeError("Root privilege is required to read RAPL metrics")

    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = BrokenMonitor
    monkeypatch.setitem(sys.modules, "zeus", types.ModuleType("zeus"))
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    with EnergyMeter(tmp_path / "absent") as meter:
        pass
    assert meter.reading.method == "unavailable"
    assert any(n.startswith("Zeus: Root privilege") for n in meter.reading.notes)


def test_energy_model_needs_no_torch():
    code = ("import sys; from deepcompress.metrics import EnergyModel, estimate_inference; "
            "assert estimate_inference(0, 4e9).weight_memory_j > 0; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
