"""Tissue-detection parameters: one validated model, defaults that work on H&E and IHC."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ArtifactName = Literal["fold", "darkspot", "pen", "edge", "oof"]
# Where and how a deep model runs, not what it computes: left out of the parameters a store is
# compared on (the weights are compared by their SHA-256 in the provenance instead).
RUNTIME_FIELDS = frozenset({"weights", "artifact_weights", "device", "batch_size"})


class TissueParams(BaseModel):
    """Knobs of the default saturation/Otsu detector.

    Areas are in square microns, not pixels, so the result does not change with the scale of
    the low-resolution image the detection runs on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mpp: float | None = Field(None, gt=0, description="Working resolution (um/px); None picks 2-16 um/px from the slide size.")
    target_long_side_px: int = Field(1024, ge=256, le=16384, description="Long side of the working image when mpp is None.")
    snap_to_level: float = Field(1.0, ge=1.0, le=4.0, description="When mpp is None, segment a pyramid level up to this many times coarser than the size-based resolution, as stored (no resampling, fewer pixels: faster, slightly coarser outlines); 1 (default) never snaps.")
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

    # deep segmenters (tissue/models.py); the knobs above except pen/black/white apply to them too
    method: Literal["classical", "hest", "grandqc"] = Field("classical", description="classical (saturation/Otsu), hest (HEST DeepLabV3) or grandqc (GrandQC UNet++).")
    combine: Literal["intersect", "union"] | None = Field(None, description="With a deep method: intersect or unite its mask with the classical one (their IoU is recorded).")
    threshold: float = Field(0.5, gt=0, lt=1, description="Deep methods: minimum tissue probability (TRIDENT's confidence_thresh).")
    model_mpp: float | None = Field(None, gt=0, description="Deep methods: input um/px; None is the release's (hest 1, grandqc 10; HEST's fast mode is 2).")
    artifacts: bool = Field(False, description="Also run GrandQC's artifact segmenter (fold, darkspot, pen, edge, oof) inside the tissue.")
    artifact_mpp: float = Field(1.0, gt=0, description="Input um/px of the artifact model (1.0 for GrandQC_MPP1).")
    exclude_artifacts: tuple[ArtifactName, ...] = Field((), description="Artifact classes cut out of the tissue (implies artifacts).")
    random_init: bool = Field(False, description="Tests and benchmarks only: seeded random weights, no file.")
    weights: str | None = Field(None, description="Deep tissue model weights file or folder (else $SLIDESTREAM_WEIGHTS, the HF cache).")
    artifact_weights: str | None = Field(None, description="GrandQC artifact weights (GrandQC_MPP1_state_dict.pth) file or folder.")
    device: str = Field("cpu", description="Deep methods: torch device, e.g. cuda.")
    batch_size: int = Field(8, ge=1, le=1024, description="Deep methods: tiles per forward pass.")

    @model_validator(mode="after")
    def _check(self) -> TissueParams:
        if self.combine is not None and self.method == "classical":
            raise ValueError("combine needs a deep method (hest or grandqc) to combine with the classical mask")
        return self

    @property
    def run_artifacts(self) -> bool:
        return self.artifacts or bool(self.exclude_artifacts)

    def identity(self) -> dict[str, Any]:
        """What a store's tissue is compared on: everything but where and how the models run."""
        return self.model_dump(exclude=set(RUNTIME_FIELDS))
