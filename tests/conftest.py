"""Shared fixtures: the real slides in ../shared/slides (read their README for what each is)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLIDES_DIR = Path(os.environ.get("SLIDESTREAM_TEST_SLIDES", REPO.parent / "shared" / "slides"))

CMU = SLIDES_DIR / "CMU-1-Small-Region.svs"
TCGA_JP2K = SLIDES_DIR / "tcga-cr-7395-01a-01-ts1.svs"
PEN = SLIDES_DIR / "TCGA-XK-AAJU-pen-marks.tif"
KIDNEY = SLIDES_DIR / "kidney-48-5.tif"
ALL_SLIDES = [CMU, TCGA_JP2K, PEN, KIDNEY]


def pytest_configure(config: pytest.Config) -> None:
    missing = [p for p in ALL_SLIDES if not p.exists()]
    if missing:
        raise pytest.UsageError(
            f"test slides not found: {', '.join(map(str, missing))}; put the shared/ folder next to "
            "the repository or set SLIDESTREAM_TEST_SLIDES"
        )


@pytest.fixture(params=ALL_SLIDES, ids=lambda p: p.name)
def any_slide(request: pytest.FixtureRequest) -> Path:
    return request.param
