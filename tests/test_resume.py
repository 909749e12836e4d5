"""Crash-safe, resumable runs: a pipeline killed with SIGKILL anywhere and resumed with --resume writes
the same .dcz, byte for byte, as an uninterrupted run with the same seed; mismatched or corrupt run
states are refused with one line.

The kills are deterministic: the ``DEEPCOMPRESS_TEST_KILL_AT`` test hook (deepcompress.runstate)
makes the process SIGKILL itself right after the named checkpoint is written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _imgutil import make_image_folder
from torch.utils.data import DataLoader

from deepcompress import pipeline, runstate
from deepcompress.checkpoint import load_checkpoint, save_checkpoint
from deepcompress.cli import main
from deepcompress.data import open_train_test
from deepcompress.models import create_model
from deepcompress.pipeline import Data, Pipeline, load_data
from deepcompress.recipe import recipe_from_dict
from deepcompress.runstate import KILL_AT_ENV, RunState, RunStateError, state_dir_for
from deepcompress.training import FitState, TrainConfig, fit

SRC = Path(__file__).resolve().parents[1] / "src"
RECIPE = """\
model: lenet-300-100
seed: 3
model_kwargs: {dropout: 0.2}  # dropout draws from the global RNG, which must be restored too
train: {epochs: 2, lr: 0.002, batch_size: 64}
prune:
  sparsity: {fc1: 0.9, fc2: 0.8, fc3: 0.5}
  rounds: 2
  retrain: {epochs: 1, lr: 0.001, batch_size: 64}
quantize:
  bits: {fc: 4}
  finetune: {epochs: 2, lr: 0.0001, batch_size: 64}
encode:
  index_bits: {fc: 5}
"""


def _reproduce(out: Path, recipe: Path, kill_at: str | None = None, resume: bool = False,
               in_process: bool = False) -> int:
    """``deepcompress reproduce`` on the bundled digits, in a fresh process (or in this one); its exit status."""
    argv = ["reproduce", "lenet-300-100", "--data", "digits", "--recipe", str(recipe), "--out", str(out),
            "--device", "cpu", "--quiet"] + (["--resume"] if resume else [])
    if in_process:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 in the subprocesses: the same float sums
        try:
            return main(argv)
        finally:
            torch.set_num_threads(threads)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    proc = subprocess.run([sys.executable, "-m", "deepcompress.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, recipe) -> bytes:
    out = tmp_path_factory.mktemp("reference")
    assert _reproduce(out, recipe, in_process=True) == 0
    assert not state_dir_for(out / "lenet-300-100.dcz").exists()  # removed once the run has finished
    return (out / "lenet-300-100.dcz").read_bytes()


def test_same_seed_gives_a_byte_identical_file(reference, recipe, tmp_path):
    """In another process too."""
    assert _reproduce(tmp_path, recipe) == 0
    assert (tmp_path / "lenet-300-100.dcz").read_bytes() == reference


@pytest.mark.parametrize("point", [
    "baseline@1",  # during baseline training (after epoch 1 of 2)
    "prune.1",  # between prune rounds
    "quantize.finetune@1",  # during centroid fine-tuning
    "encode",  # during encoding: the .dcz is written, not yet reloaded and checked
])
def test_killed_and_resumed_run_writes_the_same_bytes(reference, recipe, tmp_path, point):
    """SIGKILL in a subprocess; the resumed run (here, in-process) writes the same file."""
    dcz = tmp_path / "lenet-300-100.dcz"
    assert _reproduce(tmp_path, recipe, kill_at=point) == -signal.SIGKILL
    assert (state_dir_for(dcz) / runstate.STATE_FILE).is_file()
    assert dcz.exists() == (point == "encode")
    assert _reproduce(tmp_path, recipe, resume=True, in_process=True) == 0
    assert dcz.read_bytes() == reference
    assert not state_dir_for(dcz).exists()


# ------------------------------------------------------------------------- in-process interruptions

class Interrupted(Exception):
    """Stands in for SIGKILL in the in-process tests."""


@pytest.fixture(scope="module")
def digits() -> Data:
    train, test = open_train_test("digits")
    return Data(train, test, "digits")


def _interrupt_at(monkeypatch, point: str) -> None:
    def hook(name: str) -> None:
        if name == point:
            raise Interrupted(name)

    monkeypatch.setattr(runstate, "kill_point", hook)
    monkeypatch.setattr(pipeline, "kill_point", hook)


def _run(recipe: dict, data: Data, out: Path, resume: bool = False) -> bytes:
    pipe = Pipeline(recipe_from_dict(recipe), data, "cpu", progress=False)
    pipe.run(pipe.build_model(), out, state_dir=state_dir_for(out), resume=resume)
    return out.read_bytes()


def _uninterrupted_and_resumed(recipe: dict, data: Data, folder: Path, monkeypatch, point: str) -> tuple[bytes, bytes]:
    """The file of an uninterrupted run, and that of a run interrupted at ``point`` and then resumed."""
    reference = _run(recipe, data, folder / "ref.dcz")
    _interrupt_at(monkeypatch, point)
    with pytest.raises(Interrupted):
        _run(recipe, data, folder / "run.dcz")
    monkeypatch.undo()
    return reference, _run(recipe, data, folder / "run.dcz", resume=True)


AGP_OBD = {"model": "lenet-300-100", "seed": 1, "train": {"epochs": 1, "batch_size": 128},
           "prune": {"method": "obd", "sparsity": {"fc1": 0.8, "fc2": 0.7}, "schedule": "agp",
                     "obd": {"estimator": "hutchinson", "batches": 2, "batch_size": 32},
                     "agp": {"frequency": 5, "end": 0.8}, "retrain": {"epochs": 3, "batch_size": 128}},
           "quantize": {"bits": 3}, "encode": {"index_bits": 4}}
RANDOM = {"model": "lenet-300-100", "seed": 2, "train": {"epochs": 1, "batch_size": 128, "schedule": "step",
                                                         "step_size": 1, "gamma": 0.5, "optimizer": "sgd"},
          "prune": {"method": "random", "sparsity": 0.7, "scope": "global", "rounds": 3,
                    "retrain": {"epochs": 1, "batch_size": 128}},
          "quantize": {"bits": 3, "finetune": {"epochs": 1, "batch_size": 128}}, "encode": {"index_bits": 4}}


def test_a_run_interrupted_again_and_again_resumes_each_time(reference, recipe, tmp_path, monkeypatch):
    dcz = tmp_path / "lenet-300-100.dcz"
    for i, point in enumerate(["baseline@2", "baseline", "prune.2@1", "prune", "quantize.finetune@2", "encode"]):
        _interrupt_at(monkeypatch, point)
        with pytest.raises(Interrupted):
            _reproduce(tmp_path, recipe, resume=i > 0, in_process=True)
    monkeypatch.undo()
    assert _reproduce(tmp_path, recipe, resume=True, in_process=True) == 0
    assert dcz.read_bytes() == reference


@pytest.mark.parametrize("recipe,point", [(AGP_OBD, "prune.agp@2"), (RANDOM, "prune.2"), (RANDOM, "prune.3@1")])
def test_resume_inside_agp_obd_and_random_pruning(digits, tmp_path, monkeypatch, recipe, point):
    """Gradual pruning (its step counter and mask history), OBD's batch stream and random pruning's
    generator all continue where they were."""
    reference, resumed = _uninterrupted_and_resumed(recipe, digits, tmp_path, monkeypatch, point)
    assert resumed == reference


@pytest.mark.parametrize("cfg,stop_after", [
    (TrainConfig(epochs=3, lr=0.01, batch_size=128, optimizer="adam", schedule="cosine", warmup_epochs=0.5), 1),
    # a head-only warm-up: resumed inside it, and right where the full optimiser takes over
    (TrainConfig(epochs=3, lr=0.05, batch_size=128, optimizer="sgd", schedule="step", step_size=1,
                 freeze_epochs=2), 1),
    (TrainConfig(epochs=3, lr=0.05, batch_size=128, optimizer="sgd", schedule="step", step_size=1,
                 freeze_epochs=2), 2),
])
def test_fit_resumed_from_a_fit_state_matches_an_uninterrupted_fit(digits, cfg, stop_after):

    def run(stop_after: int | None = None, resume: FitState | None = None,
            model: torch.nn.Module | None = None) -> tuple[torch.nn.Module, list[FitState]]:
        torch.manual_seed(0)
        model = model or create_model("lenet-300-100")
        g = torch.Generator().manual_seed(0)
        states: list[FitState] = []

        def checkpoint(s: FitState) -> None:
            states.append(s)
            if s.epoch == stop_after:
                raise Interrupted

        try:
            fit(model, DataLoader(digits.train, batch_size=128, shuffle=True, generator=g), cfg, device="cpu",
                progress=False, on_checkpoint=checkpoint, resume=resume)
        except Interrupted:
            pass
        return model, states

    straight, _ = run()
    model, states = run(stop_after=stop_after)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    resumed, _ = run(resume=states[-1], model=model)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    # control: continuing from the same weights without the saved state does not give the same model
    model.load_state_dict(weights)
    fresh = FitState(**{**states[-1].__dict__, "optimizer": {"state": {}, "param_groups": []}, "phase": "none",
                        "loader_rng": None})
    restarted, _ = run(resume=fresh, model=model)
    assert not torch.equal(straight.fc1.weight, restarted.fc1.weight)


# ------------------------------------------------------------------------------ refused run states

def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"deepcompress {argv[0]}: error: ") and "Traceback" not in err
    return err


@pytest.fixture
def saved_state(tmp_path, digits) -> tuple[Path, Path, Path]:
    """A checkpoint, a recipe and the run state a compress run of them left behind."""
    ckpt, recipe, out = tmp_path / "m.safetensors", tmp_path / "r.yaml", tmp_path / "m.dcz"
    save_checkpoint(ckpt, create_model("lenet-300-100"))
    recipe.write_text("train: {epochs: 0}\nprune: {sparsity: 0.5}\nquantize: {bits: 3}\nencode: {index_bits: 4}\n")
    from deepcompress.recipe import load_recipe

    pipe = Pipeline(load_recipe(recipe), Data(digits.train, digits.test, "digits"), "cpu", progress=False)
    pipe.run(load_checkpoint(ckpt), out, train_baseline=False, state_dir=state_dir_for(out))
    return ckpt, recipe, out


def test_resume_refuses_another_recipe(saved_state, capsys):
    ckpt, recipe, out = saved_state
    recipe.write_text(recipe.read_text().replace("sparsity: 0.5", "sparsity: 0.6"))
    err = _cli(capsys, "compress", str(ckpt), "--recipe", str(recipe), "--data", "digits", "--out", str(out),
               "--resume")
    assert "holds a different run, cannot resume: recipe.prune.sparsity (0.5 saved, 0.6 now)" in err


def test_resume_refuses_another_model(saved_state, capsys):
    ckpt, recipe, out = saved_state
    save_checkpoint(ckpt, create_model("lenet-300-100"))  # same architecture, other weights
    assert "model.sha256" in _cli(capsys, "compress", str(ckpt), "--recipe", str(recipe), "--data", "digits",
                                  "--out", str(out), "--resume")


@pytest.mark.parametrize("damage,match", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable run state"),
    (lambda p: p.write_bytes(b"\x00" * 64), "unreadable run state"),
    (lambda p: save_checkpoint(p, create_model("lenet-300-100")), "not a deepcompress run state"),
])
def test_resume_refuses_a_corrupt_state(saved_state, capsys, damage, match):
    ckpt, recipe, out = saved_state
    damage(state_dir_for(out) / runstate.STATE_FILE)
    err = _cli(capsys, "compress", str(ckpt), "--recipe", str(recipe), "--data", "digits", "--out", str(out),
               "--resume")
    assert match in err and "to start over" in err


def test_a_corrupt_journal_is_refused(saved_state, digits):
    from safetensors.torch import load_file, save_file

    _, _, out = saved_state
    path = state_dir_for(out) / runstate.STATE_FILE
    save_file(load_file(str(path)), str(path), metadata={"format": runstate.FORMAT, "state": '{"completed": 1}'})
    with pytest.raises(RunStateError, match="corrupt run state"):
        RunState.open(state_dir_for(out), {}, resume=True)


def test_without_resume_a_saved_state_is_started_over(saved_state, capsys):
    ckpt, recipe, out = saved_state
    recipe.write_text(recipe.read_text().replace("sparsity: 0.5", "sparsity: 0.6"))
    assert main(["compress", str(ckpt), "--recipe", str(recipe), "--data", "digits", "--out", str(out)]) == 0
    assert "discarding the saved run state" in capsys.readouterr().out
    assert not state_dir_for(out).exists()


def test_a_fresh_run_deletes_an_old_state_before_it_saves_anything(saved_state, digits):
    _, _, out = saved_state
    RunState.open(state_dir_for(out), {}, resume=False)
    assert not state_dir_for(out).exists()


def test_resume_without_a_saved_state_starts_from_the_beginning(saved_state, tmp_path, capsys):
    ckpt, recipe, _ = saved_state
    out = tmp_path / "other.dcz"
    assert main(["compress", str(ckpt), "--recipe", str(recipe), "--data", "digits", "--out", str(out),
                 "--resume"]) == 0
    assert "no saved run state" in capsys.readouterr().out and out.is_file()


@pytest.mark.parametrize("argv", [["demo"], ["reproduce", "lenet-5"], ["compress", "m", "--data", "d", "--out", "o"]])
def test_pipeline_commands_take_resume(argv):
    from deepcompress.cli import build_parser

    assert build_parser().parse_args([*argv, "--resume"]).resume is True


def test_a_state_rebuilds_pruning_masks_and_shared_layers(tmp_path):
    from deepcompress.prune import apply_mask
    from deepcompress.quantize import share_layer
    from deepcompress.quantize.sharing import is_shared

    torch.manual_seed(0)
    model = create_model("lenet-300-100")
    apply_mask(model.fc1, (torch.rand_like(model.fc1.weight) > 0.5).float())
    share_layer(model.fc2, 3)
    RunState(tmp_path / "s", {"run": 1}).save("step", model, {})
    fresh = create_model("lenet-300-100")  # other initial weights
    state = RunState.open(tmp_path / "s", {"run": 1}, resume=True)
    assert state.done("step") and state.last == "step"
    state.restore(fresh)
    assert "weight_orig" in fresh.fc1._parameters and is_shared(fresh.fc2) and not is_shared(fresh.fc3)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), fresh(x))
    fresh(x).sum().backward()  # the mask and the codebook still act in training
    assert (fresh.fc1.weight_orig.grad[fresh.fc1.weight_mask == 0] == 0).all()
    assert fresh.fc2.weight_codebook.grad.shape == (8,) and fresh.fc2.weight_codebook.grad.abs().sum() > 0


def test_the_fingerprint_tells_data_apart_but_not_how_its_path_is_spelt(saved_state, digits, tmp_path):
    from torch.utils.data import TensorDataset

    from deepcompress.recipe import load_recipe

    ckpt, recipe, out = saved_state
    x, y = digits.test.tensors
    other = TensorDataset(x.flip(-1), y)
    for test, ok in ((digits.test, True), (other, False)):
        pipe = Pipeline(load_recipe(recipe), Data(digits.train, test, "./some/other/spelling"), "cpu", progress=False)
        if ok:
            pipe.run(load_checkpoint(ckpt), out, train_baseline=False, state_dir=state_dir_for(out), resume=True)
            assert pipe.state.last == "quantize"
        else:
            with pytest.raises(RunStateError, match=r"different run, cannot resume: data.sha256"):
                pipe.run(load_checkpoint(ckpt), out, train_baseline=False, state_dir=state_dir_for(out), resume=True)


FOLDED = {"model": "test-tinynet", "seed": 4, "train": {"epochs": 1, "batch_size": 8},
          "prune": {"sparsity": {"conv": 0.5, "fc": 0.8}, "retrain": {"epochs": 1, "batch_size": 8}},
          "quantize": {"fold_bn": True, "mixed": {"average_bits": 3.0, "batches": 1, "batch_size": 8},
                       "finetune": {"epochs": 2, "batch_size": 8}},
          "encode": {"raw_dtype": "float16"}}


@pytest.mark.parametrize("point", ["quantize.finetune@1", "quantize"])
def test_resume_after_batchnorm_folding_and_mixed_precision(tmp_path, monkeypatch, point):
    """A model whose BatchNorm was folded is rebuilt folded, with its shared layers and chosen bits."""
    folder = make_image_folder(tmp_path / "leaves", n_per_class=6, size=32, classes=("healthy", "rust", "spot"),
                               prefix="train_")
    make_image_folder(folder, n_per_class=2, size=32, classes=("healthy", "rust", "spot"), prefix="test_", seed=1)
    data = load_data(folder, create_model("test-tinynet"), 0)
    reference, resumed = _uninterrupted_and_resumed(FOLDED, data, tmp_path, monkeypatch, point)
    assert resumed == reference


CHANNELS_LAST = {"model": "lenet-5", "seed": 6, "model_kwargs": {"dropout": 0.3},
                 "train": {"epochs": 1, "batch_size": 256, "optimizer": "adamw", "channels_last": True},
                 "prune": {"sparsity": {"conv2": 0.8, "fc1": 0.9}, "rounds": 2,
                           "retrain": {"epochs": 2, "batch_size": 256, "channels_last": True, "distill": 0.5}},
                 "quantize": {"bits": 4, "finetune": {"epochs": 1, "batch_size": 256, "channels_last": True}},
                 "encode": {"index_bits": {"conv": 8, "fc": 5}}}


def test_resume_of_a_channels_last_conv_net(digits, tmp_path, monkeypatch):
    """Channels-last weights and optimiser moments are saved contiguous and resumed to the same bytes
    (the built-in LeNet-5 recipe trains channels-last)."""
    reference, resumed = _uninterrupted_and_resumed(CHANNELS_LAST, digits, tmp_path, monkeypatch, "prune.2@1")
    assert resumed == reference
