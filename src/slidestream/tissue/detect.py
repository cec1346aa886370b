"""Tissue detection on a low-resolution view of the slide, returned as level-0 polygons."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from slidestream.errors import NoTissueWarning
from slidestream.io import Slide
from slidestream.tissue.masks import tissue_mask
from slidestream.tissue.params import TissueParams
from slidestream.tissue.polygons import dissolve, mask_to_polygons

if TYPE_CHECKING:  # geopandas (and pandas, pyproj: ~0.7 s) loads when a caller asks for ``gdf``
    import geopandas as gpd

MPP_RANGE = (2.0, 16.0)


@dataclass
class TissueResult:
    """Tissue of one slide. ``polygons``/``gdf``/``geometry`` are in level-0 pixels; the rest is
    diagnostics. The pieces are kept as shapely polygons and their areas (what the pipeline
    writes); ``gdf`` builds the GeoDataFrame on first use, so a job never imports geopandas."""

    polygons: list[BaseGeometry]    # tissue pieces (with holes), in detection order
    areas_um2: np.ndarray           # area of each piece in um^2
    geometry: BaseGeometry          # union of all tissue (MultiPolygon, possibly empty)
    image: np.ndarray               # the low-resolution RGB the detection ran on
    mask: np.ndarray                # bool tissue mask at the image's resolution
    pen: np.ndarray                 # bool ink mask at the image's resolution
    image_mpp: tuple[float, float]  # um/px of image and masks
    level0_size: tuple[int, int]    # slide (width, height) at level 0
    threshold: float
    params: TissueParams
    small_pieces_dropped: int = 0
    method: str = "classical"
    provenance: dict[str, Any] = field(default_factory=dict)  # deep methods: model, weights SHA-256, ...
    artifacts: dict[str, BaseGeometry] = field(default_factory=dict)  # GrandQC class -> level-0 geometry
    agreement_iou: float | None = None  # combined mode: IoU of the classical and the deep mask

    @property
    def scale(self) -> tuple[float, float]:
        """Level-0 pixels per image pixel (x, y)."""
        h, w = self.mask.shape
        return (self.level0_size[0] / w, self.level0_size[1] / h)

    def ink_geometry(self) -> BaseGeometry:
        """Ink (pen marks) excluded from the tissue, as level-0 polygons: drawn for reviewers."""
        polygons = mask_to_polygons(self.pen, self.scale, self.params.simplify_px)
        return dissolve(polygons)

    @cached_property
    def gdf(self) -> gpd.GeoDataFrame:
        """The pieces as a GeoDataFrame (``area_um2`` and ``geometry`` columns, no CRS)."""
        import geopandas as gpd

        return gpd.GeoDataFrame({"area_um2": self.areas_um2, "geometry": self.polygons}, geometry="geometry", crs=None)

    @property
    def area_um2(self) -> float:
        return float(self.areas_um2.sum()) if len(self.polygons) else 0.0

    @property
    def is_empty(self) -> bool:
        return self.geometry.is_empty

    def summary(self) -> dict[str, float | int]:
        h, w = self.mask.shape
        return {
            "tissue_pieces": len(self.polygons),
            "tissue_area_mm2": round(self.area_um2 / 1e6, 4),
            "tissue_fraction": round(float(self.mask.mean()), 4),
            "pen_fraction": round(float(self.pen.mean()), 4),
            "working_mpp": round(float(np.mean(self.image_mpp)), 4),
            "working_size": f"{w}x{h}",
            "small_pieces_dropped": self.small_pieces_dropped,
            **({"method": self.method} if self.method != "classical" else {}),
            **({"agreement_iou": round(self.agreement_iou, 4)} if self.agreement_iou is not None else {}),
            **{f"{name}_area_mm2": round(_area_um2(g, self.level0_size, self.scale, self.image_mpp) / 1e6, 4)
               for name, g in self.artifacts.items()},
        }


def working_mpp(slide: Slide, params: TissueParams) -> float:
    """Resolution for detection: coarse enough to be cheap, fine enough for ~100 um tiles.

    From the slide's size (``target_long_side_px``, within 2-16 um/px); then, with
    ``snap_to_level`` > 1, when a pyramid level is at most that many times coarser (and within
    the range), that level's own resolution: the image is the level as stored, with no
    resampling and up to ``snap_to_level``² fewer pixels to segment (hs2p segments a stored
    level too). Off by default: at 1.27-1.6x coarser the masks keep an IoU of only 0.96-0.985
    with the default ones (benchmarks/results/tiling_ab_table.md).
    """
    if params.mpp is not None:
        return params.mpp
    mx, my = slide.mpp
    longest_um = max(slide.width * mx, slide.height * my)
    target = float(np.clip(longest_um / params.target_long_side_px, *MPP_RANGE))
    if params.snap_to_level > 1:
        # a level's true mpp from its size, so read_whole returns exactly that level's pixels
        levels = [slide.width * (mx + my) / 2 / w for w, _ in slide.level_dimensions]
        near = [m for m in levels if target * (1 - 1e-6) <= m <= min(target * params.snap_to_level, MPP_RANGE[1])]
        if near:
            return max(near)
    return target


def _snapped_level(slide: Slide, mpp: float) -> int | None:
    """The level whose resolution ``working_mpp`` snapped to, if any."""
    mx, my = slide.mpp
    for i, (w, _) in enumerate(slide.level_dimensions):
        if abs(slide.width * (mx + my) / 2 / w - mpp) <= 1e-9 * mpp:
            return i
    return None


def detect_tissue(slide: Slide, params: TissueParams | None = None) -> TissueResult:
    """Find tissue (with holes, without pen marks) on a low-resolution image of ``slide``.

    Needs the slide's mpp (areas are physical). Never reads level 0 of a large slide: the image
    comes from the coarsest pyramid level that suffices, block by block.
    """
    params = params or TissueParams()
    target = working_mpp(slide, params)
    level = _snapped_level(slide, target) if params.mpp is None and params.snap_to_level > 1 else None
    if level is not None:  # the stored level, pixel for pixel
        lw, lh = slide.level_dimensions[level]
        image = slide.read_region((0, 0), level, (lw, lh))
        mx, my = slide.mpp[0] * slide.width / lw, slide.mpp[1] * slide.height / lh
    else:
        image, (mx, my) = slide.read_whole(target)
    result = tissue_mask(image, float((mx + my) / 2), params)
    return result_from_mask(slide, image, (mx, my), result.tissue, result.pen, result.threshold, params,
                            small_pieces_dropped=result.small_pieces_dropped)


def result_from_mask(slide: Slide, image: np.ndarray, image_mpp: tuple[float, float], mask: np.ndarray,
                     pen: np.ndarray, threshold: float, params: TissueParams, **extra: Any) -> TissueResult:
    """Polygons (level-0, with holes) of a tissue mask over the whole slide, and their areas."""
    h, w = mask.shape
    scale = (slide.width / w, slide.height / h)
    polygons = mask_to_polygons(mask, scale, params.simplify_px)
    mpp0 = slide.mpp
    areas = shapely.area(np.asarray(polygons, dtype=object)) * (mpp0[0] * mpp0[1]) if polygons else np.zeros(0)
    union = dissolve(polygons)
    if not polygons:
        warnings.warn(f"{slide.path}: no tissue found (threshold {threshold:.3f}); the slide gets no tiles",
                      NoTissueWarning, stacklevel=3)
    return TissueResult(polygons=list(polygons), areas_um2=np.asarray(areas, dtype=np.float64), geometry=union, image=image, mask=mask, pen=pen, image_mpp=image_mpp,
                        level0_size=slide.dimensions, threshold=threshold, params=params, **extra)


def _area_um2(geometry: BaseGeometry, level0_size: tuple[int, int], scale: tuple[float, float],
              image_mpp: tuple[float, float]) -> float:
    """Area of a level-0 geometry in um^2 (level-0 um/px from the working image's)."""
    mx0, my0 = image_mpp[0] / scale[0], image_mpp[1] / scale[1]
    return float(geometry.area) * mx0 * my0
