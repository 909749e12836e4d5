"""Model zoo: every architecture is created by name with :func:`create_model`."""

from . import lenet  # noqa: F401  (registers the LeNets)
from ._registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
