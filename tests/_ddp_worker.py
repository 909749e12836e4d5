"""Run ``deepcompress train`` unchanged inside torchrun; also save each rank's final weights for the test."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

import deepcompress.commands.train as train_cmd
from deepcompress.cli import main
from deepcompress.training import rank, world_size

out = Path(sys.argv[1])
_write = train_cmd.write_outputs


def write_and_dump(path, result, extra=None):
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"rank{rank()}.safetensors"), metadata={"world_size": str(world_size())})
    _write(path, result, extra)


train_cmd.write_outputs = write_and_dump
sys.exit(main(["train", *sys.argv[2:], "--out", str(out)]))
