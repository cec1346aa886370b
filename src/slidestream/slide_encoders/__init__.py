"""Task-agnostic slide embeddings from tile features: PANTHER, COBRA (Mamba-2) and mean pooling.

The core API works on arrays, ``(N, D)`` tile features per slide, so it can be used and tested
without stores; :mod:`.cohort` is the one module that reads and writes ``<slide_id>.zarr`` stores.
"""

from slidestream.slide_encoders.cobra import (
    Cobra,
    CobraConfig,
    cobra_i_config,
    cobra_ii_config,
    embed,
)
from slidestream.slide_encoders.cobra_train import PretrainConfig, PretrainResult, train_cobra
from slidestream.slide_encoders.cobra_weights import load_cobra, save_cobra
from slidestream.slide_encoders.evaluate import ProbeResult, cox_probe, linear_probe, patient_folds
from slidestream.slide_encoders.mamba2 import Mamba2
from slidestream.slide_encoders.mean import mean_embedding
from slidestream.slide_encoders.panther import (
    PantherFit,
    embedding_dim,
    map_em,
    panther_embedding,
    split_allcat,
)
from slidestream.slide_encoders.probe import probe_cohort, read_cohort_table
from slidestream.slide_encoders.prototypes import Prototypes, fit_prototypes, load_prototypes

__all__ = [
    "Cobra",
    "CobraConfig",
    "Mamba2",
    "PantherFit",
    "PretrainConfig",
    "PretrainResult",
    "ProbeResult",
    "Prototypes",
    "cobra_i_config",
    "cobra_ii_config",
    "cox_probe",
    "embed",
    "embedding_dim",
    "fit_prototypes",
    "linear_probe",
    "load_cobra",
    "load_prototypes",
    "map_em",
    "mean_embedding",
    "panther_embedding",
    "patient_folds",
    "probe_cohort",
    "read_cohort_table",
    "save_cobra",
    "split_allcat",
    "train_cobra",
]
