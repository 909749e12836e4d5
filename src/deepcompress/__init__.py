"""deepcompress: Deep Compression (Han, Mao & Dally, ICLR 2016) for PyTorch.

``import deepcompress`` stays light (no torch import) so that ``deepcompress.runtime`` can run
without PyTorch; the PyTorch-facing API is loaded on first use.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": ("deepcompress.api", "load"),
    "save": ("deepcompress.format.model", "save_model"),
    "create_model": ("deepcompress.models", "create_model"),
    "list_models": ("deepcompress.models", "list_models"),
    "Pipeline": ("deepcompress.pipeline", "Pipeline"),
    "load_recipe": ("deepcompress.recipe", "load_recipe"),
    "FormatError": ("deepcompress.errors", "FormatError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deepcompress' has no attribute {name!r}")
