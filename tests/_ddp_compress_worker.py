"""Run ``deepcompress compress`` unchanged inside torchrun; also save each rank's quantized weights for the test."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from deepcompress.cli import main
from deepcompress.pipeline import Pipeline
from deepcompress.quantize.sharing import shared_state
from deepcompress.training import rank

out = Path(sys.argv[1])
_quantize = Pipeline.quantize


def quantize_and_dump(self, model, stage):
    _quantize(self, model, stage)
    plain, _ = shared_state(model)
    save_file({k: v.contiguous() for k, v in plain.items()}, str(out / f"rank{rank()}.safetensors"))


Pipeline.quantize = quantize_and_dump
sys.exit(main(["compress", *sys.argv[2:]]))
