import os

import pytest

from deepcompress._io import atomic_write_bytes


def test_atomic_write_replaces_and_uses_the_umask(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    old = os.umask(0o022)
    try:
        atomic_write_bytes(target, b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        atomic_write_bytes(tmp_path / "missing" / "x", b"")


def test_checkpoints_get_the_umask_permissions_too(tmp_path):
    """safetensors' save_file recreates the temporary file as 0600; the final file still follows the umask."""
    from deepcompress.checkpoint import save_checkpoint
    from deepcompress.models import create_model

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.safetensors", create_model("lenet-300-100"))
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
