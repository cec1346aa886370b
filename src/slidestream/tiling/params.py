"""Tiling and selection parameters (validated; recorded verbatim in the store)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TilingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mpp: float | None = Field(0.5, gt=0, description="Target microns per pixel of the tiles.")
    magnification: float | None = Field(None, gt=0, description="Target magnification instead of mpp (via the objective power).")
    tile_size: int = Field(224, gt=0, le=8192, description="Tile side in pixels at the target resolution.")
    overlap: int = Field(0, ge=0, description="Overlap between neighbouring tiles, pixels at the target resolution.")
    min_tissue: float = Field(0.25, ge=0, le=1, description="Minimum tissue fraction for a tile to be kept.")
    allow_upsample: bool = Field(False, description="Allow a target finer than the slide's best resolution.")
    min_focus_ratio: float | None = Field(None, gt=0, lt=1, description="Drop out-of-focus tiles: sharpness (variance of the Laplacian at focus_mpp) below this share of the slide's sharp tiles (90th percentile), e.g. 0.1. None: off.")
    focus_mpp: float = Field(2.0, gt=0, description="Resolution at which tile sharpness is measured (um/px).")
    tile_qc: bool = Field(False, description="Measure each tile's white/black/grey pixel shares at qc_mpp and store them (tiles/qc).")
    qc_mpp: float = Field(4.0, gt=0, description="Resolution of the tile QC image (um/px); one whole-slide read.")
    max_white: float | None = Field(None, ge=0, le=1, description="Drop tiles whose white (glass) share exceeds this (implies tile_qc).")
    max_black: float | None = Field(None, ge=0, le=1, description="Drop tiles whose black share exceeds this (implies tile_qc).")
    max_grey: float | None = Field(None, ge=0, le=1, description="Drop tiles whose grey (achromatic) share exceeds this (implies tile_qc).")

    @model_validator(mode="after")
    def _check(self) -> TilingParams:
        if self.overlap >= self.tile_size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than tile_size ({self.tile_size})")
        if self.magnification is None and self.mpp is None:
            raise ValueError("give mpp or magnification")
        return self


class SelectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    method: Literal["mosaic", "fps", "random", "grid"] = "mosaic"
    fraction: float | None = Field(0.1, gt=0, le=1)
    count: int | None = Field(None, gt=0)
    seed: int = 0

    @property
    def name(self) -> str:
        return self.method
