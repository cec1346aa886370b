"""Slide foundation encoders (TITAN, PRISM, Prov-GigaPath, CHIEF, MADELEINE, FEATHER).

Pure-torch re-implementations that load the official checkpoints strictly and reproduce the
official slide embedding; each comes with the input contract it was trained on (patch encoder,
tile size, magnification, coordinates), which :mod:`.inputs` checks against a store's records.
Array API: ``embed_slide(model, features, coords=None, patch_size_level0=None)``; stores:
:func:`.cohort.foundation_slide_fn` with :func:`.inputs.read_slide_input`.
"""

from slidestream.slide_encoders.foundation.api import (
    embed_slide,
    encode_cohort,
    foundation_slide_fn,
)
from slidestream.slide_encoders.foundation.loading import find_weights, load_slide_encoder
from slidestream.slide_encoders.foundation.registry import (
    all_slide_specs,
    get_slide_spec,
    list_slide_encoders,
)
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = [
    "InputRequirement",
    "SlideEncoderSpec",
    "SlideInput",
    "all_slide_specs",
    "embed_slide",
    "encode_cohort",
    "find_weights",
    "foundation_slide_fn",
    "get_slide_spec",
    "list_slide_encoders",
    "load_slide_encoder",
]
