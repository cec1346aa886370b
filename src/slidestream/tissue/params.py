"""Tissue-detection parameters: one validated model, defaults that work on H&E and IHC."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TissueParams(BaseModel):
    """Knobs of the default saturation/Otsu detector.

    Areas are in square microns, not pixels, so the result does not change with the scale of
    the low-resolution image the detection runs on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mpp: float | None = Field(None, gt=0, description="Working resolution (um/px); None picks 2-16 um/px from the slide size.")
    target_long_side_px: int = Field(1024, ge=256, le=16384, description="Long side of the working image when mpp is None.")
    median_um: float = Field(40.0, ge=0, description="Median blur diameter applied to saturation before thresholding.")
    min_saturation: float = Field(0.05, ge=0, le=1, description="Floor on the Otsu threshold: blank glass never counts as tissue.")
    max_saturation_threshold: float = Field(0.25, ge=0, le=1, description="Cap on the Otsu threshold, so pale IHC survives a strongly stained neighbour.")
    white_value: float = Field(0.92, ge=0, le=1, description="Pixels brighter than this with low saturation are background.")
    black_value: float = Field(0.18, ge=0, le=1, description="Pixels darker than this are black ink, slide edge or debris, never tissue.")
    remove_pen: bool = Field(True, description="Exclude blue/green/black pen marks.")
    min_pen_um2: float = Field(1_000.0, ge=0, description="Ink pieces smaller than this are specks (dye, dust), not pen, and are not grown.")
    pen_dilate_um: float = Field(30.0, ge=0, description="Grow pen masks by this much to swallow the ink's halo.")
    min_texture: float = Field(0.004, ge=0, description="Minimum local std of grey level (0-1); below it a region is blank/out of focus.")
    closing_um: float = Field(60.0, ge=0, description="Morphological closing diameter, bridging small gaps inside tissue.")
    min_object_um2: float = Field(10_000.0, ge=0, description="Drop tissue pieces smaller than this (debris, dust).")
    min_hole_um2: float = Field(10_000.0, ge=0, description="Fill holes smaller than this; larger holes stay holes.")
    simplify_px: float = Field(0.75, ge=0, description="Polygon simplification tolerance in working-image pixels.")
