"""Bad inputs at the edges: pickle checkpoints are refused unexecuted; the CLI answers bad files, data
folders and recipes with one line and exit status 2 (a traceback only with --debug).

The table in docs/bad-inputs.md lists these cases.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dcz_samples import compressed_model, dcz_bytes, recrc
from safetensors.torch import save_file

from deepcompress.api import load
from deepcompress.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deepcompress.cli import main
from deepcompress.errors import FormatError
from deepcompress.models import create_model


class Payload:
    """Unpickling this object creates the directory ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad")
    good = dcz_bytes(compressed_model("lenet-300-100", sparsity=0.9, bits=4), tmp)
    model = create_model("lenet-300-100")
    out = {"good": tmp / "good.dcz", "ckpt": tmp / "good.safetensors", "flipped": tmp / "flipped.dcz",
           "truncated": tmp / "truncated.dcz", "text": tmp / "notes.txt", "empty_dir": tmp / "empty",
           "bad_header": tmp / "bad_header.dcz", "empty_file": tmp / "empty.dcz"}
    out["good"].write_bytes(good)
    save_checkpoint(out["ckpt"], model)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    out["flipped"].write_bytes(bytes(flipped))
    out["truncated"].write_bytes(good[: len(good) // 3])
    out["text"].write_text("hello, not a model\n")
    out["empty_dir"].mkdir()
    out["empty_file"].write_bytes(b"")
    hlen = int.from_bytes(good[12:16], "little")
    header = good[16:16 + hlen].replace(b'"arch":"lenet-300-100"', b'"arch":"lenet-9"')
    out["bad_header"].write_bytes(recrc(good[:12] + len(header).to_bytes(4, "little") + header + good[16 + hlen:]))
    return out


# ------------------------------------------------------------------------------------- pickle payloads

def _pickles(tmp_path: Path, marker: Path) -> list[Path]:
    state = {"fc1.weight": torch.zeros(1), "evil": Payload(marker)}
    a, b, c = tmp_path / "model.pt", tmp_path / "model.safetensors", tmp_path / "model.dcz"
    torch.save(state, a)
    b.write_bytes(a.read_bytes())
    c.write_bytes(pickle.dumps(state))
    return [a, b, c]


def test_the_payload_is_live(tmp_path):
    """Control: unpickling the file really runs the payload (so the refusals below mean something)."""
    marker = tmp_path / "pwned"
    path = _pickles(tmp_path, marker)[0]
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickle_checkpoints_are_refused_unexecuted(tmp_path, capsys):
    marker = tmp_path / "pwned"
    for path in _pickles(tmp_path, marker):
        with pytest.raises((CheckpointError, FormatError), match="safetensors|not a .dcz"):
            load(path)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        assert main(["evaluate", str(path), "--data", "digits"]) == 2
        assert main(["compress", str(path), "--data", "digits", "--out", str(tmp_path / "x.dcz")]) == 2
        assert not marker.exists()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("model,match", [
    ('{"arch": "lenet-300-100", "kwargs": {"num_classes": 1000000000}}', "over the limit"),
    ('{"arch": "lenet-300-100", "kwargs": {"num_classes": 12}}', r"'fc3.weight' is \(10, 100\) in the file"),
    ('{"arch": "lenet-5"}', "weights do not match model 'lenet-5'"),
    ('{"arch": "lenet-300-100", "kwargs": {"num_classes": "ten"}}', "cannot build"),
    ('{"arch": "nope"}', "unknown model"),
    ('{"arch": "lenet-300-100", "class_names": 3}', "class_names"),
    ("[" * 50_000, "malformed"),
])
def test_checkpoint_metadata_is_checked(tmp_path, model, match):
    path = tmp_path / "c.safetensors"
    tensors = {k: v.contiguous() for k, v in create_model("lenet-300-100").state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "deepcompress-checkpoint", "model": model})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_safetensors_without_checkpoint_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a deepcompress checkpoint"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------------- CLI

def _cli(capsys, *argv: str) -> str:
    """Run the CLI in-process; it must exit 2 with one line on stderr and no traceback."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"deepcompress {argv[0]}: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["evaluate", "inspect"])
@pytest.mark.parametrize("which,match", [
    ("missing", "no such"), ("flipped", "checksum mismatch"), ("truncated", "checksum mismatch"),
    ("text", "not a"), ("empty_dir", "not a"), ("bad_header", "unknown model 'lenet-9'"), ("empty_file", "not a"),
])
def test_cli_bad_model_files(files, capsys, command, which, match):
    path = files.get(which, files["good"].with_name("missing.dcz"))
    extra = ["--data", "digits"] if command == "evaluate" else []
    assert match in _cli(capsys, command, str(path), *extra)


def test_cli_debug_shows_the_traceback(files):
    with pytest.raises(FormatError):
        main(["--debug", "inspect", str(files["flipped"])])


def test_cli_empty_or_missing_data_folder(files, tmp_path, capsys):
    assert "not found" in _cli(capsys, "evaluate", str(files["good"]), "--data", str(files["empty_dir"] / "nope"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {epochs: 0}\n")
    assert "neither an MNIST IDX folder, an image folder" in _cli(
        capsys, "compress", str(files["ckpt"]), "--recipe", str(recipe), "--data", str(files["empty_dir"]),
        "--out", str(tmp_path / "x.dcz"))


def test_cli_empty_image_folder_for_evaluate(files, capsys):
    err = _cli(capsys, "evaluate", str(files["good"]), "--data", str(files["empty_dir"]))
    assert "is neither an MNIST IDX folder nor an image folder" in err


@pytest.mark.parametrize("recipe,match", [
    ("prune: {sparsity: {fc9: 0.5}}\n", "no layer named 'fc9'"),
    ("quantize: {bits: {fc9: 4}}\n", "quantize.bits: no layer named 'fc9'"),
    ("encode: {index_bits: {fc9: 4}}\n", "encode.index_bits: no layer named 'fc9'"),
    ("prune: {sparsity: 1.0}\n", "prune.sparsity must be in [0, 1)"),
    ("prune: {sparsity: -0.1}\n", "prune.sparsity must be in [0, 1)"),
    ("quantize: {bits: 17}\n", "quantize.bits must be integers in 1..16"),
    ("quantize: {bits: {fc: 0}}\n", "quantize.bits must be integers in 1..16"),
    ("encode: {index_bits: 99}\n", "encode.index_bits"),
    ("prune: [unclosed\n", "cannot parse recipe"),
    ("colour: blue\n", "unknown key"),
])
def test_cli_bad_recipes(files, tmp_path, capsys, recipe, match):
    path = tmp_path / "r.yaml"
    path.write_text("train: {epochs: 0}\n" + recipe)
    err = _cli(capsys, "compress", str(files["ckpt"]), "--recipe", str(path), "--data", "digits", "--quiet",
               "--out", str(tmp_path / "x.dcz"))
    assert match in err
    assert not (tmp_path / "x.dcz").exists()


def test_cli_recipe_layer_names_are_checked_before_training(tmp_path, capsys):
    """A long baseline training run is not started with a recipe that would fail after it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {epochs: 1000}\nprune: {sparsity: {fc9: 0.5}}\n")
    err = _cli(capsys, "reproduce", "lenet-300-100", "--recipe", str(recipe), "--data", "digits", "--quiet",
               "--out", str(tmp_path / "run"))
    assert "prune.sparsity: no layer named 'fc9'" in err


def test_cli_recipe_for_another_model(files, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet-5\ntrain: {epochs: 0}\nprune: {sparsity: 0.5}\n")
    for argv in (["compress", str(files["ckpt"]), "--out", str(tmp_path / "x.dcz")],
                 ["reproduce", "lenet-300-100", "--out", str(tmp_path / "run")]):
        err = _cli(capsys, *argv, "--recipe", str(recipe), "--data", "digits", "--quiet")
        assert "is a recipe for model 'lenet-5', but the model is 'lenet-300-100'" in err


def test_cli_checkpoint_for_other_classes(tmp_path, capsys):
    """A 3-class checkpoint on the 10 digit classes: refused before cross-entropy fails on label 9."""
    ckpt = tmp_path / "three.safetensors"
    save_checkpoint(ckpt, create_model("lenet-300-100", num_classes=3))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {epochs: 0}\nprune: {sparsity: 0.5}\n")
    for argv in (["evaluate", str(ckpt), "--data", "digits", "--json"],
                 ["compress", str(ckpt), "--recipe", str(recipe), "--data", "digits", "--quiet",
                  "--out", str(tmp_path / "x.dcz")]):
        assert "the data has class label 9, but the model has only 3 outputs" in _cli(capsys, *argv)


def test_cli_class_folder_without_images(files, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "photos" / "0").mkdir(parents=True)
    (tmp_path / "photos" / "1").mkdir()
    Image.new("RGB", (28, 28)).save(tmp_path / "photos" / "1" / "a.png")
    err = _cli(capsys, "evaluate", str(files["good"]), "--data", str(tmp_path / "photos"))
    assert "class folder(s) ['0'] hold no readable images" in err


def test_cli_unwritable_output(files, tmp_path, capsys):
    assert "not a folder" in _cli(capsys, "compress", str(files["ckpt"]), "--data", "digits",
                                  "--out", str(files["text"] / "x.dcz"))
    assert "not a folder" in _cli(capsys, "demo", "--out", str(files["text"] / "run"))
    if Path("/proc/self").is_dir():  # not writable even for root
        assert "output folder /proc is not writable" in _cli(capsys, "compress", str(files["ckpt"]), "--data",
                                                              "digits", "--out", "/proc/x.dcz")
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert f"output folder {ro} is not writable" in _cli(capsys, "compress", str(files["ckpt"]), "--data",
                                                              "digits", "--out", str(ro / "x.dcz"))


def test_cli_entry_point_exit_status(files):
    """The real process: status 2, one line on stderr, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-m", "deepcompress.cli", "inspect", str(files["truncated"])],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
