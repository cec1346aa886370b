"""slidestream: whole-slide images to tissue, tiles, features and slide embeddings."""

from slidestream._version import __version__
from slidestream.errors import (
    MissingMppError,
    SlideOpenError,
    SlideReadError,
    SlideStreamError,
)
from slidestream.io import Slide, find_slides, open_slide

__all__ = [
    "MissingMppError",
    "Slide",
    "SlideOpenError",
    "SlideReadError",
    "SlideStreamError",
    "__version__",
    "find_slides",
    "open_slide",
]
