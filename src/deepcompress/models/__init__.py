"""Model zoo: every architecture is created by name with :func:`create_model`."""

from . import efficientnet_lite, lenet, mobilenet_v1, nasnet, torchvision_zoo  # noqa: F401  (register models)
from ._registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
