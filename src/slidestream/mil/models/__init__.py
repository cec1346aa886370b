"""MIL aggregators: one module per paper, all behind :func:`get_model`.

Importing this package registers every model.
"""

from slidestream.mil.models import abmil, clam, dsmil, pooling, transmil  # noqa: F401  (register)
from slidestream.mil.models.base import MILModel, MILOutput, Targets
from slidestream.mil.models.registry import get_model, list_models, register

__all__ = ["MILModel", "MILOutput", "Targets", "get_model", "list_models", "register"]
