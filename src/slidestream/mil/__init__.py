"""Weakly supervised slide-level learning from tile features (multiple-instance learning).

Bags of tile features come from a :class:`BagSource` (slide stores or memory); a labels table
and a :class:`TrainConfig` drive patient-level cross-validation (:func:`cross_validate`), which
writes a run folder that :func:`predict` applies to new slides.
"""

from slidestream.mil.bags import BagSource, InMemoryBagSource, StoreBagSource
from slidestream.mil.checkpoint import load_checkpoint, save_checkpoint
from slidestream.mil.config import TrainConfig
from slidestream.mil.crossval import CVResult, cross_validate
from slidestream.mil.explain import write_tile_scores
from slidestream.mil.labels import LabelsTable, check_slides, labels_from_frame, read_labels
from slidestream.mil.metrics import classification_metrics, concordance_index
from slidestream.mil.models import MILModel, MILOutput, Targets, get_model, list_models
from slidestream.mil.predict import MILPredictions, load_run, predict
from slidestream.mil.splits import patient_folds, validation_split

__all__ = [
    "BagSource",
    "CVResult",
    "InMemoryBagSource",
    "LabelsTable",
    "MILModel",
    "MILOutput",
    "MILPredictions",
    "StoreBagSource",
    "Targets",
    "TrainConfig",
    "check_slides",
    "classification_metrics",
    "concordance_index",
    "cross_validate",
    "get_model",
    "labels_from_frame",
    "list_models",
    "load_checkpoint",
    "load_run",
    "patient_folds",
    "predict",
    "read_labels",
    "save_checkpoint",
    "validation_split",
    "write_tile_scores",
]
