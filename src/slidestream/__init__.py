"""slidestream: whole-slide images to tissue, tiles, features and slide embeddings."""

from slidestream._version import __version__

__all__ = ["__version__"]
